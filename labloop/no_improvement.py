"""The "no further improvement expected" stopping rule, in one place.

The strategy computes the evidence: each model proposal's ``info["improvement"]`` is its expected improvement
relative to the observed range of the objective (:mod:`labloop.strategy.bayes`; for several objectives the expected
hypervolume improvement, likewise relative). The campaign's stopping rules (:mod:`labloop.run.stopping`) collect
those values from the stored trials and ask :func:`improvement_stalled` whether the rule fires. This module imports
neither package (only :mod:`labloop.spec`), so both can use it without importing each other or botorch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from labloop.spec import StoppingSpec


@dataclass(frozen=True)
class StopEvidence:
    """Why the rule fired: the last ``no_improvement_rounds`` values and the threshold they all stayed below."""

    rule: str
    rounds: list[float]
    threshold: float

    def message(self) -> str:
        vals = ", ".join(f"{v:.2g}" for v in self.rounds)
        return (
            f"no further improvement expected: the expected improvement stayed below {self.threshold:g} for "
            f"the last {len(self.rounds)} proposals ({vals})"
        )


def improvement_stalled(values: Sequence[float | None], stopping: StoppingSpec) -> StopEvidence | None:
    """``StopEvidence`` when the last ``stopping.no_improvement_rounds`` values (model proposals in order; ``None``
    entries, proposals without a model, are skipped) are all finite and below ``stopping.improvement_threshold``;
    None when the rule is off, there are fewer values than that, or any of them is not below (a NaN or infinite
    value never counts as "no improvement")."""
    k = stopping.no_improvement_rounds
    if not k:
        return None
    known = [float(v) for v in values if v is not None]
    if len(known) < k:
        return None
    last = known[-k:]
    if all(math.isfinite(v) and v < stopping.improvement_threshold for v in last):
        return StopEvidence("no_improvement", last, stopping.improvement_threshold)
    return None
