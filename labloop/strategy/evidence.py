"""Evidence a proposal carries, for the stopping rule and for people.

Each model proposal of :class:`~labloop.strategy.bayes.BotorchStrategy` stores in ``Proposal.info`` the expected
improvement at the proposed point (``expected_improvement``: analytic EI over the best observed value, in the
modelling scale of the objective, whichever acquisition chose the point) and the same divided by the observed range
of that scale (``expected_improvement_rel``, also as ``improvement``; for several objectives: the expected
hypervolume improvement, relative likewise). ``improvement`` is what the "no further improvement expected" rule
reads; the rule itself is :func:`labloop.no_improvement.improvement_stalled` (re-exported here), applied by the
campaign's stopping rules (:mod:`labloop.run.stopping`): the strategy records the evidence, it never decides.
"""

from __future__ import annotations

from typing import Any

from labloop.no_improvement import StopEvidence, improvement_stalled

__all__ = ["StopEvidence", "improvement_stalled", "summarize"]


def summarize(info: dict[str, Any]) -> str:
    """One line for people: importance and predicted best from a proposal's info."""
    imp = info.get("importance") or {}
    best = info.get("predicted_best") or {}
    top = ", ".join(f"{k} {v:.0%}" for k, v in list(imp.items())[:4])
    return f"importance: {top or 'n/a'}; predicted best: {best.get('params', 'n/a')}"
