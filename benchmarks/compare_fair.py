"""labloop against BayBE (and random search) under the shared protocol of issue 13, paired seed by seed.

Reads labloop's runs (``benchmarks/replay_tables.py --runs``) and the peers' runs (``benchmarks/peers.py
--runs-out``), both written under ``labloop.benchmark_protocol`` (the same starting rows per seed, top-1% =
``ceil(0.01 N)``-th best with ties, batches counted to the end of their round). For each (table, q) it pairs the
seeds both methods ran and prints one JSON line: per-method medians of experiments and rounds to the best row and
to a top-1% row, the paired differences labloop - BayBE with the two-sided Wilcoxon signed-rank test
(``labloop.benchmark_protocol.paired_wilcoxon``: zero differences dropped, Wilcoxon's rule; ties in ``|d|``
average-ranked), seconds per ask, and BayBE's setup time apart from its per-proposal time. One summary line per q
gives the geometric mean over tables of labloop / BayBE median experiments to the best row, the same ratio run by run
(``geomean_paired_runs_to_best``: each seed's labloop / BayBE, geometric mean per table, then over tables), and, for q > 1,
labloop's and BayBE's median experiments at q over their own at q = 1 (geometric mean over tables).

    python benchmarks/compare_fair.py --markdown
    python benchmarks/compare_fair.py --options '{"batch_selection": "kb"}' --markdown   # a labloop variant

A run that did not reach the target within the budget counts as 151 (printed ">150").

``--legacy-peers FILE``: one-at-a-time BayBE runs recorded before issue 13 (``benchmarks/results/peers_runs.jsonl``,
2026-11-22) are accepted as q = 1 runs of this protocol after checking that each run's starting rows are exactly
``start_rows(N, seed)``: that script already drew them with ``default_rng(seed).choice`` and counted top-1% by
``ceil(0.01 N)`` with ties, so their experiment counts are this protocol's; only their timing hid BayBE's setup in
the first proposal, so their seconds are not compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from replay_tables import DATA

from labloop.benchmark_protocol import censored, geometric_mean, paired_wilcoxon, start_rows

BUDGET = 150


def _load(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        if Path(p).exists():
            out += [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]
    return [r for r in out if r.get("protocol") == "issue13"]


def _legacy(paths: list[str]) -> list[dict]:
    """Pre-issue-13 peer runs whose starting rows are this protocol's, as q = 1 runs (see the module docstring)."""
    out = []
    n_rows: dict[str, int] = {}
    for p in paths:
        for x in Path(p).read_text().splitlines():
            r = json.loads(x) if x.strip() else None
            if not r or r.get("protocol") or r["method"] != "baybe":
                continue
            if r["table"] not in n_rows:
                with (DATA / f"{r['table']}.csv").open() as fh:
                    n_rows[r["table"]] = sum(1 for line in fh if line.strip()) - 1
            if r["init_rows"] != start_rows(n_rows[r["table"]], r["seed"]):
                raise SystemExit(f"{p}: {r['table']} seed {r['seed']}: starting rows differ from the protocol's")
            rounds = {k: (None if r[k] is None else max(0, r[k] - len(r["init_rows"]))) for k in ("to_best", "to_top1")}
            out.append(
                {
                    **r,
                    "q": 1,
                    "protocol": "issue13",
                    "legacy": True,
                    "s_per_proposal": None,
                    "setup_s": None,
                    "first_proposal_s": None,
                    "rounds_to_best": rounds["to_best"],
                    "rounds_to_top1": rounds["to_top1"],
                }
            )
    return out


def _normal(options: dict, q: int) -> dict:
    """Options without those that do not change the run: ``batch_selection: fantasy`` (the default), and
    ``batch_selection`` at all for q = 1 (one proposal with nothing in flight is the same analytic LogEI or Thompson
    sample either way; ``tests/test_benchmark_protocol.py`` checks it), so a batch variant's q = 1 runs are the
    default's."""
    return {k: v for k, v in options.items() if not (k == "batch_selection" and (v == "fantasy" or q == 1))}


def _show(m: float | None) -> str:
    if m is None:
        return "-"
    return ">150" if m > BUDGET else f"{m:g}"


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def compare(ours: list[dict], peers: list[dict], qs: list[int], peer: str = "baybe") -> list[dict]:
    """One dict per (table, q) with both methods' runs on the same seeds (see the module docstring)."""
    lines = []
    for q in qs:
        for table in sorted({r["table"] for r in ours if r["q"] == q}):
            lab = {r["seed"]: r for r in ours if r["table"] == table and r["q"] == q and r["strategy"] == "labloop"}
            bb = {r["seed"]: r for r in peers if r["table"] == table and r.get("q", 1) == q and r["method"] == peer}
            rnd = {r["seed"]: r for r in ours if r["table"] == table and r["q"] == q and r["strategy"] == "random"}
            seeds = sorted(set(lab) & set(bb))
            line: dict = {"table": table, "q": q, "seeds": seeds, "labloop_only_seeds": sorted(set(lab) - set(bb))}
            if not seeds:
                continue
            for name, runs in (("labloop", lab), (peer, bb)):
                rs = [runs[s] for s in seeds]
                secs = [r.get("sec", r.get("s_per_proposal")) for r in rs]
                line[name] = {
                    "to_best": [censored(r["to_best"], BUDGET) for r in rs],
                    "to_top1": [censored(r["to_top1"], BUDGET) for r in rs],
                    "rounds_to_best": [r.get("rounds_to_best") for r in rs],
                    "found_best": sum(r["to_best"] is not None and r["to_best"] <= BUDGET for r in rs),
                    "sec_per_ask": round(statistics.median(xs), 3)
                    if (xs := [s for s in secs if s is not None])
                    else None,
                }
                m = line[name]
                m["median_to_best"] = _med(m["to_best"])
                m["median_to_top1"] = _med(m["to_top1"])
                done_rounds = [x for x in m["rounds_to_best"] if x is not None]
                m["median_rounds_to_best"] = _med(done_rounds) if len(done_rounds) * 2 > len(seeds) else None
                if name == peer:
                    for key in ("setup_s", "first_proposal_s"):  # measured in this session only (not legacy runs)
                        xs = [r[key] for r in rs if r.get(key) is not None]
                        m[key] = round(statistics.median(xs), 2) if xs else None
                    m["legacy_seeds"] = sum(bool(r.get("legacy")) for r in rs)
                    # Optuna's and HEBO's proposals that were not an unmeasured row (benchmarks/peer_adapters.py)
                    props = sum(r.get("peer_proposals", 0) for r in rs)
                    m["mapped_share"] = round(sum(r.get("peer_mapped", 0) for r in rs) / props, 3) if props else None
                    again = [r["peer_mapped_measured_row"] for r in rs if "peer_mapped_measured_row" in r]
                    m["mapped_measured_row_share"] = (
                        round(sum(again) / sum(r["peer_mapped"] for r in rs), 3)
                        if len(again) == len(rs) and any(r["peer_mapped"] for r in rs)
                        else None
                    )
            if rnd:
                line["random_median_to_best"] = _med([rnd[s]["to_best"] for s in seeds if s in rnd])
            line["paired_to_best"] = paired_wilcoxon(line["labloop"]["to_best"], line[peer]["to_best"])
            line["paired_to_top1"] = paired_wilcoxon(line["labloop"]["to_top1"], line[peer]["to_top1"])
            line["ratio_to_best"] = line["labloop"]["median_to_best"] / line[peer]["median_to_best"]
            lines.append(line)
    return lines


def summaries(lines: list[dict], peer: str = "baybe") -> list[dict]:
    out = []
    for q in sorted({ln["q"] for ln in lines}):
        ls = [ln for ln in lines if ln["q"] == q]
        s: dict = {
            "q": q,
            "tables": len(ls),
            "geomean_labloop_over_peer_to_best": round(geometric_mean(ln["ratio_to_best"] for ln in ls), 3),
            "geomean_labloop_over_peer_to_top1": round(
                geometric_mean(ln["labloop"]["median_to_top1"] / ln[peer]["median_to_top1"] for ln in ls), 3
            ),
            # the same ratio run by run (each seed's pair, then the geometric mean per table and over the
            # tables): every run counts, not only the median one, so one lucky or unlucky seed moves it less
            "geomean_paired_runs_to_best": round(
                geometric_mean(
                    geometric_mean(a / b for a, b in zip(ln["labloop"]["to_best"], ln[peer]["to_best"])) for ln in ls
                ),
                3,
            ),
            "labloop_ahead": sum(ln["ratio_to_best"] < 1 for ln in ls),
            "level": sum(ln["ratio_to_best"] == 1 for ln in ls),
            "peer_ahead": sum(ln["ratio_to_best"] > 1 for ln in ls),
            "p_below_0.1": [
                f"{ln['table']} ({'labloop' if ln['paired_to_best']['median_diff'] < 0 else peer})"
                for ln in ls
                if ln["paired_to_best"]["p"] is not None and ln["paired_to_best"]["p"] < 0.1
            ],
        }
        if q != 1:  # experiments at q over experiments at q = 1, same tables and seeds
            for name in ("labloop", peer):
                ratios = []
                for ln in ls:
                    base = next((b for b in lines if b["q"] == 1 and b["table"] == ln["table"]), None)
                    if base is None:
                        continue
                    common = [s for s in ln["seeds"] if s in base["seeds"]]
                    a = [ln[name]["to_best"][ln["seeds"].index(s)] for s in common]
                    b = [base[name]["to_best"][base["seeds"].index(s)] for s in common]
                    if a:
                        ratios.append(statistics.median(a) / statistics.median(b))
                if ratios:
                    s[f"geomean_{name}_q{q}_over_q1_to_best"] = round(geometric_mean(ratios), 3)
        out.append(s)
    return out


def markdown(lines: list[dict], peer: str = "baybe") -> str:
    p = "BayBE" if peer == "baybe" else peer
    rows = [
        f"| table | q | seeds | labloop to best (found) | {p} to best (found) | median diff (l - {p}), wins l/{p}/tie "
        f"| Wilcoxon p | labloop / {p} to top-1% | p top-1% | rounds to best l / {p} | s per ask l / {p} "
        f"| {p} setup s (first proposal s) | {p} proposals mapped to a row |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ln in lines:
        lab, bb, pb, pt = ln["labloop"], ln[peer], ln["paired_to_best"], ln["paired_to_top1"]
        rows.append(
            f"| {ln['table']} | {ln['q']} | {len(ln['seeds'])} | {_show(lab['median_to_best'])} "
            f"({lab['found_best']}/{len(ln['seeds'])}) | {_show(bb['median_to_best'])} ({bb['found_best']}/"
            f"{len(ln['seeds'])}) | {pb['median_diff']:+g}, {pb['x_better']}/{pb['y_better']}/{pb['zeros']} "
            f"| {pb['p']:.3g} | {_show(lab['median_to_top1'])} / {_show(bb['median_to_top1'])} | {pt['p']:.3g} "
            f"| {_show(lab['median_rounds_to_best'])} / {_show(bb['median_rounds_to_best'])} "
            f"| {lab['sec_per_ask']} / {bb['sec_per_ask']} | {bb['setup_s']} ({bb['first_proposal_s']}) "
            f"| {'-' if bb['mapped_share'] is None else format(bb['mapped_share'], '.0%')} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="*", default=[str(HERE / "results" / "fair_labloop_runs.jsonl")])
    ap.add_argument("--peers", nargs="*", default=[str(HERE / "results" / "fair_peers_runs.jsonl")])
    ap.add_argument(
        "--legacy-peers",
        nargs="*",
        default=[],
        help="pre-issue-13 BayBE runs, used as q = 1 runs where the current runs file has none for that (table, seed)",
    )
    ap.add_argument("--peer", default="baybe", help="the peer's method name in the peers' runs, e.g. optuna_gp")
    ap.add_argument("--options", default="{}", help="which labloop variant (its --options JSON)")
    ap.add_argument("--q", default="1,2,4,8")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    opts = json.loads(a.options)
    ours = [
        r
        for r in _load(a.runs)
        if _normal(r.get("options", {}), r["q"]) == _normal(opts, r["q"]) or r["strategy"] == "random"
    ]
    peers = _load(a.peers)
    have = {(r["table"], r["seed"], r.get("q", 1), r["method"]) for r in peers}
    peers += [r for r in _legacy(a.legacy_peers) if (r["table"], r["seed"], 1, r["method"]) not in have]
    lines = compare(ours, peers, [int(q) for q in a.q.split(",")], a.peer)
    for ln in lines:
        print(json.dumps(ln))
    for s in summaries(lines, a.peer):
        print(json.dumps(s))
    if a.markdown:
        print()
        print(markdown(lines, a.peer))


if __name__ == "__main__":
    main()
