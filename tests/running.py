"""Running campaigns in tests: the two-chamber simulated lab, a runner in a background thread, waiting."""

from __future__ import annotations

import threading
import time
from datetime import UTC

import yaml
from campaign_files import thinfilm

from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store

TS = 36000.0  # a 60-minute deposition takes 0.1 s


def two_chamber(max_trials: int = 6, options: dict | None = None, **changes) -> dict:
    data = thinfilm(stopping={"max_trials": max_trials, "target_reached": False})
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["lab"] = {
        "simulator": "thinfilm",
        "time_scale": TS,
        "options": {"chambers": 2, "chamber_minutes": 60, "probe_minutes": 5, "robot_minutes": 1, **(options or {})},
        "stations": {"deposition": ["chamber1", "chamber2"]},
    }
    data["workflow"] = [
        {"kind": "transfer", "to": "deposition"},
        {"kind": "synthesize", "device": "deposition"},
        {"kind": "transfer", "to": "probe"},
        {"kind": "measure", "device": "probe"},
        {"kind": "transfer", "to": "storage"},
    ]
    for key, value in changes.items():
        data[key] = value
    return data


def start(data: dict, tmp_path, observer=None):
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "test.yaml"), store, observer)
    return store, runner


def intervals(store: Store, cid: int, kind: str, device: str | None = None):
    out = []
    for s in store.steps(campaign_id=cid):
        if s.kind == kind and (device is None or s.device == device) and s.finished_at is not None:
            out.append((s.started_at.replace(tzinfo=UTC).timestamp(), s.finished_at.replace(tzinfo=UTC).timestamp(), s))
    return sorted(out, key=lambda x: x[0])


def in_background(runner, resumptions=None):
    result = {}

    def target():
        result["decision"] = runner.run(resumptions)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, result


def wait_for(predicate, timeout=30.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def record_stops(lab) -> dict[str, float]:
    """Wrap every device's ``stop()`` to note when it was first called (perf_counter): estop latency."""
    stopped: dict[str, float] = {}
    for name, dev in lab.devices.items():
        original = dev.stop

        def stop(*a, _name=name, _orig=original, **k):
            stopped.setdefault(_name, time.perf_counter())
            return _orig(*a, **k)

        dev.stop = stop
    return stopped
