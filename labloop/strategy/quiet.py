"""Warnings of the strategy, captured in the thread that raised them, without touching other threads.

Why not ``warnings.catch_warnings``: it swaps the process-wide filter list and ``showwarning`` hook for as long as it
is active and restores them afterwards. The strategy runs on its own thread while RunEngines run trials on others,
so a fit's catch_warnings would silence (or record as its own) the warnings of a running deposition, and its
restore would undo filters another thread set meanwhile. Instead, :func:`install` wraps the function that shows a warning
once (before any RunEngine runs) with a hook that hands a warning to the *current thread's* sink if it has one,
and :func:`captured` gives a thread a sink for the duration of a block. Nothing process-wide changes after import.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()
_installed = False
_lock = threading.Lock()


def _hook(original: Any) -> Any:
    def _showwarnmsg(msg: warnings.WarningMessage) -> None:
        sink = getattr(_local, "sink", None)
        if sink is None:
            return original(msg)
        sink.append(msg)
        return None

    _showwarnmsg._labloop_quiet = True  # type: ignore[attr-defined]  # a mark on the function, for install()
    return _showwarnmsg


def install() -> None:
    """Once per process: the thread-aware hook, and 'always' for the optimizer's own warning categories (so a
    repeated retry is seen, and recorded, every time, not once per code location)."""
    global _installed
    with _lock:
        if _installed:
            return
        # warnings._showwarnmsg is what both the C and the Python warn() call to show a warning that passed the
        # filters; catch_warnings (pytest's, a user's) swaps showwarning but never this, so the hook stays in place
        # (warnings._showwarnmsg is private: typeshed leaves it out)
        if not getattr(warnings._showwarnmsg, "_labloop_quiet", False):  # type: ignore[attr-defined]
            warnings._showwarnmsg = _hook(warnings._showwarnmsg)  # type: ignore[attr-defined]
        from botorch.exceptions.warnings import BadInitialCandidatesWarning, InputDataWarning, OptimizationWarning

        for cat in (OptimizationWarning, InputDataWarning, BadInitialCandidatesWarning):
            warnings.filterwarnings("always", category=cat)
        warnings.filterwarnings("always", message="Optimization failed")
        _installed = True


@contextmanager
def captured() -> Iterator[list[warnings.WarningMessage]]:
    """Collect the warnings this thread raises inside the block (they are not shown); other threads unaffected."""
    install()
    outer = getattr(_local, "sink", None)
    sink: list[warnings.WarningMessage] = []
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = outer
