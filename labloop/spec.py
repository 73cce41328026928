"""The campaign file: a pydantic model of everything a campaign needs, loaded from YAML.

The field types and descriptions are the documentation and the validation. Errors come out as
``experiments/x.yaml: parameters[2].upper: lower (400) must be below upper (300)`` via :func:`load_spec`, never as a
traceback, and nothing is stored or moved before a spec validates.
"""

from __future__ import annotations

import hashlib
import math
import types
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from .errors import SpecError


def _yes_no_as_number(annotation: Any, value: Any) -> bool:
    """Whether ``value`` holds a yes/no where ``annotation`` wants a number (also inside lists, tuples and dict
    values: descriptors, levels, coefficients, bands): a slip, not a 1 or a 0."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _yes_no_as_number(args[0], value)
    if annotation in (int, float):
        return isinstance(value, bool)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return len(members) == 1 and _yes_no_as_number(members[0], value)
    if origin is list and isinstance(value, list) and args:
        return any(_yes_no_as_number(args[0], v) for v in value)
    if origin is tuple and isinstance(value, (list, tuple)) and args and Ellipsis not in args:
        return any(_yes_no_as_number(a, v) for a, v in zip(args, value))
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return any(_yes_no_as_number(args[1], v) for v in value.values())
    return False


class _Model(BaseModel):
    """Base for every spec model: unknown fields are errors (a typo must not be silently ignored), and a number is
    a finite number: NaN and infinities, and yes/no where a number belongs, are errors, not values."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_yes_no_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if field is not None and _yes_no_as_number(field.annotation, value):
                    raise ValueError(f"{key}: a yes/no (true/false) where a number belongs (fix: give a number)")
        return data


# --------------------------------------------------------------------------------------------------- parameters
class _ParameterBase(_Model):
    name: str = Field(description="Parameter name; also the recipe field sent to the station unless `setpoint` says otherwise.")
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
    def _bounds(self) -> "_BoundedParameter":
        _check_bounds(self.lower, self.upper, self.log)
        return self


class ContinuousParameter(_BoundedParameter):
    """A real-valued input between two bounds, optionally searched on a log scale."""

    type: Literal["continuous"] = "continuous"


class IntegerParameter(_BoundedParameter):
    """An integer input between two bounds (inclusive)."""

    type: Literal["integer"] = "integer"
    lower: int = Field(description="Lower bound (inclusive).")  # type: ignore[assignment]
    upper: int = Field(description="Upper bound (inclusive).")  # type: ignore[assignment]


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
        "one_hot", description="How the model sees the choices: one_hot, or (choices given as SMILES, needs "
        "`pip install 'labloop[chem]'`) rdkit_descriptors / morgan_fingerprint, reduced by PCA "
        "(labloop/strategy/chem.py). Ignored when `descriptors` are given.")

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_as_text(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _check(self) -> "CategoricalParameter":
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be unique")
        if self.descriptors is not None:
            missing = [c for c in self.choices if c not in self.descriptors]
            if missing:
                raise ValueError(f"descriptors missing for choices {missing} (fix: give each choice its descriptors)")
            unknown = [c for c in self.descriptors if c not in self.choices]
            if unknown:
                raise ValueError(f"descriptors given for {unknown}, which are not choices ({self.choices}) (fix: add "
                                 f"them to choices or remove their descriptors)")
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
    def _check(self) -> "CompositionParameter":
        if len(set(self.components)) != len(self.components):
            raise ValueError("components must be unique")
        if self.step is not None:
            n = self.total / self.step
            if abs(n - round(n)) > 1e-9:
                raise ValueError(f"step ({self.step}) must divide total ({self.total})")
        return self


Parameter = Annotated[
    Union[
        ContinuousParameter,
        IntegerParameter,
        DiscreteParameter,
        CategoricalParameter,
        FixedParameter,
        CompositionParameter,
    ],
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
    def _check(self) -> "LinearConstraint":
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) must not exceed upper ({self.upper})")
        return self


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
        None, gt=0, allow_inf_nan=False,
        description="With several objectives and `best: {rule: weighted}`: this objective's weight in the weighted "
        "sum of normalized scores (each scaled 0..1 over the feasible trials) that names one trial of the feasible "
        "Pareto set as the best. Default 1; only used by that rule.")

    @model_validator(mode="after")
    def _check(self) -> "ObjectiveSpec":
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
    def _check(self) -> "OutcomeConstraintSpec":
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        return self


class BestSpec(_Model):
    """How one trial is named "the best" when a campaign has several objectives (status line, stream ``best`` event,
    report's best-trial figures). The best is always a feasible trial (every outcome constraint met) of the feasible
    Pareto set; this only says which member of that set to name (labloop/run/best.py)."""

    rule: Literal["hypervolume", "weighted", "primary"] = Field(
        "hypervolume", description="hypervolume: the member whose loss would shrink the front the most (largest "
        "exclusive hypervolume contribution); weighted: the largest sum of `objectives[].weight` x score, each "
        "objective's score scaled 0..1 over the feasible trials; primary: the member best on the objective "
        "named by `primary`.")
    primary: str | None = Field(None, description="With rule primary: the objective that names the best trial.")

    @model_validator(mode="after")
    def _check(self) -> "BestSpec":
        if self.rule == "primary" and self.primary is None:
            raise ValueError("rule 'primary' needs 'primary: OBJECTIVE' (the objective that names the best trial)")
        if self.rule != "primary" and self.primary is not None:
            raise ValueError(f"'primary' is used only with rule 'primary' (fix: add rule: primary, or remove "
                             f"primary: {self.primary})")
        return self


# --------------------------------------------------------------------------------------------------- stopping
class StoppingSpec(_Model):
    """When the campaign ends. The first rule that fires wins and is reported with its evidence."""

    max_trials: int = Field(50, ge=1, description="Budget: trials run in all, failed ones included; proposals an "
                            "operator rejected, and trials cancelled before anything was done to them, do not count.")
    target_reached: bool = Field(True, description="Stop as soon as every objective with a target reaches it.")
    max_wall_time: float | None = Field(None, gt=0, description="Wall-clock limit in seconds.")
    no_improvement_rounds: int | None = Field(
        None, ge=1, description="Stop when the expected improvement stays below `improvement_threshold` this many rounds."
    )
    improvement_threshold: float = Field(
        1e-3, ge=0, description="Expected improvement (relative to the objective's observed range) counted as none."
    )


# --------------------------------------------------------------------------------------------------- strategy
class PriorDataSpec(_Model):
    """Past experiments that warm-start the model (they are learned from, never re-run, and never count towards
    this campaign's budget, best result or stopping rules)."""

    csv: str | None = Field(
        None, description="CSV of past experiments: a column per parameter and per objective (an empty objective "
        "cell = not measured); an optional 'failed' column (1/true/yes) marks failed experiments.")
    campaign: str | None = Field(
        None, description="Name or id of another campaign in the same store: its finished trials are used.")

    @model_validator(mode="after")
    def _one(self) -> "PriorDataSpec":
        if (self.csv is None) == (self.campaign is None):
            raise ValueError("give exactly one of 'csv' or 'campaign'")
        return self


class ExpertBelief(_Model):
    """Where an expert expects the optimum along one parameter (a numeric centre and width, or preferred
    choices)."""

    center: float | None = Field(None, description="Numeric parameters: the expected best value.")
    width: float | None = Field(None, gt=0, description="Numeric parameters: how sure (a standard deviation, in "
                                "the parameter's units).")
    prefer: list[str] | None = Field(None, min_length=1, description="Categorical parameters: the choices expected "
                                     "to be best.")

    @model_validator(mode="after")
    def _shape(self) -> "ExpertBelief":
        numeric = self.center is not None or self.width is not None
        if numeric == (self.prefer is not None):
            raise ValueError("give either 'center' and 'width' (numeric parameter) or 'prefer' (categorical)")
        if numeric and (self.center is None or self.width is None):
            raise ValueError("a numeric belief needs both 'center' and 'width'")
        return self


_PositiveFloat = Annotated[float, Field(gt=0)]


class BotorchOptions(_Model):
    """``strategy.options`` of the default strategy, ``name: botorch`` (see :mod:`labloop.strategy.bayes`)."""

    acquisition: Literal["auto", "logei", "qlognei", "ts", "ucb"] = Field(
        "auto", description="auto: analytic LogEI over a large candidate pool, Thompson sampling over a small one "
        "(at most `small_pool` times the budget), qLogNEI in continuous and mixed spaces, qLogNEHVI for several "
        "objectives; logei: (q)LogEI against `incumbent`; qlognei: qLogNoisyExpectedImprovement; ts: Thompson "
        "sampling (candidate pools only); ucb: qUpperConfidenceBound with `beta`.")
    kernel: Literal["auto", "matern", "rbf", "matern_gamma", "additive", "edbo"] = Field(
        "auto", description="GP kernel. auto: Matern-5/2 on large candidate pools, RBF elsewhere; matern: "
        "Matern-5/2 ARD; rbf: RBF ARD (botorch's default); matern_gamma: Matern-5/2 with BayBE's Gamma priors; "
        "additive: a Matern-5/2 per parameter added up plus the full product (categorical main effects); edbo: "
        "Matern-5/2 with short-lengthscale Gamma priors (EDBO).")
    incumbent: Literal["posterior_mean", "observed"] = Field(
        "posterior_mean", description="What LogEI improves on: the largest posterior mean at a measured point, or "
        "the best measured value.")
    log_outcome: Union[Literal["auto"], bool] = Field(
        "auto", description="Model log(objective): true, false, or auto (minimized positive objectives spanning a "
        "factor of 10 or more).")
    warp: bool = Field(False, description="Yeo-Johnson output warping of each objective before the GP sees it.")
    beta: Union[_PositiveFloat, Annotated[list[_PositiveFloat], Field(min_length=1)]] = Field(
        1.0, description="ucb: the exploration weight, or a list cycled through by trial count.")
    explore_below: float = Field(
        0.0, ge=0, description="Pools, acquisition auto: a Thompson sample instead of LogEI when the largest "
        "relative expected improvement over the free rows is below this (0 = never).")
    small_pool: float = Field(
        2.0, ge=0, description="A candidate pool of at most this many times stopping.max_trials rows is 'small' "
        "(acquisition and kernel auto then mean Thompson sampling on an RBF GP).")
    batch_selection: Literal["fantasy", "believer"] = Field(
        "believer", description="Pools, LogEI, several proposals or trials in flight: believer (default) = "
        "Kriging believer (Ginsbourger et al. 2010): the analytic LogEI, then the GP conditioned on its own mean at "
        "each chosen or pending row before the next pick (the first pick of a round is then exactly the q = 1 "
        "proposal; deterministic and cheaper than Monte Carlo); fantasy = sequential greedy qLogEI with the chosen "
        "and pending rows as X_pending (Monte Carlo over their joint posterior). Believer became the default on "
        "the 15 shared tables at q = 4 (docs/benchmarks/archive.md section 13: fewer experiments to the best row "
        "in 9 of 13 paired runs that differed, geometric mean 0.80 of fantasy's).")
    max_noise: Optional[float] = Field(
        None, gt=0, description="Cap on the GP noise variance (standardized units); none = learned freely.")
    warm_start: bool = Field(True, description="Start each hyperparameter fit from the previous proposal's.")
    mc_samples: int = Field(128, ge=1, le=65536, description="Quasi-Monte Carlo samples of the q-acquisitions.")
    raw_samples: int = Field(512, ge=1, description="Initial candidates of the continuous and mixed optimizers.")
    num_restarts: int = Field(8, ge=1, description="Optimizer restarts of the continuous and mixed optimizers.")
    grid_limit: int = Field(
        5000, ge=0, description="Fully discrete spaces up to this many points are enumerated and searched as a pool.")
    max_batch_size: int = Field(1024, ge=1, description="Pool rows evaluated per batch.")
    threads: int = Field(1, ge=1, le=256, description="Torch threads while proposing.")
    model_scope: Literal["auto", "exact", "local"] = Field(
        "auto", description="auto: one exact GP on every observation up to `local_above` successful measurements, "
        "above that a local GP on the `local_points` nearest the incumbent with the acquisition optimized in their "
        "trust region (labloop/strategy/large.py); exact: always the global GP; local: always the local one.")
    local_above: int = Field(
        1500, ge=0, description="model_scope auto: the local model is used above this many successful measurements.")
    local_points: int = Field(500, ge=10, description="Observations the local model is fitted on (per output).")
    related_points: int = Field(
        500, ge=2, description="strategy.related: at most this many related observations in the multi-task model "
        "(a seeded random subset, the same share of each related campaign).")


class RandomOptions(_Model):
    """``strategy.options`` of ``name: random`` (uniform random points, or random unused pool rows)."""

    grid_limit: int = Field(
        5000, ge=0, description="Fully discrete spaces up to this many points are enumerated and drawn from "
        "without replacement.")


#: The options model of each built-in strategy; plugin strategies get their options as given (or checked by their
#: own ``options_model``, see :func:`labloop.strategy.make_strategy`).
STRATEGY_OPTIONS: dict[str, type[BaseModel]] = {"botorch": BotorchOptions, "random": RandomOptions}


class OptionsError(ValueError):
    """Bad strategy options: ``problems`` are ``(field under options, message, fix)``, one per bad field."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"options{'.' + k if k else ''}: {m}" for k, m, _ in problems))


def _allowed(annotation: Any, metadata: list[Any] = ()) -> str:
    """What a field accepts, for people: 'one of 'a', 'b'', 'true or false', 'a number > 0', ..."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        extra = [x for a in args[1:] for x in (a.metadata if isinstance(a, FieldInfo) else [a])]
        return _allowed(args[0], [*metadata, *extra])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_allowed(a, metadata) for a in args)
    if origin is list:
        return f"a list of ({_allowed(args[0])})"
    if annotation is type(None):
        return "null"
    if annotation is bool:
        return "true or false"
    bounds = []
    for m in metadata:
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{op} {getattr(m, attr)}")
        if getattr(m, "min_length", None):
            bounds.append(f"at least {m.min_length} long")
    kind = {int: "an integer", float: "a number"}.get(annotation, getattr(annotation, "__name__", str(annotation)))
    return kind + (" " + " and ".join(bounds) if bounds else "")


def options_problems(model: type[BaseModel], options: Any, strategy: str) -> list[tuple[str, str, str]]:
    """Why ``options`` do not fit ``model``: ``(field, message, fix)`` naming the value and the allowed values
    (empty when they fit)."""
    if not isinstance(options, dict):
        return [("", f"must be a mapping of option names to values, got {options!r}", "write options: {name: value}")]
    try:
        model.model_validate(options)
    except ValidationError as exc:
        out: dict[str, tuple[str, str, str]] = {}
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            if name in out:
                continue  # a union reports once per member: one line per field
            if err["type"] == "extra_forbidden":
                out[name] = (name, f"unknown option {name!r} for the {strategy} strategy (allowed options: "
                             f"{', '.join(model.model_fields)})", "remove it or correct its spelling")
            elif name in model.model_fields:
                field = model.model_fields[name]
                out[name] = (name, f"{options[name]!r} is not allowed (allowed: "
                             f"{_allowed(field.annotation, field.metadata)})",
                             f"use an allowed value ({model.__name__} in labloop/spec.py describes each option)")
            else:
                out[name] = (name, err["msg"], "see labloop/spec.py")
        return list(out.values())
    return []


def checked_options(model: type[BaseModel], options: Any, strategy: str) -> BaseModel:
    """``options`` as an instance of ``model``, or a :class:`SpecError` with one line per bad option (used where
    options arrive other than through the campaign file: keyword options, plugin strategies' own models)."""
    problems = options_problems(model, options, strategy)
    if problems:
        raise SpecError("\n".join(f"strategy.options{'.' + k if k else ''}: {m} (fix: {fix})"
                                   for k, m, fix in problems))
    return model.model_validate(options)


class StrategySpec(_Model):
    """Which optimizer proposes trials and how."""

    name: str = Field("botorch", description="'botorch' (default), 'random', or a 'package.module:attribute' strategy.")
    initial_design: int = Field(6, ge=1, description="Space-filling (Sobol) trials before the model takes over.")
    batch_size: int = Field(1, ge=1, description="Points proposed per round.")
    seed_points: list[dict[str, Any]] = Field(default_factory=list, description="Points run first, as given.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Strategy-specific options, checked against the built-in strategy's "
        "options model (botorch: BotorchOptions, random: RandomOptions); a plugin strategy gets them as given.")
    prior_data: list[PriorDataSpec] = Field(
        default_factory=list, description="Past experiments (CSV files or other campaigns) that warm-start the model.")
    related: list[PriorDataSpec] = Field(
        default_factory=list, description="Earlier related campaigns (CSV files or campaigns in the store) over the "
        "same parameters, e.g. the same reaction with another substrate: a multi-task GP learns how related each "
        "is (labloop/strategy/transfer.py) instead of pooling them as the same experiment; at every proposal a "
        "leave-one-out check on this campaign's own points drops those that do not clearly help.")
    expert_prior: dict[str, ExpertBelief] = Field(
        default_factory=dict, description="Parameter -> where an expert expects the optimum. Guides the initial "
        "design and weights the acquisition by the belief, less and less as data come in (piBO).")
    expert_prior_strength: float = Field(
        10.0, gt=0, description="piBO's beta: the belief's weight is (its density)^(beta / n) after n trials.")

    @model_validator(mode="after")
    def _known_options(self) -> "StrategySpec":
        model = STRATEGY_OPTIONS.get(self.name)
        if model is not None:
            problems = options_problems(model, self.options, self.name)
            if problems:
                raise OptionsError(problems)
        return self


# --------------------------------------------------------------------------------------------------- scheduling
class SchedulingSpec(_Model):
    """How trials share the lab."""

    mode: Literal["async", "batch", "sequential"] = Field(
        "async",
        description="async: a new trial starts whenever a first-step station frees (in-flight trials are pending "
        "points); batch: propose strategy.batch_size points, run them all, then propose again; sequential: one "
        "trial at a time.",
    )
    approval: bool = Field(False, description="Proposals wait for `labloop approve` / `labloop reject`.")
    quarantine_after: int = Field(
        3, ge=1, description="Take a station out of service after this many consecutive failed steps."
    )
    lookahead: int = Field(
        1, ge=0, le=16,
        description="async: trials proposed ahead and queued for the next free first-step station, so a station "
        "that frees never waits for the optimizer.",
    )
    pause_after_same_failures: int = Field(
        5, ge=0,
        description="Pause the campaign when this many trials in a row failed in a workflow step with the same "
        "cause (a systematic fault: a missing file, a broken instrument) instead of spending the budget on it; "
        "objective plugins' rejections do not count; 0 never pauses.",
    )
    on_crash: Literal["resume", "wait"] = Field(
        "resume",
        description="When the campaign's process dies under `labloop serve` (a crash, kill -9): resume restarts it "
        "at once (as `labloop resume` would); wait leaves it for an operator's `labloop resume`.",
    )
    crash_resumes: int = Field(
        3, ge=0, le=100,
        description="on_crash: resume restarts the campaign at most this many times; a campaign that keeps crashing "
        "is then left for an operator, so a crash loop stops.",
    )


# --------------------------------------------------------------------------------------------------- lab
class DeviceSpec(_Model):
    """A device of the lab: given by its driver (entry point in 'labloop.devices' or 'module:attr'), or remote: served
    by ``labloop agent`` on another computer at ``remote`` (its public key from the store's ``users`` table by the
    ``agent`` name, or inline as ``agent_key``)."""

    driver: str | None = Field(None, description="Driver of a device plugged into this computer.")
    file: str | None = Field(None, description="Instrument description (YAML, docs/drivers.md): a declarative "
                             "device built by labloop; a relative path is resolved from the campaign file's folder.")
    spec: dict[str, Any] | None = Field(None, description="The instrument description inline, instead of 'file'.")
    config: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the driver (for a "
                                   "described instrument: 'address' and 'timeout' override the description's).")
    remote: str | None = Field(None, description="Address of the agent serving the device, e.g. tcp://10.0.0.5:7600.")
    agent: str | None = Field(None, description="The agent's name in the store's users (role agent): its key.")
    agent_key: str | None = Field(None, description="The agent's CURVE public key (Z85), instead of 'agent'.")

    @model_validator(mode="after")
    def _driver_or_remote(self) -> "DeviceSpec":
        given = [k for k in ("driver", "remote", "file", "spec") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give either 'driver' (a device on this computer), 'file' or 'spec' (an instrument "
                             "described in YAML) or 'remote' (an agent's address)"
                             + (f"; got {' and '.join(given)}" if given else ""))
        if self.remote is None:
            if self.agent or self.agent_key:
                raise ValueError("'agent' and 'agent_key' belong to a remote device (add 'remote: tcp://HOST:PORT')")
            return self
        host, _, port = self.remote.removeprefix("tcp://").rpartition(":")
        if not self.remote.startswith("tcp://") or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"remote '{self.remote}' is not an agent address: write tcp://HOST:PORT")
        if self.config:
            raise ValueError("a remote device is configured on the agent's computer (labloop agent --config), "
                             "not here: drop 'config'")
        if not (self.agent or self.agent_key) or (self.agent and self.agent_key):
            raise ValueError("name the agent ('agent: NAME', its key is looked up in the store) or give its "
                             "public key ('agent_key: Z85'), one of the two")
        if self.agent_key is not None and len(self.agent_key) != 40:
            raise ValueError("agent_key must be a Z85 CURVE public key (40 characters; `labloop users list`)")
        return self


class LabSpec(_Model):
    """Which lab runs the campaign: a simulator that builds its devices, and/or named real drivers."""

    simulator: str | None = Field(
        None, description="Simulated lab: entry point name in 'labloop.simulators' or 'package.module:attribute'."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Options for the simulator (noise, seed, ...).")
    devices: dict[str, DeviceSpec] = Field(default_factory=dict, description="Real drivers by device name.")
    time_scale: float = Field(1.0, gt=0, description="Simulated devices run this many times faster than real time.")
    stations: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Station kinds: kind -> interchangeable devices (e.g. deposition: [chamber1, chamber2]). "
        "Workflow steps may name a kind instead of a device. Every device is also a kind of its own.",
    )
    buffers: list[str] = Field(
        default_factory=list,
        description="Places (racks, hotels) where the robot may park a finished sample whose next station is busy, "
        "so that the station it sits in can take the next sample.",
    )
    suspenders: list["SuspenderSpec"] = Field(
        default_factory=list, description="Conditions that pause every run while a monitored signal is out of band."
    )
    calibration: dict[str, "CalibrationPolicy"] = Field(
        default_factory=dict,
        description="Maximum calibration age per device (device -> {max_age, on_expiry}); see CalibrationPolicy.",
    )

    @model_validator(mode="after")
    def _something(self) -> "LabSpec":
        if self.simulator is None and not self.devices:
            raise ValueError("name a simulator or at least one device")
        return self


class CalibrationPolicy(_Model):
    """How old a device's calibration may be. Before a step on the device whose calibration is older than
    ``max_age`` seconds (the lab's time: simulated seconds for a simulated device, wall-clock seconds for a real
    one; labloop/run/calibration.py), the scheduler either runs a
    recorded ``calibrate`` step (``on_expiry: calibrate``) or pauses the campaign saying how to calibrate
    (``pause``). Readings taken while it is older are flagged ``calibration_expired``."""

    max_age: float = Field(gt=0, description="Seconds a calibration stays valid, in the lab's time (simulated "
                           "seconds for a simulated device). A calibration recorded before the run is used while "
                           "younger.")
    on_expiry: Literal["calibrate", "pause"] = Field("calibrate", description="Calibrate automatically, or pause.")


class SuspenderSpec(_Model):
    """Pause runs while ``signal`` (as 'device.component') is outside [low, high]; resume when it is back."""

    signal: str = Field(description="The monitored signal, e.g. 'chamber.chamber_pressure'.")
    low: float | None = Field(None, description="Lowest acceptable value.")
    high: float | None = Field(None, description="Highest acceptable value.")
    resume_after: float = Field(0.0, ge=0, description="Seconds the value must be back in band before resuming.")

    @model_validator(mode="after")
    def _check(self) -> "SuspenderSpec":
        if self.low is None and self.high is None:
            raise ValueError("give low, high or both")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if "." not in self.signal:
            raise ValueError(f"signal '{self.signal}' must be given as 'device.component'")
        return self


ResumePolicy = Literal["rerun", "fail"]
DEFAULT_RESUME: dict[str, ResumePolicy] = {"transfer": "rerun", "synthesize": "fail", "measure": "rerun"}


class StepSpec(_Model):
    """One step of a trial's workflow, executed as a bluesky plan."""

    kind: Literal["transfer", "synthesize", "measure"] = Field(description="What the step does.")
    device: str | None = Field(
        None, description="The station or instrument (synthesize, measure): a device name or a station kind."
    )
    to: str | None = Field(
        None, description="Destination (transfer): a named place, a device, or the station kind of the next step."
    )
    robot: str = Field("robot", description="The robot doing a transfer.")
    name: str | None = Field(None, description="Step name in documents (default: kind and device).")
    retries: int = Field(0, ge=0, le=20, description="Extra attempts after a device error or timeout.")
    retry_backoff: float = Field(
        60.0, ge=0, description="Simulated/device seconds before the first retry; doubles each attempt."
    )
    timeout: float | None = Field(
        None, gt=0, description="Device seconds after which the step fails as a timeout (scaled by time_scale)."
    )
    on_resume: ResumePolicy | None = Field(
        None,
        description="What resume does with this step when a crash interrupted it: 'rerun' it, or 'fail' the trial "
        "(default: rerun transfers and measurements; fail syntheses, which consumed the sample).",
    )

    @model_validator(mode="after")
    def _check(self) -> "StepSpec":
        if self.kind == "transfer" and not self.to:
            raise ValueError("a transfer step needs 'to'")
        if self.kind in ("synthesize", "measure") and not self.device:
            raise ValueError(f"a {self.kind} step needs 'device'")
        if self.kind == "synthesize" and self.on_resume == "rerun":
            raise ValueError("a synthesis consumes its sample: on_resume 'rerun' would process it twice; use 'fail'")
        if self.retries and self.resume_policy == "fail":
            raise ValueError(f"a {self.kind} that failed has consumed its sample: retries would process it again "
                             f"(retry measurements and transfers; a failed synthesis is a result for the optimizer)")
        return self

    @property
    def resume_policy(self) -> ResumePolicy:
        return self.on_resume or DEFAULT_RESUME[self.kind]

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"transfer:{self.to}" if self.kind == "transfer" else f"{self.kind}:{self.device}"


# --------------------------------------------------------------------------------------------------- sharing
#: Sharing classes, least restrictive first: a viewer of a class sees the fields of that class and of the classes
#: before it (open sees open; shared-closed sees open and shared-closed; closed, the owner, sees everything).
SHARING_CLASSES: tuple[str, ...] = ("open", "shared-closed", "closed")

#: Data kinds a campaign file may classify besides its parameters, objectives and outcome constraints.
SHARING_KINDS: dict[str, str] = {
    "process_streams": "monitored process streams of the syntheses (pressure, temperature traces)",
    "dock": "any other document data of the stations and instruments (raw measurement readings) that is not an "
            "objective or a parameter",
    "failure_reason": "why a trial failed (free text of devices and plugins)",
    "evidence": "the model's evidence at proposal time (predicted mean and spread, acquisition value, importance)",
    "source": "where each proposal came from (seed, sobol, model, ...)",
}
#: Group names: every parameter, every objective and outcome constraint (a field named on its own wins).
SHARING_GROUPS: tuple[str, ...] = ("parameters", "objectives")


def _sharing_class(v: Any) -> Any:
    if v not in SHARING_CLASSES:
        raise ValueError(f"{v!r} is not a sharing class (fix: use one of: {', '.join(SHARING_CLASSES)})")
    return v


SharingClass = Annotated[Any, AfterValidator(_sharing_class)]


class SharingSpec(_Model):
    """Who may see what when the campaign's data are exported (``labloop export --class``). Absent: everything is
    ``closed`` (only the owner sees it)."""

    default: SharingClass = Field("closed", description="Class of every field not listed: open, shared-closed or closed.")
    fields: dict[str, SharingClass] = Field(
        default_factory=dict,
        description="Field -> class. Fields: each parameter (a composition's name stands for its components), "
        "objective and outcome constraint; 'parameters' and 'objectives' for all of them; process_streams, dock, "
        "failure_reason, evidence, source. Trial number, state, sample id, stations and times are always shared.")
    embargo_until: date | None = Field(
        None, description="From this day on (UTC), fields that are closed are shared-closed.")
    derived: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Field -> what is derived from it and must be hidden with it: stream names or data keys "
        "(a monitored stream 'chamber_pressure' whose plateau lasts the recipe's 'duration') and 'failure_reason' "
        "(the failure reasons of the steps whose recipe holds the field: 'plasma extinguished at 112.9 min'). A "
        "hidden recipe field not listed here hides every stream and failure reason of the steps whose recipe "
        "holds it (their timing may reveal it); listing it, even with [], narrows that to what is listed.")



# --------------------------------------------------------------------------------------------------- campaign
class CampaignSpec(_Model):
    """A whole campaign: what to search, what to optimize, when to stop, and which lab does the work."""

    name: str = Field(description="Campaign name.")
    description: str = Field("", description="Free text for people.")
    parameters: list[Parameter] = Field(min_length=1, description="The search space.")
    constraints: list[LinearConstraint] = Field(default_factory=list, description="Linear constraints on parameters.")
    objectives: list[ObjectiveSpec] = Field(min_length=1, description="What to optimize.")
    outcome_constraints: list[OutcomeConstraintSpec] = Field(default_factory=list)
    stopping: StoppingSpec = Field(default_factory=StoppingSpec)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    lab: LabSpec | None = Field(None, description="The lab; not needed for table replays.")
    workflow: list[StepSpec] = Field(default_factory=list, description="Steps every trial runs, in order.")
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed for the strategy and the simulators "
                      "(0 to 4294967295).")
    store: str | None = Field(None, description="Store URL (default: sqlite file labloop.db in the working directory).")
    candidates: str | None = Field(None, description="CSV of candidate rows: proposals may only be rows of it.")
    sharing: SharingSpec = Field(default_factory=SharingSpec, description="Sharing classes of the exported data.")
    best: BestSpec = Field(default_factory=BestSpec, description="With several objectives: which trial of the "
                           "feasible Pareto set is named the best (default: largest hypervolume contribution).")

    @model_validator(mode="after")
    def _cross_checks(self) -> "CampaignSpec":
        names = self.parameter_names()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"parameter names must be unique; repeated: {dupes}")
        known = set(names)
        for i, c in enumerate(self.constraints):
            unknown = sorted(set(c.coefficients) - known)
            if unknown:
                raise ValueError(f"constraints[{i}] names unknown parameters {unknown}")
        onames = [o.name for o in self.objectives] + [o.name for o in self.outcome_constraints]
        if len(set(onames)) != len(onames):
            raise ValueError("objective and outcome-constraint names must be unique")
        for name, belief in self.strategy.expert_prior.items():
            self._check_belief(name, belief)
        if self.lab is not None and not self.workflow:
            raise ValueError("a campaign with a lab needs a workflow (the steps each trial runs)")
        self._check_sharing()
        self._check_best()
        kinds = [s.kind for s in self.workflow]
        if "measure" in kinds and ("synthesize" not in kinds or kinds.index("synthesize") > kinds.index("measure")):
            raise ValueError(f"workflow[{kinds.index('measure')}]: the workflow measures before anything is "
                             f"synthesized: every trial would measure a bare substrate and blame the instrument "
                             f"(fix: add a synthesize step before the first measure step)")
        return self

    def sharing_fields(self) -> list[str]:
        """The names ``sharing.fields`` accepts, in the order exports list them."""
        outcomes = [o.name for o in self.objectives] + [o.name for o in self.outcome_constraints]
        groups = [p.name for p in self.parameters if isinstance(p, CompositionParameter)]
        return [*self.parameter_names(), *groups, *outcomes, *SHARING_KINDS, *SHARING_GROUPS]

    def _check_sharing(self) -> None:
        names = [*self.parameter_names(), *[o.name for o in self.objectives],
                 *[o.name for o in self.outcome_constraints]]
        allowed = self.sharing_fields()
        own = [n for n in allowed if n not in SHARING_KINDS and n not in SHARING_GROUPS]
        for name in self.sharing.derived:
            if name not in own:
                raise ValueError(f"sharing.derived.{name}: unknown field '{name}' (fix: use a parameter, objective "
                                 f"or outcome constraint: {', '.join(own)})")
        if not self.sharing.fields:
            return
        clash = sorted(set(names) & (set(SHARING_KINDS) | set(SHARING_GROUPS)))
        if clash:
            raise ValueError(f"sharing.fields: {clash} are both campaign fields and sharing kinds, so a class given "
                             f"to them is ambiguous (fix: rename the parameter or objective)")
        for name in self.sharing.fields:
            if name not in allowed:
                raise ValueError(f"sharing.fields.{name}: unknown field '{name}' (fix: use one of: "
                                 f"{', '.join(allowed)})")

    def _check_best(self) -> None:
        names = [o.name for o in self.objectives]
        if self.best.primary is not None and self.best.primary not in names:
            raise ValueError(f"best.primary: '{self.best.primary}' is not an objective (fix: use one of: "
                             f"{', '.join(names)})")
        if self.best.rule != "weighted":
            for i, o in enumerate(self.objectives):
                if o.weight is not None:
                    raise ValueError(f"objectives[{i}].weight is used only with best.rule: weighted (fix: add "
                                     f"'best: {{rule: weighted}}' or remove the weight)")

    def _check_belief(self, name: str, belief: ExpertBelief) -> None:
        where = f"strategy.expert_prior.{name}"
        param = next((p for p in self.parameters if p.name == name), None)
        if param is None or isinstance(param, (FixedParameter, CompositionParameter)):
            raise ValueError(f"{where}: '{name}' is not a continuous, integer, discrete or categorical parameter")
        if isinstance(param, CategoricalParameter):
            if belief.prefer is None:
                raise ValueError(f"{where}: '{name}' is categorical: give 'prefer: [choices]'")
            unknown = [c for c in belief.prefer if c not in param.choices]
            if unknown:
                raise ValueError(f"{where}: {unknown} are not choices of '{name}' ({param.choices})")
            return
        if belief.center is None:
            raise ValueError(f"{where}: '{name}' is numeric: give 'center' and 'width'")
        lo, hi = (min(param.values), max(param.values)) if isinstance(param, DiscreteParameter) else \
            (param.lower, param.upper)
        if not lo <= belief.center <= hi:
            raise ValueError(f"{where}: center {belief.center} is outside the bounds [{lo}, {hi}] of '{name}'")

    def parameter_names(self) -> list[str]:
        """Names of the values every trial carries (composition groups expand to their components)."""
        out: list[str] = []
        for p in self.parameters:
            out.extend(p.components if isinstance(p, CompositionParameter) else [p.name])
        return out


LabSpec.model_rebuild()


# --------------------------------------------------------------------------------------------------- loading
def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("continuous", "integer", "discrete", "categorical", "fixed", "composition", "linear"):
            continue  # discriminator tag: not part of the user's path
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_FIXES = {
    "extra_forbidden": "remove it or correct its spelling",
    "missing": "add it",
    "union_tag_invalid": "use one of the listed types",
}


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at ``loc`` of a campaign file (for 'unknown field': the answer, not a pointer)."""
    import types
    import typing

    t: Any = CampaignSpec
    for part in loc:
        while True:  # strip Annotated / Optional wrappers
            origin = typing.get_origin(t)
            if origin is typing.Annotated:
                t = typing.get_args(t)[0]
            elif origin in (typing.Union, types.UnionType):
                members = [a for a in typing.get_args(t) if a is not type(None)]
                tagged = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)
                          and getattr(m.model_fields.get("type"), "default", None) == part]
                if tagged:
                    t = tagged[0]
                    break
                if len(members) != 1:
                    return []
                t = members[0]
            else:
                break
        if isinstance(t, type) and issubclass(t, BaseModel) and getattr(t.model_fields.get("type"), "default",
                                                                         None) == part:
            continue  # the discriminator tag pydantic puts in the path
        origin = typing.get_origin(t)
        if isinstance(part, int) and origin is list:
            t = typing.get_args(t)[0]
        elif origin is dict:
            t = typing.get_args(t)[1]
        elif isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
            t = t.model_fields[part].annotation
        else:
            return []
    while typing.get_origin(t) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(t) if a is not type(None)]
        if len(members) != 1:
            return []
        t = members[0]
    if isinstance(t, type) and issubclass(t, BaseModel):
        return list(t.model_fields)
    return []


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``file: field.path: message (fix: ...)``."""
    lines = []
    for err in exc.errors():
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, OptionsError):  # one line per bad strategy option, with its own path
            where = _loc(err["loc"])
            where = "" if where == "(top level)" else where + "."
            lines += [f"{source}: {where}options{'.' + k if k else ''}: {m} (fix: {fix})" for k, m, fix in error.problems]
            continue
        msg = err["msg"].removeprefix("Value error, ")
        fix = _FIXES.get(err["type"])
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            allowed = _fields_at(err["loc"][:-1])
            if allowed:
                fix = f"{fix}; the fields here are: {', '.join(allowed)}"
        where = _loc(err["loc"])  # a rule across fields names its own path in the message
        lines.append(f"{source}: {'' if where == '(top level)' else where + ': '}{msg}" + (f" (fix: {fix})" if fix else ""))
    return "\n".join(lines)


def _non_finite(data: Any, where: tuple[Any, ...] = ()) -> list[tuple[str, float]]:
    """Every NaN or infinity in parsed YAML, with its path (``lab.options.noise``)."""
    if isinstance(data, float) and not math.isfinite(data):
        return [(_loc(where), data)]
    if isinstance(data, dict):
        return [b for k, v in data.items() for b in _non_finite(v, (*where, k))]
    if isinstance(data, list):
        return [b for i, v in enumerate(data) for b in _non_finite(v, (*where, i))]
    return []


def parse_spec(data: Any, source: str = "<campaign>") -> CampaignSpec:
    """Validate already-parsed YAML/JSON data; raise :class:`SpecError` naming ``source`` and the field path."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the campaign file must be a mapping of fields, got {type(data).__name__}",
                        "start from experiments/thinfilm.yaml")
    bad = _non_finite(data)
    if bad:  # options of plugins, simulators and strategies are free-form: no field type stops a .nan there
        raise SpecError("\n".join(f"{source}: {where}: {v} is not a finite number" for where, v in bad),
                        "give a finite number")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(source, exc)) from None


def read_spec_text(path: str | Path) -> str:
    """The campaign file's text (stored verbatim with the campaign, together with its hash)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read the file: {exc}", "check permissions and that it is UTF-8 text") from None


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but a date that cannot exist (``2027-13-45``) is a YAML error with its line, not a bare
    ValueError from deep inside the constructor."""


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{node.value}' is not a real date ({exc})",
            node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def spec_from_text(text: str, source: str) -> CampaignSpec:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(exc, "problem", exc))
        fix = ("write a real day as YYYY-MM-DD" if "is not a real date" in problem
               else "fix the YAML syntax (indentation, colons, quotes)")
        raise SpecError(f"{source}: not valid YAML{where}: {problem}", fix) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value YAML cannot build, e.g. a date 2027-13-45
        raise SpecError(f"{source}: a value is not what it looks like: {exc}",
                        "check dates (YYYY-MM-DD, a real day) and numbers in the file") from None
    return parse_spec(data, source)


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign file."""
    return spec_from_text(read_spec_text(path), str(path))


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
