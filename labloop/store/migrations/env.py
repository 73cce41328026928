"""Alembic environment: labloop passes an open connection (labloop.store.migrate); a developer running the
``alembic`` command with ``sqlalchemy.url`` set gets a connection to that URL instead."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config


def run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("labloop's migrations run online only: use `labloop db upgrade --store URL`")
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use `labloop db upgrade --store URL`")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _migrate(conn)
            conn.commit()
    finally:
        engine.dispose()


def _migrate(connection) -> None:
    context.configure(connection=connection, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
