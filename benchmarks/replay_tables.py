"""Experiments to the best row: labloop vs random search on the real lookup tables (../shared/benchmarks/data).

Protocol (as the peers' figures in the shared README): pool-based; 5 seeded random starting rows (the same rows for
both strategies), then one proposal per step, budget 150 experiments (starting rows included). Per table and
strategy it prints one JSON line with the median (over seeds) of experiments until the best row and until a top-1%
row (the ``max(1, N // 100)`` best rows, ties included) is measured, ``151`` standing for "not within budget", and
the mean seconds per proposal (wall clock, and CPU time of the worker: the machine is shared, so wall time
includes waiting for a core). A run stops once the best row is measured: nothing later changes the figures. Random search draws the
remaining rows in a seeded random order without a budget cap (the same as ``RandomStrategy`` in pool mode, without
its per-step bookkeeping), so its medians compare with the shared README's.

    python benchmarks/replay_tables.py --seeds 10 --workers 2 > benchmarks/replay_tables.jsonl

Per-run results go to ``--runs`` (default benchmarks/replay_runs.jsonl) as they finish; rerunning the same command
resumes (runs already recorded with the same budget and options are not repeated) and reprints the summary.

Each worker uses one torch thread (the machine has 2 cores shared with others).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/benchmarks/data")
MINIMIZE = ("pvlab_agnp", "pvlab_perovskite", "olympus_oer")
BUDGET, N_INIT = 150, 5


def _direction(stem: str) -> str:
    return "min" if stem.startswith(MINIMIZE) else "max"


def _one(args: tuple[str, int, str, int, dict]) -> dict:
    """One (table, seed, strategy) run -> experiments to best / top-1% and seconds per proposal."""
    path, seed, strategy, budget, options = args
    import torch

    torch.set_num_threads(1)
    from labloop.strategy.replay import run_replay
    from labloop.strategy.tables import read_table, table_lab

    if str(HERE) not in sys.path:  # a spawned worker: the benchmarks folder holds the pilot variants
        sys.path.insert(0, str(HERE))
    from pilot_variants import PilotStrategy  # the botorch strategy + the pilot-only acquisitions (mix, ei_ts)

    header = read_table(path).columns
    lab = table_lab(path, header[-1], _direction(Path(path).stem), seed=seed, initial_design=N_INIT, budget=budget)
    vals = lab.values
    sign = 1.0 if lab.spec.objectives[0].direction == "maximize" else -1.0
    ranked = sorted((sign * v for v in vals), reverse=True)
    best, k = ranked[0], max(1, len(vals) // 100)
    top = ranked[k - 1]
    init = random.Random(seed).sample(range(len(vals)), N_INIT)
    cpu = 0.0
    if strategy == "labloop":
        strat = PilotStrategy(lab.spec, lab.pool, **options)
        c0 = time.process_time()
        r = run_replay(lab, budget, strategy=strat, initial_rows=init,
                       stop=lambda res: bool(res.history) and sign * res.history[-1] >= best)
        h, secs = [sign * v for v in r.history], r.ask_seconds
        cpu = (time.process_time() - c0) / max(1, len(secs))
    else:  # random search without a budget cap: the same starting rows, then the other rows in random order
        rest = [i for i in range(len(vals)) if i not in set(init)]
        random.Random(10_000 + seed).shuffle(rest)
        h, secs, budget = [sign * vals[i] for i in init + rest], [], len(vals)
    to_best = next((i + 1 for i, v in enumerate(h) if v >= best), budget + 1)
    to_top = next((i + 1 for i, v in enumerate(h) if v >= top), budget + 1)
    return {"table": Path(path).stem, "seed": seed, "strategy": strategy, "to_best": to_best, "to_top1": to_top,
            "sec": sum(secs) / len(secs) if secs else 0.0, "cpu": cpu, "rows": len(vals)}


def _median(xs: list[int], budget: int) -> float | str:
    m = statistics.median(xs)
    return f">{budget}" if m > budget else m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=int, default=BUDGET)
    ap.add_argument("--tables", nargs="*", help="substrings of table file names (default: all)")
    ap.add_argument("--options", default="{}", help="JSON options for the botorch strategy (labloop.spec."
                    "BotorchOptions, plus the pilot-only acquisitions of pilot_variants.py)")
    ap.add_argument("--summary-only", action="store_true", help="summarize --runs without running anything")
    ap.add_argument("--runs", default="benchmarks/replay_runs.jsonl",
                    help="per-run results, appended as they finish; runs already there are not repeated")
    a = ap.parse_args(argv)
    files = sorted(DATA.glob("*.csv"))
    if a.tables:
        files = [f for f in files if any(t in f.name for t in a.tables)]
    opts = json.loads(a.options)
    # every finished run is appended to --runs at once, so an interrupted benchmark resumes where it stopped;
    # seed-major order: all tables get their first seeds before any table gets its last
    done: list[dict] = []
    runs = Path(a.runs)
    if runs.exists():
        done = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
        done = [r for r in done if r.get("budget") == a.budget and r.get("options") == opts]
    have = {(r["table"], r["seed"], r["strategy"]) for r in done}
    jobs = [(str(f), s, strat, a.budget, opts) for s in range(a.seeds)
            for f in sorted(files, key=lambda f: -f.stat().st_size) for strat in ("labloop", "random")
            if (f.stem, s, strat) not in have and not a.summary_only]
    t0 = time.time()
    results = list(done)
    with mp.get_context("spawn").Pool(max(1, min(a.workers, len(jobs)))) as pool, runs.open("a") as fh:
        for r in pool.imap_unordered(_one, jobs):
            r.update(budget=a.budget, options=opts)
            fh.write(json.dumps(r) + "\n")
            fh.flush()
            results.append(r)
    for f in files:
        line: dict = {"table": f.stem, "rows": None, "budget": a.budget}
        for strat in ("labloop", "random"):
            rs = sorted((r for r in results if r["table"] == f.stem and r["strategy"] == strat
                         and r["seed"] < a.seeds), key=lambda r: r["seed"])
            if not rs:
                continue
            line["rows"], line["seeds"] = rs[0]["rows"], len(rs)
            cap = a.budget if strat == "labloop" else 10**9
            line[strat] = {
                "median_to_best": _median([r["to_best"] for r in rs], cap),
                "median_to_top1pct": _median([r["to_top1"] for r in rs], cap),
                "found_best": f"{sum(r['to_best'] <= a.budget for r in rs)}/{len(rs)}",
                "to_best": [r["to_best"] for r in rs], "to_top1pct": [r["to_top1"] for r in rs],
                "sec_per_proposal": round(statistics.mean(r["sec"] for r in rs), 3),
                "cpu_sec_per_proposal": round(statistics.mean(r.get("cpu", 0.0) for r in rs), 3),
            }
        if "labloop" not in line or "random" not in line:
            continue
        lb, rb = line["labloop"]["median_to_best"], line["random"]["median_to_best"]
        line["ratio_best_vs_random"] = round((a.budget + 1 if isinstance(lb, str) else lb) / rb, 3)
        print(json.dumps(line), flush=True)
    print(json.dumps({"wall_seconds": round(time.time() - t0), "options": opts}), file=sys.stderr)


if __name__ == "__main__":
    main()
