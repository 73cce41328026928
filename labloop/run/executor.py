"""Run one step of a trial as a bluesky plan on a RunEngine, committing around it.

Order of commits for a step: step start (with the device doing it) -> documents while the run goes -> step end ->
the sample's new location. All of it is in the store before the next physical action, so a crash leaves a record
that says exactly which step was running where. One executor owns one RunEngine; a lab running trials in
parallel has one executor per worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import bluesky.run_engine as _run_engine_module
from bluesky import RunEngine

from labloop.contract import Move
from labloop.errors import LabloopError
from labloop.spec import CampaignSpec, StepSpec
from labloop.store import DocumentWriter, Store
from labloop.store.leases import LeaseLost

from . import calibration, hookpoints, plans, provenance
from .lab import Lab, setpoint_targets
from .plans import describe_failure

# A failed step is recorded in the store with its reason and shown to the operator as one line. bluesky's own
# "Run aborted" traceback (logged with no handler configured, so Python prints it to stderr) would read like a
# crash of labloop; keep it out of the operator's terminal unless someone configures logging on purpose.
for _name in ("bluesky", "ophyd"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
_log = logging.getLogger("bluesky.RE.console")


def _console_to_log(*args: Any, **_kw: Any) -> None:
    _log.info(" ".join(str(a) for a in args))


def route_run_engine_console() -> None:
    """Send the RunEngine's console lines to the ``bluesky.RE.console`` logger instead of stdout.

    The RunEngine talks to an interactive user with print() ("Pausing...", "Halting: skipping cleanup...",
    "Suspending..."). In a lab run by labloop nobody sits at its prompt: those lines would interleave with the
    operator's live view. Why a patch and not a logger setting: bluesky (checked in 1.15.1, ``run_engine.py``)
    calls the builtin ``print`` for these lines, not its ``bluesky`` / ``bluesky.RE`` loggers, and the RunEngine
    has no option to silence them (``pause_msg`` covers only the help text after a pause). So this is the
    narrowest patch there is: a module global named ``print`` in ``bluesky.run_engine`` shadows the builtin for
    that module alone (stdout and every other module's print are untouched). It is installed when labloop builds
    its first executor (a process that runs steps), not when labloop is imported, and only once."""
    if getattr(_run_engine_module, "print", None) is not _console_to_log:
        _run_engine_module.print = _console_to_log  # type: ignore[attr-defined]  # the shadowing global, on purpose


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

    def __init__(self, step: StepSpec, index: int, reason: str, device: str | None = None):
        self.step, self.index, self.reason, self.device = step, index, reason, device
        super().__init__(f"step {index} ({step.label}) failed: {reason}")


def recipes_for(spec: CampaignSpec, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Group a trial's parameters by the device or station kind they are sent to: ``{target: {field: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, (dev, fld) in setpoint_targets(spec).items():
        if name in params:
            out.setdefault(dev, {})[fld] = params[name]
    return out


class TrialExecutor:
    """Executes steps against one lab with one RunEngine."""

    def __init__(
        self,
        spec: CampaignSpec,
        lab: Lab,
        store: Store,
        run_engine: RunEngine | None = None,
        on_alert: Callable[[str, str, dict[str, Any]], None] | None = None,
    ):
        self.spec, self.lab, self.store = spec, lab, store
        route_run_engine_console()
        self.RE = run_engine or RunEngine(context_managers=[])
        self.RE.pause_msg = ""  # bluesky's help for an interactive user; stored failure reasons stay one line
        #: Safety-relevant failures (a RunEngine that will not halt, a device that will not stop): (action,
        #: message, detail) -> audited and shown by the scheduler.
        self.on_alert = on_alert or _log_alert
        self.time_scale = spec.lab.time_scale if spec.lab else 1.0
        #: Asked right after a step's start is committed and before anything moves: True cancels the step
        #: (an emergency stop that arrived in between must not let a deposition begin).
        self.abort_check: Callable[[], bool] = lambda: False
        #: Raises (the campaign's LeaseLost) when this process may no longer act on the campaign: asked before a
        #: step starts, before its plan runs and before a failure is recorded (a runner that lost its lease writes
        #: nothing more; the lease's new holder resumes the step as after a crash).
        self.guard: Callable[[], None] = lambda: None
        #: The scheduler's calibration verdict per device, given just before a step (False: fresh or calibrated at
        #: the gate; True: expired and the operator went on without calibrating). The step's flag follows the
        #: verdict, not a second reading of the clock: in simulated time the few milliseconds between the two are
        #: lab minutes, and a calibration the gate found fresh could otherwise be flagged as expired.
        self.verdicts: dict[str, bool] = {}
        self._provenance = provenance.Recorder()  # each device's driver/version/serial, computed once
        self._origin: provenance.Origin | None = None  # the campaign's part (user, spec hash), once per campaign

    def interrupt(self) -> None:
        """Emergency stop from another thread: end the run now, even one held by a suspender."""
        if self.RE.state == "idle":
            return
        try:
            self.RE.request_pause(defer=False)
        except Exception as exc:  # noqa: BLE001 - reported, never swallowed: an operator must check this run
            if self.RE.state != "idle":  # it did not just finish by itself
                self.on_alert(
                    "estop.engine_failed",
                    f"a RunEngine did not take the emergency stop: {type(exc).__name__}: {exc}",
                    {"state": str(self.RE.state)},
                )

    def _reset_engine(self) -> None:
        """After an interrupted or failed run, leave the RunEngine idle for the next step."""
        if self.RE.state != "idle":
            try:
                self.RE.halt()
            except Exception as exc:  # noqa: BLE001 - reported: this executor may not run another step safely
                self.on_alert(
                    "engine.halt_failed",
                    f"a RunEngine failed to halt after a failed step: {type(exc).__name__}: {exc}",
                    {"state": str(self.RE.state)},
                )

    def run_cleanup(self, ctx: TrialContext, robot: str, place: str) -> None:
        """Move a failed trial's sample out of the station it blocks, as a recorded step (kind 'cleanup')."""
        index = len(self.spec.workflow)
        label = f"cleanup:{place}"
        self.guard()
        step_id = self.store.start_step(ctx.trial_id, index, label, "cleanup", 1, robot)

        def plan() -> Any:
            return plans.transfer(
                self.lab[robot],
                Move(ctx.sample_id, ctx.location, place),
                self.lab.devices.get(ctx.location),
                None,
            )

        self._record_run(
            ctx,
            step_id,
            StepSpec(kind="transfer", to=place, robot=robot),
            index,
            label,
            1,
            robot,
            plan,
            place,
            self._transfer_devices(robot, ctx.location, place),
        )

    def run_step(
        self,
        ctx: TrialContext,
        index: int,
        device: str | None = None,
        destination: str | None = None,
        attempt: int = 1,
        park: bool = False,
        batch: dict[str, Any] | None = None,
    ) -> str | None:
        """Run workflow step ``index`` for ``ctx`` on ``device`` (a processing step) or to ``destination`` (a
        transfer); raise :class:`StepFailed` when it ends in error. Updates ``ctx.location`` after a transfer.
        Returns the run's uid.

        ``park`` moves the sample of transfer step ``index`` to a buffer place instead (recorded as a step of kind
        'buffer' with the same index: the transfer itself is still to do).

        ``batch`` (a synthesize step on a batch station, run by the batch's leader for every member): what the
        station's recipe gets beside the shared fields (``samples``, ``batch``), and what the run's start document
        records as ``batch`` (the id, members and samples), the one place that ties the members' step rows to this
        run besides the run uid they all end with: no column of the store needed changing."""
        step = self.spec.workflow[index]
        actor = step.robot if step.kind == "transfer" else (device or step.device)
        label, kind = (f"buffer:{destination}", "buffer") if park else (step.label, step.kind)
        self.guard()
        step_id = self.store.start_step(ctx.trial_id, index, label, kind, attempt, actor)
        hookpoints.reached("step_start", label)
        if self.abort_check():
            self.store.finish_step(step_id, "interrupted", None, "cancelled before the device started")
            raise StepFailed(step, index, "cancelled before the device started (emergency stop)", actor)
        timeout = step.timeout / self.lab.time_scale(actor, self.time_scale) if step.timeout else None
        dest = destination or step.to or ""

        def plan() -> plans.Plan:
            if step.kind == "transfer":
                return plans.transfer(
                    self.lab[step.robot],
                    Move(ctx.sample_id, ctx.location, dest),
                    self.lab.devices.get(ctx.location),
                    self.lab.devices.get(dest),
                    timeout,
                )
            assert actor is not None  # a synthesize or measure step names its device (the spec requires it)
            if step.kind == "synthesize":
                recipe = recipes_for(self.spec, ctx.params).get(step.device or "", {})
                if batch is not None:
                    recipe = {**recipe, "samples": list(batch["samples"]), "batch": batch["batch"]}
                    if batch.get("reattach"):  # follow the program a crashed process started; write nothing
                        recipe["reattach"] = True
                return plans.synthesize(self.lab[actor], recipe, timeout)
            return plans.measure(self.lab[actor], timeout)

        # A reading (or synthesis) on a device whose calibration is older than the campaign's max_age is flagged in
        # its run's start document (and so in `labloop export`): the scheduler let it through (on_expiry: pause,
        # then an operator resumed without calibrating) or the device cannot tell its calibration's age.
        verdict = self.verdicts.pop(actor or "", None)
        expired = verdict if verdict is not None else self.calibration_expired(actor)
        extra: dict[str, Any] = {"calibration_expired": True} if step.kind != "transfer" and expired else {}
        if batch is not None:
            extra["batch"] = dict(batch)
        used = (
            self._transfer_devices(step.robot or "", ctx.location, dest)
            if step.kind == "transfer"
            else [
                (
                    actor or "",
                    self.lab.devices.get(actor or ""),
                    "station" if step.kind == "synthesize" else "instrument",
                )
            ]
        )
        run_uid = self._record_run(
            ctx,
            step_id,
            step,
            index,
            label,
            attempt,
            actor,
            plan,
            dest if step.kind == "transfer" else None,
            used,
            extra,
        )
        hookpoints.reached("step_end", label)
        return run_uid

    def calibration_expired(self, device: str | None) -> bool:
        """Is ``device``'s calibration older than the campaign's ``lab.calibration.<device>.max_age``?"""
        policy = self.spec.lab.calibration.get(device or "") if self.spec.lab is not None else None
        if policy is None:
            return False
        age = calibration.age_s(self.lab.devices.get(device or ""))
        return age is None or age > policy.max_age

    def run_calibration(self, ctx: TrialContext, index: int, device: str) -> None:
        """Calibrate ``device`` before workflow step ``index`` as a recorded step (kind ``calibrate``, label
        ``calibrate:<device>``, same index: the step it precedes is still to do, for resume), then record the
        calibration (table ``calibrations``, audit ``calibration.recorded``, user ``labloop``). A failed or
        malformed calibration fails the step (StepFailed) and records no calibration."""
        step = self.spec.workflow[index]
        label = f"calibrate:{device}"
        self.guard()
        step_id = self.store.start_step(ctx.trial_id, index, label, "calibrate", 1, device)
        if self.abort_check():
            self.store.finish_step(step_id, "interrupted", None, "cancelled before the device started")
            raise StepFailed(step, index, "cancelled before the device started (emergency stop)", device)
        dev = self.lab[device]
        timeout = step.timeout / self.lab.time_scale(device, self.time_scale) if step.timeout else None
        self._record_run(
            ctx,
            step_id,
            step,
            index,
            label,
            1,
            device,
            lambda: plans.calibrate(dev, None, timeout),
            None,
            [(device, dev, "instrument")],
        )
        try:
            cal = calibration.check_result(device, dev, getattr(dev, "calibration", None))
        except LabloopError as exc:
            raise StepFailed(step, index, exc.problem, device) from exc
        run_uid = self.store.steps(ctx.trial_id)[-1].run_uid if self.store.steps(ctx.trial_id) else None
        calibration.record(self.store, ctx.campaign_id, device, cal, run_uid, user="labloop")

    def _record_run(
        self,
        ctx: TrialContext,
        step_id: int,
        step: StepSpec,
        index: int,
        label: str,
        attempt: int,
        actor: str | None,
        make_plan: Callable[[], plans.Plan],
        moved_to: str | None,
        used: list[tuple[str, Any, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str | None:
        """Run one tagged plan with a document writer; commit the step's end (and, for a move, where the sample
        went, in the same transaction), or its failure with the reason and raise :class:`StepFailed`. Returns the
        run's uid."""
        writer = DocumentWriter(self.store, ctx.campaign_id, ctx.trial_id, flush_at_stop=False)
        md = {
            "campaign": ctx.campaign_name,
            "campaign_uid": ctx.campaign_uid,
            "trial": ctx.number,
            "trial_id": ctx.trial_id,
            "sample_id": ctx.sample_id,
            "step": label,
            "step_index": index,
            "attempt": attempt,
            "provenance": self._run_provenance(ctx, used or []),
            **ctx.extra_md,
            **(extra or {}),
        }
        try:
            self.guard()
            # the documents are plain dicts at run time; bluesky types them as TypedDicts, not dict[str, Any]
            self.RE(plans.tagged(make_plan(), md), cast("Callable[[str, Any], Any]", writer))
        except Exception as exc:
            if isinstance(exc, LeaseLost):
                raise
            self._reset_engine()
            self.guard()  # interrupted because the lease was lost: record nothing
            writer.flush()
            reason = describe_failure(exc)
            if reason.startswith("timeout"):
                self._stop_after_timeout(actor or "")  # a hung device must be free for the retry
            self.store.finish_step(step_id, "failed", writer.run_uid, reason)
            raise StepFailed(step, index, reason, actor) from exc
        moved = None
        if moved_to is not None:
            ctx.location = moved_to
            moved = (ctx.campaign_id, ctx.sample_id, moved_to, ctx.trial_id)
        docs, points = writer.take()
        assets = writer.take_assets()
        self.store.finish_step(
            step_id,
            "done",
            writer.run_uid,
            moved=moved,
            documents=(ctx.campaign_id, ctx.trial_id, docs, points) if docs else None,
            assets=(ctx.campaign_id, ctx.trial_id, assets) if assets else None,
        )
        return writer.run_uid

    def _transfer_devices(self, robot: str, source: str, destination: str) -> list[tuple[str, Any, str]]:
        """The devices a transfer uses: the robot, and the stations it takes the sample from and puts it on."""
        devs = self.lab.devices
        return [
            (robot, devs.get(robot), "robot"),
            (source, devs.get(source), "source"),
            (destination, devs.get(destination), "destination"),
        ]

    def _run_provenance(self, ctx: TrialContext, used: list[tuple[str, Any, str]]) -> dict[str, Any]:
        """The run's provenance (``md["provenance"]``): no store query but the first of a campaign not registered
        by its runner (:func:`provenance.register`)."""
        if self._origin is None or self._origin.campaign_uid != ctx.campaign_uid:
            self._origin = provenance.origin(self.store, ctx.campaign_uid, ctx.campaign_id)
        return self._provenance.for_run(self._origin, used)

    def _stop_after_timeout(self, name: str) -> None:
        stop = getattr(self.lab.devices.get(name), "stop", None)
        if callable(stop):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - the step has failed already; reported, not swallowed
                self.on_alert(
                    "device.stop_failed",
                    f"device '{name}' timed out and did not accept stop(): {type(exc).__name__}: {exc}",
                    {"device": name},
                )


def _log_alert(action: str, message: str, detail: dict[str, Any]) -> None:
    """Without a scheduler to audit it, an alert still reaches the log at error level."""
    logging.getLogger("labloop").error("%s: %s %s", action, message, detail)
