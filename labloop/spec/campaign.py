"""The root model: a whole campaign, and the rules that cross its sections (names, beliefs, sharing, best)."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import _Model
from .consumables import amount_names, choice_tests
from .lab import LabSpec, StepSpec
from .objectives import BestSpec, ObjectiveSpec, OutcomeConstraintSpec
from .running import SchedulingSpec, StoppingSpec
from .sharing import SHARING_GROUPS, SHARING_KINDS, SharingSpec
from .space import (
    CategoricalParameter,
    CompositionParameter,
    DiscreteParameter,
    FixedParameter,
    LinearConstraint,
    Parameter,
)
from .strategy import ExpertBelief, StrategySpec


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
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Random seed for the strategy and the simulators (0 to 4294967295)."
    )
    store: str | None = Field(None, description="Store URL (default: sqlite file labloop.db in the working directory).")
    candidates: str | None = Field(None, description="CSV of candidate rows: proposals may only be rows of it.")
    sharing: SharingSpec = Field(default_factory=SharingSpec, description="Sharing classes of the exported data.")
    best: BestSpec = Field(
        default_factory=BestSpec,
        description="With several objectives: which trial of the "
        "feasible Pareto set is named the best (default: largest hypervolume contribution).",
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> CampaignSpec:
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
        self._check_consumables()
        self._check_batching()
        kinds = [s.kind for s in self.workflow]
        if "measure" in kinds and ("synthesize" not in kinds or kinds.index("synthesize") > kinds.index("measure")):
            raise ValueError(
                f"workflow[{kinds.index('measure')}]: the workflow measures before anything is "
                f"synthesized: every trial would measure a bare substrate and blame the instrument "
                f"(fix: add a synthesize step before the first measure step)"
            )
        return self

    def sharing_fields(self) -> list[str]:
        """The names ``sharing.fields`` accepts, in the order exports list them."""
        outcomes = [o.name for o in self.objectives] + [o.name for o in self.outcome_constraints]
        groups = [p.name for p in self.parameters if isinstance(p, CompositionParameter)]
        return [*self.parameter_names(), *groups, *outcomes, *SHARING_KINDS, *SHARING_GROUPS]

    def _check_sharing(self) -> None:
        names = [
            *self.parameter_names(),
            *[o.name for o in self.objectives],
            *[o.name for o in self.outcome_constraints],
        ]
        allowed = self.sharing_fields()
        own = [n for n in allowed if n not in SHARING_KINDS and n not in SHARING_GROUPS]
        for name in self.sharing.derived:
            if name not in own:
                raise ValueError(
                    f"sharing.derived.{name}: unknown field '{name}' (fix: use a parameter, objective "
                    f"or outcome constraint: {', '.join(own)})"
                )
        if not self.sharing.fields:
            return
        clash = sorted(set(names) & (set(SHARING_KINDS) | set(SHARING_GROUPS)))
        if clash:
            raise ValueError(
                f"sharing.fields: {clash} are both campaign fields and sharing kinds, so a class given "
                f"to them is ambiguous (fix: rename the parameter or objective)"
            )
        for name in self.sharing.fields:
            if name not in allowed:
                raise ValueError(
                    f"sharing.fields.{name}: unknown field '{name}' (fix: use one of: {', '.join(allowed)})"
                )

    def _check_consumables(self) -> None:
        """A use formula names parameters of this campaign, numeric ones (a categorical choice has no mass)."""
        cons = self.lab.consumables if self.lab is not None else None
        if cons is None:
            return
        names = self.parameter_names()
        for stock, name in cons.unknown_parameters(set(names)):
            raise ValueError(
                f"lab.consumables.use.{stock}: unknown parameter '{name}' (fix: use one of: {', '.join(names)})"
            )
        by_name = {p.name: p for p in self.parameters}
        for stock, tree in cons.trees().items():
            for name, choice in choice_tests(tree):
                p = by_name[name]
                options = [str(c) for c in p.choices] if isinstance(p, CategoricalParameter) else None
                if options is None:
                    raise ValueError(
                        f"lab.consumables.use.{stock}: ({name} == '{choice}') tests a parameter that is not "
                        f"categorical (fix: test a categorical parameter against one of its choices)"
                    )
                if choice not in options:
                    raise ValueError(
                        f"lab.consumables.use.{stock}: '{choice}' is not a choice of '{name}', so the test is never "
                        f"true (fix: one of: {', '.join(options)})"
                    )
        for p in self.parameters:
            if isinstance(p, CategoricalParameter) or (isinstance(p, FixedParameter) and isinstance(p.value, str)):
                for stock, tree in cons.trees().items():
                    if p.name in amount_names(tree):
                        raise ValueError(
                            f"lab.consumables.use.{stock}: '{p.name}' is not numeric, so it is no "
                            f"amount (fix: use numeric parameters, or a choice test such as ({p.name} == "
                            f"'{p.choices[0] if isinstance(p, CategoricalParameter) else p.value}'))"
                        )

    def _check_batching(self) -> None:
        """A batch key names parameters of this campaign (the recipe fields the batch shares), and a batch
        station is one the workflow processes on (a synthesize or measure step names it)."""
        if self.lab is None:
            return
        names = self.parameter_names()
        used = {s.device for s in self.workflow if s.kind != "transfer"}
        for kind, batch in self.lab.batching.items():
            unknown = [k for k in batch.batch_key if k not in names]
            if unknown:
                raise ValueError(
                    f"lab.batching.{kind}.batch_key: unknown parameters {unknown} (fix: use some of: "
                    f"{', '.join(names)})"
                )
            if kind not in used:
                raise ValueError(
                    f"lab.batching.{kind}: no synthesize or measure step runs on '{kind}' (steps run on: "
                    f"{', '.join(sorted(d for d in used if d))})"
                )

    def _check_best(self) -> None:
        names = [o.name for o in self.objectives]
        if self.best.primary is not None and self.best.primary not in names:
            raise ValueError(
                f"best.primary: '{self.best.primary}' is not an objective (fix: use one of: {', '.join(names)})"
            )
        if self.best.rule != "weighted":
            for i, o in enumerate(self.objectives):
                if o.weight is not None:
                    raise ValueError(
                        f"objectives[{i}].weight is used only with best.rule: weighted (fix: add "
                        f"'best: {{rule: weighted}}' or remove the weight)"
                    )

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
        lo, hi = (
            (min(param.values), max(param.values))
            if isinstance(param, DiscreteParameter)
            else (param.lower, param.upper)
        )
        if not lo <= belief.center <= hi:
            raise ValueError(f"{where}: center {belief.center} is outside the bounds [{lo}, {hi}] of '{name}'")

    def parameter_names(self) -> list[str]:
        """Names of the values every trial carries (composition groups expand to their components)."""
        out: list[str] = []
        for p in self.parameters:
            out.extend(p.components if isinstance(p, CompositionParameter) else [p.name])
        return out
