"""Backtesting: a whole campaign against a lookup-table lab, through the same strategy code as a real campaign.

The loop is the campaign loop with the lab replaced by a table: ask the strategy for ``batch_size`` points with
everything measured so far, "measure" each (the row's objective value), repeat until the budget is spent or every
row has been measured. Measured rows are never proposed again (the strategy excludes observed pool rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import make_strategy
from .base import Observation, Strategy
from .tables import TableLab


@dataclass
class ReplayResult:
    """What a replay measured: ``history`` = objective values in measurement order (initial design included)."""

    objective: str
    direction: str
    history: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    #: the round of each measurement: 0 for the starting rows, then 1, 2, ... one per ask of ``batch_size``
    round_of: list[int] = field(default_factory=list)
    ask_seconds: list[float] = field(default_factory=list)
    last_info: dict[str, Any] = field(default_factory=dict)
    #: per round with earlier campaigns (``strategy.related``): the names the model used (empty: no transfer)
    related_used: list[list[str]] = field(default_factory=list)

    @property
    def best(self) -> float | None:
        if not self.history:
            return None
        return max(self.history) if self.direction == "maximize" else min(self.history)

    def start_and_rounds(self) -> tuple[list[int], list[list[int]]]:
        """(starting rows, the rows of each proposal round): what :func:`labloop.benchmark_protocol.experiments_to`
        counts."""
        start = [i for i, r in zip(self.rows, self.round_of) if r == 0]
        rounds: list[list[int]] = [[] for _ in range(max(self.round_of, default=0))]
        for i, r in zip(self.rows, self.round_of):
            if r:
                rounds[r - 1].append(i)
        return start, rounds

    def to_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "direction": self.direction,
            "best": self.best,
            "n": len(self.history),
            "history": self.history,
            "rows": self.rows,
            "sources": self.sources,
            "rounds": max(self.round_of, default=0),
            "round_of": self.round_of,
            "seconds_per_ask": (sum(self.ask_seconds) / len(self.ask_seconds)) if self.ask_seconds else None,
            "importance": self.last_info.get("importance"),
            "predicted_best": self.last_info.get("predicted_best"),
        }


def with_related(lab: TableLab, paths: Sequence[str | Path]) -> tuple[TableLab, list[Observation]]:
    """``lab`` whose campaign names the CSVs ``paths`` as earlier related campaigns (``strategy.related``), and
    their observations (checked now: a file that does not fit is a ``LabloopError`` before anything runs)."""
    from labloop.spec import PriorDataSpec

    from .priors import file_priors

    if not paths:
        return lab, []
    strat = lab.spec.strategy.model_copy(update={"related": [PriorDataSpec(csv=str(p)) for p in paths]})
    spec = lab.spec.model_copy(update={"strategy": strat})
    return replace(lab, spec=spec), file_priors(spec)


def run_replay(
    lab: TableLab,
    budget: int,
    *,
    batch_size: int | None = None,
    strategy: Strategy | None = None,
    initial_rows: Sequence[int] = (),
    stop: Callable[[ReplayResult], bool] | None = None,
    prior: Sequence[Observation] = (),
) -> ReplayResult:
    """Run a campaign of at most ``budget`` measurements on ``lab``.

    ``initial_rows`` are measured first, as given (benchmarks use the seeded random rows of
    :func:`labloop.benchmark_protocol.start_rows`, shared with the peers); ``stop(result)``, checked after each
    round, may end the run early (benchmarks stop once the best row is found, as nothing after it changes their
    figures); ``prior``: observations given to the strategy besides the campaign's own (prior data, related
    campaigns), never counted.
    """
    spec = lab.spec
    q = batch_size or spec.strategy.batch_size
    strat = strategy if strategy is not None else make_strategy(spec, lab.pool)
    obj = spec.objectives[0]
    result = ReplayResult(lab.objective, obj.direction)
    observations: list[Observation] = []
    budget = min(budget, len(lab.pool))

    def record(i: int, source: str, round_no: int) -> None:
        value = lab.values[i]
        observations.append(Observation(dict(lab.pool.rows[i]), {lab.objective: value}))
        result.history.append(value)
        result.rows.append(i)
        result.sources.append(source)
        result.round_of.append(round_no)

    for i in list(initial_rows)[:budget]:
        record(int(i), "initial", 0)
    round_no = 0
    while len(observations) < budget and not (stop and stop(result)):
        t0 = time.perf_counter()
        proposals = strat.ask(min(q, budget - len(observations)), list(prior) + observations, [])
        result.ask_seconds.append(time.perf_counter() - t0)
        if not proposals:
            break
        round_no += 1
        related = proposals[0].info.get("related") if proposals[0].info else None
        if related is not None:
            result.related_used.append([name for name, r in related.items() if r.get("used")])
        for p in proposals:
            i, _ = lab.measure(p.params)
            record(i, p.source, round_no)
            if p.info:
                result.last_info = p.info
    return result
