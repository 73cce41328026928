"""The conformance kit as a pytest plugin, for integrators' own CI.

Registered under the ``pytest11`` entry point (or ``-p labloop.devkit.pytest_plugin``). Two ways to use it::

    # one test per check, each on a freshly built driver against its simulator:
    from labloop.devkit.pytest_plugin import conformance_test
    test_my_driver = conformance_test("my_pkg.driver:MyDriver", config={"timeout": 0.5})

    # or the fixture, for a device you build yourself (e.g. against your own endpoint):
    def test_my_arm(labloop_conformance):
        labloop_conformance(MyArm(name="arm", host=...)).assert_ok()

A failed check fails the test with the check's name and what to fix.

The kit itself (:mod:`labloop.devkit.conformance`, which imports bluesky) is imported when a test asks for it:
pytest loads this plugin in every session of every project that has labloop installed, most of which never use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .conformance import Report


@pytest.fixture
def labloop_conformance() -> Callable[..., Report]:
    """``labloop_conformance(target, config=None, **options) -> Report`` (see :func:`labloop.devkit.conformance.check_device`;
    ``target`` may be a built device, a class, or a ``module:attr`` path). Call ``.assert_ok()`` on the report."""
    from .conformance import check_device

    return check_device


def conformance_test(
    target: Any, config: Mapping[str, Any] | None = None, *, checks: Iterable[str] | None = None, **options: Any
) -> Callable[[str], None]:
    """A test function parametrized over the checks (``test_x = conformance_test("pkg.mod:Driver")``).

    Each parameter builds the driver anew (with its simulator, unless ``config`` names a host) and runs one check,
    so a failure names exactly the check that caught it. ``options`` go to ``check_device`` (``timeout``,
    ``grace``, ``simulator``).
    """
    from .conformance import check_device, check_names

    names = list(checks) if checks else check_names()

    @pytest.mark.parametrize("labloop_check", names)
    def test_conformance(labloop_check: str) -> None:
        report = check_device(target, dict(config or {}), only=[labloop_check], **options)
        report.assert_ok()

    return test_conformance
