"""The suite runs in pieces: markers given by tests/suite_markers.py, their lists kept up with the files, and the
browser tests skipped with a reason on a developer's machine without Chromium but failed (never skipped) in CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import suite_markers

TESTS = Path(__file__).resolve().parent


def _sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in TESTS.glob("test_*.py")}


def test_the_lists_name_existing_files_and_keep_up_with_what_files_do():
    sources = _sources()
    for listed in (suite_markers.BROWSER, suite_markers.DAEMON, suite_markers.SLOW):
        assert listed <= set(sources), f"suite_markers lists files that do not exist: {sorted(listed - set(sources))}"
    drives_browser = {n for n, s in sources.items() if re.search(r"^\s*from selenium|^\s*import selenium", s, re.M)}
    starts_daemon = {
        n for n, s in sources.items() if re.search(r"^\s*from daemon_helpers import[^\n]*DaemonProcess", s, re.M)
    }
    assert drives_browser == suite_markers.BROWSER, "add the file that drives a browser to BROWSER in suite_markers.py"
    assert starts_daemon <= suite_markers.DAEMON, "add the file that starts a daemon to DAEMON in suite_markers.py"
    assert suite_markers.BROWSER | suite_markers.DAEMON <= suite_markers.SLOW


def _item(filename: str, fixturenames=(), params=None):
    marks: list[str] = []
    item = SimpleNamespace(
        path=TESTS / filename,
        fixturenames=list(fixturenames),
        add_marker=marks.append,
        get_closest_marker=lambda name: name if name in marks else None,
    )
    if params is not None:
        item.callspec = SimpleNamespace(params=params)
    return item, marks


def test_markers_by_file_and_postgres_by_fixture():
    browser, browser_marks = _item("test_dashboard_browser.py")
    pg, pg_marks = _item("test_store.py", ["store_url", "tmp_path"], {"store_url": "postgresql"})
    lite, lite_marks = _item("test_store.py", ["store_url", "tmp_path"], {"store_url": "sqlite"})
    two, two_marks = _item("test_daemon_takeover.py", ["tmp_path", "postgres_url"])
    suite_markers.pytest_collection_modifyitems(None, [browser, pg, lite, two])
    assert set(browser_marks) == {"browser", "daemon", "slow"}
    assert pg_marks == ["postgres"] and lite_marks == []
    assert set(two_marks) == {"daemon", "slow", "postgres"}


@pytest.fixture
def no_browser(monkeypatch):
    monkeypatch.setattr(suite_markers, "_program", lambda name: name != "chromium")  # chromedriver there, chromium not
    item, marks = _item("test_dashboard_browser.py")
    marks.append("browser")
    return item


def test_a_missing_browser_skips_locally_naming_what_is_missing_and_how_to_get_it(no_browser, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        suite_markers.pytest_runtest_setup(no_browser)
    assert "chromium not found" in str(skipped.value) and "apt-get install chromium chromium-driver" in str(
        skipped.value
    )
    assert "chromedriver" not in str(skipped.value).split("not found")[0]


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_browser_fails_in_ci(no_browser, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception) as failed:
        suite_markers.pytest_runtest_setup(no_browser)
    assert "CI is set" in str(failed.value) and "chromium not found" in str(failed.value)


def test_a_test_that_is_not_a_browser_test_is_left_alone(monkeypatch):
    monkeypatch.setattr(suite_markers, "_program", lambda name: False)
    monkeypatch.setenv("CI", "true")
    item, _ = _item("test_best.py")
    suite_markers.pytest_runtest_setup(item)  # neither skips nor fails


@pytest.mark.slow  # a pytest of its own, collecting two files
def test_pytest_deselects_by_marker():
    """`-m "not browser"` through pytest itself: the conftest wiring and the markers' registration in pyproject."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error::pytest.PytestUnknownMarkWarning",
            "-m",
            "not browser",
            "tests/test_dashboard_browser.py",
            "tests/test_best.py",
        ],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    collected = [line for line in out.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests/test_best.py::") for line in collected)
    assert "deselected" in out.stdout, out.stdout
