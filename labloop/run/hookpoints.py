"""Named points on the step path where a test may hook in; nothing is registered in production.

The executor calls :func:`reached` right after a step's start is committed (``step_start``, before the device
moves) and right after its end is committed (``step_end``, before the next action), each with the step's label, so
a test can kill at a named step whatever order concurrent steps happen to start in. Why points at all: resume
after ``kill -9`` is proven by killing a real campaign process exactly there (``tests/crashing.py``, which
registers a hook in the child process it starts). Production registers nothing, so a pass costs one empty loop;
no environment variable is read here.
"""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[[str, str], None]

#: Called with the point's name and the step's label, in order. Empty unless a test plugin added one.
HOOKS: list[Hook] = []


def add(hook: Hook) -> None:
    HOOKS.append(hook)


def remove(hook: Hook) -> None:
    HOOKS.remove(hook)


def reached(point: str, label: str = "") -> None:
    """Pass ``point`` of step ``label``: call every registered hook with both."""
    for hook in HOOKS:
        hook(point, label)
