"""Schema migrations of the store (Alembic), shipped inside the package and configured in code (no alembic.ini).

The revision recorded in the store's ``alembic_version`` table is the truth about its schema; the
``labloop_meta.schema_version`` row is a human-readable mirror. Stores written before migrations existed have no
``alembic_version``: one whose ``schema_version`` is 3 (the last release without migrations) is at ``0001_baseline``.

To add a schema change: change the models in ``schema.py``, bump ``SCHEMA_VERSION``, write the next revision in
``versions/`` by hand (op.create_table / op.add_column, batch mode where SQLite needs it), append it to
:data:`REVISIONS`, and extend ``tests/test_migrations.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: Every revision, oldest first. Opening a store compares against this list without importing Alembic;
#: tests/test_migrations.py checks that it matches the scripts in versions/.
REVISIONS = (
    "0001_baseline",
    "0002_operator_requests",
    "0003_assets",
    "0004_calibrations",
    "0005_connected_lab",
    "0006_web_login",
    "0007_inventory",
)
HEAD = REVISIONS[-1]

#: ``labloop_meta.schema_version`` of stores written before Alembic, and the revision each one is at: 3 is the
#: last release without migrations; 4 was written only by development versions just before migrations came.
LEGACY_SCHEMA_REVISIONS = {"3": "0001_baseline", "4": "0002_operator_requests"}


def alembic_config(connection: Any = None, url: str | None = None) -> Any:
    """An Alembic ``Config`` pointing at this folder; migrations run on ``connection`` (or a new one to ``url``)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())
