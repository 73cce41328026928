"""The strategy contract: propose the next points from everything observed so far.

A strategy keeps no state that cannot be rebuilt from the store: every ``ask`` receives all observations (measured
and failed trials) and the points in flight (pending), so a crashed campaign resumes with the same information.
Model fitting and acquisition are slow; callers run ``ask`` off the RunEngine's event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from labloop.states import LEARNED_FROM, UNFINISHED, TrialState


@dataclass(frozen=True)
class Observation:
    """A finished trial: its parameters, its objective values (None where not measured) and whether it failed.
    ``task`` names the earlier campaign a *related* observation comes from (``strategy.related``); None for this
    campaign's own trials and its prior data, which are the same experiment."""

    params: dict[str, Any]
    values: dict[str, float | None] = field(default_factory=dict)
    failed: bool = False
    reason: str | None = None
    task: str | None = None


@dataclass(frozen=True)
class Proposal:
    """A point to run. ``source`` says where it came from (seed, sobol, model, pool); ``info`` carries evidence
    (acquisition value, predicted mean and sd) that is stored with the trial."""

    params: dict[str, Any]
    source: str
    info: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    def ask(self, n: int, observations: list[Observation], pending: list[dict[str, Any]]) -> list[Proposal]:
        """Return ``n`` new points, none equal to a pending or (in pool mode) an already observed one."""
        ...


def observations_from(trials: Iterable[Any]) -> list[Observation]:
    """What the strategy learns from stored trials: done ones with their values; failed ones, and ones an operator
    rejected, as failures (the feasibility model learns where not to go; nothing rejected is proposed again)."""
    out = []
    for t in trials:
        if t.state not in LEARNED_FROM:
            continue
        if t.state == TrialState.DONE:
            out.append(Observation(dict(t.params), dict(t.values or {})))
        else:
            out.append(Observation(dict(t.params), dict(t.values or {}), failed=True, reason=t.failure_reason))
    return out


def pending_points(trials: Iterable[Any]) -> list[dict[str, Any]]:
    """Points whose outcome is not known yet (every unfinished trial): the strategy must not propose them again."""
    return [dict(t.params) for t in trials if t.state in UNFINISHED]
