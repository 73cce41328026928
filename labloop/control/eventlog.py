"""A campaign process's side of the live stream: every document and campaign event, numbered, into the store.

Why the child writes to the store and the daemon tails it (rather than the child sending to the daemon over a
socket): the child must never block on the network or on the daemon. A queue put is all a step pays; one writer
thread commits whatever accumulated while it committed the previous batch, in one transaction. The daemon, restarted or not, finds
every event in the ``events`` table, in ``seq`` order, and publishes it; a subscriber that missed some asks for
them (``missed``) and gets exactly the rows the stream carried. Children on other hosts sharing a PostgreSQL store
work the same way. The price: an event reaches subscribers one commit plus one daemon poll (~10 ms) later, and a
``kill -9`` loses the stream events of the last few milliseconds (never documents or trials: those are committed
by the run core on its own path).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from labloop.data.view import best_entry
from labloop.run.best import feasible
from labloop.spec import CampaignSpec
from labloop.store import Store
from labloop.store.events import add_events, last_seq

#: At most one stream commit per this many seconds: each is an fsync that the runner's own commits (step ends,
#: request answers) would otherwise queue behind; the latency it adds is at most this.
COMMIT_EVERY_S = 0.02


def _trial(spec: CampaignSpec, t: Any, state: Any = None, **extra: Any) -> dict[str, Any]:
    """A trial as its events carry it. ``state``: the state it has now, where the object handed over is older
    (the scheduler announces a start with the trial it read before the transition to running)."""
    return {
        "number": t.number,
        "state": str(state or t.state),
        "params": t.params,
        "values": t.values,
        "source": t.source,
        "sample_id": t.sample_id,
        "failure_reason": t.failure_reason,
        "feasible": feasible(spec, t.values),
        **extra,
    }


def _reason(reason: Any) -> str:
    """A step's end reason as an operator reads it: a bluesky ``Status(obj=RemoteDevice(...), done=True,
    success=False)`` repr says nothing; the store's failure reason (the step's ``failure`` event) says what."""
    text = str(reason or "")
    return "the device reported a failure" if text.startswith("Status(") else text


class EventLog:
    """Numbers events per campaign and writes them from its own thread. ``observer`` and ``document`` are the
    run core's callbacks (scheduler observer, RunEngine subscription); both return at once."""

    def __init__(self, store: Store, campaign_id: int, spec: CampaignSpec):
        self.store, self.campaign_id, self.spec = store, campaign_id, spec
        self._seq = last_seq(store, campaign_id)  # a resumed campaign continues its numbering
        self._lock = threading.Lock()
        self._q: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        # the trials so far, from the store: a resumed process's best is the campaign's, never only its own
        self._trials: dict[int, Any] = {t.number: t for t in store.trials(campaign_id)}
        self._best = best_entry(spec, list(self._trials.values()))
        self._runs: dict[str, dict[str, Any]] = {}  # run uid -> trial/step/sample of its start document
        self._moves: dict[tuple[Any, Any], str] = {}  # (trial, step) -> where the transfer puts the sample
        self._thread = threading.Thread(target=self._write, name="labloop-eventlog", daemon=True)
        self._thread.start()

    def emit(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:  # numbering and enqueueing together: the queue is in seq order
            self._seq += 1
            self._q.put(
                {"campaign_id": self.campaign_id, "seq": self._seq, "at": datetime.now(UTC), "kind": kind, "body": body}
            )

    def document(self, name: str, doc: dict[str, Any]) -> None:
        """A RunEngine subscription: the document goes out unchanged, plus step start/end as campaign events."""
        self.emit("document", {"name": name, "doc": doc})
        if name == "start":
            self._runs[doc["uid"]] = {
                "trial": doc.get("trial"),
                "step": doc.get("step"),
                "sample": doc.get("sample_id"),
            }
        elif name == "stop":
            run = self._runs.pop(doc.get("run_start", ""), {})
            step = str(run.get("step") or "")
            to = self._moves.pop((run.get("trial"), step), None) or (step[7:] if step.startswith("buffer:") else None)
            moved = {"location": to} if to and doc.get("exit_status") == "success" else {}
            self.emit(
                "step_end",
                {**run, **moved, "exit_status": doc.get("exit_status"), "reason": _reason(doc.get("reason", ""))},
            )

    def observer(self, kind: str, data: dict[str, Any]) -> None:
        """The scheduler's observer, turned into stream events."""
        if kind == "proposed":
            self.emit("proposal", {"trial": _trial(self.spec, data["trial"]), "approval": data.get("approval", False)})
        elif kind == "approved":
            self.emit("approval", {"trial": _trial(self.spec, data["trial"])})
        elif kind == "started":
            where = {"location": data["location"]} if data.get("location") else {}
            self.emit("trial_start", {"trial": _trial(self.spec, data["trial"], "running", **where)})
        elif kind == "step":
            if data.get("to"):
                self._moves[(data.get("trial"), data.get("step"))] = str(data["to"])
            self.emit(
                "step_start",
                {
                    **{k: data.get(k) for k in ("trial", "step", "device", "to", "attempt")},
                    "since": datetime.now(UTC).strftime("%H:%M:%S"),
                },
            )
        elif kind == "finished":
            t = data["trial"]
            if str(t.state) == "done":
                self.emit("measurement", {"trial": _trial(self.spec, t)})
            else:
                self.emit("failure", {"trial": _trial(self.spec, t)})
            self._maybe_best(t)
        elif kind == "alert":
            self.emit(
                "alert",
                {k: v for k, v in data.items() if isinstance(v, (str, int, float, list)) or v is None}
                | {"message": str(data.get("message", ""))},
            )
        elif kind in ("paused", "resumed"):
            self.emit(
                kind, {k: (list(map(str, v)) if isinstance(v, (list, tuple)) else str(v)) for k, v in data.items()}
            )
        elif kind == "stopped":
            d = data["decision"]
            self.emit("stopped", {"rule": d.rule, "reason": d.reason})

    def _maybe_best(self, t: Any) -> None:
        """Announce the campaign's best (:func:`labloop.data.view.best_entry`, over every trial the store held when
        this process started and those finished since) when it names another trial or another Pareto set."""
        self._trials[t.number] = t
        best = best_entry(self.spec, list(self._trials.values()))
        if best is not None and _best_key(best) != _best_key(self._best):
            self.emit("best", best)
        self._best = best

    def _write(self) -> None:
        done = False
        while not done:
            first = self._q.get()
            batch = []
            if first is None:
                done = True
            else:
                batch.append(first)
            while True:  # everything that accumulated meanwhile, in one transaction
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                batch.append(item)
            if batch:
                began = time.monotonic()
                try:
                    add_events(self.store, batch)
                except Exception as exc:  # noqa: BLE001 - the stream is not the lab: never stop a campaign for it
                    print(
                        f"labloop: stream events {batch[0]['seq']}..{batch[-1]['seq']} not stored: {exc}",
                        file=sys.stderr,
                    )
                if not done:
                    time.sleep(max(0.0, COMMIT_EVERY_S - (time.monotonic() - began)))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the writer thread."""
        self._q.put(None)
        self._thread.join(timeout)


def _best_key(b: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What makes two announcements of the best differ: the trial, and the Pareto set where there is one."""
    return None if b is None else (b["trial"], tuple(b.get("pareto") or ()))
