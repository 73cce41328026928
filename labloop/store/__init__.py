"""The store: SQLAlchemy schema, repository and the bluesky document writer.

``Store``, ``DocumentWriter`` and ``to_jsonable`` are loaded on first use (PEP 562): an operator command that only
needs the default URL, or talks to a daemon, does not pay for importing SQLAlchemy and the schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: The store a command uses when given none: a SQLite file in the current folder.
DEFAULT_URL = "sqlite:///labloop.db"

if TYPE_CHECKING:
    from .repository import Store, to_jsonable
    from .writer import DocumentWriter

__all__ = ["DEFAULT_URL", "DocumentWriter", "Store", "to_jsonable"]


def __getattr__(name: str) -> Any:
    if name in ("Store", "to_jsonable"):
        from . import repository

        return getattr(repository, name)
    if name == "DocumentWriter":
        from .writer import DocumentWriter

        return DocumentWriter
    raise AttributeError(f"module 'labloop.store' has no attribute '{name}'")
