#!/usr/bin/env python3
"""Peer baselines on the pool-based lookup-table benchmark (shared/benchmarks).

Methods: random search, Ax (Client API, default "fast" generation strategy, proposals
snapped to the nearest unmeasured table row), BayBE (table as a discrete search space,
default Campaign / recommender), Optuna 5 GPSampler and TPESampler and HEBO (issue 25:
benchmarks/peer_adapters.py says how a proposal becomes an unmeasured row).

Protocol (identical for every method):
  * 5 starting rows drawn with numpy.random.default_rng(seed).choice(N, 5, replace=False),
    the same 5 rows for every method for a given seed;
  * then one proposal per step, budget 150 experiments (starting rows included);
  * a measured row is never proposed / measured again;
  * a run stops early once the table's best row is measured.
Per run: experiments to the best row (None if > budget), experiments to a top-1% row
(rank < ceil(0.01 N), ties on the threshold value included), mean seconds per proposal.

Issue 13: the starting rows, the target rows and the counting of batches come from
labloop.benchmark_protocol (numpy only), the same functions labloop's replay benchmark uses;
``--q`` runs rounds of q proposals (BayBE ``recommend(batch_size=q)``; random: the next q rows),
experiments counted to the end of the round that measured the first target row. BayBE's setup
(search space, its computational representation, the first recommendation's one-off work) is
reported apart: ``setup_s`` (construction + start rows) and ``first_proposal_s``; ``s_per_proposal``
is the mean over the later rounds.

Runs in a separate venv (/work/peervenv) with ax-platform and baybe; not part of labloop.

Usage:
  python benchmarks/peers.py --tables pvlab_crossed_barrel --methods random,baybe,ax \
      --seeds 0-9 --runs-out runs.jsonl
  python benchmarks/peers.py --summarize runs.jsonl
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # peer_adapters
from labloop.benchmark_protocol import experiments_to, start_rows, target_rows

DATA_DIR = os.environ.get(
    "LABLOOP_BENCH_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "benchmarks", "data"),
)
if not os.path.isdir(DATA_DIR):
    DATA_DIR = "/work/shared/benchmarks/data"

BUDGET = 150
N_INIT = 5

# Direction per table family (README): True = minimise.
MINIMIZE = {
    "pvlab_crossed_barrel": False,  # toughness
    "pvlab_p3ht_cnt": False,  # conductivity
    "pvlab_agnp": True,  # spectrum_loss
    "pvlab_perovskite": True,  # instability_index
    "pvlab_autoam": False,  # shape_score
    "chem_": False,  # yield
    "olympus_oer": True,  # overpotential
}


def minimize_for(table: str) -> bool:
    for prefix, mini in MINIMIZE.items():
        if table.startswith(prefix):
            return mini
    raise KeyError(f"no direction known for table {table}")


def table_path(name: str) -> str:
    exact = os.path.join(DATA_DIR, name + ".csv")
    if os.path.exists(exact):
        return exact
    hits = sorted(glob.glob(os.path.join(DATA_DIR, name + "*.csv")))
    if len(hits) != 1:
        raise FileNotFoundError(f"table {name!r}: {hits}")
    return hits[0]


class Table:
    def __init__(self, name: str):
        self.path = table_path(name)
        self.name = os.path.basename(self.path)[:-4]
        df = pd.read_csv(self.path)
        self.df = df.reset_index(drop=True)
        self.inputs = list(df.columns[:-1])
        self.target = df.columns[-1]
        self.minimize = minimize_for(self.name)
        self.numeric = [c for c in self.inputs if pd.api.types.is_numeric_dtype(df[c])]
        self.categorical = [c for c in self.inputs if c not in self.numeric]
        self.N = len(df)
        y = df[self.target].to_numpy(dtype=float)
        self.y = y
        score = -y if self.minimize else y  # larger is better
        self.score = score
        self.best_value = score.max()
        self.k_top = math.ceil(0.01 * self.N)
        self.best_rows, self.top_rows = target_rows([float(v) for v in y], not self.minimize)
        # Normalised matrix for nearest-row snapping.
        self._num = np.zeros((self.N, len(self.numeric)))
        self._lo, self._span = {}, {}
        for j, c in enumerate(self.numeric):
            v = df[c].to_numpy(dtype=float)
            lo, hi = v.min(), v.max()
            span = hi - lo if hi > lo else 1.0
            self._lo[c], self._span[c] = lo, span
            self._num[:, j] = (v - lo) / span
        self._cat = df[self.categorical].astype(str).to_numpy() if self.categorical else None
        self._key_to_row = {self.key(df.iloc[i]): i for i in range(self.N)}
        assert len(self._key_to_row) == self.N, "duplicate input rows"

    def key(self, rowlike) -> tuple:
        out = []
        for c in self.inputs:
            v = rowlike[c]
            out.append(round(float(v), 8) if c in self.numeric else str(v))
        return tuple(out)

    def row_of(self, rowlike) -> int | None:
        return self._key_to_row.get(self.key(rowlike))

    def params(self, i: int) -> dict:
        r = self.df.iloc[i]
        out = {}
        for c in self.inputs:
            v = r[c]
            if c in self.numeric:
                out[c] = int(v) if pd.api.types.is_integer_dtype(self.df[c]) else float(v)
            else:
                out[c] = str(v)
        return out

    def nearest_unmeasured(self, point: dict, measured: set) -> tuple[int, float]:
        d = np.zeros(self.N)
        if self.numeric:
            p = np.array([(float(point[c]) - self._lo[c]) / self._span[c] for c in self.numeric])
            d += ((self._num - p) ** 2).sum(axis=1)
        if self.categorical:
            p = np.array([str(point[c]) for c in self.categorical])
            d += (self._cat != p).sum(axis=1)
        if measured:
            d[list(measured)] = np.inf
        i = int(np.argmin(d))
        return i, float(np.sqrt(d[i]))


def initial_rows(N: int, seed: int) -> list[int]:
    return start_rows(N, seed, N_INIT)


# ----------------------------------------------------------------- strategies
class RandomSearch:
    def __init__(self, table: Table, seed: int, init: list[int]):
        self.rng = np.random.default_rng(seed + 1_000_003)
        rest = np.setdiff1d(np.arange(table.N), init)
        self.order = [int(i) for i in self.rng.permutation(rest)]

    def observe(self, i: int, y: float):
        pass

    def propose(self, measured: set) -> int:
        while self.order[0] in measured:
            self.order.pop(0)
        return self.order.pop(0)

    def propose_batch(self, measured: set, q: int) -> list[int]:
        return [self.propose(measured) for _ in range(q)]


class BayBE:
    def __init__(self, table: Table, seed: int, init: list[int]):
        from baybe import Campaign
        from baybe.parameters import NumericalDiscreteParameter
        from baybe.searchspace import SearchSpace
        from baybe.targets import NumericalTarget
        from baybe.utils.random import set_random_seed

        set_random_seed(seed)
        self.t = table
        df = table.df
        params = []
        for c in table.inputs:
            if c in table.numeric:
                params.append(
                    NumericalDiscreteParameter(name=c, values=tuple(sorted(float(v) for v in df[c].unique())))
                )
            else:
                params.append(self._categorical(c, tuple(sorted(df[c].astype(str).unique()))))
        inp = df[table.inputs].copy()
        for c in table.numeric:
            inp[c] = inp[c].astype(float)
        ss = SearchSpace.from_dataframe(inp, parameters=params)
        # BayBE builds the computational representation lazily: force it here so that it counts as setup
        # (issue 13: 47-49 s per run on a 1,000-row table had been hidden in the first proposal)
        getattr(getattr(ss, "discrete", None), "comp_rep", None)
        target = NumericalTarget(name=table.target, minimize=table.minimize)
        self.campaign = Campaign(
            searchspace=ss,
            objective=target.to_objective(),
            allow_recommending_already_measured=False,
        )
        self._pending = []
        for i in init:
            self.observe(i, table.y[i])

    def _categorical(self, name: str, values: tuple):
        from baybe.parameters import CategoricalParameter

        return CategoricalParameter(name=name, values=values)  # BayBE's default: one-hot

    def observe(self, i: int, y: float):
        row = {c: (float(v) if c in self.t.numeric else v) for c, v in self.t.params(i).items()}
        row[self.t.target] = float(y)
        self.campaign.add_measurements(pd.DataFrame([row]))

    def propose(self, measured: set) -> int:
        return self.propose_batch(measured, 1)[0]

    def propose_batch(self, measured: set, q: int) -> list[int]:
        rec = self.campaign.recommend(batch_size=q)
        out = []
        for k in range(len(rec)):
            i = self.t.row_of(rec.iloc[k])
            if i is None:
                raise RuntimeError(f"BayBE recommended a point not in the table: {rec.iloc[k].to_dict()}")
            if i in measured or i in out:
                raise RuntimeError("BayBE re-proposed a measured row")
            out.append(i)
        return out

    def observe_batch(self, rows: list[int]):
        df = []
        for i in rows:
            row = {c: (float(v) if c in self.t.numeric else v) for c, v in self.t.params(i).items()}
            row[self.t.target] = float(self.t.y[i])
            df.append(row)
        self.campaign.add_measurements(pd.DataFrame(df))


class BayBEChem(BayBE):
    """BayBE with its chemical encodings (issue 13 item 4): every categorical column whose values are all valid
    SMILES becomes a ``SubstanceParameter`` (label = the SMILES) with ``ENCODING`` (BayBE's defaults otherwise:
    decorrelated descriptors); other categorical columns stay one-hot. Needs ``baybe[chem]`` in the peer venv."""

    ENCODING = "MORDRED"

    def _categorical(self, name: str, values: tuple):
        from baybe.parameters import SubstanceParameter
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        if all(Chem.MolFromSmiles(v) is not None for v in values):
            return SubstanceParameter(name=name, data={v: v for v in values}, encoding=self.ENCODING)
        return super()._categorical(name, values)


def _chem(encoding: str) -> type:
    return type(f"BayBE_{encoding}", (BayBEChem,), {"ENCODING": encoding})


class Ax:
    """Ax Client, default 'fast' generation strategy; numeric columns as float/int range
    parameters, text columns as unordered choice parameters (Ax's own discrete handling);
    a proposal that is not an unmeasured table row is snapped to the nearest unmeasured
    row (numeric columns scaled to [0,1], categorical mismatch = 1); the proposed trial is
    then marked abandoned and the row actually measured is attached as its own trial, so
    the model learns from what was measured."""

    def __init__(self, table: Table, seed: int, init: list[int]):
        from ax.api.client import Client
        from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

        for name in ("ax", "botorch", "gpytorch", "linear_operator"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.t = table
        df = table.df
        params = []
        for c in table.inputs:
            if c in table.numeric:
                is_int = pd.api.types.is_integer_dtype(df[c])
                lo, hi = df[c].min(), df[c].max()
                params.append(
                    RangeParameterConfig(
                        name=c,
                        bounds=(int(lo), int(hi)) if is_int else (float(lo), float(hi)),
                        parameter_type="int" if is_int else "float",
                    )
                )
            else:
                params.append(
                    ChoiceParameterConfig(
                        name=c,
                        values=sorted(df[c].astype(str).unique().tolist()),
                        parameter_type="str",
                        is_ordered=False,
                    )
                )
        self.client = Client(random_seed=seed)
        try:
            from ax.utils.common.logger import set_ax_logger_levels, set_stderr_log_level

            set_stderr_log_level(logging.ERROR)
            set_ax_logger_levels(logging.ERROR)
        except Exception:  # noqa: BLE001 - quieter logs only: an Ax without these helpers runs all the same
            pass
        self.client.configure_experiment(parameters=params, name=f"{table.name}_{seed}")
        self.client.configure_optimization(
            objective=("-" if table.minimize else "") + "objective"  # "yield" is not a valid Ax expression
        )
        self.client.configure_generation_strategy(
            method="fast",
            initialization_budget=N_INIT,
            initialization_random_seed=seed,
            initialize_with_center=False,
            use_existing_trials_for_initialization=True,
        )
        for i in init:
            self.observe(i, table.y[i])
        self.n_proposals = 0
        self.n_snapped = 0
        self.snap_dists = []
        self.n_remeasure_proposals = 0
        self.generators: dict[str, int] = {}

    def observe(self, i: int, y: float):
        idx = self.client.attach_trial(parameters=self.t.params(i))
        self.client.complete_trial(trial_index=idx, raw_data={"objective": float(y)})

    def propose(self, measured: set) -> int:
        trials = self.client.get_next_trials(max_trials=1)
        ((tidx, point),) = trials.items()
        self.n_proposals += 1
        gr = self.client._experiment.trials[tidx].generator_runs[0]
        gkey = str(getattr(gr, "_generator_key", None))
        self.generators[gkey] = self.generators.get(gkey, 0) + 1
        exact = self.t.row_of(point)
        if exact is not None and exact not in measured:
            self._pending_trial = tidx
            return exact
        if exact is not None:
            self.n_remeasure_proposals += 1
        i, dist = self.t.nearest_unmeasured(point, measured)
        self.n_snapped += 1
        self.snap_dists.append(dist)
        self.client.mark_trial_abandoned(trial_index=tidx)
        self._pending_trial = None
        return i

    def observe_proposed(self, i: int, y: float):
        if self._pending_trial is not None:
            self.client.complete_trial(trial_index=self._pending_trial, raw_data={"objective": float(y)})
        else:
            self.observe(i, y)

    def extra(self) -> dict:
        return {
            "ax_proposals": self.n_proposals,
            "ax_snapped": self.n_snapped,
            "ax_proposed_measured_row": self.n_remeasure_proposals,
            # proposals per Ax generator: "Sobol" = Ax fell back to quasi-random after
            # MAX_GEN_ATTEMPTS duplicate (already tried) candidates from the GP model
            "ax_generators": self.generators,
            "ax_median_snap_dist": (round(statistics.median(self.snap_dists), 4) if self.snap_dists else None),
        }


def _peer(name: str) -> type:
    """Optuna's and HEBO's adapters (benchmarks/peer_adapters.py), imported only when asked for."""

    def make(table: Table, seed: int, init: list[int]):
        import peer_adapters

        return getattr(peer_adapters, name)(table, seed, init)

    return make


METHODS = {
    "random": RandomSearch,
    "baybe": BayBE,
    "ax": Ax,
    "optuna_gp": _peer("OptunaGP"),
    "optuna_tpe": _peer("OptunaTPE"),
    "hebo": _peer("HEBOPeer"),
    # BayBE's chemical encodings (issue 13 item 4): descriptors like labloop's rdkit_descriptors, Morgan/ECFP
    # bits like labloop's morgan_fingerprint, and BayBE's default substance encoding (Mordred)
    "baybe_rdkit": _chem("RDKIT2DDESCRIPTORS"),
    "baybe_ecfp": _chem("ECFP"),
    "baybe_mordred": _chem("MORDRED"),
}


# ----------------------------------------------------------------- runner
def run_one(table: Table, method: str, seed: int, q: int = 1) -> dict:
    init = initial_rows(table.N, seed)
    measured: list[int] = []
    rounds: list[list[int]] = []
    t0 = time.perf_counter()
    strat = METHODS[method](table, seed, init)
    setup_s = time.perf_counter() - t0
    if q > 1 and not hasattr(strat, "propose_batch"):
        raise SystemExit(f"{method} has no batch proposals here: run it with --q 1")
    measured += init
    prop_times = []
    mset = set(measured)
    while experiments_to(init, rounds, table.best_rows) is None and len(measured) < BUDGET:
        k = min(q, BUDGET - len(measured))
        t0 = time.perf_counter()
        batch = strat.propose_batch(mset, k) if k > 1 else [strat.propose(mset)]
        prop_times.append(time.perf_counter() - t0)
        assert not set(batch) & mset and len(set(batch)) == len(batch)
        rounds.append(batch)
        measured += batch
        mset.update(batch)
        if k > 1:
            if hasattr(strat, "observe_batch"):  # random search learns nothing
                strat.observe_batch(batch)
        elif hasattr(strat, "observe_proposed"):
            strat.observe_proposed(batch[0], table.y[batch[0]])
        else:
            strat.observe(batch[0], table.y[batch[0]])
    hit_best = experiments_to(init, rounds, table.best_rows)
    hit_top = experiments_to(init, rounds, table.top_rows)
    later = prop_times[1:] or prop_times
    out = {
        "table": table.name,
        "method": method,
        "seed": seed,
        "q": q,
        "protocol": "issue13",
        "init_rows": init,
        "to_best": hit_best[0] if hit_best else None,
        "rounds_to_best": hit_best[1] if hit_best else None,
        "to_top1": hit_top[0] if hit_top else None,
        "rounds_to_top1": hit_top[1] if hit_top else None,
        "n_experiments": len(measured),
        "n_proposals": len(prop_times),
        "first_proposal_s": round(prop_times[0], 6) if prop_times else None,
        "s_per_proposal": round(float(np.mean(later)), 6) if prop_times else None,
        "s_per_proposal_max": round(float(np.max(later)), 6) if prop_times else None,
        "setup_s": round(setup_s, 3),
        "best_found": float(table.y[measured][np.argmax(table.score[measured])]),
    }
    if hasattr(strat, "extra"):
        out.update(strat.extra())
    return out


def _med(values):
    vals = [BUDGET + 1 if v is None else v for v in values]
    m = statistics.median(vals)
    if m > BUDGET:
        return f">{BUDGET}"
    return int(m) if float(m).is_integer() else m


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["table"], r["method"], r.get("q", 1)), []).append(r)
    out = []
    for (tab, meth, q), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        sp = [r["s_per_proposal"] for r in rs if r["s_per_proposal"] is not None]
        out.append(
            {
                "table": tab,
                "method": meth,
                "q": q,
                "n_seeds": len(rs),
                "seeds": [r["seed"] for r in rs],
                "median_to_best": _med([r["to_best"] for r in rs]),
                "median_to_top1": _med([r["to_top1"] for r in rs]),
                "median_s_per_proposal": round(statistics.median(sp), 4) if sp else None,
                "n_found_best": sum(r["to_best"] is not None for r in rs),
                "to_best": [r["to_best"] if r["to_best"] is not None else f">{BUDGET}" for r in rs],
                "to_top1": [r["to_top1"] if r["to_top1"] is not None else f">{BUDGET}" for r in rs],
                "s_per_proposal": [r["s_per_proposal"] for r in rs],
            }
        )
        if meth == "ax":
            props = sum(r.get("ax_proposals", 0) for r in rs) or 1
            sobol = sum(n for r in rs for g, n in (r.get("ax_generators") or {}).items() if "sobol" in g.lower())
            out[-1]["ax_share_snapped"] = round(sum(r.get("ax_snapped", 0) for r in rs) / props, 3)
            out[-1]["ax_share_sobol_fallback"] = round(sobol / props, 3)
    return out


def markdown(summaries: list[dict]) -> str:
    lines = [
        "| table | method | seeds | to best row: median (per seed) | found best | to top-1%: median | s / proposal (median of run means) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sorted(summaries, key=lambda s: (s["table"], s["method"])):
        seeds = s["seeds"]
        seed_txt = (
            f"{len(seeds)} ({seeds[0]}-{seeds[-1]})"
            if seeds == list(range(seeds[0], seeds[-1] + 1))
            else f"{len(seeds)} {seeds}"
        )
        per = ", ".join(str(v) for v in s["to_best"])
        sp = s["median_s_per_proposal"]
        lines.append(
            f"| {s['table']} | {s['method']} | {seed_txt} | {s['median_to_best']} ({per}) | "
            f"{s['n_found_best']}/{len(seeds)} | {s['median_to_top1']} | {f'{sp:.3g}' if sp else '~0'} |"
        )
    return "\n".join(lines)


def BUDGET_SET(b: int):
    global BUDGET
    BUDGET = b


def parse_seeds(s: str) -> list[int]:
    seeds = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds.extend(range(int(a), int(b) + 1))
        else:
            seeds.append(int(part))
    return seeds


def load_runs(path: str) -> list[dict]:
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", default="pvlab_crossed_barrel")
    ap.add_argument("--methods", default="random,baybe,ax")
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--runs-out", default=None, help="append one JSON line per run; runs already there are skipped")
    ap.add_argument("--deadline", type=float, default=None, help="unix time after which no new run starts")
    ap.add_argument("--summarize", default=None, help="only summarise a runs file")
    ap.add_argument("--markdown", action="store_true", help="with --summarize: print a markdown table")
    ap.add_argument("--seed-major", action="store_true", help="loop seeds outermost (balanced partial results)")
    ap.add_argument("--budget", type=int, default=150, help="experiments per run (protocol: 150)")
    ap.add_argument("--q", default="1", help="batch sizes (rounds of q proposals), e.g. 1,4")
    args = ap.parse_args(argv)
    BUDGET_SET(args.budget)

    if args.summarize:
        sums = summarize(load_runs(args.summarize))
        if args.markdown:
            print(markdown(sums))
        else:
            for s in sums:
                print(json.dumps(s))
        return

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    done = {
        (r["table"], r["method"], r["seed"], r.get("q", 1))
        for r in load_runs(args.runs_out)
        if r.get("protocol") == "issue13"
    }
    all_runs = []
    tables = {t: Table(t) for t in args.tables.split(",")}
    jobs = [
        (t, m, s, q)
        for t in args.tables.split(",")
        for m in args.methods.split(",")
        for s in parse_seeds(args.seeds)
        for q in parse_seeds(args.q)
    ]
    if args.seed_major:
        jobs.sort(key=lambda j: parse_seeds(args.seeds).index(j[2]))  # stable: keeps table/method order
    for tname, method, seed, q in jobs:
        table = tables[tname]
        if (table.name, method, seed, q) in done:
            continue
        if args.deadline and time.time() > args.deadline:
            print(f"# deadline passed, skipping {table.name} {method} seed {seed}", file=sys.stderr, flush=True)
            continue
        r = run_one(table, method, seed, q)
        print(f"# {json.dumps(r)}", file=sys.stderr, flush=True)
        if args.runs_out:
            with open(args.runs_out, "a") as f:
                f.write(json.dumps(r) + "\n")
        all_runs.append(r)
    for s in summarize(all_runs):
        print(json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
