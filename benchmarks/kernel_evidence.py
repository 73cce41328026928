"""Does leave-one-out evidence prefer BayBE's GP priors on the tables where BayBE finds the best row sooner?

Why this exists: on the 15-table one-at-a-time re-run (docs/benchmarks/archive.md §13) BayBE leads on three tables (OER
plate d, crossed barrel, autoam), and BayBE's kernel and priors in labloop (``kernel: matern_gamma``, pilot M of
RESULTS-strategy.md) reproduce BayBE's medians on 9 of 11 large tables. Choosing the kernel per campaign by model
evidence (as the transfer guard chooses related campaigns: closed-form leave-one-out log predictive density, Rasmussen &
Williams 2006 eq. 5.10-5.12) would be a principled rule that needs no table knowledge, *if* the evidence pointed at the
prior that searches better. This script measures what the evidence says, before any such rule is built: for each table,
``--repeats`` random subsets of ``n`` rows (``numpy.random.default_rng(1000 n + r)``), the objective on labloop's
modelling scale (``ObjectiveTransform``), a GP fitted by marginal likelihood with each kernel of ``--kernels`` on
labloop's pool features (``labloop.strategy.modeling.fit_gp``), and the mean leave-one-out log predictive density per
point (``labloop.strategy.transfer.loo_scores``; higher predicts the held-out rows better).

One JSON line per (table, n): the mean LOO density per point of each kernel over the subsets, and for each kernel
other than the first, the mean difference to the first and the number of subsets where it is higher. A summary line
counts the tables where each kernel is ahead of the first.

    python benchmarks/kernel_evidence.py --ns 20,40,80 --repeats 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from replay_tables import DATA, shared_table_lab, table_files

from labloop.strategy.modeling import ObjectiveTransform, fit_gp
from labloop.strategy.space import DTYPE
from labloop.strategy.transfer import loo_scores


def table_evidence(stem: str, ns: list[int], repeats: int, kernels: list[str]) -> list[dict]:
    """Mean LOO log density per point of each kernel on ``repeats`` random ``n``-row subsets of one table."""
    path = DATA / f"{stem}.csv"
    lab = shared_table_lab(path, seed=0)
    F = lab.pool.space.features(lab.pool.X)
    tf = ObjectiveTransform.infer(lab.spec.objectives[0], lab.values)
    y = tf(torch.tensor(lab.values, dtype=DTYPE))
    out = []
    for n in ns:
        per: dict[str, list[float]] = {k: [] for k in kernels}
        for r in range(repeats):
            idx = torch.as_tensor(np.random.default_rng(1000 * n + r).choice(len(F), n, replace=False))
            for k in kernels:
                gp = fit_gp(None, F[idx], y[idx].unsqueeze(-1), kernel=k)
                per[k].append(float(loo_scores(gp).mean()))
        line: dict = {
            "table": stem,
            "rows": len(F),
            "features": int(F.shape[-1]),
            "n": n,
            "repeats": repeats,
            "loo_per_point": {k: round(statistics.mean(v), 4) for k, v in per.items()},
        }
        base = per[kernels[0]]
        for k in kernels[1:]:
            d = [a - b for a, b in zip(per[k], base)]
            line[f"{k}_minus_{kernels[0]}"] = round(statistics.mean(d), 4)
            line[f"{k}_higher"] = sum(x > 0 for x in d)
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ns", default="20,40,80", help="subset sizes")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument(
        "--kernels",
        default="matern,matern_gamma,rbf",
        help="labloop kernels (BotorchOptions.kernel); the first is the reference",
    )
    ap.add_argument("--tables", nargs="*", help="substrings of table file names (default: all)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    kernels = a.kernels.split(",")
    ns = [int(x) for x in a.ns.split(",")]
    stems = [p.stem for p in table_files(a.tables)]
    ahead = dict.fromkeys(kernels[1:], 0)
    for stem in stems:
        lines = table_evidence(stem, ns, a.repeats, kernels)
        for line in lines:
            print(json.dumps(line), flush=True)
        for k in ahead:  # ahead on a table: higher on average over every n and subset
            ahead[k] += statistics.mean(x[f"{k}_minus_{kernels[0]}"] for x in lines) > 0
    print(
        json.dumps({"summary": True, "tables": len(stems), "reference": kernels[0], "tables_where_ahead": ahead}),
        flush=True,
    )


if __name__ == "__main__":
    main()
