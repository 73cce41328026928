"""The search space: the parameter kinds a campaign file may declare and the linear constraints between them."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import _Model


# --------------------------------------------------------------------------------------------------- parameters
class _ParameterBase(_Model):
    name: str = Field(
        description="Parameter name; also the recipe field sent to the station unless `setpoint` says otherwise."
    )
    unit: str | None = Field(None, description="Physical unit, for reports only.")
    setpoint: str | None = Field(
        None,
        description="Where the value goes, as 'device.field' (e.g. 'chamber.o2_pressure'). "
        "Default: the field of the same name on the workflow's synthesis station.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, v: str) -> str:
        if not v or not v.replace("_", "a").replace("-", "a").isalnum():
            raise ValueError(f"'{v}' is not a usable name: use letters, digits, '_' or '-'")
        return v


class _BoundedParameter(_ParameterBase):
    """A numeric input between two inclusive bounds, optionally searched on a log scale."""

    lower: float = Field(description="Lower bound (inclusive).")
    upper: float = Field(description="Upper bound (inclusive).")
    log: bool = Field(False, description="Search on a log scale (bounds must then be positive).")

    @model_validator(mode="after")
    def _bounds(self) -> _BoundedParameter:
        _check_bounds(self.lower, self.upper, self.log)
        return self


class ContinuousParameter(_BoundedParameter):
    """A real-valued input between two bounds, optionally searched on a log scale."""

    type: Literal["continuous"] = "continuous"


class IntegerParameter(_BoundedParameter):
    """An integer input between two bounds (inclusive)."""

    type: Literal["integer"] = "integer"
    lower: int = Field(description="Lower bound (inclusive).")
    upper: int = Field(description="Upper bound (inclusive).")


class DiscreteParameter(_ParameterBase):
    """An ordered numeric input that may only take the listed levels (e.g. 100, 200, 400 W)."""

    type: Literal["discrete"] = "discrete"
    values: list[float] = Field(min_length=1, description="The allowed levels, any order; duplicates are an error.")

    @field_validator("values")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if any(not math.isfinite(x) for x in v):
            raise ValueError("levels must be finite numbers")
        if len(set(v)) != len(v):
            raise ValueError("levels must be unique")
        return sorted(v)


class CategoricalParameter(_ParameterBase):
    """An unordered choice (ligand, solvent, substrate), encoded one-hot or by user-supplied descriptors."""

    type: Literal["categorical"] = "categorical"
    choices: list[str] = Field(min_length=1, description="The choices; duplicates are an error.")
    descriptors: dict[str, list[Annotated[float, Field(allow_inf_nan=False)]]] | None = Field(
        None,
        description="Optional numeric descriptors per choice (same length for every choice); "
        "used instead of one-hot encoding.",
    )
    encoding: Literal["one_hot", "rdkit_descriptors", "morgan_fingerprint"] = Field(
        "one_hot",
        description="How the model sees the choices: one_hot, or (choices given as SMILES, needs "
        "`pip install 'labloop[chem]'`) rdkit_descriptors / morgan_fingerprint, reduced by PCA "
        "(labloop/strategy/chem.py). Ignored when `descriptors` are given.",
    )

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_as_text(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _check(self) -> CategoricalParameter:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be unique")
        if self.descriptors is not None:
            missing = [c for c in self.choices if c not in self.descriptors]
            if missing:
                raise ValueError(f"descriptors missing for choices {missing} (fix: give each choice its descriptors)")
            unknown = [c for c in self.descriptors if c not in self.choices]
            if unknown:
                raise ValueError(
                    f"descriptors given for {unknown}, which are not choices ({self.choices}) (fix: add "
                    f"them to choices or remove their descriptors)"
                )
            lengths = {len(v) for v in self.descriptors.values()}
            if len(lengths) != 1 or 0 in lengths:
                raise ValueError("every choice needs the same, non-zero number of descriptors")
        return self


class FixedParameter(_ParameterBase):
    """A value held constant for the whole campaign (recorded with each trial, never searched)."""

    type: Literal["fixed"] = "fixed"
    value: float | int | str = Field(description="The value sent with every trial.")


class CompositionParameter(_ParameterBase):
    """Fractions of several components that sum to ``total`` (e.g. CsPbI3/FAPbI3/MAPbI3), optionally on a grid."""

    type: Literal["composition"] = "composition"
    components: list[str] = Field(min_length=2, description="Component names; each becomes a trial parameter.")
    total: float = Field(1.0, gt=0, description="What the fractions sum to.")
    step: float | None = Field(None, gt=0, description="Grid step (e.g. 0.1 for 10 at% steps); none = continuous.")

    @model_validator(mode="after")
    def _check(self) -> CompositionParameter:
        if len(set(self.components)) != len(self.components):
            raise ValueError("components must be unique")
        if self.step is not None:
            n = self.total / self.step
            if abs(n - round(n)) > 1e-9:
                raise ValueError(f"step ({self.step}) must divide total ({self.total})")
        return self


Parameter = Annotated[
    ContinuousParameter
    | IntegerParameter
    | DiscreteParameter
    | CategoricalParameter
    | FixedParameter
    | CompositionParameter,
    Field(discriminator="type"),
]


def _check_bounds(lower: float, upper: float, log: bool) -> None:
    if not (math.isfinite(lower) and math.isfinite(upper)):
        raise ValueError("bounds must be finite numbers")
    if not lower < upper:
        raise ValueError(f"lower ({lower}) must be below upper ({upper})")
    if log and lower <= 0:
        raise ValueError(f"a log-scale parameter needs lower > 0 (got {lower})")


class LinearConstraint(_Model):
    """``sum(coefficients[p] * p) <= upper`` and/or ``>= lower`` over numeric parameters."""

    type: Literal["linear"] = "linear"
    coefficients: dict[str, float] = Field(min_length=1, description="Parameter name -> coefficient.")
    lower: float | None = Field(None, description="Lower limit of the weighted sum.")
    upper: float | None = Field(None, description="Upper limit of the weighted sum.")

    @model_validator(mode="after")
    def _check(self) -> LinearConstraint:
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) must not exceed upper ({self.upper})")
        return self
