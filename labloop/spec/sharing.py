"""Who may see what of an exported campaign: the sharing classes, the data kinds a file may classify, and the
``sharing`` section."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from .base import _Model

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

    default: SharingClass = Field(
        "closed", description="Class of every field not listed: open, shared-closed or closed."
    )
    fields: dict[str, SharingClass] = Field(
        default_factory=dict,
        description="Field -> class. Fields: each parameter (a composition's name stands for its components), "
        "objective and outcome constraint; 'parameters' and 'objectives' for all of them; process_streams, dock, "
        "failure_reason, evidence, source. Trial number, state, sample id, stations and times are always shared.",
    )
    embargo_until: date | None = Field(
        None, description="From this day on (UTC), fields that are closed are shared-closed."
    )
    derived: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Field -> what is derived from it and must be hidden with it: stream names or data keys "
        "(a monitored stream 'chamber_pressure' whose plateau lasts the recipe's 'duration') and 'failure_reason' "
        "(the failure reasons of the steps whose recipe holds the field: 'plasma extinguished at 112.9 min'). A "
        "hidden recipe field not listed here hides every stream and failure reason of the steps whose recipe "
        "holds it (their timing may reveal it); listing it, even with [], narrows that to what is listed.",
    )
