#!/usr/bin/env python3
"""Transfer from earlier campaigns on the Buchwald-Hartwig tables: each table with the other four as related tasks.

Methods (the same starting rows per seed: ``numpy.random.default_rng(seed).choice(N, 5, replace=False)``, then one
proposal per step, budget ``--budget``, a measured row never proposed again, stop once the table's best row is
measured):

* ``none``: labloop, no transfer (``labloop replay`` defaults, ``initial_design`` 5 = the starting rows);
* ``related``: labloop with the other four tables as ``strategy.related`` (``labloop replay --related``);
* ``shuffled``: labloop with the other four tables' yields shuffled (seeded): unrelated earlier campaigns, which
  must not do worse than ``none`` beyond seed noise;
* ``baybe``: BayBE 0.15 with a ``TaskParameter`` (the other four as inactive tasks, their rows added as
  measurements): run with the peer venv's python (``/work/peervenv/bin/python``); labloop is not imported then.

Data preparation (the same for every method): in each table the ``aryl_halide`` SMILES names the arene (the task)
and the halogen; the column is replaced by the halogen (Cl, Br, I), so that the five tables share one parameter
space (halogen, additive, base, ligand) and differ in the arene, which is the task.

Per run one JSON line: table, seed, method, experiments to the best row (None if > budget) and to a top-1% row
(rank < ceil(0.01 N), ties included), mean seconds per proposal.

    .venv/bin/python benchmarks/transfer.py --tables c,d --seeds 0-2 --methods none,related,shuffled
    /work/peervenv/bin/python benchmarks/transfer.py --tables c,d --seeds 0-2 --methods baybe --related-cap 100
    .venv/bin/python benchmarks/transfer.py --tables c,d --seeds 0-2 --methods related --related-cap 100

``--related-cap N``: at most N rows of each related table (drawn once, fixed seed per table), for every method: BayBE
refits on every related row at each recommendation (15 minutes per recommendation with 400 rows at a loaded
machine's share), so the labloop-BayBE comparison uses the same capped rows for both.
    python benchmarks/transfer.py --summarize benchmarks/results/transfer_*.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from _seeds import seeds

DATA = os.environ.get("LABLOOP_BENCH_DATA", "/work/shared/benchmarks/data")
TABLES = {
    "a": "chem_buchwald_hartwig_a_CF3",
    "b": "chem_buchwald_hartwig_b_OMe",
    "c": "chem_buchwald_hartwig_c_Et",
    "d": "chem_buchwald_hartwig_d_2pyr",
    "e": "chem_buchwald_hartwig_e_3pyr",
}
INPUTS = ["halogen", "additive", "base", "ligand"]


def halogen(smiles: str) -> str:
    return "Cl" if "Cl" in smiles else "Br" if "Br" in smiles else "I" if "I" in smiles else "?"


def prepared(key: str) -> list[dict]:
    with open(os.path.join(DATA, TABLES[key] + ".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {
            "halogen": halogen(r["aryl_halide"]),
            "additive": r["additive"],
            "base": r["base"],
            "ligand": r["ligand"],
            "yield": float(r["yield"]),
        }
        for r in rows
    ]


def write(rows: list[dict], path: str) -> str:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=INPUTS + ["yield"])
        w.writeheader()
        w.writerows(rows)
    return path


def capped(rows: list[dict], cap: int | None, key: str) -> list[dict]:
    """At most ``cap`` rows of a related table, drawn with a fixed seed per table (the same rows for every method
    and run seed: BayBE refits on every related row at each recommendation, so the comparison uses one cap)."""
    if not cap or len(rows) <= cap:
        return rows
    idx = np.random.default_rng(sorted(TABLES).index(key)).choice(len(rows), cap, replace=False)
    return [rows[i] for i in sorted(idx)]


def shuffled(rows: list[dict], seed: int) -> list[dict]:
    ys = [r["yield"] for r in rows]
    np.random.default_rng(seed).shuffle(ys)
    return [{**r, "yield": y} for r, y in zip(rows, ys)]


def targets(ys: list[float]) -> tuple[float, float]:
    """The best value and the top-1% threshold (the ceil(0.01 N)-th best value)."""
    s = sorted(ys, reverse=True)
    return s[0], s[max(1, math.ceil(0.01 * len(s))) - 1]


def counts(history: list[float], best: float, top: float, budget: int) -> tuple[int | None, int | None]:
    to_best = next((i + 1 for i, v in enumerate(history) if v >= best), None)
    to_top = next((i + 1 for i, v in enumerate(history) if v >= top), None)
    return (to_best if to_best and to_best <= budget else None), (to_top if to_top and to_top <= budget else None)


def run_labloop(key: str, seed: int, method: str, budget: int, tmp: str, cap: int | None = None) -> dict:
    from labloop.strategy.replay import run_replay, with_related
    from labloop.strategy.tables import table_lab

    target = write(prepared(key), os.path.join(tmp, f"{key}.csv"))
    others = [k for k in TABLES if k != key]
    related = []
    if method == "related":
        related = [write(capped(prepared(k), cap, k), os.path.join(tmp, f"rel_{k}.csv")) for k in others]
    elif method == "shuffled":
        related = [
            write(shuffled(capped(prepared(k), cap, k), seed), os.path.join(tmp, f"shuf_{k}_{seed}.csv"))
            for k in others
        ]
    lab = table_lab(target, "yield", "max", seed=seed, initial_design=5, budget=budget)
    lab, prior = with_related(lab, related)
    best, top = targets(lab.values)
    init = np.random.default_rng(seed).choice(len(lab.values), 5, replace=False).tolist()
    t0 = time.perf_counter()
    res = run_replay(lab, budget, initial_rows=init, prior=prior, stop=lambda r: bool(r.history) and r.best >= best)
    to_best, to_top = counts(res.history, best, top, budget)
    return {
        "table": key,
        "seed": seed,
        "method": method,
        "to_best": to_best,
        "to_top1": to_top,
        "n": len(res.history),
        "s_per_ask": round(statistics.mean(res.ask_seconds), 3) if res.ask_seconds else None,
        "wall_s": round(time.perf_counter() - t0, 1),
        "related_correlation": res.last_info.get("related"),
        # per proposal: how many earlier campaigns the guarded model used (0 = the model without transfer)
        "related_used_per_ask": [len(u) for u in res.related_used] if related else None,
    }


def run_baybe(key: str, seed: int, budget: int, cap: int | None = None) -> dict:
    import pandas as pd
    from baybe import Campaign
    from baybe.parameters import CategoricalParameter, TaskParameter
    from baybe.searchspace import SearchSpace
    from baybe.targets import NumericalTarget
    from baybe.utils.random import set_random_seed

    set_random_seed(seed)
    rows = prepared(key)
    others = {k: capped(prepared(k), cap, k) for k in TABLES if k != key}
    values = {c: sorted({r[c] for t in [rows, *others.values()] for r in t}) for c in INPUTS}
    params = [CategoricalParameter(name=c, values=tuple(values[c])) for c in INPUTS]
    params.append(TaskParameter(name="task", values=tuple(TABLES), active_values=(key,)))
    df = pd.DataFrame([{c: r[c] for c in INPUTS} for r in rows])
    df["task"] = key
    t_setup = time.perf_counter()
    ss = SearchSpace.from_dataframe(df, parameters=params)
    campaign = Campaign(
        searchspace=ss,
        objective=NumericalTarget(name="yield").to_objective(),
        allow_recommending_already_measured=False,
    )
    rel = pd.DataFrame(
        [{**{c: r[c] for c in INPUTS}, "task": k, "yield": r["yield"]} for k, t in others.items() for r in t]
    )
    campaign.add_measurements(rel)
    setup_s = time.perf_counter() - t_setup
    index = {tuple(r[c] for c in INPUTS): i for i, r in enumerate(rows)}
    ys = [r["yield"] for r in rows]
    best, top = targets(ys)
    init = np.random.default_rng(seed).choice(len(rows), 5, replace=False).tolist()
    history, secs = [], []

    def observe(i: int) -> None:
        history.append(ys[i])
        campaign.add_measurements(pd.DataFrame([{**{c: rows[i][c] for c in INPUTS}, "task": key, "yield": ys[i]}]))

    for i in init:
        observe(i)
    while len(history) < budget and max(history) < best:
        t0 = time.perf_counter()
        rec = campaign.recommend(batch_size=1)
        secs.append(time.perf_counter() - t0)
        observe(index[tuple(rec.iloc[0][c] for c in INPUTS)])
    to_best, to_top = counts(history, best, top, budget)
    return {
        "table": key,
        "seed": seed,
        "method": "baybe",
        "to_best": to_best,
        "to_top1": to_top,
        "n": len(history),
        "s_per_ask": round(statistics.mean(secs), 3) if secs else None,
        "setup_s": round(setup_s, 1),
    }


def summarize(paths: list[str], budget: int = 60) -> None:
    """Per table and method: medians over seeds; then paired comparisons over every (table, seed) both methods ran
    (Wilcoxon signed-rank, scipy; a row never found counts as ``budget + 1``). Methods are named by method and cap
    (``related@100``) so that capped and uncapped runs of several files compare."""
    runs = [
        json.loads(line)
        for path in paths
        for line in Path(path).read_text().splitlines()
        if line.strip().startswith("{")
    ]
    name = lambda r: r["method"] + (f"@{r['related_cap']}" if r.get("related_cap") and r["method"] != "none" else "")
    val = lambda r, k: r[k] if r[k] is not None else budget + 1
    by: dict[str, dict[tuple, dict]] = {}
    for r in runs:
        by.setdefault(name(r), {})[(r["table"], r["seed"])] = r
    for method, cells in sorted(by.items()):
        for table in sorted({t for t, _ in cells}):
            rs = [r for (t, _), r in sorted(cells.items()) if t == table]
            print(
                json.dumps(
                    {
                        "table": table,
                        "method": method,
                        "seeds": [r["seed"] for r in rs],
                        "to_best": [r["to_best"] for r in rs],
                        "to_top1": [r["to_top1"] for r in rs],
                        "median_to_best": statistics.median(val(r, "to_best") for r in rs),
                        "median_to_top1": statistics.median(val(r, "to_top1") for r in rs),
                    }
                )
            )
    from scipy.stats import wilcoxon

    # every method against no transfer; labloop against BayBE and related against shuffled at the same cap
    pairs = [("none", m) for m in sorted(by) if m != "none"]
    for m in sorted(by):
        if m.startswith("related"):
            cap = m[len("related") :]
            pairs += [(m, other + cap) for other in ("baybe", "shuffled") if other + cap in by]
    for a, b in pairs:
        common = sorted(set(by.get(a, {})) & set(by.get(b, {})))
        if not common:
            continue
        for k in ("to_best", "to_top1"):
            xa = [val(by[a][c], k) for c in common]
            xb = [val(by[b][c], k) for c in common]
            d = [y - x for x, y in zip(xa, xb)]
            p = float(wilcoxon(xa, xb).pvalue) if any(d) else 1.0
            print(
                json.dumps(
                    {
                        "pair": f"{b} - {a}",
                        "measure": k,
                        "n": len(common),
                        f"median_{a}": statistics.median(xa),
                        f"median_{b}": statistics.median(xb),
                        "median_difference": statistics.median(d),
                        f"{b}_better": sum(x < 0 for x in d),
                        f"{a}_better": sum(x > 0 for x in d),
                        "ties": sum(x == 0 for x in d),
                        "wilcoxon_p": round(p, 4),
                    }
                )
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default="a,b,c,d,e")
    ap.add_argument("--seeds", type=seeds, default=seeds("0-2"))
    ap.add_argument("--methods", default="none,related,shuffled")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument(
        "--related-cap",
        type=int,
        default=None,
        help="at most this many rows of each related table (fixed seed per table), for every method",
    )
    ap.add_argument("--summarize", nargs="+", help="JSON-line files of runs: medians and paired comparisons")
    a = ap.parse_args()
    if a.summarize:
        summarize(a.summarize)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:  # seed outermost: a run cut short still covers every table
            for key in a.tables.split(","):
                for method in a.methods.split(","):
                    row = (
                        run_baybe(key, seed, a.budget, a.related_cap)
                        if method == "baybe"
                        else run_labloop(key, seed, method, a.budget, tmp, a.related_cap)
                    )
                    print(json.dumps({**row, "budget": a.budget, "related_cap": a.related_cap}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
