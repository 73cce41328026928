"""The scheduler: keeps every station busy, one worker thread (with its own RunEngine) per trial in flight.

:class:`Scheduler` is the public entry point (its constructor and :meth:`Scheduler.run` are what the campaign runner
and the tests call); it builds the parts, each owning one job and handed the shared
:class:`~labloop.run.context.RunContext` explicitly, and runs them. Who does what:

* :class:`~labloop.run.control_loop.ControlLoop` (the thread in :meth:`Scheduler.run`) only decides and dispatches:
  stopping rules, systematic failures (:mod:`labloop.run.failures`), proposals
  (:class:`~labloop.run.proposals.Proposer`, whose asks run on :class:`~labloop.run.workers.AskService`'s thread).
  It alone changes ``stopping`` and never waits on the optimizer or a device;
* :class:`~labloop.run.operator_requests.RequestServer` (the request thread) answers operator requests, an
  emergency stop first, within one poll (~20 ms) of their commit, or at once when its bell is rung;
* :class:`~labloop.run.walk.TrialWalker`'s workers (one thread per trial in flight, with RunEngines from
  :class:`~labloop.run.engines.EnginePool`) do the physical work, reserving stations and the robot from
  :class:`~labloop.run.resources.LabResources`;
* :class:`~labloop.run.lease.LeaseKeeper` (the heartbeat thread) writes the runner's sign of life and renews the
  campaign's lease. A runner that loses its lease interrupts its running steps, starts no physical action and
  writes nothing more about the campaign (for the store it is as if it had been killed), and ends with rule
  ``lease_lost``.

The scheduler receives its collaborators (strategy, store, lab, stopping rules, evaluation, observer) explicitly;
it knows nothing of the campaign runner that built it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from labloop.spec import CampaignSpec
from labloop.store import Store
from labloop.store.schema import Campaign, Trial
from labloop.strategy.base import Observation, Strategy

from .batch_share import share_asks
from .context import RunContext
from .control_loop import REFRESH_S, ControlLoop
from .engines import EnginePool
from .failures import SystematicFailure, failure_cause
from .lab import Lab, station_kinds
from .lease import CampaignLease, LeaseKeeper
from .operator_requests import REQUEST_POLL_S, Bell, RequestServer, StoreBell
from .proposals import Proposer
from .recovery import Resumption
from .stopping import StopDecision, check
from .walk import TrialWalker, call_operator
from .workers import AskService

__all__ = ["REFRESH_S", "REQUEST_POLL_S", "SWITCH_INTERVAL_S", "Scheduler", "failure_cause"]

Observer = Callable[[str, dict[str, Any]], None]
StopRules = Callable[[Sequence[Trial], datetime], "StopDecision | None"]

#: The longest a thread may hold the GIL while another waits for it (Python's default is 5 ms), while a campaign
#: runs. The optimizer computes in Python on its own thread; every GIL handoff on the emergency-stop path (request
#: thread -> store -> every device's stop()) would wait up to this long. See :meth:`Scheduler.run`.
SWITCH_INTERVAL_S = 0.0005

_switch_lock = threading.Lock()
_switch_users = 0  # campaigns running in this process (guarded by _switch_lock)
_switch_saved = 0.0  # the interval found when the first of them started


@contextmanager
def fast_gil_handoff() -> Iterator[None]:
    """Lower the GIL switch interval to ``SWITCH_INTERVAL_S`` (never raise it) while at least one campaign runs in
    this process, and put back the value found before the first one once the last one ends. Why counted: with two
    campaigns in one process (tests, a notebook), each restoring what it saw would leave the lowered value in place
    when the later-started one ends last."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL_S))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


class Scheduler:
    """Builds the parts of one campaign's run and runs them (see the module docstring)."""

    def __init__(
        self,
        *,
        spec: CampaignSpec,
        lab: Lab,
        store: Store,
        campaign: Campaign,
        strategy: Strategy,
        evaluate: Callable[[Trial], Trial],
        prior: Sequence[Observation] = (),
        observer: Observer | None = None,
        stop_rules: StopRules | None = None,
        resumptions: Sequence[Resumption] = (),
        documents: Callable[[str, dict[str, Any]], None] | None = None,
        lease: CampaignLease | None = None,
        bell: Bell | None = None,
    ):
        # lease None: nobody else could act on this campaign (no lease kept)
        self.ctx = ctx = RunContext(
            spec=spec,
            lab=lab,
            store=store,
            campaign=campaign,
            kinds=station_kinds(spec, lab),
            observer=observer,
            lease=lease,
        )
        self.spec, self.lab, self.store, self.campaign, self.strategy = spec, lab, store, campaign, strategy
        self.resumptions = list(resumptions)
        # looked up when called (not bound here): tests replace this module's ``check``
        rules: StopRules = stop_rules or (lambda trials, started: check(spec, trials, started))
        self.engines = EnginePool(ctx, documents)
        self.walker = TrialWalker(ctx, self.engines, evaluate)
        # batch stations with share_proposals: asks constrained to share a batch's key (labloop/run/batch_share.py)
        self.sharer = share_asks(strategy, self.walker.batches, spec.lab.batching if spec.lab else None)
        self.asker = AskService(self.sharer.ask if self.sharer else strategy.ask, on_done=ctx.wake.set)
        self.proposer = Proposer(ctx, self.asker, self.walker.launch, lambda exc: call_operator(ctx, exc), prior)
        if self.sharer is not None:
            self.walker.batches.promised = self.sharer.promises
            self.proposer.answered = self.sharer.release
        # a batch station waits for a queued proposal of its key too (the control thread changes the queue: copy it)
        self.walker.batches.queued = lambda: [t for t, _ in list(self.proposer.queued.values())]
        self._bell = bell if bell is not None else StoreBell(store, campaign.id)
        self.requests = RequestServer(ctx, self.engines, self.walker.launch, self.asker.discard, self._bell)
        failures = SystematicFailure(
            spec.scheduling.pause_after_same_failures,
            {step.label for step in spec.workflow},
            store.steps,
            ctx.pause_for_operator,
        )
        self.loop = ControlLoop(
            ctx, self.proposer, failures, self.walker.workers, self.engines, rules, self.requests.stop
        )
        self.keeper = LeaseKeeper(store, campaign.id, lease, self.loop.on_lease_lost, self._waiting_for)

    # the shared state, for callers that look at a running scheduler
    @property
    def res(self) -> Any:
        return self.ctx.res

    @property
    def paused(self) -> Any:
        return self.ctx.paused

    @property
    def estopped(self) -> Any:
        return self.ctx.estopped

    @property
    def stopping(self) -> Any:
        return self.ctx.stopping

    @property
    def wake(self) -> Any:
        return self.ctx.wake

    def _waiting_for(self) -> str | None:
        c = self.ctx
        return c.need_operator or ("paused by operator" if c.paused.is_set() else None)

    def run(self) -> StopDecision:
        """Run the campaign until a stopping rule fires (rule ``lease_lost`` when another runner took it over).

        While it runs, the process's GIL switch interval is lowered to ``SWITCH_INTERVAL_S`` (a process-wide
        setting: it decides only how soon a thread that waits for the GIL gets it, and no thread's results depend
        on it). Why: the optimizer computes in pure Python on its own thread, and each GIL handoff on the
        emergency-stop path would otherwise wait up to 5 ms. Measured with ``benchmarks/estop_latency.py
        --optimizer cpu-bound`` (estop to every device's stop() while the optimizer computes): without it median
        64 ms, max 778 ms; with it median 34 ms, max 49 ms (8 tries, BENCHMARKS.md). A re-run on a machine at load
        20-35 (docs/benchmarks/archive.md, section 4) was too noisy to tell either way, so it is kept. It is set before any worker starts
        and put back when the last campaign running in this process ends (:func:`fast_gil_handoff`), even when the
        run raises."""
        c = self.ctx
        cid = c.campaign.id
        for r in self.resumptions:  # samples sitting in stations keep them: claim before anyone else can
            if r.held is not None:
                c.res.claim(r.held, r.trial.id)
        # a stop an earlier runner accepted before it died still holds (the campaign's standing control)
        c.stop_requested = c.store.campaign(cid).control == "stop"
        c.store.heartbeat(cid)  # who runs the campaign is known before anything moves
        self.keeper.start()
        try:
            with fast_gil_handoff():
                self.requests.serve()  # requests queued while no process ran (a stop is honoured before anything moves)
                self.requests.start()
                self.walker.resume_gripper_moves(self.resumptions)
                for r in self.resumptions:
                    if not r.in_gripper:
                        self.walker.launch(r.trial, r)
                return self.loop.run()
        finally:
            self.requests.stop()
            self.requests.join(5.0)
            close = getattr(self._bell, "close", None)
            if close is not None:
                close()  # stop listening: this campaign's requests are no longer served here
            self.asker.shutdown()
            self.keeper.stop()
