"""The transparent-conductor campaign (issue 11 item 3): a categorical dopant in the simulator physics and the
chamber, the visible-transmittance objective plugin, and a short two-objective run on the simulated lab with its
dock ending in a Pareto front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from bluesky import RunEngine
from labloop_simulators.thinfilm import physics
from labloop_simulators.thinfilm.lab import build_lab
from running import start

from labloop.errors import LimitError, ObjectiveError
from labloop.run import plans
from labloop.run.objectives import TrialData, VisibleTransmittance, load_objective
from labloop.spec import load_spec

CAMPAIGN = Path(__file__).resolve().parents[1] / "experiments" / "transparent_conductor.yaml"


def good() -> dict:
    """The simulator's best recipe: physics.optimum() finds it numerically (scipy) and caches it; called
    in the tests, not at import, so collecting the suite does not run the optimizer."""
    return dict(physics.optimum().recipe)


def test_campaign_file_validates_with_two_objectives_a_constraint_and_a_categorical_dopant():
    spec = load_spec(CAMPAIGN)
    assert [(o.name, o.direction) for o in spec.objectives] == [
        ("sheet_resistance", "minimize"),
        ("visible_transmittance", "maximize"),
    ]
    (floor,) = spec.outcome_constraints
    assert floor.plugin == "visible_transmittance" and floor.lower == 0.80
    dop = next(p for p in spec.parameters if p.name == "dopant")
    assert dop.choices == ["Nb", "Ta", "W"]
    for name, (radius, valence, _) in dop.descriptors.items():
        assert (radius, valence) == (physics.DOPANTS[name].ionic_radius, physics.DOPANTS[name].valence)
    box = {p.name: (p.lower, p.upper) for p in spec.parameters if p.name != "dopant"}
    assert box == physics.CAMPAIGN_BOUNDS
    assert spec.lab.options["dock"] is True


# ------------------------------------------------------------------------------------------------ physics
def test_nb_is_exactly_as_before_and_is_the_default():
    recipe = {
        "o2_pressure": 0.3,
        "substrate_temperature": 400.0,
        "nb_fraction": 0.05,
        "rf_power": 150.0,
        "duration": 30.0,
    }
    before = {  # physics.film(recipe) before dopants existed (commit adc69eb), to the last digit
        "thickness_nm": 410.4,
        "carrier_density_cm3": 8.521602724386767e20,
        "mobility_cm2_vs": 17.65571542849636,
        "resistivity_ohm_cm": 0.00041484227027629354,
        "sheet_resistance": 10.487937062695286,
        "crystallinity": 0.8320183851339245,
        "rutile_fraction": 0.0010508097522785032,
    }
    assert physics.film(recipe).as_dict() == before
    assert physics.film({**recipe, "dopant": "Nb"}).as_dict() == before
    assert physics.optimum().sheet_resistance == pytest.approx(2.5008229897927974, rel=1e-9)  # the demo's landscape
    with pytest.raises(KeyError, match="unknown dopant 'Mo'"):
        physics.film({**recipe, "dopant": "Mo"})


def test_w_gives_more_carriers_and_scatters_more_ta_is_close_to_nb():
    films = {d: physics.film({**good(), "dopant": d}) for d in physics.DOPANTS}
    assert films["W"].carrier_density_cm3 > 1.3 * films["Nb"].carrier_density_cm3
    assert films["W"].mobility_cm2_vs < 0.7 * films["Nb"].mobility_cm2_vs
    assert films["Ta"].carrier_density_cm3 == pytest.approx(films["Nb"].carrier_density_cm3, rel=0.1)
    assert films["Ta"].mobility_cm2_vs < films["Nb"].mobility_cm2_vs
    assert films["Ta"].mobility_cm2_vs > 0.9 * films["Nb"].mobility_cm2_vs
    # equal everything else: thickness and structure do not depend on the dopant
    assert {f.thickness_nm for f in films.values()} == {films["Nb"].thickness_nm}
    # a W film needs less dopant for the same carriers: at half the fraction W is within 30 % of Nb's n
    half_w = physics.film({**good(), "dopant": "W", "nb_fraction": good()["nb_fraction"] / 2})
    assert half_w.carrier_density_cm3 == pytest.approx(films["Nb"].carrier_density_cm3, rel=0.3)


def test_chamber_accepts_a_dopant_by_name_and_refuses_an_unknown_one(tmp_path):
    lab = build_lab({"data_dir": str(tmp_path)}, time_scale=36000.0)
    chamber = lab["chamber"]
    assert "dopant" in chamber.limits
    chamber.sample.put("s-1")
    with pytest.raises(LimitError, match=r"dopant='Mo' is not a target the chamber has \(has \['Nb', 'Ta', 'W'\]\)"):
        chamber.set({**good(), "dopant": "Mo"})
    with pytest.raises(LimitError, match=r"nb_fraction=0\.9 is outside"):
        chamber.set({**good(), "nb_fraction": 0.9, "dopant": "W"})
    recipe = {**good(), "duration": 5.0, "dopant": "W"}
    RE = RunEngine(context_managers=[])
    RE(plans.synthesize(chamber, recipe))
    film = chamber.registry.get("s-1").properties["film"]
    assert film["carrier_density_cm3"] == pytest.approx(physics.film(recipe).carrier_density_cm3)
    assert not chamber.busy


# ------------------------------------------------------------------------------------------------ the plugin
class _Spectrum(TrialData):
    def __init__(self, arrays):
        super().__init__({}, [])
        self._arrays = arrays

    def arrays(self, key):
        return self._arrays.get(key, [])


def test_visible_transmittance_is_the_mean_over_400_to_800_nm():
    lam = np.arange(300.0, 1101.0, 2.0)
    T = np.where((lam >= 400) & (lam <= 800), 0.5 + 0.3 * ((lam - 400) / 400), 0.01)  # linear 0.5 .. 0.8 in band
    plugin = load_objective("visible_transmittance")
    assert isinstance(plugin, VisibleTransmittance)
    assert plugin(_Spectrum({"transmittance": [T], "wavelength": [lam]})) == pytest.approx(0.65)
    assert VisibleTransmittance(lower=500, upper=600)(
        _Spectrum({"transmittance": [T], "wavelength": [lam]})
    ) == pytest.approx(0.5 + 0.3 * 150 / 400)
    assert VisibleTransmittance(percent=True)(
        _Spectrum({"transmittance": [100 * T], "wavelength": [lam]})
    ) == pytest.approx(0.65)


def test_visible_transmittance_fails_a_trial_cleanly_without_a_spectrum():
    with pytest.raises(ObjectiveError, match="no 'transmittance' spectrum"):
        VisibleTransmittance()(TrialData({}, []))
    lam = np.arange(900.0, 1101.0, 2.0)
    with pytest.raises(ObjectiveError, match="no point in 400-800 nm"):
        VisibleTransmittance()(_Spectrum({"transmittance": [np.ones_like(lam)], "wavelength": [lam]}))
    with pytest.raises(ObjectiveError, match="no matching 'wavelength'"):
        VisibleTransmittance()(_Spectrum({"transmittance": [np.ones(5)]}))


# ------------------------------------------------------------------------------------------------ campaign
def pareto(points):
    """Indices of the non-dominated points of (sheet_resistance to minimize, transmittance to maximize)."""
    return [
        i
        for i, (r, t) in enumerate(points)
        if not any((r2 <= r and t2 >= t) and (r2 < r or t2 > t) for r2, t2 in points)
    ]


def test_short_campaign_runs_end_to_end_with_both_objectives_and_a_pareto_front(tmp_path):
    data = yaml.safe_load(CAMPAIGN.read_text())
    data["stopping"] = {"max_trials": 6, "target_reached": False}
    data["strategy"]["initial_design"] = 4
    data["lab"]["time_scale"] = 36000.0
    data["lab"]["options"].update({"dock_minutes": 1, "data_dir": str(tmp_path / "assets")})
    store, runner = start(data, tmp_path)
    assert runner.run().rule == "budget"
    trials = store.trials(runner.campaign.id)
    assert [t.state for t in trials] == ["done"] * 6
    points = []
    for t in trials:
        assert t.params["dopant"] in ("Nb", "Ta", "W")
        r, T = t.values["sheet_resistance"], t.values["visible_transmittance"]
        assert r > 0 and 0 < T < 1
        assert t.values["transmittance_floor"] == pytest.approx(T)
        docs = TrialData(t.params, store.documents(trial_id=t.id))
        (spectrum,) = docs.arrays("transmittance")
        (lam,) = docs.arrays("wavelength")
        assert T == pytest.approx(spectrum[(lam >= 400) & (lam <= 800)].mean())
        points.append((r, T))
    front = pareto(points)
    assert front and all(points[i] in points for i in front)
    print("Pareto front (R_s ohm/sq, T_vis):", sorted(points[i] for i in front))
    store.close()


def test_benchmark_hypervolume_uses_the_stated_reference_point():
    import importlib.util

    path = CAMPAIGN.parents[1] / "benchmarks" / "tco_hypervolume.py"
    spec = importlib.util.spec_from_file_location("tco_hypervolume", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (floor,) = load_spec(CAMPAIGN).outcome_constraints
    assert bench.REF_POINT == (-4.0, floor.lower) == (-4.0, 0.80)
    # (-1, 0.85) and (-2, 0.88) above (-4, 0.80): 3 * 0.05 + 2 * 0.03; infeasible and dominated points add nothing
    assert bench.hypervolume([(10.0, 0.85), (100.0, 0.88), (5.0, 0.7), (1e5, 0.95), (1000.0, 0.82)]) == pytest.approx(
        0.21
    )
    assert bench.hypervolume([]) == 0.0
