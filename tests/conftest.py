"""Shared fixtures: temporary stores (SQLite always; PostgreSQL when LABLOOP_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import uuid

import pytest

POSTGRES_URL = os.environ.get("LABLOOP_TEST_POSTGRES_URL")


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'labloop.db'}"


def _postgres_schema_url():
    """A fresh schema in the test database, removed afterwards, so tests never see each other's rows."""
    import sqlalchemy as sa

    from labloop.store.connection import normalize_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(normalize_url(POSTGRES_URL))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    return url, engine, schema


def _postgres_store():
    """A URL of a fresh schema on the real server (skips when none is configured); the schema is dropped after."""
    if not POSTGRES_URL:
        pytest.skip("LABLOOP_TEST_POSTGRES_URL is not set (CI sets it; .ci/run runs these against a real server)")
    import sqlalchemy as sa

    url, engine, schema = _postgres_schema_url()
    try:
        yield url
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Each store test runs on embedded SQLite, and on the real PostgreSQL server when one is configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'labloop.db'}"
        return
    yield from _postgres_store()


@pytest.fixture
def postgres_url():
    """A store on the real PostgreSQL server only (tests of several processes sharing one server's store)."""
    yield from _postgres_store()


#: Third-party packages pytest marks for assertion rewriting only because their distributions ship a pytest plugin.
NOT_OURS = {"hypothesis", "_hypothesis_globals", "_hypothesis_ftz_detector", "anyio", "platformdirs", "pytest_timeout"}


def pytest_configure(config):
    """Rewrite the asserts of this project's code only. pytest also marks every package whose distribution has a
    pytest plugin, and hypothesis (70+ modules, imported by the property tests and by its own plugin at the end of
    every session) then costs about a second per run wherever bytecode is not cached (PYTHONDONTWRITEBYTECODE, a
    fresh CI clone): more than any of our test files. Their asserts' messages are not ours to improve. pytest keeps
    the marks in a private set; if that ever changes this does nothing and only the time comes back."""
    marked = getattr(getattr(config.pluginmanager, "rewrite_hook", None), "_must_rewrite", None)
    if isinstance(marked, set):
        marked -= NOT_OURS


# Markers (browser, daemon, slow, postgres) and the browser tests' skip-locally / fail-in-CI rule: suite_markers.py.
from suite_markers import pytest_collection_modifyitems, pytest_runtest_setup  # noqa: E402,F401 - pytest finds hooks by name here
