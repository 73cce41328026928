"""A campaign: validate everything up front, then propose -> run -> measure -> store, until a stopping rule fires.

:func:`prepare` does every check that can fail before anything is stored or moved (spec, lab, device limits,
objective plugins, strategy). :class:`CampaignRunner` is the closed loop; it asks the strategy with everything the
store holds, so the store stays the only truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LabloopError, PluginError, SpecError
from .executor import StepFailed, TrialContext, TrialExecutor
from .lab import Lab, build_lab, check_against_lab
from .objectives import TrialData, load_objective
from .spec import CampaignSpec, read_spec_text, spec_from_text, spec_hash
from .stopping import StopDecision, check
from .store import Store
from .store.schema import Campaign, Trial, utcnow
from .strategy.base import Observation, Strategy

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


def load_objectives(spec: CampaignSpec, source: str) -> dict[str, Callable[[TrialData], float]]:
    out = {}
    for field, items in (("objectives", spec.objectives), ("outcome_constraints", spec.outcome_constraints)):
        for i, o in enumerate(items):
            try:
                out[o.name] = load_objective(o.plugin, o.options)
            except PluginError as exc:
                raise SpecError(f"{source}: {field}[{i}].plugin: {exc.problem}", exc.fix) from None
    return out


def prepare_text(text: str, source: str, time_scale: float | None = None, with_lab: bool = True) -> Prepared:
    """Validate a campaign file's text completely; raise :class:`SpecError` before anything is stored."""
    from .strategy import make_strategy  # the strategy package imports botorch: load it only when needed

    spec = spec_from_text(text, source)
    if time_scale is not None and spec.lab is not None:
        spec = spec.model_copy(update={"lab": spec.lab.model_copy(update={"time_scale": time_scale})})
    lab = None
    if with_lab and spec.lab is not None:
        try:
            lab = build_lab(spec.lab, spec.seed)
        except PluginError as exc:
            raise SpecError(f"{source}: lab: {exc.problem}", exc.fix) from None
        check_against_lab(spec, lab, source)
    objectives = load_objectives(spec, source)
    try:
        strategy = make_strategy(spec)
    except SpecError:
        raise
    except LabloopError as exc:
        raise SpecError(f"{source}: {exc.problem}", exc.fix) from None
    return Prepared(spec, text, source, lab, objectives, strategy)


def prepare(path: str | Path, time_scale: float | None = None) -> Prepared:
    return prepare_text(read_spec_text(path), str(path), time_scale)


def observations(trials: list[Trial]) -> list[Observation]:
    """What the strategy learns from: finished trials (done with values, or failed)."""
    out = []
    for t in trials:
        if t.state == "done":
            out.append(Observation(dict(t.params), dict(t.values or {})))
        elif t.state == "failed":
            out.append(Observation(dict(t.params), dict(t.values or {}), failed=True, reason=t.failure_reason))
    return out


def pending(trials: list[Trial]) -> list[dict[str, Any]]:
    return [dict(t.params) for t in trials if t.state in ("proposed", "approved", "running", "measured")]


class CampaignRunner:
    """The sequential closed loop (one trial at a time) over one lab and one RunEngine."""

    def __init__(self, prepared: Prepared, store: Store, campaign: Campaign, observer: Observer | None = None):
        if prepared.lab is None:
            raise SpecError(f"{prepared.source}: this campaign has no lab", "add a 'lab' section to run it")
        self.p = prepared
        self.spec = prepared.spec
        self.store = store
        self.campaign = campaign
        self.observer = observer or (lambda kind, data: None)
        self.executor = TrialExecutor(self.spec, prepared.lab, store)

    @classmethod
    def start(cls, prepared: Prepared, store: Store, observer: Observer | None = None) -> "CampaignRunner":
        campaign = store.create_campaign(prepared.spec.name, prepared.text, spec_hash(prepared.text))
        if prepared.lab is not None and prepared.spec.lab is not None:
            store.audit(campaign.id, "campaign.lab", {"time_scale": prepared.spec.lab.time_scale})
        return cls(prepared, store, campaign, observer)

    def run(self) -> StopDecision:
        cid = self.campaign.id
        while True:
            trials = self.store.trials(cid)
            decision = check(self.spec, trials, self.campaign.created_at)
            if decision is not None:
                self.store.finish_campaign(cid, "finished", decision.reason)
                self.observer("stopped", {"decision": decision})
                return decision
            t0 = time.perf_counter()
            proposal = self.p.strategy.ask(1, observations(trials), pending(trials))[0]
            ask_s = time.perf_counter() - t0
            info = {**proposal.info, "ask_seconds": ask_s}
            trial = self.store.add_trial(cid, proposal.params, proposal.source, info, self.campaign.uid[:8])
            self.observer("proposed", {"trial": trial})
            self.run_trial(trial)

    def run_trial(self, trial: Trial, start_step: int = 0) -> Trial:
        """Run a stored trial's workflow, evaluate its objectives and commit the outcome."""
        assert self.p.lab is not None
        self.store.update_trial(trial.id, state="running", started_at=utcnow())
        ctx = TrialContext(self.campaign.id, self.campaign.uid, self.campaign.name, trial.id, trial.number,
                           trial.sample_id, dict(trial.params), self.p.lab.sample_entry)
        if start_step == 0:
            self.store.locate_sample(self.campaign.id, trial.sample_id, ctx.location, trial.id)
        try:
            self.executor.run(ctx, start_step,
                              on_step=lambda i, s: self.observer("step", {"trial": trial, "index": i, "step": s}))
        except StepFailed as exc:
            self.store.update_trial(trial.id, state="failed", finished_at=utcnow(),
                                    failure_reason=f"{exc.step.label}: {exc.reason}")
            done = self.store.trial(trial.id)
            self.observer("finished", {"trial": done})
            return done
        self.store.update_trial(trial.id, state="measured")
        values, reason = self.evaluate(trial)
        if reason is None:
            self.store.update_trial(trial.id, state="done", values=values, finished_at=utcnow())
        else:
            self.store.update_trial(trial.id, state="failed", values=values, failure_reason=reason,
                                    finished_at=utcnow())
        done = self.store.trial(trial.id)
        self.observer("finished", {"trial": done})
        return done

    def evaluate(self, trial: Trial) -> tuple[dict[str, float], str | None]:
        """Objective plugins on the trial's stored documents. A plugin that raises fails the trial with its reason."""
        data = TrialData(dict(trial.params), self.store.documents(trial_id=trial.id))
        values: dict[str, float] = {}
        for name, fn in self.p.objectives.items():
            try:
                values[name] = float(fn(data))
            except LabloopError as exc:
                return values, f"objective '{name}': {exc.problem}"
            except Exception as exc:  # noqa: BLE001 - a third-party plugin's bug fails one trial, not the campaign
                return values, f"objective '{name}' raised {type(exc).__name__}: {exc}"
        return values, None
