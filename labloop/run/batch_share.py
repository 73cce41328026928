"""Proposals that share a batch (``lab.batching.KIND.share_proposals``): when the next trial is asked for while a
batch station has a batch with room, the optimizer is asked for a point with that batch's key (its firing
profile) fixed, and the rest of the recipe optimized.

Why: a batch fires with the trials whose ``batch_key`` values are equal (labloop/run/batching.py). With a
continuous key (a peak temperature, a dwell) independent proposals never share one, so every firing holds one
sample and a four-slot furnace works as a one-slot furnace. Constraining the next proposal to an existing key
trades some freedom of the optimizer for furnace slots.

The rule, for each proposal of an ask (one point at a time, each seeing the ones chosen before it as pending):

1. **The batches with room.** For each station kind with ``share_proposals``, group by key the trials that will
   fire there and have not fired: members of open (not yet fired) batches, prospects (walking trials before the
   batch step, proposals queued unlaunched) and the points chosen earlier in this ask. A key with ``count`` such
   trials has room when ``count`` is not a multiple of the capacity (its last batch is part-full).
2. **Which one.** A key with an open batch first (its samples are in the station: it fires part-full soonest),
   then the key with the most trials (the batch nearest full), then the oldest trial. No key with room: the
   proposal is asked unconstrained (it opens a new key, which the next proposals may fill).
3. **Whether to share.** The proposal is asked with the key's parameters fixed (``ask(..., fixed=...)``). With
   ``share_min_ratio`` r > 0 it is also asked unconstrained, and the constrained one is taken when its expected
   improvement is at least r times the unconstrained one's (log-valued acquisitions: ``exp(a_c - a_u)``); where
   the two are not comparable (initial design, seed points, random search, Thompson samples) it shares. With
   r = 0 (default) it always shares, one ask per proposal.
4. **Fallbacks.** A strategy whose ``ask`` takes no ``fixed`` (a plugin written before it), a constrained ask that
   fails (a candidate pool with no free row of that key) or returns nothing: the unconstrained proposal, with why.

While an ask is in progress the keys it targets or has chosen are *promised*: the batch former counts them as
prospects (labloop/run/batch_steps.py), so an open batch does not fire for want of company while the optimizer
thinks (the wait stays bounded by ``max_wait_s``); the promises end when the proposer has stored the answer.

Every proposal asked under sharing carries ``info['batch_share']``: the station, the key, the open batch and the
trials it was constrained to share with, whether it shared, why, and the acquisition ratio when both were asked.
The measure is the stations' mean fill (:meth:`BatchFormer.stats`, benchmarks/batch_walk.py).

What the rule does not do: it does not estimate when the new trial reaches the station (a key whose batch fires
before it arrives was shared for nothing; ``max_wait_s`` bounds how long a batch waits), and proposals awaiting
approval are not prospects (they have not been launched). Nor does it check that the new trial can get through
the steps before the station: proposals are launched in order, so a key's members normally precede later keys,
but when a member fails and a later proposal refills its open batch, that proposal may queue for a first-step
station held by trials that wait for the batch station itself; the batch then fires when ``max_wait_s`` runs out
(the batching rule's bound, as for any prospect; keep it finite).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labloop.errors import LabloopError
from labloop.spec import BatchSpec
from labloop.strategy.base import Proposal, accepts_fixed

from .batch_steps import BatchSteps

log = logging.getLogger(__name__)


@dataclass
class Target:
    """A key of one batch station with room: the fixed values a shared proposal takes."""

    kind: str
    key: tuple[Any, ...]
    fixed: dict[str, Any]
    room: int
    count: int
    batch: str | None = None  # the open batch of that key, if one is in the station
    trials: list[int] = field(default_factory=list)  # trials of the key (loaded or in flight), for the record

    def describe(self) -> dict[str, Any]:
        return {
            "station": self.kind,
            "key": dict(self.fixed),
            "batch": self.batch,
            "with_trials": list(self.trials),
            "room": self.room,
        }


class SharedAsk:
    """The strategy's ``ask``, constrained to share batches by the rule of the module docstring. Runs on the
    strategy's thread; :meth:`promises` is read by the batch formers (any thread), :meth:`release` by the proposer
    (control thread)."""

    def __init__(self, strategy: Any, batches: BatchSteps, kinds: dict[str, BatchSpec]):
        self.strategy = strategy
        self.batches = batches
        self.kinds = {k: s for k, s in kinds.items() if s.share_proposals and k in batches.formers}
        self.fixed_ok = accepts_fixed(strategy)
        self._lock = threading.Lock()
        self._promised: dict[str, list[tuple[Any, ...]]] = {}
        self._warned = False

    # ------------------------------------------------------------------ promises
    def promises(self, kind: str) -> list[tuple[Any, ...]]:
        """Keys of ``kind`` that the ask in progress targets or has chosen (prospects for the batch former)."""
        with self._lock:
            return list(self._promised.get(kind, []))

    def release(self) -> None:
        """The proposer stored (or dropped) the answer: its trials are prospects of their own now."""
        with self._lock:
            self._promised.clear()

    def _promise(self, kind: str, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._promised.setdefault(kind, []).append(key)

    def _unpromise(self, kind: str, key: tuple[Any, ...]) -> None:
        with self._lock:
            keys = self._promised.get(kind, [])
            if key in keys:
                keys.remove(key)

    # ------------------------------------------------------------------ the rule
    def targets(self) -> list[Target]:
        """For each sharing station kind, the key its next proposal should share (rule 1 and 2), if any."""
        out = []
        for kind, spec in self.kinds.items():
            former = self.batches.formers[kind]
            with former.cond:
                opened = [(b.id, b.key, list(b.members)) for b in former.open]
                loaded = {t for b in former.open for t in b.members} | {t for b in former.fired for t in b.members}
                prospects = [p for p in former.prospects() if p.trial not in loaded]
            groups: dict[tuple[Any, ...], Target] = {}
            for bid, key, members in opened:
                g = groups.setdefault(key, Target(kind, key, dict(zip(spec.batch_key, key)), 0, 0))
                g.batch = g.batch or (bid if len(members) < spec.capacity else None)
                g.count += len(members)
                g.trials += members
            for p in prospects:
                g = groups.setdefault(p.key, Target(kind, p.key, dict(zip(spec.batch_key, p.key)), 0, 0))
                g.count += 1
                if p.trial > 0:  # promised points of this ask have no trial yet
                    g.trials.append(p.trial)
            for g in groups.values():
                g.room = (-g.count) % spec.capacity
            open_ = [g for g in groups.values() if g.room > 0]
            if open_:
                best = min(
                    open_,
                    key=lambda g: (g.batch is None, -g.count, min((t for t in g.trials if t > 0), default=1 << 62)),
                )
                out.append(best)
        return out

    def ask(self, n: int, observations: list[Any], pending: list[dict[str, Any]]) -> list[Proposal]:
        """``n`` proposals, one at a time, each shared by the rule where a batch has room."""
        if not self.kinds:
            return list(self.strategy.ask(n, observations, pending))
        # one ask at a time (AskService): the previous answer was stored or dropped (an emergency stop discards an
        # ask without an answer), so no promise of it still stands
        self.release()
        out: list[Proposal] = []
        for _ in range(max(0, n)):
            p = self._one(observations, list(pending) + [dict(q.params) for q in out])
            if p is None:
                break
            out.append(p)
            for kind, spec in self.kinds.items():  # chosen: a prospect-to-be of its key
                if all(k in p.params for k in spec.batch_key):
                    self._promise(kind, tuple(p.params[k] for k in spec.batch_key))
        return out

    def _one(self, observations: list[Any], pending: list[dict[str, Any]]) -> Proposal | None:
        targets = self._consistent(self.targets())
        if not targets:
            free = _first(self.strategy.ask(1, observations, pending))
            return _noted(free, {"shared": False, "why": "no batch has room: this proposal opens a new key"})
        record: dict[str, Any] = {"targets": [t.describe() for t in targets]}
        if not self.fixed_ok:
            free = _first(self.strategy.ask(1, observations, pending))
            why = f"strategy {type(self.strategy).__name__}'s ask takes no `fixed`: proposed unconstrained"
            if not self._warned:  # once a campaign: every proposal records it in its info anyway
                self._warned = True
                log.warning("%s (give ask a `fixed` keyword to share batches)", why)
            return _noted(free, {**record, "shared": False, "why": why})
        fixed = {k: v for t in targets for k, v in t.fixed.items()}
        for t in targets:
            self._promise(t.kind, t.key)
        try:
            shared = _first(self.strategy.ask(1, observations, pending, fixed=fixed))
            problem = None if shared is not None else "the constrained ask returned no point"
        except LabloopError as exc:
            shared, problem = None, f"the constrained ask failed: {exc.problem}"
        finally:
            for t in targets:
                self._unpromise(t.kind, t.key)
        if shared is None:
            free = _first(self.strategy.ask(1, observations, pending))
            return _noted(free, {**record, "shared": False, "why": f"{problem}; proposed unconstrained"})
        r_min = max(self.kinds[t.kind].share_min_ratio for t in targets)
        if r_min <= 0:
            why = "a batch has room and share_min_ratio is 0: always share"
            return _noted(shared, {**record, "shared": True, "why": why})
        free = _first(self.strategy.ask(1, observations, pending))
        ratio = acquisition_ratio(shared, free)
        if ratio is None:
            why = "the acquisition values are not comparable (no model proposal, or not log-valued): shared"
            return _noted(shared, {**record, "shared": True, "why": why, "acquisition_ratio": None})
        if ratio >= r_min:
            why = f"expected improvement ratio {ratio:.3g} >= share_min_ratio {r_min:g}: shared"
            return _noted(shared, {**record, "shared": True, "why": why, "acquisition_ratio": ratio})
        why = f"expected improvement ratio {ratio:.3g} < share_min_ratio {r_min:g}: the unconstrained proposal"
        return _noted(free, {**record, "shared": False, "why": why, "acquisition_ratio": ratio})

    def _consistent(self, targets: list[Target]) -> list[Target]:
        """Targets whose fixed values agree (two stations keyed on one parameter at different values: the first)."""
        out: list[Target] = []
        fixed: dict[str, Any] = {}
        for t in targets:
            if all(fixed.get(k, v) == v for k, v in t.fixed.items()):
                out.append(t)
                fixed.update(t.fixed)
        return out


def acquisition_ratio(shared: Proposal, free: Proposal | None) -> float | None:
    """``EI(shared) / EI(free)`` from two model proposals' log-valued acquisitions, or None when not comparable."""
    if free is None:
        return None
    a, b = shared.info.get("acquisition"), free.info.get("acquisition")
    kind = shared.info.get("acquisition_kind")
    if a is None or b is None or kind != free.info.get("acquisition_kind"):
        return None
    if not str(kind).startswith(("Log", "qLog")) or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return math.exp(min(0.0, float(a) - float(b)))  # above 1 (the optimizer's noise) counts as 1


def _first(proposals: Sequence[Proposal]) -> Proposal | None:
    return proposals[0] if proposals else None


def _noted(p: Proposal | None, note: dict[str, Any]) -> Proposal | None:
    """``p`` with ``info['batch_share']`` (a new proposal: proposals are immutable)."""
    if p is None:
        return None
    return Proposal(dict(p.params), p.source, {**p.info, "batch_share": note})


def share_asks(strategy: Any, batches: BatchSteps, batching: dict[str, BatchSpec] | None) -> SharedAsk | None:
    """A :class:`SharedAsk` when a batch station of the campaign shares proposals, else None (asks as before)."""
    kinds = {k: s for k, s in (batching or {}).items() if s.share_proposals and k in batches.formers}
    return SharedAsk(strategy, batches, kinds) if kinds else None
