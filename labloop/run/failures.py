"""Systematic failure: N trials in a row that failed in the same step with the same cause are a fault of the lab
(a missing file, a dead instrument), not data about the region explored. The campaign pauses with the cause named
instead of spending its budget on it.

:class:`SystematicFailure` is asked by the control loop on each pass; it reads the trials it is given (and, once
per streak, their steps from the store) and calls ``pause`` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from labloop.states import TrialState

S = TrialState


def failure_cause(reason: str | None) -> str:
    """A failure reason with its particulars (numbers, ids, quoted values) masked, so that 'the same cause'
    survives different samples, times and attempts."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason or "")
    return re.sub(r"\d+(\.\d+)?", "#", text).strip()


class SystematicFailure:
    """Pauses (once per streak) when the last ``n`` ended trials all failed on a device with one cause."""

    def __init__(
        self, n: int, step_labels: set[str], steps: Callable[[int], Sequence[Any]], pause: Callable[[str], None]
    ):
        self.n = n  # scheduling.pause_after_same_failures (0: never)
        self.labels = step_labels  # the workflow's step labels: a failure reason starts with one
        self.steps = steps  # trial id -> its recorded steps (the store)
        self.pause = pause
        self._seen: int | None = None  # the last trial of a same-cause streak we paused for

    def check(self, trials: Sequence[Any]) -> bool:
        """Look at the trials (rows with state, finished_at, number, id, failure_reason); True if it paused."""
        n = self.n
        if n <= 0:
            return False
        ended = sorted(
            (t for t in trials if t.state in (S.DONE, S.FAILED) and t.finished_at is not None),
            key=lambda t: (t.finished_at, t.number),
        )
        last = ended[-n:]
        if len(last) < n or any(t.state != S.FAILED for t in last):
            return False
        # only faults of the lab count (a step that failed): an objective plugin's QC rejection is data about
        # the region the strategy is exploring, and the strategy learns to leave it
        if any((t.failure_reason or "").split(": ", 1)[0] not in self.labels for t in last):
            return False
        if len({failure_cause(t.failure_reason) for t in last}) != 1 or self._seen == last[-1].id:
            return False
        # and only a step that failed on the device: a step cut short by a crash or a kill is not the lab's fault
        # (read from the store last, and only for a streak not yet paused for)
        if any(not any(st.state == "failed" for st in self.steps(t.id)) for t in last):
            return False
        self._seen = last[-1].id
        nums = ", ".join(str(t.number) for t in last)
        self.pause(
            f"{n} trials in a row ({nums}) failed with the same cause: {last[-1].failure_reason}; "
            f"fix the cause, then run `labloop resume`"
        )
        return True
