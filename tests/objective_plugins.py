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


class Returns:
    """Returns ``value`` (``kind`` picks it) whatever the trial: a plugin whose result is not a real number."""

    VALUES = {
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "none": None,
        "string": "12.5",
        "bool": True,
        "list": [1.0],
        "complex": 1 + 2j,
    }

    def __init__(self, kind: str):
        self.value = self.VALUES[kind]

    def __call__(self, trial: TrialData):
        return self.value
