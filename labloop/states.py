"""Trial and step states: one enum each, one table of allowed transitions, the in-flight and terminal sets once.

Why one table: a trial's state is what resume, the stopping rules, the strategy (pending points) and operators
act on. Spread as bare strings over many call sites, the lists drifted apart (a trial could be 'in flight' for
one rule and not for another). Every change of a trial's state goes through
:meth:`labloop.store.Store.transition`, which checks this table and does a compare-and-set in the store
(``UPDATE ... WHERE state = :expected``), so two processes (a runner and an operator's command) can never both
move the same trial, and an illegal move is refused with a message that names the trial and what is allowed.

The life of a trial::

    proposed -> (approved) -> running -> measured -> done
        |            |           |           |
        +-> rejected +-----------+-----------+--> failed(reason) / interrupted / cancelled
    interrupted -> running | measured | failed | cancelled      (resume, or the campaign ends)
"""

from __future__ import annotations

from enum import Enum

from .errors import LabloopError


class TrialState(str, Enum):
    """A trial's state (stored as its value, a plain word)."""

    PROPOSED = "proposed"  # the strategy proposed it; it waits for a station (or an approval)
    APPROVED = "approved"  # an operator approved it (campaigns with scheduling.approval)
    RUNNING = "running"  # its sample is being made or measured
    MEASURED = "measured"  # every step ended; its objectives are not evaluated yet
    DONE = "done"  # evaluated: it has objective values
    FAILED = "failed"  # a step or its evaluation failed for good (failure_reason says why)
    INTERRUPTED = "interrupted"  # cut short (emergency stop, crash, internal error); `labloop resume` settles it
    REJECTED = "rejected"  # an operator refused the proposal; the strategy treats it as infeasible
    CANCELLED = "cancelled"  # nothing was done to it and nothing will be (the campaign ended first)

    def __str__(self) -> str:  # f-strings and messages show the plain word
        return self.value


class StepState(str, Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


T = TrialState
#: The allowed moves. A state missing from the keys has no way out (terminal).
TRIAL_TRANSITIONS: dict[TrialState, frozenset[TrialState]] = {
    T.PROPOSED: frozenset({T.APPROVED, T.REJECTED, T.RUNNING, T.CANCELLED, T.INTERRUPTED}),
    T.APPROVED: frozenset({T.RUNNING, T.CANCELLED, T.INTERRUPTED}),
    T.RUNNING: frozenset({T.MEASURED, T.FAILED, T.INTERRUPTED, T.CANCELLED}),
    T.MEASURED: frozenset({T.DONE, T.FAILED, T.INTERRUPTED}),
    T.INTERRUPTED: frozenset({T.RUNNING, T.MEASURED, T.FAILED, T.CANCELLED}),
}

#: Finished for good: never run again, never pending.
TERMINAL: frozenset[TrialState] = frozenset(set(TrialState) - set(TRIAL_TRANSITIONS))
#: Not finished: the strategy must treat these as pending points (their samples exist or will), resume settles them.
UNFINISHED: frozenset[TrialState] = frozenset(TRIAL_TRANSITIONS)
#: Held by the running process right now: they occupy scheduling slots. An interrupted trial holds nothing until
#: `labloop resume` picks it up, so it is unfinished but not in flight.
IN_FLIGHT: frozenset[TrialState] = UNFINISHED - {T.INTERRUPTED}
#: Trials that use up the budget (``stopping.max_trials``): everything proposed except what an operator rejected
#: or what was cancelled before anything was done to it.
NOT_COUNTED: frozenset[TrialState] = frozenset({T.REJECTED, T.CANCELLED})
#: What the strategy learns from: done with values; failed and rejected as failures (so they are not proposed again).
LEARNED_FROM: frozenset[TrialState] = frozenset({T.DONE, T.FAILED, T.REJECTED})

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    StepState.RUNNING: frozenset({StepState.DONE, StepState.FAILED, StepState.INTERRUPTED}),
}


class IllegalTransition(LabloopError):
    """A state change the table does not allow, or one that lost a race (the row had moved on meanwhile)."""


def allowed_from(state: TrialState) -> list[str]:
    return sorted(s.value for s in TRIAL_TRANSITIONS.get(state, ()))


def check_trial_transition(number: int | str, current: TrialState | str, new: TrialState | str) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is in the table."""
    cur, nxt = TrialState(current), TrialState(new)
    if nxt in TRIAL_TRANSITIONS.get(cur, frozenset()):
        return
    allowed = allowed_from(cur)
    raise IllegalTransition(
        f"trial {number} is {cur}: it cannot become {nxt}"
        + (f" (from {cur} it can become: {', '.join(allowed)})" if allowed else f" ({cur} is final)"),
        "check `labloop status` for the trial's state" if allowed else "nothing can change a finished trial",
    )


def check_step_transition(step_id: int, current: StepState | str, new: StepState | str) -> None:
    cur, nxt = StepState(current), StepState(new)
    if nxt not in STEP_TRANSITIONS.get(cur, frozenset()):
        raise IllegalTransition(f"step {step_id} is {cur}: it cannot become {nxt}")
