"""Report speed: ``labloop report`` on a stored campaign of N trials (default 1,000), end to end in a fresh process
(imports, store reads, every figure, the HTML), against ``labloop export --format csv`` of the same campaign in the
same run as a baseline. Prints one JSON line per command and repetition, then a summary line. Target (issue 12):
<= 30 s on the 2-core CI machine.

The campaign is written straight into the store's tables in bulk, the shape `labloop run` leaves (as
``benchmarks/export_speed.py`` does): the bundled thin-film campaign, space-filling trials then model proposals
carrying the evidence the report draws (importance, prediction with its interval), ~8 % failed trials with reasons,
three process streams of 120 points per synthesis, and UV-vis spectra and XRD patterns as real HDF5 asset files
(with their stream_resource / stream_datum documents) for the ``--dock`` best trials, since running 1,000 trials
through the simulated lab would measure the lab, not the report.

    python benchmarks/report_speed.py --trials 1000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARAMS = ("o2_pressure", "substrate_temperature", "nb_fraction", "rf_power", "duration")
#: signal -> the recipe parameter it follows (the chamber's pressure sits ~2 mTorr above the O2 partial pressure)
SIGNALS = {
    "chamber_pressure": "o2_pressure",
    "chamber_substrate_temperature": "substrate_temperature",
    "chamber_rf_power": "rf_power",
}
POINTS = 120  # per signal and synthesis
MAX_BATCH = 20_000  # rows per executemany


def sheet_resistance(p: dict[str, float], rng: random.Random) -> float:
    """A smooth landscape with its optimum near (0.5 mTorr, 450 degC, 0.06, 200 W, 60 min) and 3 % noise."""
    d = (
        math.log10(p["o2_pressure"] / 0.5) ** 2
        + ((p["substrate_temperature"] - 450) / 200) ** 2
        + ((p["nb_fraction"] - 0.06) / 0.06) ** 2
        + ((p["rf_power"] - 200) / 150) ** 2
        + ((p["duration"] - 60) / 50) ** 2
    )
    return 2.5 * math.exp(2.2 * d) * (1 + rng.gauss(0, 0.03))


def recipe(i: int, n: int, rng: random.Random) -> dict[str, float]:
    """Space-filling first, then closing in on the optimum as a model would."""
    if i <= 10:
        return {
            "o2_pressure": 10 ** rng.uniform(math.log10(0.05), math.log10(5)),
            "substrate_temperature": rng.uniform(25, 700),
            "nb_fraction": rng.uniform(0, 0.2),
            "rf_power": rng.uniform(50, 400),
            "duration": rng.uniform(10, 120),
        }
    s = max(0.05, 1 - i / n)
    clip = lambda v, lo, hi: min(hi, max(lo, v))
    return {
        "o2_pressure": clip(0.5 * 10 ** rng.gauss(0, s), 0.05, 5),
        "substrate_temperature": clip(rng.gauss(450, 300 * s), 25, 700),
        "nb_fraction": clip(rng.gauss(0.06, 0.08 * s), 0, 0.2),
        "rf_power": clip(rng.gauss(200, 150 * s), 50, 400),
        "duration": clip(rng.gauss(60, 50 * s), 10, 120),
    }


def write_h5(path: Path, arrays: dict[str, list[float]]) -> None:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            f.create_dataset(name, data=np.asarray([values]))


def dock_docs(
    data_dir: Path, instrument: str, arrays: dict[str, tuple[list[float], str]], t: float
) -> tuple[str, list[tuple[str, dict]], Path]:
    """One instrument run's documents with its arrays in an HDF5 file (as labloop_devices.assets writes them)."""
    run_uid = str(uuid.uuid4())
    path = data_dir / f"{instrument}-{run_uid}.h5"
    write_h5(path, {name: values for name, (values, _) in arrays.items()})
    desc_uid = str(uuid.uuid4())
    keys = {
        f"{instrument}_{name}": {
            "dtype": "array",
            "shape": [len(v)],
            "source": "sim",
            "units": unit,
            "external": "STREAM:",
        }
        for name, (v, unit) in arrays.items()
    }
    docs: list[tuple[str, dict]] = [
        ("start", {"uid": run_uid, "time": t, "plan_name": "measure", "instrument": instrument})
    ]
    docs.append(
        ("descriptor", {"uid": desc_uid, "run_start": run_uid, "name": "primary", "time": t, "data_keys": keys})
    )
    for name in arrays:
        res = str(uuid.uuid4())
        docs.append(
            (
                "stream_resource",
                {
                    "uid": res,
                    "data_key": f"{instrument}_{name}",
                    "mimetype": "application/x-hdf5",
                    "uri": f"file://localhost{path}",
                    "parameters": {"dataset": f"/{name}"},
                },
            )
        )
        docs.append(
            (
                "stream_datum",
                {
                    "uid": f"{res}/0",
                    "stream_resource": res,
                    "descriptor": desc_uid,
                    "indices": {"start": 0, "stop": 1},
                    "seq_nums": {"start": 1, "stop": 2},
                },
            )
        )
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": run_uid, "time": t, "exit_status": "success"}))
    return run_uid, docs, path


def fill(store, n: int, data_dir: Path, dock: int, seed: int = 0) -> int:
    """Write a finished campaign of ``n`` trials into ``store`` in bulk; returns its id."""
    from sqlalchemy import insert

    from labloop.spec import spec_hash
    from labloop.store.assets import sha256_file
    from labloop.store.schema import Asset, Document, ProcessPoint, Trial

    rng = random.Random(seed)
    text = (REPO / "experiments" / "thinfilm.yaml").read_text()
    c = store.create_campaign("report-bench", text, spec_hash(text))
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    trials, points, docs, assets = [], [], [], []
    values: dict[int, float] = {}
    for i in range(1, n + 1):
        params = recipe(i, n, rng)
        start = t0 + timedelta(minutes=10 * i)
        failed = rng.random() < 0.08
        value = sheet_resistance(params, rng)
        info: dict = {}
        if i > 10:
            w = [rng.uniform(0.5, 1.5) * x for x in (4, 3, 2, 1, 0.5)]
            info = {
                "importance": {p: wi / sum(w) for p, wi in zip(PARAMS, w)},
                "predicted": {
                    "objective": "sheet_resistance",
                    "mean": value * rng.uniform(0.8, 1.25),
                    "interval_95": [value * 0.6, value * 1.6],
                },
            }
        trials.append(
            {
                "id": i,
                "campaign_id": c.id,
                "number": i,
                "state": "failed" if failed else "done",
                "params": params,
                "values": {} if failed else {"sheet_resistance": value},
                "source": "sobol" if i <= 10 else "model",
                "info": info,
                "failure_reason": "chamber: arc detected at the target" if failed else None,
                "sample_id": f"{c.uid[:8]}-{i:05d}",
                "current_step": 4,
                "proposed_at": start,
                "started_at": start,
                "finished_at": start + timedelta(minutes=9),
            }
        )
        if not failed:
            values[i] = value
        run_uid = str(uuid.uuid4())
        for sig, follows in SIGNALS.items():
            base = params[follows] + (2 if sig == "chamber_pressure" else 0)
            points.extend(
                {
                    "trial_id": i,
                    "run_uid": run_uid,
                    "signal": sig,
                    "t": start.timestamp() + 30 * k,
                    "value": base * (1 + 0.01 * math.sin(k / 7)),
                }
                for k in range(POINTS)
            )
    best = sorted(values, key=values.get)[:dock]
    import numpy as np

    lam = np.linspace(300, 1100, 401)
    tt = np.linspace(20, 80, 1201)
    for i in best:
        t = trials[i - 1]["started_at"].timestamp()
        T = (0.8 + 0.1 * np.sin(lam / 40.0)) / (1 + np.exp(-(lam - 360) / 10))
        counts = 50 + 2000 * np.exp(-(((tt - 25.3) / 0.2) ** 2)) + 300 * np.exp(-(((tt - 48.0) / 0.25) ** 2))
        for instrument, arrays in (
            ("uvvis", {"wavelength": (lam.tolist(), "nm"), "transmittance": (T.tolist(), "")}),
            ("xrd", {"two_theta": (tt.tolist(), "deg"), "counts": (counts.tolist(), "counts")}),
        ):
            run_uid, rdocs, path = dock_docs(data_dir, instrument, arrays, t)
            docs.extend(
                {"campaign_id": c.id, "trial_id": i, "run_uid": run_uid, "name": name, "doc": doc}
                for name, doc in rdocs
            )
            digest, size = sha256_file(path)
            assets.append(
                {
                    "campaign_id": c.id,
                    "trial_id": i,
                    "run_uid": run_uid,
                    "path": str(path),
                    "sha256": digest,
                    "size": size,
                    "created_at": trials[i - 1]["started_at"],
                }
            )
    with store.session() as s:
        s.execute(insert(Trial), trials)
        for k in range(0, len(points), MAX_BATCH):
            s.execute(insert(ProcessPoint), points[k : k + MAX_BATCH])
        if docs:
            s.execute(insert(Document), docs)
            s.execute(insert(Asset), assets)
    store.finish_campaign(c.id, "finished", f"budget spent: {n} trials")
    return c.id


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child: user + system, stdout). The CPU time says what the command costs
    when the machine is shared; the wall time what an operator waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--dock", type=int, default=20, help="best trials with UV-vis and XRD asset files")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from labloop.store import Store

    labloop = [sys.executable, "-m", "labloop"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/report.db"
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        store = Store(url)
        t0 = time.perf_counter()
        fill(store, args.trials, data_dir, args.dock)
        store.close()
        print(
            json.dumps(
                {
                    "benchmark": "report_speed",
                    "setup_s": round(time.perf_counter() - t0, 2),
                    "trials": args.trials,
                    "process_points": args.trials * len(SIGNALS) * POINTS,
                    "dock_trials": args.dock,
                }
            ),
            flush=True,
        )
        rows: dict[str, list[tuple[float, float]]] = {"report": [], "export_csv": []}
        for rep in range(args.repeat):
            out = Path(tmp) / "report"
            dt, cpu, _ = timed(
                labloop + ["report", "--store", url, "--out", str(out), "--trial", "1", "--trial", "500"]
            )
            size = sum(p.stat().st_size for p in out.iterdir())
            figures = sum(1 for p in out.iterdir() if p.suffix == ".svg")
            rows["report"].append((dt, cpu))
            print(
                json.dumps(
                    {
                        "benchmark": "report_speed",
                        "command": "report",
                        "run": rep + 1,
                        "seconds": round(dt, 2),
                        "cpu_s": round(cpu, 2),
                        "figures": figures,
                        "bytes": size,
                        "load_avg_1m": round(os.getloadavg()[0], 1),
                    }
                ),
                flush=True,
            )
            dt, cpu, csv = timed(labloop + ["export", "--store", url, "--format", "csv"])
            rows["export_csv"].append((dt, cpu))
            print(
                json.dumps(
                    {
                        "benchmark": "report_speed",
                        "command": "export csv (baseline)",
                        "run": rep + 1,
                        "seconds": round(dt, 2),
                        "cpu_s": round(cpu, 2),
                        "bytes": len(csv),
                        "load_avg_1m": round(os.getloadavg()[0], 1),
                    }
                ),
                flush=True,
            )
        # the report's own work, without the command's start-up: in this process, imports done
        from labloop.report import write_report

        store = Store(url, create=False)
        c0, w0 = time.process_time(), time.perf_counter()
        write_report(store, store.campaign(None), Path(tmp) / "report-in-process", [1, 500])
        inproc = (time.perf_counter() - w0, time.process_time() - c0)
        store.close()
        print(
            json.dumps(
                {
                    "benchmark": "report_speed",
                    "command": "write_report (in process)",
                    "seconds": round(inproc[0], 2),
                    "cpu_s": round(inproc[1], 2),
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "benchmark": "report_speed",
                "summary": True,
                "trials": args.trials,
                "report_s": round(min(w for w, _ in rows["report"]), 2),
                "report_cpu_s": round(min(c for _, c in rows["report"]), 2),
                "export_csv_s": round(min(w for w, _ in rows["export_csv"]), 2),
                "export_csv_cpu_s": round(min(c for _, c in rows["export_csv"]), 2),
                "in_process_s": round(inproc[0], 2),
                "in_process_cpu_s": round(inproc[1], 2),
                "target_s": 30,
                "cpus": os.cpu_count(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
