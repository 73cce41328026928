"""Where every simulated sample is and what it really is: the hidden truth shared by simulated devices.

In a real lab the film on a substrate is what the chamber made, and the probe measures that film. Simulated devices
share this registry so the probe measures what the chamber made, and the robot can refuse to pick a sample that is
not where it is told to look (the classic bookkeeping error an orchestrator must not make).

The ``supply`` position (the load lock) holds an endless stack of bare substrates: picking an unknown sample id
there takes a fresh substrate and names it. Positions in ``single`` (stations, instruments) hold one sample at a time.

With a ``state_file`` the registry is the simulated *physical world*: it is saved after every change and loaded on
start, so a crash of the orchestrator (even ``kill -9``) leaves the samples where they physically were, exactly as
in a real lab, and ``labloop resume`` finds them there.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labloop.errors import DeviceError


@dataclass
class SampleRecord:
    """One sample: where it is, the process it went through, and its hidden properties."""

    id: str
    location: str
    properties: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)


class SampleRegistry:
    """Thread-safe map sample id -> :class:`SampleRecord` (location and film properties)."""

    def __init__(self, supply: str = "load_lock", single: Iterable[str] = (), state_file: str | None = None):
        self.supply = supply
        self.single = set(single)
        self._samples: dict[str, SampleRecord] = {}
        self._lock = threading.RLock()
        self.state_file = state_file
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as fh:
                for rec in json.load(fh):
                    self._samples[rec["id"]] = SampleRecord(**rec)

    def _save(self) -> None:
        """Persist the world atomically (write a temporary file, then rename it over the old one)."""
        if not self.state_file:
            return
        tmp = f"{self.state_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump([vars(r) for r in self._samples.values()], fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_file)

    def get(self, sample: str) -> SampleRecord | None:
        """A copy of the sample's record (None if the lab never saw it)."""
        with self._lock:
            rec = self._samples.get(sample)
            return copy.deepcopy(rec) if rec is not None else None

    def location(self, sample: str) -> str | None:
        """Where the sample is; an unknown id is at the supply (a fresh substrate), unless the id is empty."""
        with self._lock:
            rec = self._samples.get(sample)
            if rec is not None:
                return rec.location
            return self.supply if sample else None

    def occupant(self, position: str) -> str | None:
        """The sample at a single-sample position (None if empty)."""
        with self._lock:
            return next((s.id for s in self._samples.values() if s.location == position), None)

    def at(self, position: str) -> list[str]:
        with self._lock:
            return [s.id for s in self._samples.values() if s.location == position]

    def check_pick(self, sample: str, source: str, holder: str) -> None:
        """Raise if ``sample`` is not at ``source`` (a holder that already grips it may continue its move)."""
        where = self.location(sample)
        if where not in (source, holder):
            raise DeviceError(
                f"{holder}: sample '{sample}' is not at '{source}' (it is at '{where}')",
                f"pick it from '{where}', or correct the sample's recorded location",
            )

    def check_place(self, sample: str, destination: str, holder: str) -> None:
        """Raise if ``destination`` holds one sample at a time and already holds another."""
        if destination in self.single:
            other = self.occupant(destination)
            if other is not None and other != sample:
                raise DeviceError(
                    f"{holder}: '{destination}' already holds sample '{other}'",
                    f"move '{other}' out of '{destination}' first",
                )

    def move(self, sample: str, to: str, note: str = "") -> None:
        """Record that ``sample`` is now at ``to`` (creating a fresh substrate record on first sight)."""
        with self._lock:
            rec = self._samples.get(sample)
            if rec is None:
                rec = self._samples[sample] = SampleRecord(sample, self.supply, {"film": None})
                rec.history.append(f"taken from {self.supply} as a bare substrate")
            rec.history.append(f"{rec.location} -> {to}" + (f" ({note})" if note else ""))
            rec.location = to
            self._save()

    def update(self, sample: str, note: str, **properties: Any) -> None:
        """Set hidden properties of a sample (e.g. the film a recipe produced)."""
        with self._lock:
            rec = self._samples.get(sample)
            if rec is None:
                raise DeviceError(f"registry: unknown sample '{sample}'", "move it into the lab first")
            rec.properties.update(properties)
            rec.history.append(note)
            self._save()
