"""Objective plugins used by the tests through ``module:attr`` paths (this folder is on sys.path under pytest)."""

from labloop.errors import ObjectiveError
from labloop.run.objectives import SheetResistance, TrialData

_sheet = SheetResistance()


def explode(trial: TrialData) -> float:
    raise RuntimeError("the plugin has a bug")


def refuses_hot_films(trial: TrialData, limit: float = 400.0) -> float:
    """Sheet resistance, but a film deposited above ``limit`` degC counts as QC-rejected."""
    if trial.params["substrate_temperature"] > limit:
        raise ObjectiveError(f"QC rejected: deposited above {limit} degC")
    return _sheet(trial)
