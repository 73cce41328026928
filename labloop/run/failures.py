"""Systematic failure: N trials in a row that failed in the same step with the same cause are a fault of the lab
(a missing file, a dead instrument), not data about the region explored. The campaign pauses with the cause named
instead of spending its budget on it.

:class:`SystematicFailure` is asked by the control loop on each pass; it reads the trials it is given (and, once
per streak, their steps from the store) and calls ``pause`` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

from labloop.states import TrialState

S = TrialState


def failure_cause(reason: str | None) -> str:
    """A failure reason with its particulars (numbers, ids, quoted values) masked, so that 'the same cause'
    survives different samples, times and attempts."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason or "")
    return re.sub(r"\d+(\.\d+)?", "#", text).strip()


#: how the campaign's end words the failure of a trial it cut short (control_loop): nothing about its recipe
ENDED = "the campaign ended"


def failed_step(reason: str | None, labels: Collection[str]) -> bool:
    """Whether a failure reason names one of the workflow's steps (``labels``): a device error, a timeout, a
    batch's run, a wrong sample, a crash or an emergency stop that cut the step. An objective or outcome-constraint
    plugin's refusal starts with the plugin instead (``objective 'x' (plugin 'p'): ...``)."""
    return (reason or "").split(": ", 1)[0] in labels


def failed_on_the_lab(reason: str | None, labels: Collection[str]) -> bool:
    """Whether a failed trial failed on the lab (a step failed or was cut, or the campaign ended first) rather
    than being measured and refused. Why it matters: such a failure says nothing about the recipe (the thin-film
    chamber's own advice is "run the trial again on a new substrate"), so the strategy must not learn "do not go
    there" from it; the recipe stays open to be proposed again (:func:`labloop.strategy.base.observations_from`).
    A fault that repeats is the lab's to fix: :class:`SystematicFailure` pauses, quarantine takes the station out."""
    return failed_step(reason, labels) or (reason or "").startswith(ENDED)


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
        if not all(failed_step(t.failure_reason, self.labels) for t in last):
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
