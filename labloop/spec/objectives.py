"""What a campaign optimizes: objectives, outcome constraints, and which trial of several objectives is the best."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from .base import _Model


# --------------------------------------------------------------------------------------------------- objectives
class ObjectiveSpec(_Model):
    """One quantity to optimize, computed from a trial's documents by an objective plugin."""

    name: str = Field(description="Objective name (a column in exports).")
    direction: Literal["maximize", "minimize", "band"] = Field(description="What better means.")
    target: float | None = Field(
        None,
        description="Goal: the campaign may stop when it is reached (value >= target when maximizing, <= when minimizing).",
    )
    band: tuple[float, float] | None = Field(None, description="For direction 'band': the acceptable [low, high].")
    unit: str | None = Field(None, description="Physical unit, for reports only.")
    plugin: str = Field(
        description="Objective plugin: an entry point name in 'labloop.objectives' or 'package.module:attribute'."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword options passed to the plugin.")
    reference: float | None = Field(
        None, description="Reference point for multi-objective optimization (worst acceptable value)."
    )
    weight: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="With several objectives and `best: {rule: weighted}`: this objective's weight in the weighted "
        "sum of normalized scores (each scaled 0..1 over the feasible trials) that names one trial of the feasible "
        "Pareto set as the best. Default 1; only used by that rule.",
    )

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSpec:
        if self.direction == "band":
            if self.band is None:
                raise ValueError("direction 'band' needs band: [low, high]")
            if not self.band[0] < self.band[1]:
                raise ValueError(f"band low ({self.band[0]}) must be below high ({self.band[1]})")
        elif self.band is not None:
            raise ValueError("band is only used with direction 'band'")
        return self

    def reached(self, value: float | None) -> bool:
        """Whether ``value`` meets this objective's goal (target or band)."""
        if value is None or not math.isfinite(value):
            return False
        if self.direction == "band":
            assert self.band is not None
            return self.band[0] <= value <= self.band[1]
        if self.target is None:
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` for this objective."""
        if self.direction == "maximize":
            return a > b
        if self.direction == "minimize":
            return a < b
        assert self.band is not None
        mid = 0.5 * (self.band[0] + self.band[1])
        return abs(a - mid) < abs(b - mid)


class OutcomeConstraintSpec(_Model):
    """A measured quantity that must stay within limits (e.g. transmittance >= 0.85) without being optimized."""

    name: str
    plugin: str = Field(description="Objective plugin computing the quantity.")
    options: dict[str, Any] = Field(default_factory=dict)
    lower: float | None = None
    upper: float | None = None
    unit: str | None = None

    @model_validator(mode="after")
    def _check(self) -> OutcomeConstraintSpec:
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        return self


class BestSpec(_Model):
    """How one trial is named "the best" when a campaign has several objectives (status line, stream ``best`` event,
    report's best-trial figures). The best is always a feasible trial (every outcome constraint met) of the feasible
    Pareto set; this only says which member of that set to name (labloop/run/best.py)."""

    rule: Literal["hypervolume", "weighted", "primary"] = Field(
        "hypervolume",
        description="hypervolume: the member whose loss would shrink the front the most (largest "
        "exclusive hypervolume contribution); weighted: the largest sum of `objectives[].weight` x score, each "
        "objective's score scaled 0..1 over the feasible trials; primary: the member best on the objective "
        "named by `primary`.",
    )
    primary: str | None = Field(None, description="With rule primary: the objective that names the best trial.")

    @model_validator(mode="after")
    def _check(self) -> BestSpec:
        if self.rule == "primary" and self.primary is None:
            raise ValueError("rule 'primary' needs 'primary: OBJECTIVE' (the objective that names the best trial)")
        if self.rule != "primary" and self.primary is not None:
            raise ValueError(
                f"'primary' is used only with rule 'primary' (fix: add rule: primary, or remove "
                f"primary: {self.primary})"
            )
        return self
