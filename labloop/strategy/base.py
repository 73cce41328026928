"""The strategy contract: propose the next points from everything observed so far.

A strategy keeps no state that cannot be rebuilt from the store: every ``ask`` receives all observations (measured
and failed trials) and the points in flight (pending), so a crashed campaign resumes with the same information.
Model fitting and acquisition are slow; callers run ``ask`` off the RunEngine's event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
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
        """Return ``n`` new points, none equal to a pending or (in pool mode) an already observed one. A strategy
        may also take ``fixed`` (parameter name -> value every proposal must have; see :func:`accepts_fixed`)."""
        ...


def accepts_fixed(strategy: Any) -> bool:
    """Whether ``strategy.ask`` takes ``fixed=`` (the built-ins do; a plugin written before it need not): a
    wrapper says so with an ``accepts_fixed`` attribute, else the signature is read. Why not try and catch the
    TypeError: a TypeError raised inside a strategy that does take ``fixed`` would be mistaken for a refusal."""
    said = getattr(type(strategy), "accepts_fixed", None)
    if isinstance(said, (bool, property)):
        return bool(strategy.accepts_fixed)
    try:
        params = inspect.signature(strategy.ask).parameters
    except (TypeError, ValueError):
        return False
    return "fixed" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def observations_from(trials: Iterable[Any], not_data: Callable[[Any], bool] | None = None) -> list[Observation]:
    """What the strategy learns from stored trials: done ones with their values; failed ones, and ones an operator
    rejected, as failures (the feasibility model learns where not to go; nothing rejected is proposed again).
    ``not_data`` names failed trials that say nothing about their recipe (the run passes "failed on the lab": a
    device fault, a crash): they are left out, so the model is not taught to avoid a recipe a furnace trip hit and
    the recipe may be proposed again, as Ax leaves failed trials out of its data."""
    out = []
    for t in trials:
        if t.state not in LEARNED_FROM:
            continue
        if t.state == TrialState.DONE:
            out.append(Observation(dict(t.params), dict(t.values or {})))
        elif not_data is None or not not_data(t):
            out.append(Observation(dict(t.params), dict(t.values or {}), failed=True, reason=t.failure_reason))
    return out


def pending_points(trials: Iterable[Any]) -> list[dict[str, Any]]:
    """Points whose outcome is not known yet (every unfinished trial): the strategy must not propose them again."""
    return [dict(t.params) for t in trials if t.state in UNFINISHED]
