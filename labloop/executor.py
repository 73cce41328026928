"""Run one trial's workflow, step by step, as bluesky plans on a RunEngine, committing as it goes.

Order of commits for each step: step start -> (documents while the run goes) -> step end. The trial's current
step and the sample's location are in the store before the next physical action, so a crash leaves a record that
says exactly which step was running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bluesky import RunEngine
from ophyd.utils import StatusTimeoutError
from ophyd.utils.errors import UnknownStatusFailure

from . import plans
from .errors import LabloopError
from .lab import Lab, setpoint_targets
from .protocols import Move
from .spec import CampaignSpec, StepSpec
from .store import DocumentWriter, Store


@dataclass
class TrialContext:
    """What the executor needs to know about the trial it runs."""

    campaign_id: int
    campaign_uid: str
    campaign_name: str
    trial_id: int
    number: int
    sample_id: str
    params: dict[str, Any]
    location: str
    extra_md: dict[str, Any] = field(default_factory=dict)


class StepFailed(Exception):
    """A step ended in error; ``reason`` is what the operator reads in status and exports."""

    def __init__(self, step: StepSpec, index: int, reason: str):
        self.step, self.index, self.reason = step, index, reason
        super().__init__(f"step {index} ({step.label}) failed: {reason}")


def describe_failure(exc: BaseException) -> str:
    """A one-line reason from whatever a plan raised (FailedStatus wraps the device's own exception)."""
    inner: Any = exc
    for _ in range(4):
        status = inner.args[0] if getattr(inner, "args", None) else None
        nested = None
        if status is not None and hasattr(status, "exception"):
            try:
                nested = status.exception()
            except Exception:  # noqa: BLE001
                nested = None
        nested = nested or inner.__cause__
        if nested is None or nested is inner:
            break
        inner = nested
    if isinstance(inner, (StatusTimeoutError,)):
        return f"timeout: {inner}"
    if isinstance(inner, UnknownStatusFailure):
        return "device reported failure without a reason"
    if isinstance(inner, LabloopError):
        return inner.problem
    return f"{type(inner).__name__}: {inner}"


def recipes_for(spec: CampaignSpec, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Group a trial's parameters by the device they are sent to: ``{device: {field: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, (dev, fld) in setpoint_targets(spec).items():
        if name in params:
            out.setdefault(dev, {})[fld] = params[name]
    return out


class TrialExecutor:
    """Executes workflows against one lab with one RunEngine (one executor per worker thread)."""

    def __init__(self, spec: CampaignSpec, lab: Lab, store: Store, run_engine: RunEngine | None = None):
        self.spec, self.lab, self.store = spec, lab, store
        self.RE = run_engine or RunEngine(context_managers=[])

    def run(self, ctx: TrialContext, start_step: int = 0,
            on_step: Callable[[int, StepSpec], None] | None = None) -> None:
        """Run steps ``start_step..`` of the workflow; raise :class:`StepFailed` on the first failing step."""
        recipes = recipes_for(self.spec, ctx.params)
        for index in range(start_step, len(self.spec.workflow)):
            step = self.spec.workflow[index]
            if on_step:
                on_step(index, step)
            step_id = self.store.start_step(ctx.trial_id, index, step.label, step.kind)
            writer = DocumentWriter(self.store, ctx.campaign_id, ctx.trial_id)
            md = {
                "campaign": ctx.campaign_name, "campaign_uid": ctx.campaign_uid, "trial": ctx.number,
                "trial_id": ctx.trial_id, "sample_id": ctx.sample_id, "step": step.label, "step_index": index,
                **ctx.extra_md,
            }
            try:
                plan, new_location = self._plan(step, ctx, recipes)
                self.RE(plans.tagged(plan, md), writer)
            except Exception as exc:  # noqa: BLE001 - any device/plan error fails this step, not the campaign
                writer.flush()
                reason = describe_failure(exc)
                self.store.finish_step(step_id, "failed", writer.run_uid, reason)
                raise StepFailed(step, index, reason) from exc
            self.store.finish_step(step_id, "done", writer.run_uid)
            if new_location is not None:
                ctx.location = new_location
                self.store.locate_sample(ctx.campaign_id, ctx.sample_id, new_location, ctx.trial_id)

    def _plan(self, step: StepSpec, ctx: TrialContext, recipes: dict[str, dict[str, Any]]):
        if step.kind == "transfer":
            from_dev = self.lab.devices.get(ctx.location)
            to_dev = self.lab.devices.get(step.to)
            move = Move(ctx.sample_id, ctx.location, step.to or "")
            return plans.transfer(self.lab[step.robot], move, from_dev, to_dev), step.to
        device = self.lab[step.device]
        if step.kind == "synthesize":
            return plans.synthesize(device, recipes.get(step.device, {})), None
        return plans.measure(device), None
