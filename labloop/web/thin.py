"""What a campaign page is sent: every campaign event, and monitor readings thinned to what the page can draw.

Why: a simulated deposition's monitors emit ~100 readings a second per signal (hundreds of documents a second in
all); a page plots each signal as one line of at most a few hundred points, redrawn once a second. Sending every
reading to every page, one server-sent event each, made five browsers on two cores the bottleneck (p95 3.2 s from
event to page). So a page's stream (``/api/campaigns/NAME/events?thin=1``):

- keeps every event that is not a monitor reading (trials, steps, alerts, pauses, run start/stop documents), in
  ``seq`` order: none is ever thinned, so a page shows every campaign event;
- keeps, of the readings (``document`` events whose document is a bluesky ``event``), only the latest one per
  signal (its descriptor) per :data:`WINDOW_S` (at most ~10 points per signal per second), reduced to what the page
  plots (``time``, ``data``, ``descriptor``);
- sends whatever is ready in one message (``event: batch``), whose ``id`` is the last ``seq`` it covers, so a page
  that reconnects with ``Last-Event-ID`` resumes after it: thinned readings are skipped on purpose, nothing else
  can be.

Readings that a real lab's monitors send (a few a second) pass unthinned; scripts that want every document read the
unthinned stream (no ``thin``).
"""

from __future__ import annotations

import json
from typing import Any

#: the latest reading per signal is sent at most this often (seconds of the caller's clock)
WINDOW_S = 0.1


def reading_key(kind: str, body: Any) -> str | None:
    """The signal a monitor reading belongs to (its descriptor), or None for anything that is not a reading."""
    if kind != "document" or not isinstance(body, dict) or body.get("name") != "event":
        return None
    doc = body.get("doc")
    if not isinstance(doc, dict):
        return None
    return str(doc.get("descriptor") or ",".join(sorted(doc.get("data") or {})))


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    doc = body["doc"]
    return {
        "name": "event",
        "doc": {"time": doc.get("time"), "data": doc.get("data"), "descriptor": doc.get("descriptor")},
    }


class Thinner:
    """One page's thinning. Feed events in ``seq`` order with :meth:`add`; :meth:`take` returns what is ready.

    Readings are held (the newest replacing an older one of the same signal) until the oldest held one is
    :data:`WINDOW_S` old, or until any other event goes out (held readings go first, so ``seq`` order holds).
    ``now`` is any clock in seconds: the wall clock for live events, the events' stored times while catching up.
    """

    def __init__(self, after: int, window_s: float = WINDOW_S):
        self.window = window_s
        self.upto = after  # the last seq fed (sent, held, or thinned away)
        self.thinned = 0  # readings dropped since the last take
        self._ready: list[list[Any]] = []
        self._held: dict[str, list[Any]] = {}
        self._since = 0.0  # when the oldest held reading was held

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def due(self, now: float) -> float:
        """Seconds until the held readings must go out (0: now)."""
        return max(0.0, self._since + self.window - now)

    def add(self, seq: int, kind: str, body: Any, now: float) -> None:
        if self._held and now >= self._since + self.window:
            self._release()
        key = reading_key(kind, body)
        if key is None:
            self._release()
            self._ready.append([seq, kind, body])
        else:
            if not self._held:
                self._since = now
            if key in self._held:
                self.thinned += 1
            self._held[key] = [seq, kind, _compact(body)]
        self.upto = seq

    def take(self, now: float | None = None) -> list[list[Any]]:
        """The events ready to send, in seq order; held readings too once due (``now`` None: all of them)."""
        if self._held and (now is None or now >= self._since + self.window):
            self._release()
        out, self._ready = self._ready, []
        return out

    def frame(self, now: float | None = None) -> bytes | None:
        """:meth:`take` as one server-sent event (None when nothing is ready). Its id is the last seq it carries:
        held readings (lower seqs never come after it) are released before any later event is made ready."""
        events = self.take(now)
        if not events:
            return None
        thinned, self.thinned = self.thinned, 0
        data = json.dumps({"events": events, "thinned": thinned}, separators=(",", ":"))
        return f"id: {events[-1][0]}\nevent: batch\ndata: {data}\n\n".encode()

    def _release(self) -> None:
        if self._held:
            self._ready.extend(sorted(self._held.values(), key=lambda e: e[0]))
            self._held = {}
