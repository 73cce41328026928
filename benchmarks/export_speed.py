"""Export speed: a stored campaign of N trials (default 10,000), each with five steps, a measurement run's documents
and an asset record, exported in every format for a viewer of each sharing class. Prints one JSON line per
(format, class) with rows a second, then a summary line.

The campaign is written straight into the store's tables in bulk (the shape `labloop run` leaves: the bundled
thin-film campaign with a `sharing` section, trials done, steps done, documents of a probe measurement, one asset a
trial), since running 10,000 trials through the simulated lab would take hours and measure the lab, not the export.

    python benchmarks/export_speed.py --trials 10000
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("csv", "json", "jsonl", "parquet", "documents")
CLASSES = ("open", "shared-closed", "closed")


def campaign_text() -> str:
    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    data["sharing"] = {
        "default": "closed",
        "fields": {
            "sheet_resistance": "open",
            "o2_pressure": "open",
            "substrate_temperature": "shared-closed",
            "failure_reason": "open",
            "process_streams": "shared-closed",
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def fill(store, n: int, seed: int = 0) -> int:
    """Write a finished campaign of ``n`` trials into ``store`` in bulk; returns its id."""
    from sqlalchemy import insert

    from labloop.spec import spec_hash
    from labloop.store.schema import Asset, Document, Step, Trial

    rng = random.Random(seed)
    text = campaign_text()
    c = store.create_campaign("export-bench", text, spec_hash(text))
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    trials, steps, docs, assets = [], [], [], []
    for i in range(1, n + 1):
        params = {
            "o2_pressure": rng.uniform(0.05, 5),
            "substrate_temperature": rng.uniform(25, 700),
            "nb_fraction": rng.uniform(0, 0.2),
            "rf_power": rng.uniform(50, 400),
            "duration": rng.uniform(5, 120),
        }
        start = t0 + timedelta(minutes=10 * i)
        trials.append(
            {
                "id": i,
                "campaign_id": c.id,
                "number": i,
                "state": "done",
                "params": params,
                "values": {"sheet_resistance": rng.lognormvariate(3, 1.5)},
                "source": "model",
                "info": {"predicted_mean": rng.random(), "predicted_sd": rng.random(), "acq": rng.random()},
                "sample_id": f"{c.uid[:8]}-{i:05d}",
                "current_step": 4,
                "proposed_at": start,
                "started_at": start,
                "finished_at": start + timedelta(minutes=9),
            }
        )
        run_uid = str(uuid.uuid4())
        for k, (label, kind, dev) in enumerate(
            [
                ("transfer:chamber", "transfer", "robot"),
                ("synthesize:chamber", "synthesize", "chamber"),
                ("transfer:probe", "transfer", "robot"),
                ("measure:probe", "measure", "probe"),
                ("transfer:storage", "transfer", "robot"),
            ]
        ):
            steps.append(
                {
                    "trial_id": i,
                    "index": k,
                    "label": label,
                    "kind": kind,
                    "state": "done",
                    "device": dev,
                    "attempt": 1,
                    "run_uid": run_uid if kind == "measure" else None,
                    "started_at": start,
                    "finished_at": start,
                }
            )
        md = {
            "uid": run_uid,
            "time": start.timestamp(),
            "plan_name": "measure",
            "instrument": "probe",
            "trial": i,
            "sample_id": trials[-1]["sample_id"],
            "recipe": params,
        }
        desc = {
            "uid": str(uuid.uuid4()),
            "run_start": run_uid,
            "name": "primary",
            "time": start.timestamp(),
            "data_keys": {"probe_sheet_resistance": {"dtype": "number", "shape": [], "source": "sim"}},
        }
        ev = {
            "uid": str(uuid.uuid4()),
            "descriptor": desc["uid"],
            "seq_num": 1,
            "time": start.timestamp(),
            "data": {"probe_sheet_resistance": trials[-1]["values"]["sheet_resistance"]},
            "timestamps": {"probe_sheet_resistance": start.timestamp()},
        }
        stop = {
            "uid": str(uuid.uuid4()),
            "run_start": run_uid,
            "time": start.timestamp(),
            "exit_status": "success",
            "num_events": {"primary": 1},
        }
        for name, doc in (("start", md), ("descriptor", desc), ("event", ev), ("stop", stop)):
            docs.append({"campaign_id": c.id, "trial_id": i, "run_uid": run_uid, "name": name, "doc": doc})
        assets.append(
            {
                "campaign_id": c.id,
                "trial_id": i,
                "run_uid": run_uid,
                "path": f"/data/{run_uid}.h5",
                "sha256": uuid.uuid4().hex * 2,
                "size": 40_000,
                "created_at": start,
            }
        )
    with store.session() as s:
        s.execute(insert(Trial), trials)
        s.execute(insert(Step), steps)
        s.execute(insert(Document), docs)
        s.execute(insert(Asset), assets)
    return c.id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10_000)
    args = ap.parse_args()
    from labloop.data.sharing import build
    from labloop.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/export.db")
        t0 = time.perf_counter()
        fill(store, args.trials)
        print(
            json.dumps(
                {"benchmark": "export_speed", "setup_s": round(time.perf_counter() - t0, 2), "trials": args.trials}
            ),
            flush=True,
        )
        slowest = None
        for fmt in FORMATS:
            for klass in CLASSES:
                t0 = time.perf_counter()
                exp = build(store, None, klass, fmt)
                dt = time.perf_counter() - t0
                row = {
                    "benchmark": "export_speed",
                    "format": fmt,
                    "class": klass,
                    "trials": exp.trials,
                    "rows": exp.count,
                    "unit": exp.unit,
                    "bytes": len(exp.data),
                    "seconds": round(dt, 3),
                    "trials_per_s": round(exp.trials / dt, 1),
                }
                print(json.dumps(row), flush=True)
                if slowest is None or row["trials_per_s"] < slowest["trials_per_s"]:
                    slowest = row
        store.close()
    print(json.dumps({"benchmark": "export_speed", "summary": True, "slowest": slowest}), flush=True)


if __name__ == "__main__":
    main()
