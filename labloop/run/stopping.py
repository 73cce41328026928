"""Stopping rules: the first rule that fires ends the campaign and is reported with its evidence.

Rules read only what the store holds (trials and their values), so a resumed campaign applies them exactly as the
original process would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labloop.no_improvement import improvement_stalled
from labloop.run.best import target_met
from labloop.spec import CampaignSpec, ObjectiveSpec
from labloop.store.times import utc

#: Trials that do not use up the budget: rejected by an operator, or cancelled before anything was done to them.
NOT_COUNTED = ("rejected", "cancelled")


@dataclass(frozen=True)
class StopDecision:
    rule: str  # "target" | "budget" | "time" | "no_improvement" | "operator"
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _fmt(o: ObjectiveSpec, v: float) -> str:
    unit = f" {o.unit}" if o.unit else ""
    if o.direction == "band":
        assert o.band is not None
        return f"{o.name} = {v:.4g}{unit} in [{o.band[0]:g}, {o.band[1]:g}]"
    op = ">=" if o.direction == "maximize" else "<="
    return f"{o.name} = {v:.4g}{unit} {op} {o.target:g}"


def target_reached(spec: CampaignSpec, values: dict[str, Any]) -> bool:
    """Every goal reached by a feasible trial (outcome constraints met): :func:`labloop.run.best.target_met`."""
    return target_met(spec, values)


def check(
    spec: CampaignSpec, trials: Sequence[Any], started_at: datetime, now: datetime | None = None
) -> StopDecision | None:
    """Apply the campaign's stopping rules to its trials (rows with number, state, values, info)."""
    rules = spec.stopping
    if rules.target_reached:
        for t in trials:
            if t.state == "done" and target_reached(spec, t.values or {}):
                goals = [o for o in spec.objectives if o.target is not None or o.direction == "band"]
                text = ", ".join(_fmt(o, float(t.values[o.name])) for o in goals)
                return StopDecision(
                    "target",
                    f"target reached at trial {t.number} ({text})",
                    {"trial": t.number, "values": dict(t.values)},
                )
    counted = [t for t in trials if t.state not in NOT_COUNTED]
    if len(counted) >= rules.max_trials and all(t.state in ("done", "failed") for t in counted):
        return StopDecision(
            "budget", f"budget spent: {len(counted)} trials (max_trials = {rules.max_trials})", {"trials": len(counted)}
        )
    if rules.max_wall_time is not None:
        now = now or datetime.now(UTC)
        start = utc(started_at)
        elapsed = (now - start).total_seconds()
        if elapsed >= rules.max_wall_time:
            return StopDecision(
                "time",
                f"time limit: {elapsed:.0f} s elapsed (max_wall_time = {rules.max_wall_time:g} s)",
                {"elapsed_s": elapsed},
            )
    if rules.no_improvement_rounds:  # the evidence is each model proposal's info["improvement"]
        values = [t.info["improvement"] for t in trials if t.source == "model" and "improvement" in (t.info or {})]
        stalled = improvement_stalled(values, rules)
        if stalled is not None:
            return StopDecision("no_improvement", stalled.message(), {"expected_improvement": stalled.rounds})
    return None


def budget_left(spec: CampaignSpec, trials: Sequence[Any]) -> int:
    """How many more trials may be proposed."""
    return max(0, spec.stopping.max_trials - sum(1 for t in trials if t.state not in NOT_COUNTED))
