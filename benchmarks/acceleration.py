"""The 100x claim, measured (issue 11, item 7): simulated days to the demo's target (sheet resistance <= 5 ohm/sq,
``experiments/thinfilm.yaml``) for a person working by hand and for labloop on the simulated lab.

    python benchmarks/acceleration.py --seeds 5 > benchmarks/results/acceleration.jsonl

Prints JSON lines: one per method and seed, one summary per method (medians), one ratio line per (person method,
labloop configuration) with the factor split into its sources, and one line with every assumption below.

Methods
-------
* ``person_ofat``: one-factor-at-a-time. Start point: the centre of the campaign box on the campaign's scales
  (O2 0.5 mTorr (log centre of 0.05-5), 362.5 degC, Nb 0.10, 225 W, 65 min). Pass 1 varies each parameter in turn
  (order: o2_pressure, substrate_temperature, nb_fraction, rf_power, duration) over 5 evenly spaced levels of its
  full range (O2 on a log scale), i.e. the 4 levels other than the current best's, with the others held at the
  current best (the best *measured* value so far: the person sees only noisy readings); after each parameter the
  best level is kept. Pass k >= 2 repeats this with levels best +- 1 and +- 2 steps of range/4/2^(k-1) (clipped to
  the box), i.e. a person refining around the best. Stops at the first measured value <= 5 ohm/sq.
* ``person_ofat_random_start``: the same OFAT, started from a random recipe (drawn from the seed): how much OFAT
  owes to the lucky centre start (the campaign box is centred near the optimum).
* ``person_grid``: a full-factorial grid with 4 levels per parameter (1024 recipes; O2 on a log scale, the bounds
  included), run in nested-loop order with the parameter that is most tedious to change outermost: nb_fraction
  (a different target), then substrate_temperature, rf_power, o2_pressure, duration innermost, each ascending.
  Stops at the first measured value <= 5. A 3-level grid (243 recipes) contains no recipe <= 5 ohm/sq (its best
  is 10.2 ohm/sq, noise-free), so the coarsest grid that can succeed has 4 levels; ``--grid-levels`` changes it.
* ``labloop``: the real campaign runner (``CampaignRunner.start(prepare_text(...), Store(...))``, RunEngine,
  simulated devices, SQLite store) on the demo campaign with the default botorch strategy (6 Sobol trials, then
  qLogNEI), async scheduling, with 1, 2 and 4 sputter chambers (2 and 4: interchangeable ``deposition`` stations
  and a ``hotel`` buffer rack, as in README), one probe, one robot, 24 h a day, budget 60 trials. Its experiments
  to target are the number of the trial that reached it (proposal order, as in ``demo_trials_to_target.py``). The
  async scheduler's wall-clock timing decides which trials are pending at each proposal, so a seed's figures vary
  from run to run (seed 0 on one chamber: 9 trials in the committed run, 13 in another).

The person's recipes are measured with the same physics (``physics.sheet_resistance`` times the probe's
log-normal noise ``exp(N(0, 0.03))``, seeded per seed), without driving ophyd: the comparison uses the same films
and the same noise as the lab's probe.

Time
----
Person: each sample is one block of manual work + machine time + manual work, done one at a time, within working
hours (8 h a day, 09:00-17:00, Monday-Friday; the campaign starts on a Monday at 09:00). A block that does not fit
in what is left of a working day starts at 09:00 on the next working day (nobody leaves a heated, running
deposition overnight or unloads it at midnight). Days to target are calendar days (nights and weekends count) from
the start to the end of the data entry of the first sample measured <= 5 ohm/sq.

labloop: simulated time comes from the physics timeline, not from the stored wall-clock times: the campaign runs
at a high ``time_scale`` (1e5: a 2 h recipe is 72 ms of wall time), where fixed software time (RunEngine start,
fsync'd commits, ~50-100 ms a step, docs/benchmarks/archive.md section 2) multiplied by the time scale would add hours
of fake simulated time per step. So the stored steps give the *decisions* (which recipe, on which chamber, in which
order each device served its steps) and each step's duration is its simulated device time: a deposition lasts
``physics.timeline(recipe).total`` (pump-down, heater ramp + soak, strike, the recipe's duration, cool-down), a
measurement 300 s (the simulated probe's 30 + 30 + 240 s), a robot move 60 s (``robot_minutes: 1``). The replay starts
every step when its trial's previous step has ended and its device is free, devices serving their steps in the stored
order; the time to target is the end of the measurement of the trial that reached it. Optimizer time (< 1 s a proposal,
and hidden by the scheduler's lookahead) is left out. Caveat (issue 25, ``benchmarks/runner_rounds.py``): at time scale
1e5 an ask (1-13 s wall on the shared machine) lasts longer than a trial, so with several chambers the async scheduler
proposes in rounds, like a batch optimizer; station scaling is measured on a virtual clock where an ask takes no lab
time, in ``benchmarks/parallel.py``. The stored times scaled by time_scale are printed too
(``sim_days_stored_x_time_scale``): an upper bound inflated by the scaled software time.

Assumptions (manual work per sample; all *chosen* for this benchmark, typical of a university thin-film lab, not
taken from a cited source; change them with the flags and see ``assumptions`` in the output):
substrate cleaning (ultrasonic acetone/IPA/water, N2 dry), amortized over a batch: 10 min; mounting the substrate,
loading it through the load lock and typing the recipe into the tool: 10 min; unloading after cool-down: 5 min;
four-point probe by hand (place the sample, lower the tips, read at a few currents, average): 10 min (the
simulated automatic probe takes 5 min); writing the result into the notebook/spreadsheet and choosing the next
recipe: 5 min. Machine time for the person is the same physics timeline the simulated chamber uses (its constants
in ``simulators/thinfilm/physics.py``: 180 s load-lock pump-down, 30 degC/min heater ramp, 120 s soak, 30 s strike,
cool-down with tau 480 s to 100 degC, 30 s purge): same tool, so the difference is only the person's hands and
hours.
"""

from __future__ import annotations

import argparse
import faulthandler
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from simulators.thinfilm import physics

TARGET = 5.0
NOISE = 0.03
PARAMS = physics.PARAMETERS
BOUNDS = physics.CAMPAIGN_BOUNDS
HOUR = 3600.0
DAY = 24 * HOUR
ROBOT_S = 60.0
PROBE_S = 300.0


# ------------------------------------------------------------------------------------------------ the person
@dataclass(frozen=True)
class WorkWeek:
    """When a person works: ``hours_per_day`` from ``start_hour`` on ``days_per_week`` days (Monday first)."""

    hours_per_day: float = 8.0
    days_per_week: int = 5
    start_hour: float = 9.0

    def start_of_block(self, t: float, block: float) -> float:
        """Earliest time >= ``t`` (seconds from Monday 00:00 of week 0) at which a ``block`` of seconds fits in one
        working day."""
        if block > self.hours_per_day * HOUR:
            raise ValueError(f"a {block / HOUR:.2f} h block does not fit in a {self.hours_per_day:g} h day")
        day = int(t // DAY)
        while True:
            open_, close = day * DAY + self.start_hour * HOUR, day * DAY + (self.start_hour + self.hours_per_day) * HOUR
            if day % 7 < self.days_per_week:
                s = max(t, open_)
                if s + block <= close + 1e-9:
                    return s
            day += 1
            t = day * DAY

    def working_seconds(self, t0: float, t1: float) -> float:
        """Working-hours clock between two times (the hours the person's day has, busy or not)."""
        total, day = 0.0, int(t0 // DAY)
        while day * DAY < t1:
            if day % 7 < self.days_per_week:
                a = max(t0, day * DAY + self.start_hour * HOUR)
                b = min(t1, day * DAY + (self.start_hour + self.hours_per_day) * HOUR)
                total += max(0.0, b - a)
            day += 1
        return total


@dataclass(frozen=True)
class ManualWork:
    """Minutes of a person's hands per sample (all chosen assumptions, see the module docstring)."""

    substrate_prep: float = 10.0
    load_and_program: float = 10.0
    unload: float = 5.0
    probe: float = 10.0
    data_entry: float = 5.0

    def before(self) -> float:
        return 60.0 * (self.substrate_prep + self.load_and_program)

    def after(self) -> float:
        return 60.0 * (self.unload + self.probe + self.data_entry)


@dataclass
class PersonRun:
    method: str
    seed: int
    experiments: int = 0
    reached: bool = False
    end_s: float = 0.0  # calendar seconds from the start (Monday 09:00) to the end of the last block
    busy_s: float = 0.0  # hands + machine time actually used
    best: float = math.inf
    best_recipe: dict[str, float] = field(default_factory=dict)


class Person:
    """Runs recipes one at a time on the working-hours calendar, measuring each with the lab's physics + noise."""

    def __init__(self, method: str, seed: int, week: WorkWeek, manual: ManualWork, budget: int, noise: float = NOISE):
        self.run = PersonRun(method, seed)
        self.week, self.manual, self.budget, self.noise = week, manual, budget, noise
        self.rng = np.random.default_rng([seed, 11, 7])
        self.start = week.start_of_block(0.0, 0.0)  # Monday 09:00
        self.t = self.start

    def done(self) -> bool:
        return self.run.reached or self.run.experiments >= self.budget

    def measure(self, recipe: Mapping[str, float]) -> float:
        """One sample: prep + load, the tool's timeline, unload + probe + data entry, as one block in a working
        day. Returns the measured sheet resistance."""
        machine = physics.timeline(recipe).total
        block = self.manual.before() + machine + self.manual.after()
        s = self.week.start_of_block(self.t, block)
        self.t = s + block
        value = physics.with_noise(physics.sheet_resistance(recipe), self.noise, self.rng)
        r = self.run
        r.experiments += 1
        r.busy_s += block
        r.end_s = self.t - self.start
        if value < r.best:
            r.best, r.best_recipe = value, dict(recipe)
        if value <= TARGET:
            r.reached = True
        return value


def to_unit(k: str, v: float) -> float:
    lo, hi = BOUNDS[k]
    if k == "o2_pressure":
        return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (v - lo) / (hi - lo)


def from_unit(k: str, u: float) -> float:
    lo, hi = BOUNDS[k]
    if k == "o2_pressure":
        return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
    return float(lo + u * (hi - lo))


CENTRE = {k: from_unit(k, 0.5) for k in PARAMS}


def ofat(person: Person, start: Mapping[str, float], levels: int = 5, max_passes: int = 20) -> None:
    """One-factor-at-a-time from ``start`` (see the module docstring)."""
    best = dict(start)
    best_v = person.measure(best)
    for p in range(1, max_passes + 1):
        step = 1.0 / (levels - 1) / 2 ** (p - 1)
        for k in PARAMS:
            if person.done():
                return
            u0 = to_unit(k, best[k])
            if p == 1:  # the full range, the current best's level not repeated
                us = [i * step for i in range(levels) if abs(i * step - u0) > 1e-9]
            else:
                us = [u0 + m * step for m in (-2, -1, 1, 2)]
            chosen = best
            for u in us:
                if person.done():
                    return
                if not -1e-9 <= u <= 1 + 1e-9:
                    continue
                r = dict(best)
                r[k] = from_unit(k, min(1.0, max(0.0, u)))
                v = person.measure(r)
                if v < best_v:
                    best_v, chosen = v, r
            best = chosen


GRID_ORDER = ("nb_fraction", "substrate_temperature", "rf_power", "o2_pressure", "duration")  # outer -> inner


def grid_recipes(levels: int) -> Iterator[dict[str, float]]:
    axes = [[from_unit(k, i / (levels - 1)) for i in range(levels)] for k in GRID_ORDER]
    for combo in itertools.product(*axes):
        yield dict(zip(GRID_ORDER, combo))


def grid(person: Person, levels: int = 4) -> None:
    for r in grid_recipes(levels):
        if person.done():
            return
        person.measure(r)


def person_row(method: str, seed: int, args: argparse.Namespace, plan: Callable[[Person], None]) -> dict[str, Any]:
    week = WorkWeek(args.hours_per_day, args.days_per_week)
    person = Person(method, seed, week, manual_from(args), args.person_budget)
    plan(person)
    r = person.run
    work = week.working_seconds(person.start, person.start + r.end_s)
    return {
        "benchmark": "acceleration",
        "method": method,
        "seed": seed,
        "reached": r.reached,
        "experiments_to_target": r.experiments if r.reached else None,
        "experiments": r.experiments,
        "days_to_target": round(r.end_s / DAY, 3) if r.reached else None,
        "calendar_days": round(r.end_s / DAY, 3),
        "working_hours_elapsed": round(work / HOUR, 2),
        "busy_hours": round(r.busy_s / HOUR, 2),
        "best_measured": round(r.best, 3),
        "best_recipe": {k: round(v, 4) for k, v in r.best_recipe.items()},
    }


def manual_from(args: argparse.Namespace) -> ManualWork:
    return ManualWork(args.prep_min, args.load_min, args.unload_min, args.probe_min, args.entry_min)


# ------------------------------------------------------------------------------------------------ labloop
def campaign_text(chambers: int, seed: int, budget: int, time_scale: float) -> str:
    import yaml

    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    data["seed"] = seed
    data["stopping"]["max_trials"] = budget
    lab = data["lab"]
    lab["time_scale"] = time_scale
    lab["options"] = {**lab.get("options", {}), "robot_minutes": ROBOT_S / 60.0, "chambers": chambers}
    if chambers > 1:
        lab["stations"] = {"deposition": [f"chamber{i + 1}" for i in range(chambers)]}
        lab["buffers"] = ["hotel"]
        data["workflow"] = [
            {"kind": "transfer", "to": "deposition"},
            {"kind": "synthesize", "device": "deposition"},
            {"kind": "transfer", "to": "probe"},
            {"kind": "measure", "device": "probe"},
            {"kind": "transfer", "to": "storage"},
        ]
    return yaml.safe_dump(data)


def _ts(d: Any) -> float:
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()


def step_seconds(kind: str, params: Mapping[str, Any]) -> float:
    if kind == "synthesize":
        return physics.timeline(params).total
    if kind == "measure":
        return PROBE_S
    return ROBOT_S  # transfer / buffer moves: the robot


def replay(steps: list[tuple[float, int, str, str]], params: Mapping[int, Mapping[str, Any]]) -> dict[int, dict]:
    """Simulated start/end of every step: ``steps`` are (stored start, trial id, kind, device) of the steps that
    ran; each starts when its trial's previous step ended and its device is free, devices serving their steps in
    the stored order. Returns trial id -> {kind: end seconds} (last end per kind) and 'end'."""
    device_free: dict[str, float] = {}
    trial_free: dict[int, float] = {}
    out: dict[int, dict] = {}
    for _, tid, kind, device in sorted(steps):
        s = max(device_free.get(device, 0.0), trial_free.get(tid, 0.0))
        e = s + step_seconds(kind, params[tid])
        device_free[device] = trial_free[tid] = e
        out.setdefault(tid, {})[kind] = e
        out[tid]["end"] = e
    return out


def labloop_row(chambers: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    text = campaign_text(chambers, seed, args.budget, args.time_scale)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        t0 = time.perf_counter()
        # a guard, not a measurement: one trial run of this script (seed 0, 1 then 4 chambers in one process) sat
        # idle for 10 minutes and was killed (not reproduced since); dump every thread's stack and exit instead
        faulthandler.dump_traceback_later(args.campaign_timeout, exit=True)
        try:
            runner = CampaignRunner.start(prepare_text(text, "acceleration.yaml"), store)
            decision = runner.run()
        finally:
            faulthandler.cancel_dump_traceback_later()
        wall = time.perf_counter() - t0
        cid = runner.campaign.id
        trials = store.trials(cid)
        steps = store.steps(campaign_id=cid)
        store.close()
    by_id = {t.id: t for t in trials}
    hit = decision.evidence.get("trial") if decision.rule == "target" else None
    ran = [
        (_ts(s.started_at), s.trial_id, s.kind, s.device or s.kind)
        for s in steps
        if s.finished_at is not None and s.trial_id in by_id
    ]
    times = replay(ran, {t.id: t.params for t in trials})
    row: dict[str, Any] = {
        "benchmark": "acceleration",
        "method": "labloop",
        "chambers": chambers,
        "seed": seed,
        "reached": hit is not None,
        "experiments_to_target": hit,
        "experiments": len(trials),
        "stop": decision.rule,
        "time_scale": args.time_scale,
        "wall_s": round(wall, 2),
    }
    if hit is not None:
        target = next(t for t in trials if t.number == hit)
        end = times[target.id].get("measure", times[target.id]["end"])
        first = min(s[0] for s in ran)
        stored_end = max(_ts(s.finished_at) for s in steps if s.trial_id == target.id and s.kind == "measure")
        row.update(
            {
                "days_to_target": round(end / DAY, 4),
                "hours_to_target": round(end / HOUR, 2),
                "sim_days_stored_x_time_scale": round((stored_end - first) * args.time_scale / DAY, 3),
                "chamber_hours_to_target": round(
                    sum(
                        physics.timeline(t.params).total
                        for t in trials
                        if "synthesize" in times.get(t.id, {}) and times[t.id]["synthesize"] <= end
                    )
                    / HOUR,
                    2,
                ),
            }
        )
    else:
        row.update(
            {"days_to_target": None, "days_used": round(max((v["end"] for v in times.values()), default=0.0) / DAY, 4)}
        )
    return row


# ------------------------------------------------------------------------------------------------ summary
def median_or_none(xs: list[Any]) -> Any:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals and len(vals) == len(xs) else None


def summary(method: str, rows: list[dict], **extra: Any) -> dict[str, Any]:
    return {
        "benchmark": "acceleration",
        "summary": method,
        **extra,
        "seeds": len(rows),
        "reached": sum(r["reached"] for r in rows),
        "median_experiments_to_target": median_or_none([r["experiments_to_target"] for r in rows]),
        "median_days_to_target": median_or_none([r["days_to_target"] for r in rows]),
        "per_seed_experiments": [r["experiments_to_target"] for r in rows],
        "per_seed_days": [r["days_to_target"] for r in rows],
    }


def ratio(person: str, prow: list[dict], chambers: int, lrows: list[dict], l1rows: list[dict]) -> dict[str, Any]:
    """person / labloop, by medians, and the ratio of means split exactly into its sources:
    experiments x office hours x manual work and day packing x parallel chambers."""
    out: dict[str, Any] = {"benchmark": "acceleration", "ratio": f"{person} / labloop_{chambers}ch"}
    pm, lm = median_or_none([r["days_to_target"] for r in prow]), median_or_none([r["days_to_target"] for r in lrows])
    out["median_days_person"], out["median_days_labloop"] = pm, lm
    out["ratio_of_median_days"] = round(pm / lm, 1) if pm and lm else None
    if not all(r["reached"] for r in prow + lrows + l1rows):
        out["note"] = "not every seed reached the target: ratio of means and factors not computed"
        return out
    n_p = sum(r["experiments_to_target"] for r in prow) / len(prow)
    n_l = sum(r["experiments_to_target"] for r in lrows) / len(lrows)
    cal_p = sum(r["days_to_target"] for r in prow) * DAY / sum(r["experiments_to_target"] for r in prow)
    work_p = sum(r["working_hours_elapsed"] for r in prow) * HOUR / sum(r["experiments_to_target"] for r in prow)
    per_l1 = sum(r["days_to_target"] for r in l1rows) * DAY / sum(r["experiments_to_target"] for r in l1rows)
    per_l = sum(r["days_to_target"] for r in lrows) * DAY / sum(r["experiments_to_target"] for r in lrows)
    f = {
        "fewer_experiments": n_p / n_l,
        "office_hours_vs_24_7": cal_p / work_p,
        "manual_work_and_day_packing": work_p / per_l1,
        "parallel_chambers": per_l1 / per_l,
    }
    out["ratio_of_mean_days"] = round(n_p * cal_p / (n_l * per_l), 1)
    out["factors"] = {k: round(v, 2) for k, v in f.items()}
    out["hours_per_experiment"] = {
        "person_calendar": round(cal_p / HOUR, 2),
        "person_working": round(work_p / HOUR, 2),
        "labloop_1ch": round(per_l1 / HOUR, 2),
        f"labloop_{chambers}ch": round(per_l / HOUR, 2),
    }
    out["claim_100x_holds"] = bool(out["ratio_of_median_days"] and out["ratio_of_median_days"] >= 100)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1, for labloop and the person (noise)")
    ap.add_argument("--chambers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--budget", type=int, default=60, help="max trials for labloop")
    ap.add_argument("--person-budget", type=int, default=1024, help="max experiments for the person")
    ap.add_argument("--grid-levels", type=int, default=4)
    ap.add_argument("--time-scale", type=float, default=1e5)
    ap.add_argument("--hours-per-day", type=float, default=8.0)
    ap.add_argument("--days-per-week", type=int, default=5)
    ap.add_argument("--prep-min", type=float, default=10.0, help="substrate cleaning per sample (batch-amortized)")
    ap.add_argument("--load-min", type=float, default=10.0, help="mount, load-lock loading, recipe entry")
    ap.add_argument("--unload-min", type=float, default=5.0)
    ap.add_argument("--probe-min", type=float, default=10.0, help="manual four-point-probe measurement")
    ap.add_argument("--entry-min", type=float, default=5.0, help="data entry and choosing the next recipe")
    ap.add_argument(
        "--campaign-timeout",
        type=float,
        default=240.0,
        help="wall seconds before a hung campaign dumps its threads and exits",
    )
    ap.add_argument("--no-labloop", action="store_true", help="only the person's methods (fast)")
    args = ap.parse_args()
    seeds = range(args.seeds)

    def emit(obj: dict) -> None:
        print(json.dumps(obj), flush=True)

    emit(
        {
            "benchmark": "acceleration",
            "assumptions": {
                "target_ohm_sq": TARGET,
                "noise": NOISE,
                "work_week": f"{args.hours_per_day:g} h a day from 09:00, "
                f"{args.days_per_week} days a week, start Monday 09:00; a sample's block must fit in one working day",
                "manual_minutes_per_sample (chosen)": manual_from(args).__dict__,
                "person_machine_time": "physics.timeline(recipe).total (same tool as the simulated lab)",
                "ofat": "start at the box centre "
                + json.dumps({k: round(v, 4) for k, v in CENTRE.items()})
                + "; 5 levels per parameter over the full range (O2 log), order "
                + ", ".join(PARAMS)
                + "; later passes +-1, +-2 steps of range/4/2^(pass-1) around the best measured",
                "grid": f"{args.grid_levels} levels per parameter (bounds included, O2 log), nested loops outer->inner "
                + ", ".join(GRID_ORDER),
                "labloop": "demo campaign, botorch default (6 Sobol + qLogNEI), async, robot_minutes 1, probe 300 s, "
                f"24 h a day, budget {args.budget}; time from the physics timeline replayed in stored order",
                "time_scale": args.time_scale,
            },
        }
    )

    person: dict[str, list[dict]] = {}
    plans: dict[str, Callable[[int], Callable[[Person], None]]] = {
        "person_ofat": lambda s: lambda p: ofat(p, CENTRE),
        "person_ofat_random_start": lambda s: (
            lambda p: ofat(
                p,
                {k: from_unit(k, float(u)) for k, u in zip(PARAMS, np.random.default_rng([s, 99]).random(len(PARAMS)))},
            )
        ),
        "person_grid": lambda s: lambda p: grid(p, args.grid_levels),
    }
    for name, make in plans.items():
        person[name] = [person_row(name, s, args, make(s)) for s in seeds]
        for r in person[name]:
            emit(r)
        emit(summary(name, person[name]))
    if args.no_labloop:
        return
    lab: dict[int, list[dict]] = {}
    for c in args.chambers:
        lab[c] = []
        for s in seeds:
            r = labloop_row(c, s, args)
            lab[c].append(r)
            emit(r)
            print(
                f"# labloop {c} chamber(s) seed {s}: trial {r['experiments_to_target']}, "
                f"{r['days_to_target']} days, {r['wall_s']} s wall",
                file=sys.stderr,
                flush=True,
            )
        emit(summary("labloop", lab[c], chambers=c))
    base = lab.get(1) or lab[min(lab)]
    for name, rows in person.items():
        for c, lrows in lab.items():
            emit(ratio(name, rows, c, lrows, base))


if __name__ == "__main__":
    main()
