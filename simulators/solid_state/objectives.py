"""Objective plugins for the solid-state lab: phase fractions of a trial's XRD pattern, by NNLS against the
reference patterns of the lab's phase library (:func:`xrd.estimate_fractions`), as an A-Lab-style phase analysis.

Why here and not in labloop: the phase library (which phases, their reflections) is this lab's chemistry, not the
orchestrator's. The campaign names them ``target_phase_fraction`` and ``impurity_fraction`` (entry points in
``labloop.objectives``). Each reads the last pattern the trial measured: the diffractometer's ``counts`` and
``two_theta`` readings (devices/solid_state/hooks.py: ``Diffractometer``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labloop.errors import ObjectiveError

from . import xrd
from .chemistry import PHASES, TARGET

#: the fitted amount of all phases (1 = a full charge) below which a pattern is of an empty crucible
MIN_AMOUNT = 0.2


def fractions(trial: Any) -> dict[str, float]:
    """Phase fractions (sum 1 over the library) of the trial's last pattern."""
    counts, angles = trial.readings("counts"), trial.readings("two_theta")
    if not counts or not angles:
        raise ObjectiveError(
            f"no XRD pattern ('counts', 'two_theta') in the trial's readings (keys: {trial.data_keys()})",
            "add a transfer to the diffractometer and a measure step on it to the workflow",
        )
    y, tt = np.asarray(counts[-1], dtype=float), np.asarray(angles[-1], dtype=float)
    if y.shape != tt.shape or y.size < 10 or not np.isfinite(y).all():
        raise ObjectiveError(f"the XRD pattern is not usable ({y.size} counts, {tt.size} angles)", "measure again")
    found, _, amount = xrd.fit(y, list(PHASES), two_theta=tt)
    if not all(math.isfinite(v) for v in found.values()) or sum(found.values()) <= 0:
        raise ObjectiveError("no phase of the library fits the pattern", "check the sample and the diffractometer")
    if amount < MIN_AMOUNT:
        # fractions of noise would be any numbers at all: a trial recorded with them would tell the optimizer that
        # its recipe makes them
        raise ObjectiveError(
            f"the XRD pattern shows no powder (fitted phase amount {amount:.3f}, a full charge is about 1): the "
            "crucible was empty when measured (its charge spilled: a cracked crucible?)",
            "inspect the crucible; the recipe was not measured and may be tried again in a new crucible",
        )
    return found


class TargetPhaseFraction:
    """The fraction of the target phase (default LiMn2O4) in the pattern, 0..1."""

    def __init__(self, phase: str = TARGET):
        if phase not in PHASES:
            raise ObjectiveError(f"unknown phase {phase!r}", f"use one of {sorted(PHASES)}")
        self.phase = phase

    def __call__(self, trial: Any) -> float:
        return float(fractions(trial)[self.phase])


class ImpurityFraction:
    """The fraction of impurity phases (by default those the library marks 'impurity'; ``intermediates: true``
    counts unconverted intermediates too), 0..1."""

    def __init__(self, intermediates: bool = False):
        kinds = {"impurity", "intermediate"} if intermediates else {"impurity"}
        self.phases = [p for p, (_, kind) in PHASES.items() if kind in kinds]

    def __call__(self, trial: Any) -> float:
        found = fractions(trial)
        return float(sum(found[p] for p in self.phases))
