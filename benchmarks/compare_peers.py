"""labloop against random search and the peers (BayBE, Ax), table by table, from the per-run records.

Reads labloop's runs (``benchmarks/replay_tables.py``'s ``--runs`` file) and the peers' runs (``benchmarks/peers.py``'s
``--runs-out`` files, any number), and prints one JSON line per table plus, with ``--markdown``, the table that
docs/benchmarks/archive.md §3 shows. Random search is given twice: the same-seed runs of replay_tables.py (10 draws,
noisy) and its exact median, computed from the table (the position of the first of the K best rows in a random order of
N rows: ``P(first > m) = C(N - m, K) / C(N, K)``), which is what "random search's median" means without seed noise.

    python benchmarks/compare_peers.py --markdown     # defaults: the two files named below

Medians count "not within the budget" (150) as 151 and print it as ">150".
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from math import comb
from pathlib import Path

from replay_tables import DATA, _direction

BUDGET = 150


def exact_random_median(n: int, k: int) -> int:
    """Median number of draws (without replacement, uniformly random order) until one of the ``k`` best of ``n``
    rows is drawn."""
    total = comb(n, k)
    for m in range(1, n + 1):
        if comb(n - m, k) / total <= 0.5:  # P(first hit after m draws) <= 1/2  ->  m is the median
            return m
    return n


def table_facts(stem: str) -> tuple[int, int, int]:
    """Rows, count of rows tied with the best, count of top-1% rows (ties on the threshold included)."""
    with (DATA / f"{stem}.csv").open() as fh:
        vals = [float(r[-1]) for r in list(csv.reader(fh))[1:]]
    sign = 1.0 if _direction(stem) == "max" else -1.0
    ranked = sorted((sign * v for v in vals), reverse=True)
    top = ranked[max(1, len(vals) // 100) - 1]
    return len(vals), sum(v >= ranked[0] for v in ranked), sum(v >= top for v in ranked)


def _med(xs: list[int]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _show(m: float) -> str:
    return ">150" if m > BUDGET else (f"{m:g}" if m == m else "-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parent
    ap.add_argument("--runs", default=str(here / "replay_runs.jsonl"))
    ap.add_argument("--peers", nargs="*", default=[str(here / "results" / "peers_runs.jsonl")])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    ours = [json.loads(x) for x in Path(a.runs).read_text().splitlines() if x.strip()]
    peers = []
    for p in a.peers:
        if Path(p).exists():
            peers += [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]
    rows = []
    for stem in sorted({r["table"] for r in ours}):
        n, k_best, k_top = table_facts(stem)
        line: dict = {
            "table": stem,
            "rows": n,
            "random_exact_median_to_best": exact_random_median(n, k_best),
            "random_exact_median_to_top1pct": exact_random_median(n, k_top),
        }
        for strat in ("labloop", "random"):
            rs = [r for r in ours if r["table"] == stem and r["strategy"] == strat and r["seed"] < a.seeds]
            if rs:
                line[strat] = {
                    "seeds": len(rs),
                    "median_to_best": _med([r["to_best"] for r in rs]),
                    "median_to_top1pct": _med([r["to_top1"] for r in rs]),
                    "found_best": sum(r["to_best"] <= BUDGET for r in rs),
                    "sec_per_proposal": round(statistics.mean(r["sec"] for r in rs), 3),
                }
        for method in ("baybe", "ax"):
            rs = [r for r in peers if r["table"] == stem and r["method"] == method]
            if rs:
                line[method] = {
                    "seeds": len(rs),
                    "median_to_best": _med([r["to_best"] or BUDGET + 1 for r in rs]),
                    "median_to_top1pct": _med([r["to_top1"] or BUDGET + 1 for r in rs]),
                    "found_best": sum(r["to_best"] is not None for r in rs),
                    "sec_per_proposal": round(
                        statistics.median(
                            [r["s_per_proposal"] for r in rs if r["s_per_proposal"] is not None] or [0.0]
                        ),
                        3,
                    ),
                }
        if "labloop" in line and "baybe" in line:
            # is the difference more than seed luck? two-sided Mann-Whitney U on experiments-to-best per seed
            from scipy.stats import mannwhitneyu

            x = [
                r["to_best"] for r in ours if r["table"] == stem and r["strategy"] == "labloop" and r["seed"] < a.seeds
            ]
            y = [r["to_best"] or BUDGET + 1 for r in peers if r["table"] == stem and r["method"] == "baybe"]
            line["p_labloop_vs_baybe"] = round(float(mannwhitneyu(x, y, alternative="two-sided").pvalue), 3)
        if "labloop" in line:
            lb = line["labloop"]["median_to_best"]
            line["ratio_to_exact_random"] = round(lb / line["random_exact_median_to_best"], 3)
            peer_best = [line[m]["median_to_best"] for m in ("baybe", "ax") if m in line]
            line["no_worse_than_best_peer"] = (lb <= min(peer_best)) if peer_best else None
        rows.append(line)
        print(json.dumps(line))
    if not a.markdown:
        return
    print(
        "\n| table | rows | labloop to best (found) | labloop to top-1% | random exact median to best / top-1% "
        "| random, same seeds | labloop / random (exact) | BayBE to best (found, seeds) | BayBE to top-1% "
        "| p vs BayBE | Ax to best (seeds) | s / proposal labloop (BayBE) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def found(m: dict) -> str:
        return f" ({m['found_best']}/{m['seeds']})"

    for r in rows:
        lab, rnd, bb, ax = (r.get(k, {}) for k in ("labloop", "random", "baybe", "ax"))
        print(
            f"| {r['table']} | {r['rows']} | {_show(lab['median_to_best'])} ({lab['found_best']}/{lab['seeds']}) "
            f"| {_show(lab['median_to_top1pct'])} | {r['random_exact_median_to_best']} / "
            f"{r['random_exact_median_to_top1pct']} | {rnd.get('median_to_best', '-')} "
            f"| {r['ratio_to_exact_random']} "
            f"| {_show(bb['median_to_best']) + found(bb) if bb else 'not run'} "
            f"| {_show(bb['median_to_top1pct']) if bb else '-'} | {r.get('p_labloop_vs_baybe', '-')} "
            f"| {_show(ax['median_to_best']) + ' (' + str(ax['seeds']) + ')' if ax else 'not run'} "
            f"| {lab['sec_per_proposal']} ({bb.get('sec_per_proposal', '-')}) |"
        )


if __name__ == "__main__":
    main()
