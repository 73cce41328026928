"""The operator's emergency stop end to end: ``labloop estop --server ...`` from the process's start (what pressing
Enter does) to every device's ``stop()`` called in the campaign's process, through a real daemon with a simulated
campaign running. Beside it, in the same run: ``python -c pass`` (the interpreter's start) and ``python -c
'import zmq'`` (the start plus the socket library an estop cannot do without), and ``import labloop.cli`` (what the
command imports before it sends anything). JSON lines: one per try, then the medians; each try is split at the
commit of the estop request (the daemon's audit row, written in the request's transaction): before it, the
command's start, imports, CURVE handshake and the daemon; after it, the runner's poll and ``stop()`` calls.

    .venv/bin/python benchmarks/cli_estop.py --tries 5

The campaign's lab is the thin-film simulator wrapped by :func:`build_lab` below, which appends each device's
``stop()`` call (wall clock, shared by every process of the machine) to a file: nothing in labloop is changed to be
measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STOP_LOG_DIR = "LABLOOP_BENCH_STOP_LOG_DIR"


def build_lab(
    options: dict[str, Any] | None = None,
    time_scale: float = 1.0,
    seed: int = 0,
    state_dir: str | None = None,
    name: str | None = None,
) -> Any:
    """The thin-film lab, each device's ``stop()`` first noting ``time.time()`` in ``$STOP_LOG_DIR/NAME.stops``
    when the emergency stop calls it (its threads are named ``estop-DEVICE``; a RunEngine also calls ``stop()``
    at the end of every run)."""
    from labloop_simulators.thinfilm.lab import build_lab as thinfilm

    lab = thinfilm(options, time_scale, seed, state_dir=state_dir, name=name)
    folder = os.environ.get(STOP_LOG_DIR)
    if folder:
        log = Path(folder) / f"{name or 'lab'}.stops"
        for dev_name, dev in lab.devices.items():
            original = dev.stop

            def stop(*a: Any, _name: str = dev_name, _orig: Any = original, **k: Any) -> Any:
                if threading.current_thread().name.startswith("estop-"):  # the emergency stop, not a run's end
                    with open(log, "a") as f:
                        f.write(f"{_name} {time.time():.6f}\n")
                return _orig(*a, **k)

            dev.stop = stop
    return lab


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def spawn_s(*args: str, python: str = sys.executable) -> tuple[float, float]:
    """Wall seconds from starting a process to its exit, and the CPU seconds it used (on a loaded machine the
    wall time is mostly waiting for a core; the CPU time is what the command costs)."""
    t0, c0 = time.time(), children_cpu()
    subprocess.run([python, *args], check=True, capture_output=True)
    return time.time() - t0, children_cpu() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument(
        "--before",
        help="Another checkout's python (e.g. /work/main/.venv/bin/python): also time its "
        "`import labloop.cli`, the figure before the CLI was made light.",
    )
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    import yaml
    from daemon_helpers import DaemonProcess, add_user, key_file, wait_until
    from running import two_chamber

    tmp = Path(tempfile.mkdtemp())
    os.environ[STOP_LOG_DIR] = str(tmp)
    # for the campaign's process (the daemon's child) to find build_lab; no empty entry (it would mean "the
    # current folder", and --before's python would import this checkout's labloop)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    d = DaemonProcess(tmp)
    key = add_user(d.store_url, "bench", "operator", d.server_keys)
    d.start()
    keyfile = key_file(tmp, key)
    rows = []
    try:
        c = d.client(key)
        for i in range(a.tries):
            data = two_chamber(max_trials=400, options={"probe_minutes": 6})
            data["name"] = name = f"estop{i}"
            data["lab"]["simulator"] = "cli_estop:build_lab"
            r = c.call("submit", timeout=330.0, text=yaml.safe_dump(data), source="bench.yaml", time_scale=600.0)
            cid = r["campaign_id"]
            wait_until(lambda: c.call("status", campaign=cid)["running_steps"], 120)  # noqa: B023 - wait_until calls it within this iteration
            log = tmp / f"{name}.stops"
            log.unlink(missing_ok=True)
            baseline = {}
            for label, code in (
                ("python_pass", "pass"),
                ("import_zmq", "import zmq"),
                ("import_labloop_cli", "import labloop.cli"),
            ):
                baseline[f"{label}_s"], baseline[f"{label}_cpu_s"] = spawn_s("-c", code)
            if a.before:
                baseline["before_import_labloop_cli_s"], baseline["before_import_labloop_cli_cpu_s"] = spawn_s(
                    "-P", "-c", "import labloop.cli", python=a.before
                )  # -P: its own labloop, not this folder's
            t0, c0 = time.time(), children_cpu()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "labloop",
                    "estop",
                    "--campaign",
                    str(cid),
                    "--server",
                    d.control,
                    "--key",
                    keyfile,
                ],
                capture_output=True,
                text=True,
            )
            exited = time.time() - t0
            baseline["estop_process_cpu_s"] = children_cpu() - c0
            assert proc.returncode == 0, proc.stderr

            from labloop.store import Store

            st = Store(d.store_url)
            try:  # the daemon's "accepted" row is committed with the estop request: the split point
                row = [x for x in st.audit_log(None) if x.action == "estop" and x.outcome == "accepted"][-1]
            finally:
                st.close()
            committed = (row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)).timestamp()
            stops = {}
            for line in log.read_text().split("\n"):
                if line:
                    dev, at = line.split()
                    stops.setdefault(dev, float(at))
            row = {
                "benchmark": "cli_estop",
                "try": i,
                "devices_stopped": len(stops),
                "estop_to_all_stops_s": round(max(stops.values()) - t0, 4),
                "estop_to_first_stop_s": round(min(stops.values()) - t0, 4),
                "start_to_request_committed_s": round(committed - t0, 4),
                "committed_to_all_stops_s": round(max(stops.values()) - committed, 4),
                "estop_process_exit_s": round(exited, 4),
                **{k: round(v, 4) for k, v in baseline.items()},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        c.close()
    finally:
        d.stop()
    med = {k: round(statistics.median(r[k] for r in rows), 4) for k in rows[0] if k.endswith("_s")}
    print(
        json.dumps(
            {
                "benchmark": "cli_estop",
                "summary": True,
                "tries": len(rows),
                "load_1min": round(os.getloadavg()[0], 2),
                "median": med,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
