"""Experiments (and rounds) to the best row: labloop vs random search on the real lookup tables (../shared/benchmarks/data).

Protocol: ``labloop.benchmark_protocol``, shared with ``benchmarks/peers.py`` (issue 13): pool-based; the 5 starting
rows ``numpy.random.default_rng(seed).choice(N, 5, replace=False)`` (the same rows for every method of a seed),
then rounds of ``q`` proposals, budget 150 experiments (starting rows included). Per table and strategy it prints
one JSON line with the median (over seeds) of experiments until the best row and until a top-1% row (the
``ceil(0.01 N)`` best rows, ties included) is measured, experiments counted to the end of that round, ``151``
standing for "not within budget", and the rounds; and the mean seconds per ask (wall clock, and CPU time of the
worker: the machine is shared, so wall time includes waiting for a core). A run stops once the best row is
measured: nothing later changes the figures. Random search draws the remaining rows in the peers' seeded random
order (``default_rng(seed + 1000003).permutation``) without a budget cap.

    python benchmarks/replay_tables.py --seeds 0-4 --q 1,4 --workers 1

Per-run results go to ``--runs`` (default benchmarks/results/fair_labloop_runs.jsonl) as they finish; rerunning the
same command resumes (runs already recorded with the same budget, q and options are not repeated) and reprints the
summary.

Each worker uses one torch thread (the machine has 2 cores shared with others).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # labloop.benchmark_protocol when run from a checkout
from labloop.benchmark_protocol import experiments_to, start_rows, target_rows

DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/benchmarks/data")
MINIMIZE = ("pvlab_agnp", "pvlab_perovskite", "olympus_oer")
BUDGET, N_INIT = 150, 5


def _direction(stem: str) -> str:
    return "min" if stem.startswith(MINIMIZE) else "max"


def table_files(substrings: list[str] | None = None) -> list[Path]:
    """The shared tables, in name order; with ``substrings``, those whose file name contains one of them."""
    files = sorted(DATA.glob("*.csv"))
    return [f for f in files if any(t in f.name for t in substrings)] if substrings else files


def shared_table_lab(path: str | Path, seed: int, budget: int = BUDGET, q: int | None = None):
    """A :class:`labloop.strategy.tables.TableLab` for one shared table under this benchmark's convention: the
    objective is the last column, minimized for the tables named in ``MINIMIZE``, ``N_INIT`` starting rows.
    (labloop is imported here, not at the top: ``compare_fair.py`` imports this module for ``DATA`` only.)"""
    from labloop.strategy.tables import read_table, table_lab

    return table_lab(
        path,
        read_table(path).columns[-1],
        _direction(Path(path).stem),
        seed=seed,
        initial_design=N_INIT,
        budget=budget,
        batch_size=q,
    )


def _one(args: tuple[str, int, str, int, dict, int]) -> dict:
    """One (table, seed, strategy, q) run -> experiments and rounds to best / top-1%, seconds per ask."""
    path, seed, strategy, budget, options, q = args
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from labloop.strategy.replay import run_replay

    if str(HERE) not in sys.path:  # a spawned worker: the benchmarks folder holds the pilot variants
        sys.path.insert(0, str(HERE))
    from pilot_variants import PilotStrategy  # the botorch strategy + the pilot-only acquisitions (mix, ei_ts)

    lab = shared_table_lab(path, seed, budget, q)
    vals = lab.values
    best_rows, top_rows = target_rows(vals, lab.spec.objectives[0].direction == "maximize")
    init = start_rows(len(vals), seed, N_INIT)
    cpu = 0.0
    if strategy == "labloop":
        strat = PilotStrategy(lab.spec, lab.pool, **options)
        c0 = time.process_time()
        r = run_replay(
            lab,
            budget,
            batch_size=q,
            strategy=strat,
            initial_rows=init,
            stop=lambda res: any(i in best_rows for i in res.rows),
        )
        first, rounds = r.start_and_rounds()
        secs = r.ask_seconds
        cpu = (time.process_time() - c0) / max(1, len(secs))
    else:  # random search without a budget cap: the same starting rows, then the peers' random order
        rest = np.setdiff1d(np.arange(len(vals)), init)
        order = [int(i) for i in np.random.default_rng(seed + 1_000_003).permutation(rest)]
        first, secs, budget = init, [], len(vals)
        rounds = [order[j : j + q] for j in range(0, len(order), q)]
    out = {
        "table": Path(path).stem,
        "seed": seed,
        "strategy": strategy,
        "q": q,
        "init_rows": init,
        "sec": sum(secs) / len(secs) if secs else 0.0,
        "cpu": cpu,
        "rows": len(vals),
        "protocol": "issue13",
    }
    for name, targets in (("best", best_rows), ("top1", top_rows)):
        hit = experiments_to(first, rounds, targets)
        out[f"to_{name}"], out[f"rounds_to_{name}"] = hit if hit else (budget + 1, None)
    return out


def _parse_ints(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def _median(xs: list[int], budget: int) -> float | str:
    m = statistics.median(xs)
    return f">{budget}" if m > budget else m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0-9", help="seeds, e.g. 0-4 or 0,3,7")
    ap.add_argument("--q", default="1", help="batch sizes, e.g. 1,4")
    ap.add_argument("--strategies", default="labloop,random")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=int, default=BUDGET)
    ap.add_argument("--tables", nargs="*", help="substrings of table file names (default: all)")
    ap.add_argument(
        "--options",
        default="{}",
        help="JSON options for the botorch strategy (labloop.spec."
        "BotorchOptions, plus the pilot-only acquisitions of pilot_variants.py)",
    )
    ap.add_argument("--summary-only", action="store_true", help="summarize --runs without running anything")
    ap.add_argument(
        "--runs",
        default=str(HERE / "results" / "fair_labloop_runs.jsonl"),
        help="per-run results, appended as they finish; runs already there are not repeated",
    )
    a = ap.parse_args(argv)
    files = table_files(a.tables)
    opts = json.loads(a.options)
    seeds = _parse_ints(a.seeds)
    qs = _parse_ints(a.q)
    strategies = a.strategies.split(",")
    # every finished run is appended to --runs at once, so an interrupted benchmark resumes where it stopped;
    # seed-major order: all tables get their first seeds before any table gets its last; small tables first, so
    # that a run stopped early has results on the most tables
    done: list[dict] = []
    runs = Path(a.runs)
    if runs.exists():
        done = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
        done = [
            r
            for r in done
            if r.get("budget") == a.budget and r.get("options") == opts and r.get("protocol") == "issue13"
        ]
    have = {(r["table"], r["seed"], r["strategy"], r["q"]) for r in done}
    jobs = [
        (str(f), s, strat, a.budget, opts, q)
        for s in seeds
        for q in qs
        for f in sorted(files, key=lambda f: f.stat().st_size)
        for strat in strategies
        if (f.stem, s, strat, q) not in have and not a.summary_only
    ]
    t0 = time.time()
    results = list(done)
    runs.parent.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool(max(1, min(a.workers, len(jobs)))) as pool, runs.open("a") as fh:
        for r in pool.imap_unordered(_one, jobs):
            r.update(budget=a.budget, options=opts)
            fh.write(json.dumps(r) + "\n")
            fh.flush()
            results.append(r)
    for f in files:
        for q in qs:
            line: dict = {"table": f.stem, "q": q, "budget": a.budget}
            for strat in strategies:
                rs = sorted(
                    (
                        r
                        for r in results
                        if r["table"] == f.stem and r["strategy"] == strat and r["seed"] in seeds and r["q"] == q
                    ),
                    key=lambda r: r["seed"],
                )
                if not rs:
                    continue
                line["rows"], line["seeds"] = rs[0]["rows"], [r["seed"] for r in rs]
                cap = a.budget if strat == "labloop" else 10**9
                line[strat] = {
                    "median_to_best": _median([r["to_best"] for r in rs], cap),
                    "median_to_top1pct": _median([r["to_top1"] for r in rs], cap),
                    "found_best": f"{sum(r['to_best'] <= a.budget for r in rs)}/{len(rs)}",
                    "to_best": [r["to_best"] for r in rs],
                    "to_top1pct": [r["to_top1"] for r in rs],
                    "rounds_to_best": [r["rounds_to_best"] for r in rs],
                    "sec_per_ask": round(statistics.mean(r["sec"] for r in rs), 3),
                    "cpu_sec_per_ask": round(statistics.mean(r.get("cpu", 0.0) for r in rs), 3),
                }
            if any(s_ in line for s_ in strategies):
                print(json.dumps(line), flush=True)
    print(json.dumps({"wall_seconds": round(time.time() - t0), "options": opts}), file=sys.stderr)


if __name__ == "__main__":
    main()
