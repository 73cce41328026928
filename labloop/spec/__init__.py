"""The campaign file: a pydantic model of everything a campaign needs, loaded from YAML.

The field types and descriptions are the documentation and the validation. Errors come out as
``experiments/x.yaml: parameters[2].upper: lower (400) must be below upper (300)`` via :func:`load_spec`, never as a
traceback, and nothing is stored or moved before a spec validates.

One module per concern, all re-exported here (``from labloop.spec import X`` is the public way in):
``base`` (the strict base model), ``space`` (parameters, linear constraints), ``objectives`` (objectives, outcome
constraints, the best trial), ``running`` (stopping, scheduling), ``strategy`` (strategy section and options),
``lab`` (devices, stations, workflow steps), ``consumables`` (stocks and per-trial use), ``sharing`` (export
classes), ``campaign`` (the root :class:`CampaignSpec`) and ``loading`` (YAML to spec, errors as lines).
"""

from __future__ import annotations

from .campaign import CampaignSpec
from .consumables import ConsumablesSpec, StockSpec, UseError
from .lab import (
    DEFAULT_RESUME,
    BatchSpec,
    CalibrationPolicy,
    DeviceSpec,
    IdentitySpec,
    LabSpec,
    ResumePolicy,
    StepSpec,
    SuspenderSpec,
)
from .loading import (
    format_validation_error,
    load_spec,
    parse_spec,
    read_spec_text,
    spec_from_text,
    spec_hash,
)
from .objectives import BestSpec, ObjectiveSpec, OutcomeConstraintSpec
from .running import SchedulingSpec, StoppingSpec
from .sharing import (
    SHARING_CLASSES,
    SHARING_GROUPS,
    SHARING_KINDS,
    SharingClass,
    SharingSpec,
)
from .space import (
    CategoricalParameter,
    CompositionParameter,
    ContinuousParameter,
    DiscreteParameter,
    FixedParameter,
    IntegerParameter,
    LinearConstraint,
    Parameter,
)
from .strategy import (
    STRATEGY_OPTIONS,
    BotorchOptions,
    ExpertBelief,
    OptionsError,
    PriorDataSpec,
    RandomOptions,
    StrategySpec,
    checked_options,
    options_problems,
)

__all__ = [
    "DEFAULT_RESUME",
    "SHARING_CLASSES",
    "SHARING_GROUPS",
    "SHARING_KINDS",
    "STRATEGY_OPTIONS",
    "BatchSpec",
    "BestSpec",
    "BotorchOptions",
    "CalibrationPolicy",
    "CampaignSpec",
    "CategoricalParameter",
    "CompositionParameter",
    "ConsumablesSpec",
    "ContinuousParameter",
    "DeviceSpec",
    "DiscreteParameter",
    "ExpertBelief",
    "FixedParameter",
    "IdentitySpec",
    "IntegerParameter",
    "LabSpec",
    "LinearConstraint",
    "ObjectiveSpec",
    "OptionsError",
    "OutcomeConstraintSpec",
    "Parameter",
    "PriorDataSpec",
    "RandomOptions",
    "ResumePolicy",
    "SchedulingSpec",
    "SharingClass",
    "SharingSpec",
    "StepSpec",
    "StockSpec",
    "StoppingSpec",
    "StrategySpec",
    "SuspenderSpec",
    "UseError",
    "checked_options",
    "format_validation_error",
    "load_spec",
    "options_problems",
    "parse_spec",
    "read_spec_text",
    "spec_from_text",
    "spec_hash",
]
