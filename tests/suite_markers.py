"""Markers that let the suite run in pieces, and the rule for the browser tests (imported by ``conftest.py``).

``pytest -m "not browser"``, ``-m "not slow"``, ``-m postgres`` ... work without a marker in any test file: the
markers are given here, by file for ``browser``, ``daemon`` and ``slow`` and by fixture for ``postgres``, so the
files stay as their authors wrote them. ``tests/test_suite_markers.py`` checks that the lists keep up with the
files (a new file that drives a browser or starts a daemon must be listed).

* ``browser``: drives Debian's Chromium through its ChromeDriver (selenium).
* ``daemon``: starts a real ``labloop serve`` process.
* ``slow``: starts real labloop processes (daemons, campaign runs, agents, lease holders), drives a browser, or
  builds the docs site: seconds per test rather than milliseconds.
* ``postgres``: runs against the real PostgreSQL server (``LABLOOP_TEST_POSTGRES_URL``): uses the ``postgres_url``
  fixture, or the ``store_url`` fixture's PostgreSQL case.

Why a browser test may skip locally but never in CI: a developer without Chromium should still run the rest, told
plainly what is missing and how to get it; CI installs Chromium (``.ci/run``), so there a missing browser is a broken
setup, and a skip would hide exactly the tests that prove the dashboard works. So where ``CI`` is set (CI sets
``CI=true``) a missing Chromium, ChromeDriver or selenium fails the test instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

BROWSER = frozenset({"test_dashboard_browser.py"})
DAEMON = frozenset(
    {
        "test_daemon.py",
        "test_daemon_takeover.py",
        "test_dashboard_browser.py",
        "test_protocol_fuzz.py",
        "test_stream.py",
        "test_audit_outcomes.py",
        "test_light_cli.py",
        "test_readme_daemon.py",
        "test_surfaces_agree.py",
    }
)
#: protocol simulators in their own processes (the transports' tests)
TRANSPORTS = frozenset(
    {
        "test_transport_epics.py",
        "test_transport_modbus.py",
        "test_transport_opcua.py",
        "test_transport_serial.py",
        "test_transport_sila.py",
        "test_transport_visa.py",
        "test_declarative_campaign.py",
        "test_light_install.py",
        "test_solid_state_lab.py",
        "test_solid_state_campaign.py",
        "test_solid_state_kill.py",
        "test_solid_state_full_lab.py",
    }
)
SLOW = (
    BROWSER
    | DAEMON
    | TRANSPORTS
    | frozenset(
        {
            "test_resume_after_kill.py",
            "test_agent.py",
            "test_leases.py",
            "test_docs.py",
            "test_view_js.py",
            "test_spec_fuzz.py",
            "test_wakeups.py",
        }
    )
)


def in_ci() -> bool:
    """CI sets CI=true; an empty value, 0 or false mean a developer's machine."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _program(name: str) -> bool:
    return shutil.which(name) is not None or Path(f"/usr/bin/{name}").is_file()


def browser_missing() -> str | None:
    """What a browser test lacks on this machine, with how to get it; None when everything is there."""
    missing = [
        what
        for what, present in (
            ("chromium", _program("chromium")),
            ("chromedriver", _program("chromedriver")),
            ("the selenium package", importlib.util.find_spec("selenium") is not None),
        )
        if not present
    ]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not found: the browser tests need Debian's chromium and chromium-driver "
        f"(`apt-get install chromium chromium-driver`) and selenium (`pip install -e '.[test]'`)"
    )


def _uses_postgres(item: pytest.Item) -> bool:
    if "postgres_url" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("store_url") == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        for marker, files in (("browser", BROWSER), ("daemon", DAEMON), ("slow", SLOW)):
            if name in files:
                item.add_marker(marker)
        if _uses_postgres(item):
            item.add_marker("postgres")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("browser") is None:
        return
    missing = browser_missing()
    if missing is None:
        return
    if in_ci():
        pytest.fail(
            f"CI is set, so the browser tests must run, but {missing}. .ci/run installs them; a skip here "
            f"would hide the dashboard's tests",
            pytrace=False,
        )
    pytest.skip(missing)
