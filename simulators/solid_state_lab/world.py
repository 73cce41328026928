"""The sample world the lab's servers share: where each crucible is, what powder it holds, what firing made of it,
and the precursor stocks. One JSON file, changed under an exclusive ``flock`` and replaced atomically.

Why a file and not a state server: each instrument server is its own process (a killed server must look like a dead
instrument), and the world must survive any one of them dying; a locked JSON file needs no extra process to start,
stop or lose, and a few dozen crucibles are read and written in well under a millisecond. The physical truth is
here (a robot that grips at a position takes the crucible that is there; the XRD measures the crucible on its
stage), so the orchestrator's belief about where a sample is can be checked against it, as in a real lab.

Locations: ``rack01`` .. ``rack24`` (storage), ``dispenser``, ``balance``, ``xrd``, ``f1s1`` .. ``f4s4`` (furnace N,
slot S), and ``robot1``/``robot2`` (in a gripper). A server started without a world (``labloop devices check
--simulated``) gets a private one in a temporary folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labloop_simulators.solid_state.chemistry import PRECURSORS

CRUCIBLE_TARE_G = 12.5  # an alumina crucible's own mass
RACK_SLOTS = 24
STATIONS = ("dispenser", "balance", "xrd")


def furnace_slots(furnace: int, capacity: int = 4) -> list[str]:
    return [f"f{furnace}s{s}" for s in range(1, capacity + 1)]


def positions() -> list[str]:
    """Every location a robot can reach (its taught positions)."""
    rack = [f"rack{i:02d}" for i in range(1, RACK_SLOTS + 1)]
    return rack + list(STATIONS) + [p for n in range(1, 5) for p in furnace_slots(n)]


def initial(crucibles: int = RACK_SLOTS, stock_g: float = 50.0) -> dict[str, Any]:
    return {
        "crucibles": {
            f"CR{i:04d}": {"location": f"rack{i:02d}", "powders": {}, "firings": [], "product": None, "cracked": False}
            for i in range(1, crucibles + 1)
        },
        "stocks": dict.fromkeys(PRECURSORS, stock_g),
    }


class World:
    def __init__(self, path: str | os.PathLike[str] | None = None):
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="labloop-world-")) / "world.json"
        self.path = Path(path)
        self.lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        if not self.path.exists():
            with self.transaction() as w:
                w.update(initial())

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """The world, locked for this process: changes to the dict are written when the block ends."""
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
                before = json.dumps(data, sort_keys=True)
                yield data
                after = json.dumps(data, sort_keys=True)
                if after != before:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(after)
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        with self.transaction() as w:
            return w

    def at(self, location: str) -> str | None:
        """The crucible at ``location`` (None when empty)."""
        return at(self.read(), location)


def at(world: dict[str, Any], location: str) -> str | None:
    for code, c in world.get("crucibles", {}).items():
        if c["location"] == location:
            return code
    return None
