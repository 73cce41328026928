"""The solid-state lab for ``benchmarks/parallel.py`` (issue 25 item 1, third campaign): stations = box furnaces.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/parallel.py --campaigns solid_state \\
        --stations 1 2 4 8 --seeds 0-9 --out benchmarks/results/parallel_solid_state.jsonl

The campaign is ``experiments/solid_state.yaml`` with its strategy (botorch, ``initial_design`` 6, its options)
without the chemist's ``expert_prior`` (with it the goal falls in the initial design in most seeds, which says
nothing about stations: the search from nothing is what scales or not), built as ``benchmarks/solid_state_search.py`` builds it (``lab.consumables`` dropped: the shelf is not
what is measured). Budget 40 trials, as solid_state_search.py: the campaign file's ``max_trials: 20`` is the rack's
limit (24 crucibles before an operator washes them), not the search's.

**One crucible per firing** (``lab.batching`` dropped): a furnace is a station that holds one trial, so "stations"
means what it means for the thin-film chambers. Four-crucible firings of one profile are measured elsewhere
(archive section 30, ``benchmarks/solid_state_throughput.py``).

A trial claims a free furnace when it starts (the benchmark starts a trial when a furnace is free, as the thin-film
campaigns start one when a chamber is free) and holds it until the crucible has left it for the diffractometer:

* before the furnace (simulator times; robot1, the dispenser and the balance taken as never busy): robot1 rack ->
  dispenser 36 s (``RobotArm``: move 15 s, grip 3 s, move 15 s, release 3 s), the two doses 5 s + 20 s/g each
  (``Dispenser.dispense``, nominal masses of ``labloop_devices.solid_state.cell.masses``: ~30 s), robot1 ->
  balance 36 s, the barcode read 0.3 s (``BarcodeScanner.read_s``), the stable weight 18 s (``Balance.weigh_stable``
  after the 3 s release: median of the model over 5 seeds, 16-19 s);
* robot2 balance -> furnace 36 s, the firing's duration from :class:`BoxFurnace` (program plus natural cooling to
  the 150 degC unload temperature: what ``Lab.run`` of solid_state_search.py returns, 5-46 h), robot2 furnace ->
  XRD 36 s: the furnace is free when that move ends;
* the scan 300 s (``Diffractometer.scan_s``; the XRD taken as never busy): the result is known when it ends (the
  move back to the rack does not delay it).

The measured values are what ``Lab.run`` measures (fraction of LiMn2O4 and of the impurities, the pattern fitted as
the campaign's plugins do), with the furnace's and the pattern's noise from a generator seeded by (seed, 24, trial
number): the n-th trial of a seed sees the same noise stream on every station count. Reaching the target = the
first trial with a measured fraction >= 0.9 and impurities <= 0.05.

Not what the real runner does with this campaign file: its first step is the dispenser (``first_kind``), so it
starts a trial whenever the dispenser is free and crucibles wait dosed for a furnace; here a trial starts only
when a furnace is free (the pre-furnace steps, ~2.5 min of a 5-46 h firing, are counted in the furnace's time).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO / "simulators")):
    if p not in sys.path:
        sys.path.insert(0, p)

from solid_state_search import BASE, CEILING, GOAL, Lab

ROBOT_MOVE_S = 15.0 + 3.0 + 15.0 + 3.0  # RobotArm defaults: move, grip, move, release
DOSE_S, DOSE_S_PER_G = 5.0, 20.0  # Dispenser.dispense: 5 s + seconds_per_g * grams
BARCODE_S = 0.3  # BarcodeScanner.read_s
WEIGH_S = 18.0  # Balance.weigh_stable after the release (model median, 16-19 s)
SCAN_S = 300.0  # Diffractometer.scan_s
BUDGET = 40


def load_spec(seed: int, budget: int | None, options: dict[str, Any]) -> Any:
    from labloop.spec import parse_spec

    data = yaml.safe_load((REPO / "experiments" / "solid_state.yaml").read_text())
    data["seed"] = seed
    data["stopping"]["max_trials"] = budget or BUDGET
    if options:
        data["strategy"]["options"] = {**data["strategy"].get("options", {}), **options}
    data["strategy"].pop("expert_prior", None)  # the search from nothing (the docstring says why)
    data["lab"].pop("consumables", None)  # the shelf is not what is measured here
    data["lab"].pop("batching", None)  # one crucible per firing: a furnace is one trial's station
    return parse_spec(data, "solid_state.yaml")


def pre_furnace_s(params: dict[str, Any]) -> float:
    """Rack -> dispenser -> doses -> balance -> barcode -> stable weight, in simulated seconds."""
    from labloop_devices.solid_state.cell import masses

    grams = masses(params["li_source"], params["mn_source"], float(params["ratio"]))
    dosing = sum(DOSE_S + DOSE_S_PER_G * g for g in grams.values())
    return ROBOT_MOVE_S + dosing + ROBOT_MOVE_S + BARCODE_S + WEIGH_S


class SolidState:
    """What the solid-state lab is to parallel.py's virtual clock (the same interface as ``parallel.ThinFilm``)."""

    station = "furnace"

    def __init__(self, spec: Any, seed: int):
        self.spec, self.seed = spec, seed
        self.objective = spec.objectives[0]
        self.constraint = spec.outcome_constraints[0]
        self.target = float(self.objective.target)

    def trial(self, params: dict[str, Any], index: int, t: float) -> tuple[float, float, dict[str, float]]:
        """(when the furnace is free, when the result is known, measured values) for a trial started at ``t``."""
        lab = Lab(0)
        lab.rng = lab.furnace.rng = np.random.default_rng([self.seed, 24, index])
        fraction, impurity, hours = lab.run({k: params[k] for k in BASE})
        out = t + pre_furnace_s(params) + ROBOT_MOVE_S + hours * 3600 + ROBOT_MOVE_S
        return out, out + SCAN_S, {self.objective.name: fraction, self.constraint.name: impurity}

    def met(self, values: dict[str, float]) -> bool:
        return values[self.objective.name] >= GOAL and values[self.constraint.name] <= CEILING

    def extra(self, trials: list[Any]) -> dict[str, Any]:
        done = [tr for tr in trials if tr.value is not None]
        feasible = [tr.value[self.objective.name] for tr in done if tr.value[self.constraint.name] <= CEILING]
        return {
            "best": round(max(feasible), 3) if feasible else None,
            "best_any": round(max((tr.value[self.objective.name] for tr in done), default=0.0), 3),
            "feasible_trials": len(feasible),
            "firing_h": [round((tr.out - tr.started) / 3600, 2) for tr in trials],
        }
