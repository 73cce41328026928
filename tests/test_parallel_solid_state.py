"""benchmarks/parallel.py on the solid-state lab (issue 25 item 1, third campaign): furnaces as stations, one crucible
per firing, the campaign file's strategy, the firing's duration from the furnace model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("parallel_bench", REPO / "benchmarks" / "parallel.py")
par = importlib.util.module_from_spec(_spec)
sys.modules["parallel_bench"] = par  # dataclasses look their module up
_spec.loader.exec_module(par)
import parallel_solid_state as pss  # noqa: E402 - on sys.path once parallel.py is loaded
from solid_state_search import TEXTBOOK  # noqa: E402 - the textbook recipe the search benchmark starts OFAT from


def test_the_campaign_is_the_files_strategy_with_budget_40_and_one_crucible_per_firing():
    spec = pss.load_spec(0, None, {})
    assert spec.stopping.max_trials == 40
    assert spec.strategy.name == "botorch" and spec.strategy.initial_design == 6
    assert spec.scheduling.mode == "async" and spec.scheduling.lookahead == 1
    assert not spec.lab.batching and spec.lab.consumables is None


def test_a_trial_holds_its_furnace_for_the_steps_before_it_and_the_firing_and_its_result_follows_the_scan():
    spec = pss.load_spec(0, None, {})
    lab = pss.SolidState(spec, seed=0)
    out, known, values = lab.trial(TEXTBOOK, 1, 1000.0)
    again = lab.trial(TEXTBOOK, 1, 0.0)
    other = lab.trial(TEXTBOOK, 2, 0.0)
    # the same seed and trial number see the same noise whenever the trial starts; another trial number other noise
    assert again[2] == values and other[2] != values
    pre = pss.pre_furnace_s(TEXTBOOK)
    assert 36 + 30 + 36 + 18 < pre < 36 + 32 + 36 + 19  # two moves, ~31 s of dosing, barcode, stable weight
    firing_h = (out - 1000.0 - pre - 2 * 36) / 3600
    assert 18 < firing_h < 22  # 800 degC at 5 degC/min, 12 h, then cooling below 150 degC
    assert known == pytest.approx(out + 300)
    # the textbook route makes about 0.92 in the model (archive section 24)
    assert values["target_phase_fraction"] > 0.85 and values["impurity_ceiling"] < 0.1
    assert lab.met({"target_phase_fraction": 0.91, "impurity_ceiling": 0.05})
    assert not lab.met({"target_phase_fraction": 0.95, "impurity_ceiling": 0.06})
    assert not lab.met({"target_phase_fraction": 0.89, "impurity_ceiling": 0.0})


def test_a_short_run_uses_both_furnaces_and_starts_six_space_filling_trials_first():
    row = par.run("solid_state", 2, seed=0, budget=7)
    assert row["max_chambers_busy"] == 2 and row["budget"] == 7
    assert row["space_filling_started"] == 6 and row["first_model_trial"] == 7
    assert len(row["firing_h"]) == 7 and all(5 < h < 50 for h in row["firing_h"])
    assert list(row["asks_log"][0]) == [0, 0, 3]  # two free furnaces and the lookahead
