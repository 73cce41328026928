"""A campaign: validate everything up front, then propose -> run -> measure -> store, until a stopping rule fires.

:func:`prepare` does every check that can fail before anything is stored or moved (spec, lab, device limits,
objective plugins, strategy). :class:`CampaignRunner` is the closed loop; it asks the strategy with everything the
store holds, so the store stays the only truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labloop.errors import LabloopError, PluginError, SpecError
from labloop.spec import CampaignSpec, ObjectiveSpec, OutcomeConstraintSpec, read_spec_text, spec_from_text, spec_hash
from labloop.states import TrialState
from labloop.store import Store
from labloop.store.schema import Campaign, Trial, utcnow
from labloop.strategy import make_strategy
from labloop.strategy.base import Observation, Strategy
from labloop.strategy.priors import AUDIT_ACTION, file_priors, from_record, store_priors, to_record

from . import calibration, identity, inventory, provenance
from .best import real_number
from .lab import Lab, RemoteConnector, build_lab, check_against_lab, state_dir_for, with_files_from
from .lease import DEFAULT_TTL_S, CampaignLease
from .liveness import ACTIVE_STATES, ENDED_STATES, liveness
from .objectives import TrialData, load_objective
from .recovery import Resumption, plan_resumptions
from .scheduler import Scheduler
from .stopping import StopDecision

Observer = Callable[[str, dict[str, Any]], None]


@dataclass
class Prepared:
    """A campaign that passed every check: ready to store and run."""

    spec: CampaignSpec
    text: str
    source: str
    lab: Lab | None
    objectives: dict[str, Callable[[TrialData], float]]
    strategy: Strategy
    prior: list[Observation] = field(default_factory=list)  # prior data from CSV files (labloop.strategy.priors)


def load_objectives(spec: CampaignSpec, source: str) -> dict[str, Callable[[TrialData], float]]:
    out = {}
    sections: tuple[tuple[str, Sequence[ObjectiveSpec | OutcomeConstraintSpec]], ...] = (
        ("objectives", spec.objectives),
        ("outcome_constraints", spec.outcome_constraints),
    )
    for section, items in sections:
        for i, o in enumerate(items):
            try:
                out[o.name] = load_objective(o.plugin, o.options)
            except PluginError as exc:
                raise SpecError(f"{source}: {section}[{i}].plugin: {exc.problem}", exc.fix) from None
    return out


def prepare_text(
    text: str,
    source: str,
    time_scale: float | None = None,
    with_lab: bool = True,
    read_prior_files: bool = True,
    state_dir: str | None = None,
    store_url: str | None = None,
    remote: RemoteConnector | None = None,
) -> Prepared:
    """Validate a campaign file's text completely; raise :class:`SpecError` before anything is stored.
    ``read_prior_files=False`` when resuming: the prior data a campaign started with is in its audit log.
    ``state_dir``: where a simulated lab keeps its physical world across restarts (beside the store:
    :func:`~labloop.run.lab.state_dir_for`); None keeps it in memory unless the lab's options name a file.
    ``remote``: how remote lab devices are connected (the caller's choice: :data:`~labloop.run.lab.RemoteConnector`)."""
    spec = spec_from_text(text, source)
    if time_scale is not None and spec.lab is not None:
        spec = spec.model_copy(update={"lab": spec.lab.model_copy(update={"time_scale": time_scale})})
    lab = None
    if spec.lab is not None and any(d.file for d in spec.lab.devices.values()):
        spec = spec.model_copy(update={"lab": with_files_from(spec.lab, source)})
    if with_lab and spec.lab is not None:
        try:
            lab = build_lab(
                spec.lab,
                spec.seed,
                state_dir=state_dir,
                name=spec.name,
                store_url=store_url or spec.store,
                remote=remote,
            )
        except PluginError as exc:
            raise SpecError(f"{source}: lab: {exc.problem}", exc.fix) from None
        except SpecError as exc:  # the lab's options (lab.options.x): say which campaign file they are in
            if exc.problem.startswith(f"{source}:"):
                raise
            raise SpecError(f"{source}: {exc.problem}", exc.fix) from None
        check_against_lab(spec, lab, source)
    objectives = load_objectives(spec, source)
    try:
        strategy = make_strategy(spec)
        prior = file_priors(spec) if read_prior_files else []
    except SpecError:
        raise
    except LabloopError as exc:
        raise SpecError(f"{source}: {exc.problem}", exc.fix) from None
    return Prepared(spec, text, source, lab, objectives, strategy, prior)


def prepare(
    path: str | Path,
    time_scale: float | None = None,
    state_dir: str | None = None,
    remote: RemoteConnector | None = None,
) -> Prepared:
    return prepare_text(read_spec_text(path), str(path), time_scale, state_dir=state_dir, remote=remote)


def lab_key(spec: CampaignSpec) -> str | None:
    """What identifies the physical lab a campaign runs in: its lab section, less the time scale."""
    if spec.lab is None:
        return None
    return json.dumps(spec.lab.model_dump(exclude={"time_scale"}, mode="json"), sort_keys=True)


def refuse_second_runner(spec: CampaignSpec, store: Store, source: str, except_id: int | None = None) -> None:
    """One runner per lab: a second process driving the same robot and stations would fight the first for them."""
    key = lab_key(spec)
    for c in store.campaigns():
        if c.id == except_id or c.state not in ACTIVE_STATES:
            continue
        life = liveness(c)
        if not life.present:
            continue
        try:
            other = lab_key(spec_from_text(c.spec_text, f"<stored campaign {c.name}>"))
        except LabloopError:
            other = None
        if other == key:
            raise LabloopError(
                f"{source}: campaign '{c.name}' (id {c.id}) already runs this lab: {life.describe()}",
                f"wait for it to end, or stop it with `labloop stop --campaign {c.id}`; one runner per lab",
            )


class CampaignRunner:
    """The closed loop over one lab: a :class:`~labloop.run.scheduler.Scheduler` runs trials (in parallel where the lab
    allows); this class creates or resumes the stored campaign and turns measured trials into objective values.

    It holds the campaign's lease (:class:`~labloop.run.lease.CampaignLease`) while it acts on it: taken before
    :meth:`resume` changes anything (or when :meth:`run` starts), renewed by the heartbeat, released on a clean end.
    ``lease_ttl`` (seconds) is how long a dead runner's campaign stays locked before another may take it over."""

    lease_ttl: float = DEFAULT_TTL_S
    #: Break at once the lease of a holder whose process is provably gone (this host only); False waits for every
    #: lease to expire, as a runner on another machine must.
    break_dead_leases: bool = True

    def __init__(self, prepared: Prepared, store: Store, campaign: Campaign, observer: Observer | None = None):
        if prepared.lab is None:
            raise SpecError(f"{prepared.source}: this campaign has no lab", "add a 'lab' section to run it")
        self.p = prepared
        self.spec = prepared.spec
        self.store = store
        self.campaign = campaign
        self.observer = observer or (lambda kind, data: None)
        self.prior: list[Observation] = []  # prior data, given to the strategy with the campaign's own trials
        #: Called with every document of every run as it is emitted (the daemon's live stream); None: nobody asks.
        self.documents: Callable[[str, dict[str, Any]], None] | None = None
        self.lease: CampaignLease | None = None

    @classmethod
    def start(
        cls, prepared: Prepared, store: Store, observer: Observer | None = None, user: str | None = None
    ) -> CampaignRunner:
        """``user``: who submitted the campaign (a daemon's verified user); it is in every run's start document."""
        refuse_second_runner(prepared.spec, store, prepared.source)
        try:  # another campaign named as prior data must exist and fit: checked before anything is stored
            from_store, skipped = store_priors(prepared.spec, store)
        except LabloopError as exc:
            raise SpecError(f"{prepared.source}: {exc.problem}", exc.fix) from None
        campaign = store.create_campaign(prepared.spec.name, prepared.text, spec_hash(prepared.text), user)
        store.open_stocks(campaign.id)  # lab.consumables on the shelf (labloop/store/inventory.py)
        # who submitted it, for the provenance of every run (read once here, never per step)
        provenance.register(campaign.uid, campaign.spec_hash, provenance.submitter(store.audit_log(campaign.id)))
        if prepared.lab is not None and prepared.spec.lab is not None:
            store.audit(campaign.id, "campaign.lab", {"time_scale": prepared.spec.lab.time_scale})
            # a calibration recorded before this run (`labloop calibrate --file`, an earlier campaign) still in force
            restored = calibration.restore(store, prepared.lab, prepared.spec.lab.calibration)
            if restored:
                store.audit(campaign.id, "calibration.restored", {"devices": restored})
        runner = cls(prepared, store, campaign, observer)
        runner.prior = prepared.prior + from_store
        if runner.prior:
            store.audit(campaign.id, AUDIT_ACTION, {"observations": to_record(runner.prior), "skipped": skipped})
        return runner

    @classmethod
    def resume(
        cls,
        store: Store,
        campaign: Campaign,
        time_scale: float | None = None,
        observer: Observer | None = None,
        lease_ttl: float | None = None,
        remote: RemoteConnector | None = None,
    ) -> tuple[CampaignRunner, list[Any]]:
        """Rebuild a stored campaign (from its verbatim campaign file) and settle its unfinished trials. Takes the
        campaign's lease first (LeaseHeld, naming the holder and its expiry, while another runner holds it).
        ``remote``: how its remote lab devices are connected (as for :func:`prepare_text`)."""
        lease = CampaignLease.acquire(store, campaign.id, lease_ttl or cls.lease_ttl, cls.break_dead_leases)
        try:
            campaign = store.campaign(campaign.id)  # as it is now that this runner holds it
            if campaign.state in ENDED_STATES:  # another runner ended it meanwhile: never reopen it
                raise LabloopError(
                    f"campaign '{campaign.name}' (id {campaign.id}) has already ended ({campaign.stop_reason})",
                    "start a new campaign with `labloop run FILE`",
                )
            return cls._resume(store, campaign, time_scale, observer, lease, remote)
        except BaseException:
            lease.release()
            raise

    @classmethod
    def _resume(
        cls,
        store: Store,
        campaign: Campaign,
        time_scale: float | None,
        observer: Observer | None,
        lease: CampaignLease,
        remote: RemoteConnector | None = None,
    ) -> tuple[CampaignRunner, list[Any]]:
        audit = store.audit_log(campaign.id)
        provenance.register(campaign.uid, campaign.spec_hash, provenance.submitter(audit))
        if time_scale is None:
            lab_audit = [a for a in audit if a.action == "campaign.lab"]
            time_scale = lab_audit[-1].detail.get("time_scale") if lab_audit else None
        prepared = prepare_text(
            campaign.spec_text,
            f"<stored campaign {campaign.name}>",
            time_scale,
            read_prior_files=False,
            state_dir=state_dir_for(store.url),
            store_url=store.given_url,  # its remote devices' agents are in this store
            remote=remote,
        )
        runner = cls(prepared, store, campaign, observer)
        runner.lease, runner.lease_ttl = lease, lease.ttl
        assert prepared.lab is not None
        calibration.restore(store, prepared.lab)  # the latest recorded calibrations are in force again
        recorded = [a for a in audit if a.action == AUDIT_ACTION]
        runner.prior = from_record(recorded[-1].detail["observations"]) if recorded else []
        assert prepared.lab is not None
        stations = {n for n, d in prepared.lab.devices.items() if hasattr(d, "sample")}
        lease.renew()  # building the lab took a while: still ours? (LeaseLost before anything is settled)
        lease.check()
        resumptions = plan_resumptions(
            prepared.spec,
            store,
            campaign,
            prepared.lab.sample_entry,
            stations,
            set(prepared.lab.places),
            identity.locating(prepared.spec, prepared.lab),
            prepared.lab.program_of,
        )
        # An operator's stop sent while no process ran is honoured now; a pause or an emergency stop is lifted by
        # the very act of resuming.
        control = "stop" if campaign.control == "stop" else "run"
        for req in store.pending_requests(campaign.id):
            if req.action in ("pause", "resume", "estop"):
                store.answer_request(req.id, "refused", "superseded: `labloop resume` restarted the campaign")
        store.update_campaign(
            campaign.id, state="running", control=control, note=None, finished_at=None, stop_reason=None
        )
        store.audit(campaign.id, "campaign.resume", {"trials": [r.trial.number for r in resumptions]})
        return runner, resumptions

    def run(self, resumptions: list[Resumption] | None = None) -> StopDecision:
        """Run until a stopping rule fires (rule ``lease_lost`` when another runner took the campaign over)."""
        assert self.p.lab is not None
        if self.lease is not None and not self.lease.ok():  # held too long unrenewed: take it again if still ours
            self.store.release_lease(self.campaign.id, self.lease.holder, self.lease.token)
            self.lease = None
        if self.lease is None:
            self.lease = CampaignLease.acquire(self.store, self.campaign.id, self.lease_ttl, self.break_dead_leases)
        return Scheduler(
            spec=self.spec,
            lab=self.p.lab,
            store=self.store,
            campaign=self.campaign,
            strategy=inventory.guard(self.p.strategy, self.spec, self.store, self.campaign.id),
            evaluate=self.finish_measured,
            prior=self.prior,
            observer=self.observer,
            resumptions=resumptions or [],
            documents=self.documents,
            lease=self.lease,
        ).run()

    def finish_measured(self, trial: Trial) -> Trial:
        """Evaluate a measured trial's objectives from its stored documents and commit the outcome
        (measured -> done, or failed with the plugin's reason)."""
        values, reason = self.evaluate(trial)
        if reason is None:
            return self.store.transition(
                trial.id, TrialState.MEASURED, TrialState.DONE, values=values, finished_at=utcnow()
            )
        return self.store.transition(
            trial.id, TrialState.MEASURED, TrialState.FAILED, values=values, failure_reason=reason, finished_at=utcnow()
        )

    def evaluate(self, trial: Trial) -> tuple[dict[str, float], str | None]:
        """Objective plugins on the trial's stored documents. A plugin that raises, or returns anything but a finite
        real number (NaN, inf, None, a string even if it reads as a number, a bool), fails the trial with a reason
        naming the plugin and what it returned: a trial is never ``done`` without a value for each objective."""
        data = TrialData(dict(trial.params), self.store.documents(trial_id=trial.id))
        values: dict[str, float] = {}
        for name, fn in self.p.objectives.items():
            what = self._plugin_label(name)
            try:
                result = fn(data)
            except LabloopError as exc:
                return values, f"{what}: {exc.problem}"
            except Exception as exc:  # noqa: BLE001 - a third-party plugin's bug fails one trial, not the campaign
                return values, f"{what} raised {type(exc).__name__}: {exc}"
            value = real_number(result)
            if value is None:
                return values, (
                    f"{what} returned {result!r} ({type(result).__name__}), not a finite real number; "
                    f"fix the plugin or the measurement it reads"
                )
            values[name] = value
        return values, None

    def _plugin_label(self, name: str) -> str:
        """``objective 'x' (plugin 'p')`` or ``outcome constraint 'x' (plugin 'p')``: who computed a value."""
        for kind, items in (("objective", self.spec.objectives), ("outcome constraint", self.spec.outcome_constraints)):
            for o in items:
                if o.name == name:
                    return f"{kind} '{name}' (plugin '{o.plugin}')"
        return f"objective '{name}'"
