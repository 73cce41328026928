"""Evidence for the "no further improvement expected" stopping rule.

Each model round, :class:`~labloop.strategy.bayes.BotorchStrategy` stores in ``Proposal.info`` the expected
improvement of its proposal (``expected_improvement``: analytic EI over the best observed value at the proposed
point, in the modelling scale of the objective, whichever acquisition chose the point) and the same divided by the
observed range of that scale (``expected_improvement_rel``, also as ``improvement``, the key the campaign's
stopping rule in :mod:`labloop.run.stopping` reads; for several objectives: the expected hypervolume improvement,
relative likewise). The runner keeps the best value of each round (the store has it) and
asks :func:`improvement_stalled` whether the last ``StoppingSpec.no_improvement_rounds`` rounds all stayed below
``StoppingSpec.improvement_threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from labloop.spec import StoppingSpec
from .base import Proposal


@dataclass(frozen=True)
class StopEvidence:
    """Why the rule fired: the values of the last rounds and the threshold they stayed below."""

    rule: str
    rounds: list[float]
    threshold: float

    def message(self) -> str:
        vals = ", ".join(f"{v:.3g}" for v in self.rounds)
        return (f"no further improvement expected: the relative expected improvement stayed below "
                f"{self.threshold:g} for {len(self.rounds)} rounds ({vals})")


def round_improvement(proposals: Iterable[Proposal]) -> float | None:
    """The largest ``expected_improvement_rel`` of one round's proposals (None when no model proposal was made,
    e.g. during the initial design: such rounds never count towards stopping)."""
    vals = [p.info.get("expected_improvement_rel") for p in proposals]
    vals = [float(v) for v in vals if v is not None]
    return max(vals) if vals else None


def improvement_stalled(rounds: Sequence[float | None], stopping: StoppingSpec) -> StopEvidence | None:
    """``StopEvidence`` when the last ``stopping.no_improvement_rounds`` model rounds (``None`` entries skipped)
    all had relative expected improvement below ``stopping.improvement_threshold``; else None."""
    k = stopping.no_improvement_rounds
    if not k:
        return None
    model_rounds = [float(r) for r in rounds if r is not None]
    if len(model_rounds) < k:
        return None
    last = model_rounds[-k:]
    if all(v < stopping.improvement_threshold for v in last):
        return StopEvidence("no_improvement", last, stopping.improvement_threshold)
    return None


def summarize(info: dict[str, Any]) -> str:
    """One line for people: importance and predicted best from a proposal's info."""
    imp = info.get("importance") or {}
    best = info.get("predicted_best") or {}
    top = ", ".join(f"{k} {v:.0%}" for k, v in list(imp.items())[:4])
    return f"importance: {top or 'n/a'}; predicted best: {best.get('params', 'n/a')}"
