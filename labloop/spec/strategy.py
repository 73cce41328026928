"""Which optimizer proposes trials: the ``strategy`` section, the built-in strategies' typed options, and the
checks that turn a bad option into one line naming the value and what is allowed."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from ..errors import SpecError
from .base import _Model


# --------------------------------------------------------------------------------------------------- strategy
class PriorDataSpec(_Model):
    """Past experiments that warm-start the model (they are learned from, never re-run, and never count towards
    this campaign's budget, best result or stopping rules)."""

    csv: str | None = Field(
        None,
        description="CSV of past experiments: a column per parameter and per objective (an empty objective "
        "cell = not measured); an optional 'failed' column (1/true/yes) marks failed experiments.",
    )
    campaign: str | None = Field(
        None, description="Name or id of another campaign in the same store: its finished trials are used."
    )

    @model_validator(mode="after")
    def _one(self) -> PriorDataSpec:
        if (self.csv is None) == (self.campaign is None):
            raise ValueError("give exactly one of 'csv' or 'campaign'")
        return self


class ExpertBelief(_Model):
    """Where an expert expects the optimum along one parameter (a numeric centre and width, or preferred
    choices)."""

    center: float | None = Field(None, description="Numeric parameters: the expected best value.")
    width: float | None = Field(
        None, gt=0, description="Numeric parameters: how sure (a standard deviation, in the parameter's units)."
    )
    prefer: list[str] | None = Field(
        None, min_length=1, description="Categorical parameters: the choices expected to be best."
    )

    @model_validator(mode="after")
    def _shape(self) -> ExpertBelief:
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
        "auto",
        description="auto: analytic LogEI over a large candidate pool, Thompson sampling over a small one "
        "(at most `small_pool` times the budget), qLogNEI in continuous and mixed spaces, qLogNEHVI for several "
        "objectives; logei: (q)LogEI against `incumbent`; qlognei: qLogNoisyExpectedImprovement; ts: Thompson "
        "sampling (candidate pools only); ucb: qUpperConfidenceBound with `beta`.",
    )
    kernel: Literal["auto", "matern", "rbf", "matern_gamma", "additive", "edbo"] = Field(
        "auto",
        description="GP kernel. auto: Matern-5/2 on large candidate pools, RBF elsewhere; matern: "
        "Matern-5/2 ARD; rbf: RBF ARD (botorch's default); matern_gamma: Matern-5/2 with BayBE's Gamma priors; "
        "additive: a Matern-5/2 per parameter added up plus the full product (categorical main effects); edbo: "
        "Matern-5/2 with short-lengthscale Gamma priors (EDBO).",
    )
    incumbent: Literal["posterior_mean", "observed"] = Field(
        "posterior_mean",
        description="What LogEI improves on: the largest posterior mean at a measured point, or "
        "the best measured value.",
    )
    log_outcome: Literal["auto"] | bool = Field(
        "auto",
        description="Model log(objective): true, false, or auto (minimized positive objectives spanning a "
        "factor of 10 or more).",
    )
    log_constraint: Literal["auto"] | bool = Field(
        False,
        description="Model log(outcome constraint) for an upper limit alone: false (default), true, or auto (every "
        "value >= 0 and the largest at least 10 times the limit; values below 1/100 of the limit count as that "
        "floor). Not the default: on the solid-state campaign (20 seeds) auto needed fewer experiments at the "
        "median but not run by run (benchmarks/results/solid_state_feas.jsonl).",
    )
    warp: bool = Field(False, description="Yeo-Johnson output warping of each objective before the GP sees it.")
    beta: _PositiveFloat | Annotated[list[_PositiveFloat], Field(min_length=1)] = Field(
        1.0, description="ucb: the exploration weight, or a list cycled through by trial count."
    )
    explore_below: float = Field(
        0.0,
        ge=0,
        description="Pools, acquisition auto: a Thompson sample instead of LogEI when the largest "
        "relative expected improvement over the free rows is below this (0 = never).",
    )
    small_pool: float = Field(
        2.0,
        ge=0,
        description="A candidate pool of at most this many times stopping.max_trials rows is 'small' "
        "(acquisition and kernel auto then mean Thompson sampling on an RBF GP).",
    )
    batch_selection: Literal["fantasy", "believer"] = Field(
        "believer",
        description="Several proposals or trials in flight: believer (default) = Kriging believer "
        "(Ginsbourger et al. 2010). On a pool: the analytic LogEI, then the GP conditioned on its own mean at "
        "each chosen or pending row before the next pick (the first pick of a round is then exactly the q = 1 "
        "proposal; deterministic and cheaper than Monte Carlo). In a continuous or mixed space with one objective: "
        "every GP (objective, constraints, failures) conditioned on its own mean at the trials in flight, then the "
        "acquisition as without them. fantasy = the chosen and pending points as X_pending (Monte Carlo over their "
        "joint posterior; sequential greedy qLogEI on a pool). Believer became the default on the 15 shared tables "
        "at q = 4 (docs/benchmarks/archive.md section 13: fewer experiments to the best row in 9 of 13 paired runs "
        "that differed, geometric mean 0.80 of fantasy's) and in spaces on the station-scaling campaigns (section 37).",
    )
    nothing_feasible: Literal["constrained", "feasibility"] = Field(
        "constrained",
        description="One objective with outcome constraints, while no measured trial meets them all: constrained "
        "(default) = the constrained acquisition as always (its feasibility weight is then ~0 everywhere, and "
        "the objective ranks candidates); feasibility = the probability of feasibility (Gelbart et al. 2014: "
        "botorch's LogProbabilityOfFeasibility, trials in flight believed) until a feasible trial is measured. "
        "Not the default: on the solid-state campaign (20 seeds) it reached the target in more seeds but needed "
        "more experiments at the median (benchmarks/results/solid_state_feas.jsonl).",
    )
    max_noise: float | None = Field(
        None, gt=0, description="Cap on the GP noise variance (standardized units); none = learned freely."
    )
    warm_start: bool = Field(True, description="Start each hyperparameter fit from the previous proposal's.")
    mc_samples: int = Field(128, ge=1, le=65536, description="Quasi-Monte Carlo samples of the q-acquisitions.")
    raw_samples: int = Field(512, ge=1, description="Initial candidates of the continuous and mixed optimizers.")
    num_restarts: int = Field(8, ge=1, description="Optimizer restarts of the continuous and mixed optimizers.")
    grid_limit: int = Field(
        5000, ge=0, description="Fully discrete spaces up to this many points are enumerated and searched as a pool."
    )
    max_batch_size: int = Field(1024, ge=1, description="Pool rows evaluated per batch.")
    threads: int = Field(1, ge=1, le=256, description="Torch threads while proposing.")
    model_scope: Literal["auto", "exact", "local"] = Field(
        "auto",
        description="auto: one exact GP on every observation up to `local_above` successful measurements, "
        "above that a local GP on the `local_points` nearest the incumbent with the acquisition optimized in their "
        "trust region (labloop/strategy/large.py); exact: always the global GP; local: always the local one.",
    )
    local_above: int = Field(
        1500, ge=0, description="model_scope auto: the local model is used above this many successful measurements."
    )
    local_points: int = Field(500, ge=10, description="Observations the local model is fitted on (per output).")
    related_points: int = Field(
        500,
        ge=2,
        description="strategy.related: at most this many related observations in the multi-task model "
        "(a seeded random subset, the same share of each related campaign).",
    )


class RandomOptions(_Model):
    """``strategy.options`` of ``name: random`` (uniform random points, or random unused pool rows)."""

    grid_limit: int = Field(
        5000,
        ge=0,
        description="Fully discrete spaces up to this many points are enumerated and drawn from without replacement.",
    )


#: The options model of each built-in strategy; plugin strategies get their options as given (or checked by their
#: own ``options_model``, see :func:`labloop.strategy.make_strategy`).
STRATEGY_OPTIONS: dict[str, type[BaseModel]] = {"botorch": BotorchOptions, "random": RandomOptions}


class OptionsError(ValueError):
    """Bad strategy options: ``problems`` are ``(field under options, message, fix)``, one per bad field."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"options{'.' + k if k else ''}: {m}" for k, m, _ in problems))


def _allowed(annotation: Any, metadata: Sequence[Any] = ()) -> str:
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
                out[name] = (
                    name,
                    f"unknown option {name!r} for the {strategy} strategy (allowed options: "
                    f"{', '.join(model.model_fields)})",
                    "remove it or correct its spelling",
                )
            elif name in model.model_fields:
                field = model.model_fields[name]
                out[name] = (
                    name,
                    f"{options[name]!r} is not allowed (allowed: {_allowed(field.annotation, field.metadata)})",
                    f"use an allowed value ({model.__name__} in labloop/spec/strategy.py describes each option)",
                )
            else:
                out[name] = (name, err["msg"], "see labloop/spec/strategy.py")
        return list(out.values())
    return []


_Options = TypeVar("_Options", bound=BaseModel)


def checked_options(model: type[_Options], options: Any, strategy: str) -> _Options:
    """``options`` as an instance of ``model``, or a :class:`SpecError` with one line per bad option (used where
    options arrive other than through the campaign file: keyword options, plugin strategies' own models)."""
    problems = options_problems(model, options, strategy)
    if problems:
        raise SpecError(
            "\n".join(f"strategy.options{'.' + k if k else ''}: {m} (fix: {fix})" for k, m, fix in problems)
        )
    return model.model_validate(options)


class StrategySpec(_Model):
    """Which optimizer proposes trials and how."""

    name: str = Field("botorch", description="'botorch' (default), 'random', or a 'package.module:attribute' strategy.")
    initial_design: int = Field(6, ge=1, description="Space-filling (Sobol) trials before the model takes over.")
    batch_size: int = Field(1, ge=1, description="Points proposed per round.")
    seed_points: list[dict[str, Any]] = Field(default_factory=list, description="Points run first, as given.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Strategy-specific options, checked against the built-in strategy's "
        "options model (botorch: BotorchOptions, random: RandomOptions); a plugin strategy gets them as given.",
    )
    prior_data: list[PriorDataSpec] = Field(
        default_factory=list, description="Past experiments (CSV files or other campaigns) that warm-start the model."
    )
    related: list[PriorDataSpec] = Field(
        default_factory=list,
        description="Earlier related campaigns (CSV files or campaigns in the store) over the "
        "same parameters, e.g. the same reaction with another substrate: a multi-task GP learns how related each "
        "is (labloop/strategy/transfer.py) instead of pooling them as the same experiment; at every proposal a "
        "leave-one-out check on this campaign's own points drops those that do not clearly help.",
    )
    expert_prior: dict[str, ExpertBelief] = Field(
        default_factory=dict,
        description="Parameter -> where an expert expects the optimum. Guides the initial "
        "design and weights the acquisition by the belief, less and less as data come in (piBO).",
    )
    expert_prior_strength: float = Field(
        10.0, gt=0, description="piBO's beta: the belief's weight is (its density)^(beta / n) after n trials."
    )

    @model_validator(mode="after")
    def _known_options(self) -> StrategySpec:
        model = STRATEGY_OPTIONS.get(self.name)
        if model is not None:
            problems = options_problems(model, self.options, self.name)
            if problems:
                raise OptionsError(problems)
        return self
