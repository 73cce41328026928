#!/usr/bin/env python3
"""Chemical encodings of SMILES categories against one-hot, on the Buchwald-Hartwig and Suzuki tables.

Every method starts from the same rows per seed (``numpy.random.default_rng(seed).choice(N, 5, replace=False)``),
then one proposal per step up to ``--budget`` experiments, stopping once the table's best row is measured; labloop
``replay`` defaults otherwise (``initial_design`` 5 = the starting rows). The encodings (``--encodings``) set every
categorical parameter's ``encoding`` (labloop/strategy/chem.py). One JSON line per run: experiments to the best row
and to a top-1% row (rank < ceil(0.01 N), ties included; None = not within the budget), seconds per proposal;
``--summarize FILE`` prints medians and per-seed paired differences against one_hot.

    .venv/bin/python benchmarks/chem_encoding.py --tables chem_buchwald_hartwig_c_Et,chem_suzuki_perera --seeds 0-2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from _seeds import seeds
from transfer import counts, targets

DATA = os.environ.get("LABLOOP_BENCH_DATA", "/work/shared/benchmarks/data")


def run(table: str, seed: int, encoding: str, budget: int) -> dict:
    from labloop.spec import CategoricalParameter
    from labloop.strategy.replay import run_replay
    from labloop.strategy.space import CandidatePool, SearchSpace
    from labloop.strategy.tables import table_lab

    lab = table_lab(os.path.join(DATA, table + ".csv"), "yield", "max", seed=seed, initial_design=5, budget=budget)
    params = [
        p.model_copy(update={"encoding": encoding}) if isinstance(p, CategoricalParameter) else p
        for p in lab.spec.parameters
    ]
    spec = lab.spec.model_copy(update={"parameters": params})
    lab.spec, lab.pool = spec, CandidatePool(SearchSpace.from_spec(spec), lab.pool.rows)
    best, top = targets(lab.values)
    init = np.random.default_rng(seed).choice(len(lab.values), 5, replace=False).tolist()
    t0 = time.perf_counter()
    res = run_replay(lab, budget, initial_rows=init, stop=lambda r: bool(r.history) and r.best >= best)
    to_best, to_top = counts(res.history, best, top, budget)
    return {
        "table": table,
        "seed": seed,
        "method": encoding,
        "to_best": to_best,
        "to_top1": to_top,
        "n": len(res.history),
        "budget": budget,
        "wall_s": round(time.perf_counter() - t0, 1),
        "s_per_ask": round(statistics.mean(res.ask_seconds), 3) if res.ask_seconds else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default="chem_buchwald_hartwig_c_Et,chem_suzuki_perera")
    ap.add_argument("--seeds", type=seeds, default=seeds("0-2"))
    ap.add_argument("--encodings", default="one_hot,rdkit_descriptors,morgan_fingerprint")
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--summarize")
    a = ap.parse_args()
    if a.summarize:
        from transfer import summarize

        summarize(a.summarize, baseline="one_hot")
        return
    for table in a.tables.split(","):
        for seed in a.seeds:
            for enc in a.encodings.split(","):
                print(json.dumps(run(table, seed, enc, a.budget)), flush=True)


if __name__ == "__main__":
    main()
