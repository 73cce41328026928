"""The store: SQLAlchemy schema, repository and the bluesky document writer."""

from .repository import DEFAULT_URL, Store, to_jsonable
from .writer import DocumentWriter

__all__ = ["DEFAULT_URL", "DocumentWriter", "Store", "to_jsonable"]
