"""Time to target with 1, 2, 4 and 8 stations of the bottleneck kind (issue 25): do parallel chambers pay?

    nice -n 19 python benchmarks/parallel.py --campaigns thinfilm thinfilm_hard --stations 1 2 4 8 --seeds 0-9 \\
        --out benchmarks/results/parallel.jsonl
    python benchmarks/parallel.py --summarize benchmarks/results/parallel.jsonl

Each run is one campaign (``experiments/<name>.yaml``, the strategy it names with its options, the budget of its
``stopping.max_trials`` unless ``--budget``) on a lab with ``S`` interchangeable deposition chambers, simulated as
discrete events on a virtual clock, with the scheduler's async policy (:mod:`labloop.run.scheduler`):

* whenever something changes, queued proposals whose ask saw fewer results than are known now are re-asked
  (``--no-reask``: they run as proposed, the behaviour before issue 25), queued proposals go onto free chambers,
  and the strategy is asked for ``free + lookahead - queued`` new points (``--lookahead``, the campaign's
  ``scheduling.lookahead``, default 1) with every trial in flight and every queued proposal as pending
  (``--ignore-pending``: none, to measure what conditioning on them is worth);
* a trial occupies its chamber for a robot move in (60 s), the recipe's physics timeline
  (``physics.timeline(recipe).total``: pump-down, ramp, soak, strike, deposition, cool-down) and a move out (60 s);
  its result is known a probe measurement (300 s) and a move (60 s) later. The probe and the robot are taken as
  never busy (8 chambers give the probe ~6 samples an hour against its 12): an approximation that favours many
  stations slightly;
* the measured value is the simulator's physics with its 3 % log-normal probe noise (seeded per seed and trial).

``--campaigns solid_state`` is the solid-state lab instead (:mod:`parallel_solid_state`): stations = box furnaces,
one crucible per firing, the firing's duration from the furnace model, the measured values from
``solid_state_search.Lab``, budget 40; a trial meets the target with a fraction >= 0.9 and impurities <= 0.05.
``--deadline HH:MM`` (UTC) starts no run after that time and drops the run in progress when it passes (the runs
are seed-major, so a cut leaves every station count for the seeds that finished).

Why not the real runner (``acceleration.py``): at the time scale that makes a campaign run in seconds (1e5) one ask
of ~1 s wall is ~28 simulated hours, longer than a trial, so the runner's decisions are those of a batch optimizer
(4 chambers: proposals in rounds of 4 and 1, each round seeing every earlier result) and its replayed days are not
what a lab whose optimizer answers in a second would see. Here an ask takes no simulated time (it takes ~1 s
against a ~2 h trial in a lab), so what is pending at each ask is what a real lab would have in flight.

Reported per run: ``experiments_to_target`` = how many trials had been started when the first trial that met the
target was started (its position in start order; the demo's §5 figure), ``started_by_target`` = how many had been
started by the time its result was known (what the lab spent), ``days_to_target`` = simulated days until that
result, ``superseded`` = queued proposals re-asked. A run that misses the target within the budget counts as
budget + 1 experiments and as the days it used (censored; the summary says how many missed).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO), str(REPO / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from simulators.thinfilm import physics

ROBOT_S = 60.0
PROBE_S = 300.0
DAY = 86400.0


@dataclass
class _Trial:
    index: int  # 1-based start order
    params: dict[str, Any]
    started: float
    source: str = ""
    value: dict[str, float] | None = None  # the measured values, once known
    out: float = math.inf  # when it leaves its chamber


@dataclass
class _Queued:
    params: dict[str, Any]
    seen: int  # results the ask that proposed it saw
    source: str = ""


@dataclass
class _Lab:
    """The virtual lab's state during one run."""

    stations: int
    free: int
    events: list[tuple[float, int, str, int]] = field(default_factory=list)
    trials: list[_Trial] = field(default_factory=list)
    queued: list[_Queued] = field(default_factory=list)


def load_spec(campaign: str, seed: int, budget: int | None, options: dict[str, Any], strategy: str | None = None):
    from labloop.spec import spec_from_text

    data = yaml.safe_load((REPO / "experiments" / f"{campaign}.yaml").read_text())
    data["seed"] = seed
    if strategy:
        data["strategy"] = {"name": strategy, "initial_design": data["strategy"].get("initial_design", 6)}
    if budget:
        data["stopping"]["max_trials"] = budget
    if options:
        data["strategy"]["options"] = {**data["strategy"].get("options", {}), **options}
    return spec_from_text(yaml.safe_dump(data), f"{campaign}.yaml")


def measure(params: dict[str, Any], noise: float, seed: int, index: int) -> float:
    rng = np.random.default_rng([seed, 25, index])
    return physics.with_noise(physics.sheet_resistance(params), noise, rng)


class ThinFilm:
    """The thin-film lab on the virtual clock: stations = deposition chambers (the interface the solid-state lab of
    ``parallel_solid_state.py`` has too)."""

    station = "chamber"

    def __init__(self, spec: Any, seed: int):
        self.seed = seed
        self.objective = spec.objectives[0]
        self.target = float(self.objective.target)
        self.noise = float((spec.lab.options if spec.lab else {}).get("noise", 0.03))

    def trial(self, params: dict[str, Any], index: int, t: float) -> tuple[float, float, dict[str, float]]:
        """(when the chamber is free, when the result is known, measured values) for a trial started at ``t``."""
        out = t + ROBOT_S + physics.timeline(params).total + ROBOT_S
        return out, out + PROBE_S + ROBOT_S, {self.objective.name: measure(params, self.noise, self.seed, index)}

    def met(self, values: dict[str, float]) -> bool:
        return values[self.objective.name] <= self.target

    def extra(self, trials: list[_Trial]) -> dict[str, Any]:
        return {"best": round(min((tr.value[self.objective.name] for tr in trials if tr.value), default=math.inf), 3)}


def campaign_lab(
    campaign: str, seed: int, budget: int | None, options: dict[str, Any], strategy: str | None = None
) -> tuple[Any, Any]:
    """(spec, lab model) of a campaign: ``solid_state`` is the furnace lab, every other name a thin-film file."""
    if campaign == "solid_state":
        from parallel_solid_state import SolidState
        from parallel_solid_state import load_spec as solid_state_spec

        if strategy:
            raise ValueError("--strategy is for the thin-film campaigns: solid_state runs its file's strategy")
        spec = solid_state_spec(seed, budget, options)
        return spec, SolidState(spec, seed)
    spec = load_spec(campaign, seed, budget, options, strategy)
    return spec, ThinFilm(spec, seed)


def run(
    campaign: str,
    stations: int,
    seed: int,
    *,
    lookahead: int = 1,
    reask: bool = True,
    ignore_pending: bool = False,
    budget: int | None = None,
    options: dict[str, Any] | None = None,
    strategy: str | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """One run; ``deadline`` (epoch seconds): raise :class:`TimeoutError` once it has passed (the run is dropped)."""
    import torch

    from labloop.strategy import Observation, make_strategy

    torch.manual_seed(seed)  # the acquisition optimizers draw their starts from the global RNG
    spec, model = campaign_lab(campaign, seed, budget, options or {}, strategy)
    target, budget_n = model.target, spec.stopping.max_trials
    strat = make_strategy(spec)
    asks_log: list[tuple[int, int, int]] = []  # per ask: results known, trials in flight or queued, points asked
    pending: dict[int, dict[str, float]] = {}  # measured at the start, known at the result
    lab = _Lab(stations, stations)
    obs: list[Observation] = []
    hit: _Trial | None = None
    hit_t = math.inf
    started_by_hit = None
    superseded = asks = 0
    ask_s = 0.0

    def start(q: _Queued, t: float) -> None:
        trial = _Trial(len(lab.trials) + 1, q.params, t, q.source)
        lab.trials.append(trial)
        lab.free -= 1
        out, known, pending[trial.index] = model.trial(q.params, trial.index, t)
        trial.out = out
        heapq.heappush(lab.events, (out, trial.index, "chamber_free", trial.index))
        heapq.heappush(lab.events, (known, trial.index, "result", trial.index))

    def decide(t: float) -> None:
        nonlocal superseded, asks, ask_s
        if reask:
            stale = [q for q in lab.queued if q.seen < len(obs)]
            superseded += len(stale)
            lab.queued = [q for q in lab.queued if q.seen >= len(obs)]
        while lab.free > 0 and lab.queued:
            start(lab.queued.pop(0), t)
        n = min(lab.free + lookahead - len(lab.queued), budget_n - len(lab.trials) - len(lab.queued))
        if n <= 0 or hit is not None:
            return
        in_flight = [tr.params for tr in lab.trials if tr.value is None] + [q.params for q in lab.queued]
        t0 = time.process_time()
        asks_log.append((len(obs), len(in_flight), n))
        proposals = strat.ask(n, list(obs), [] if ignore_pending else in_flight)
        ask_s += time.process_time() - t0
        asks += 1
        lab.queued += [_Queued(dict(p.params), len(obs), p.source) for p in proposals]
        while lab.free > 0 and lab.queued:
            start(lab.queued.pop(0), t)

    decide(0.0)
    t = 0.0
    while lab.events:
        if deadline is not None and time.time() > deadline:
            raise TimeoutError(f"{campaign} {stations} stations seed {seed}: deadline passed, run dropped")
        t = lab.events[0][0]
        while lab.events and lab.events[0][0] == t:  # everything that happens at t, then one decision
            _, _, kind, idx = heapq.heappop(lab.events)
            trial = lab.trials[idx - 1]
            if kind == "chamber_free":
                lab.free += 1
                continue
            trial.value = pending.pop(idx)
            obs.append(Observation(dict(trial.params), dict(trial.value)))
            if hit is None and model.met(trial.value):
                hit, hit_t, started_by_hit = trial, t, len(lab.trials)
        if hit is not None:
            break
        decide(t)
    reached = hit is not None
    return {
        "benchmark": "parallel",
        "campaign": campaign,
        "stations": stations,
        "seed": seed,
        "lookahead": lookahead,
        "reask": reask,
        "ignore_pending": ignore_pending,
        "options": options or {},
        "budget": budget_n,
        "target": target,
        "reached": reached,
        "experiments_to_target": hit.index if hit else budget_n + 1,
        "started_by_target": started_by_hit if reached else len(lab.trials),
        "days_to_target": round((hit_t if reached else t) / DAY, 4),
        **model.extra(lab.trials),
        "max_chambers_busy": max(sum(1 for u in lab.trials if u.started <= tr.started < u.out) for tr in lab.trials),
        "space_filling_started": sum(tr.source == "sobol" for tr in lab.trials),
        "superseded": superseded,
        "asks": asks,
        "cpu_s_asks": round(ask_s, 1),
        "first_model_trial": next((tr.index for tr in lab.trials if tr.source != "sobol"), None),
        "asks_log": asks_log,
    }


def _config(r: dict[str, Any]) -> tuple:
    return (r["campaign"], r["lookahead"], r["reask"], r["ignore_pending"], json.dumps(r["options"], sort_keys=True))


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per campaign and configuration: medians per station count over the seeds run, and the ratios to 1 station
    over the seeds that both have (paired)."""
    groups: dict[tuple, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get("benchmark") == "parallel" and "seed" in r:
            groups[_config(r)][r["stations"]][r["seed"]] = r
    out = []
    for cfg, by_s in groups.items():
        base = by_s.get(1, {})
        for s in sorted(by_s):
            runs = by_s[s]
            seeds = sorted(runs)
            line: dict[str, Any] = {
                "benchmark": "parallel",
                "summary": cfg[0],
                "lookahead": cfg[1],
                "reask": cfg[2],
                "ignore_pending": cfg[3],
                "options": json.loads(cfg[4]),
                "stations": s,
                "seeds": seeds,
                "reached": sum(runs[k]["reached"] for k in seeds),
                "median_experiments": statistics.median(runs[k]["experiments_to_target"] for k in seeds),
                "median_started_by_target": statistics.median(runs[k]["started_by_target"] for k in seeds),
                "median_days": statistics.median(runs[k]["days_to_target"] for k in seeds),
            }
            paired = [k for k in seeds if k in base]
            if s != 1 and paired:
                b_days = statistics.median(base[k]["days_to_target"] for k in paired)
                b_exp = statistics.median(base[k]["experiments_to_target"] for k in paired)
                line["paired_seeds"] = len(paired)
                line["days_ratio_to_1"] = round(
                    statistics.median(runs[k]["days_to_target"] for k in paired) / b_days, 3
                )
                line["experiments_ratio_to_1"] = round(
                    statistics.median(runs[k]["experiments_to_target"] for k in paired) / b_exp, 3
                )
            out.append(line)
    return out


def markdown_row(line: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """| campaign (config) | stations | seeds | reached | experiments: median (per seed) | started by the target |
    days: median (per seed) | days / 1 station | experiments / 1 station |"""
    runs = sorted(
        (
            r
            for r in rows
            if "seed" in r
            and r["stations"] == line["stations"]
            and _config(r)
            == (
                line["summary"],
                line["lookahead"],
                line["reask"],
                line["ignore_pending"],
                json.dumps(line["options"], sort_keys=True),
            )
        ),
        key=lambda r: r["seed"],
    )
    cfg = (
        [f"lookahead {line['lookahead']}"]
        + (["no re-ask"] if not line["reask"] else [])
        + (["pending ignored"] if line["ignore_pending"] else [])
        + ([json.dumps(line["options"])] if line["options"] else [])
    )
    seeds = line["seeds"]
    span = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
    exps = ", ".join(str(r["experiments_to_target"]) for r in runs)
    days = ", ".join(f"{r['days_to_target']:.2f}" for r in runs)
    return (
        f"| {line['summary']} ({', '.join(cfg)}) | {line['stations']} | {span} | {line['reached']}/{len(seeds)} | "
        f"{line['median_experiments']:g} ({exps}) | {line['median_started_by_target']:g} | "
        f"{line['median_days']:.2f} ({days}) | {line.get('days_ratio_to_1', '-')} | "
        f"{line.get('experiments_ratio_to_1', '-')} |"
    )


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", nargs="+", default=["thinfilm"], help="experiments/<name>.yaml")
    ap.add_argument("--stations", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--seeds", default="0-9", help="'0-9' or '0,3,5'")
    ap.add_argument("--lookahead", type=int, default=1)
    ap.add_argument("--no-reask", action="store_true", help="run queued proposals on the data they were made with")
    ap.add_argument("--ignore-pending", action="store_true", help="ask without the trials in flight (diagnosis)")
    ap.add_argument("--budget", type=int, default=None, help="max trials (default: the campaign's)")
    ap.add_argument("--options", default="{}", help="strategy options as JSON, e.g. '{\"initial_design\": 4}'")
    ap.add_argument("--out", default=None, help="append JSON lines here; runs already in it are skipped")
    ap.add_argument("--summarize", default=None, help="print the summary of a results file and exit")
    ap.add_argument("--markdown", action="store_true", help="with --summarize: markdown table rows")
    ap.add_argument(
        "--deadline",
        default=None,
        help="HH:MM (UTC, today): start no run after it and drop the run in progress when it passes",
    )
    args = ap.parse_args()
    deadline = None
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        now = datetime.now(UTC)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    if args.summarize:
        rows = [json.loads(x) for x in Path(args.summarize).read_text().splitlines() if x.strip()]
        for line in summarize(rows):
            print(markdown_row(line, rows) if args.markdown else json.dumps(line))
        return
    options = json.loads(args.options)
    done: set[tuple] = set()
    if args.out and Path(args.out).exists():
        for x in Path(args.out).read_text().splitlines():
            r = json.loads(x)
            if "seed" in r:
                done.add((*_config(r), r["stations"], r["seed"]))
    sink = open(args.out, "a") if args.out else sys.stdout  # noqa: SIM115 - the results file stays open for the run
    for seed in _seeds(args.seeds):  # seed-major: an interrupted run still has every station count for its seeds
        for campaign in args.campaigns:
            for s in args.stations:
                key = (
                    campaign,
                    args.lookahead,
                    not args.no_reask,
                    args.ignore_pending,
                    json.dumps(options, sort_keys=True),
                    s,
                    seed,
                )
                if key in done:
                    continue
                if deadline is not None and time.time() > deadline:
                    print(f"# deadline {args.deadline} UTC passed: stopped before seed {seed}", file=sys.stderr)
                    return
                t0 = time.perf_counter()
                try:
                    row = run(
                        campaign,
                        s,
                        seed,
                        lookahead=args.lookahead,
                        reask=not args.no_reask,
                        ignore_pending=args.ignore_pending,
                        budget=args.budget,
                        options=options,
                        deadline=deadline,
                    )
                except TimeoutError as exc:
                    print(f"# {exc}", file=sys.stderr, flush=True)
                    return
                row["wall_s"] = round(time.perf_counter() - t0, 1)
                print(json.dumps(row), file=sink, flush=True)
                print(
                    f"# {campaign} {s} stations seed {seed}: {row['experiments_to_target']} experiments, "
                    f"{row['days_to_target']} days, {row['wall_s']} s",
                    file=sys.stderr,
                    flush=True,
                )


if __name__ == "__main__":
    main()
