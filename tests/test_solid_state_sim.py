"""The simulated solid-state lab's physics (simulators/solid_state): chemistry, XRD, furnace, balance, dispenser,
inventory, barcode, faults. Simulated time only; no wall-clock assertions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from labloop_simulators.solid_state import xrd
from labloop_simulators.solid_state.balance import Balance
from labloop_simulators.solid_state.barcode import BarcodeReader
from labloop_simulators.solid_state.chemistry import (
    ATMOSPHERES,
    LI_SOURCES,
    MN_SOURCES,
    SEARCH_SPACE,
    Recipe,
    element_shares,
    fire,
    precursor_masses,
    react,
)
from labloop_simulators.solid_state.dispense import Dispenser, DispenserJam
from labloop_simulators.solid_state.faults import FaultRates
from labloop_simulators.solid_state.furnace import BoxFurnace, Profile
from labloop_simulators.solid_state.inventory import Inventory, InventoryRefused

from labloop.errors import DeviceError

ROUTES = list(itertools.product(LI_SOURCES, MN_SOURCES))


# ---------------------------------------------------------------- chemistry


@pytest.mark.parametrize("li,mn", ROUTES)
def test_fractions_sum_to_one_and_cations_are_conserved(li, mn):
    for ratio, peak, atm in ((1.0, 800, "air"), (0.8, 650, "N2"), (1.3, 950, "O2")):
        recipe = Recipe(li, mn, ratio=ratio, peak_c=peak, dwell_h=6, atmosphere=atm, milling_min=90)
        product = fire(recipe)
        assert sum(product.fractions.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(f >= 0 for f in product.fractions.values())
        li_out, mn_out, zr_out = element_shares(product)
        li_in, mn_in = product.li_mn_in
        assert li_out == pytest.approx(li_in * (1 - zr_out), abs=1e-9)
        assert mn_out == pytest.approx(mn_in * (1 - zr_out), abs=1e-9)


def test_target_rises_with_dwell_and_temperature_on_the_good_route():
    dwell = [fire(Recipe("Li2CO3", "MnO2", peak_c=750, dwell_h=d)).target for d in (2, 8, 24)]
    assert dwell[0] < dwell[1] < dwell[2]
    temps = [fire(Recipe("Li2CO3", "MnO2", peak_c=t, dwell_h=8)).target for t in (650, 700, 750, 800)]
    assert all(a < b for a, b in zip(temps, temps[1:]))
    assert temps[-1] > 0.85


def test_a_molten_li_salt_route_is_trapped_in_the_intermediate():
    good = fire(Recipe("Li2CO3", "MnO2", peak_c=750, dwell_h=48))
    trap24 = fire(Recipe("LiNO3", "MnO2", peak_c=750, dwell_h=24))
    trap48 = fire(Recipe("LiNO3", "MnO2", peak_c=750, dwell_h=48))
    assert trap48.target - trap24.target < 0.03  # another day in the furnace buys almost nothing
    assert trap48.fractions["Li2MnO3"] > 0.15  # held in the Li-rich intermediate
    assert good.target - trap48.target > 0.15
    assert good.fractions["Li2MnO3"] < trap48.fractions["Li2MnO3"] / 2
    # a fast ramp crosses the intermediate's temperature window before much has reacted
    slow, fast = (fire(Recipe("LiNO3", "MnO2", peak_c=800, dwell_h=8, ramp_c_per_min=r)) for r in (1, 20))
    assert fast.target > slow.target + 0.1 and fast.fractions["Li2MnO3"] < slow.fractions["Li2MnO3"]


def test_overfiring_decomposes_and_atmosphere_and_stoichiometry_make_impurities():
    assert fire(Recipe(peak_c=950, dwell_h=8)).target < fire(Recipe(peak_c=800, dwell_h=8)).target - 0.4
    assert fire(Recipe(peak_c=950, dwell_h=8)).fractions["Mn3O4"] > 0.2
    inert = fire(Recipe(peak_c=800, dwell_h=8, atmosphere="N2"))
    assert inert.target < 0.3 and inert.fractions["LiMnO2"] > 0.3 and inert.fractions["Mn3O4"] > 0.15
    # Mn3O4 must oxidize: O2 works, air is slow
    assert (
        fire(Recipe("Li2O", "Mn3O4", peak_c=850, dwell_h=24, atmosphere="O2")).target
        > fire(Recipe("Li2O", "Mn3O4", peak_c=850, dwell_h=24, atmosphere="air")).target + 0.2
    )
    li_rich = fire(Recipe(ratio=1.3, peak_c=800, dwell_h=24))
    li_poor = fire(Recipe(ratio=0.7, peak_c=800, dwell_h=24))
    stoich = fire(Recipe(ratio=1.0, peak_c=800, dwell_h=24))
    assert li_rich.fractions["Li2MnO3"] > stoich.fractions["Li2MnO3"] + 0.1
    assert li_poor.fractions["Mn2O3"] > stoich.fractions["Mn2O3"] + 0.1
    assert stoich.target > max(li_rich.target, li_poor.target)


def test_milling_speeds_the_reaction_but_wears_in_zirconia():
    coarse, fine = (fire(Recipe(milling_min=m, peak_c=750, dwell_h=4)) for m in (0, 120))
    assert fine.target > coarse.target + 0.3
    assert fine.fractions["ZrO2"] > coarse.fractions["ZrO2"] == 0.0


def test_landscape_is_multimodal():
    temps, dwells = (700, 750, 800, 850, 900), (2, 8, 24)
    value = {
        (li, mn, ti, di): fire(Recipe(li, mn, peak_c=temps[ti], dwell_h=dwells[di])).target
        for (li, mn), ti, di in itertools.product(ROUTES, range(len(temps)), range(len(dwells)))
    }

    def best(li, mn):
        return max(
            ((ti, di) for ti in range(len(temps)) for di in range(len(dwells))), key=lambda k: value[(li, mn) + k]
        )

    assert best("Li2CO3", "MnO2") != best("LiNO3", "MnO2") != best("Li2O", "Mn3O4")
    assert len({best(li, mn) for li, mn in ROUTES}) >= 3

    def neighbours(li, mn, ti, di):
        out = [(o, mn, ti, di) for o in LI_SOURCES if o != li] + [(li, o, ti, di) for o in MN_SOURCES if o != mn]
        out += [(li, mn, ti + s, di) for s in (-1, 1) if 0 <= ti + s < len(temps)]
        return out + [(li, mn, ti, di + s) for s in (-1, 1) if 0 <= di + s < len(dwells)]

    local = [k for k, v in value.items() if all(v > value[n] for n in neighbours(*k))]
    assert len(local) >= 3, local  # one-factor-at-a-time hill climbing stops at different recipes
    good = sum(v > 0.85 for v in value.values()) / len(value)
    assert good < 0.25  # most of the box wastes a furnace-day


def test_random_recipes_rarely_reach_a_high_target_fraction():
    rng = np.random.default_rng(0)
    values = []
    for _ in range(300):
        bounds = {k: float(rng.uniform(*b)) for k, b in SEARCH_SPACE.items()}
        values.append(
            fire(
                Recipe(
                    str(rng.choice(LI_SOURCES)),
                    str(rng.choice(MN_SOURCES)),
                    atmosphere=str(rng.choice(ATMOSPHERES)),
                    **bounds,
                )
            ).target
        )
    assert np.mean(np.array(values) >= 0.9) < 0.03
    best = fire(
        Recipe("Li2O", "MnO2", ratio=1.0, milling_min=33, ramp_c_per_min=12, peak_c=835, dwell_h=17.5, atmosphere="O2")
    )
    assert best.target > 0.97 > max(values)


def test_the_product_follows_the_actual_history_not_the_setpoint():
    recipe = Recipe(peak_c=800, dwell_h=4)
    t = np.array([0, 3600, 7200, 30000.0])
    held = react(recipe, t, np.array([25, 800, 800, 800.0]))
    lower = react(recipe, t, np.array([25, 700, 700, 700.0]))
    assert held.target > lower.target + 0.2
    assert held.crystallite_nm > lower.crystallite_nm


def test_recipes_out_of_range_are_refused():
    for bad in (dict(li_source="NaOH"), dict(atmosphere="H2"), dict(ratio=3.0), dict(peak_c=1500)):
        with pytest.raises(ValueError):
            Recipe(**bad)


def test_precursor_masses_follow_the_ratio():
    m1 = precursor_masses(Recipe("Li2CO3", "MnO2", ratio=1.0), target_mmol=10)
    m2 = precursor_masses(Recipe("Li2CO3", "MnO2", ratio=1.2), target_mmol=10)
    assert m1["MnO2"] == pytest.approx(0.020 * 86.94)
    assert m1["Li2CO3"] == pytest.approx(0.005 * 73.89)
    assert m2["Li2CO3"] == pytest.approx(1.2 * m1["Li2CO3"])


# ---------------------------------------------------------------- XRD


def _peak_width(counts, two_theta, center):
    window = (two_theta > center - 1.5) & (two_theta < center + 1.5)
    y, x = counts[window], two_theta[window]
    y = y - y.min()
    above = x[y >= y.max() / 2]
    return above.max() - above.min()


def test_xrd_peaks_sit_at_the_phase_positions_and_narrow_with_firing():
    rng = np.random.default_rng(3)
    cool = fire(Recipe(peak_c=700, dwell_h=24))
    hot = fire(Recipe(peak_c=850, dwell_h=24))
    assert hot.crystallite_nm > cool.crystallite_nm * 2
    pure = {"LiMn2O4": 1.0}
    p_cool = xrd.pattern(pure, cool.crystallite_nm, rng)
    p_hot = xrd.pattern(pure, hot.crystallite_nm, rng)
    tt = xrd.TWO_THETA
    strongest = tt[np.argmax(p_hot - xrd.background())]
    assert strongest == pytest.approx(18.6, abs=0.05)
    assert _peak_width(p_hot, tt, 18.6) < _peak_width(p_cool, tt, 18.6)
    # instrument broadening grows with angle (Caglioti) at a fixed crystallite size
    assert xrd.fwhm_deg(70, 1e6) > xrd.fwhm_deg(20, 1e6)
    # counting noise is Poisson: the variance of the flat background equals its mean
    flat = xrd.pattern({}, 50, rng)[tt > 60]
    assert np.var(flat - xrd.background()[tt > 60]) == pytest.approx(np.mean(xrd.background()[tt > 60]), rel=0.15)


@pytest.mark.parametrize("seed", range(5))
def test_nnls_recovers_phase_fractions_within_two_percent(seed):
    rng = np.random.default_rng(seed)
    recipe = Recipe(
        *ROUTES[int(rng.integers(len(ROUTES)))],
        peak_c=float(rng.uniform(700, 900)),
        dwell_h=float(rng.uniform(2, 24)),
        ratio=float(rng.uniform(0.85, 1.2)),
    )
    product = fire(recipe)
    counts = xrd.pattern(product.fractions, product.crystallite_nm, rng)
    phases = list(product.fractions)
    estimate, _ = xrd.estimate_fractions(counts, phases)
    for phase in phases:
        assert estimate[phase] == pytest.approx(product.fractions[phase], abs=0.02), (phase, recipe)


# ---------------------------------------------------------------- furnace


def test_furnace_cools_with_its_time_constant_and_fires_a_shared_profile():
    furnace = BoxFurnace(np.random.default_rng(0), tau_h=3.0, faults=FaultRates.none())
    recipe = Recipe(peak_c=800, dwell_h=2, ramp_c_per_min=5)
    firing = furnace.fire(Profile.of(recipe), [recipe] * 4)
    end = np.where(np.isnan(firing.setpoints_c))[0][0] - 1  # last step of the program
    t0, temp0 = firing.times_s[end], firing.temps_c[end]
    assert temp0 == pytest.approx(800, abs=1)
    later = firing.times_s > t0
    expected = 25 + (temp0 - 25) * np.exp(-(firing.times_s[later] - t0) / (3 * 3600))
    assert np.allclose(firing.temps_c[later], expected, rtol=1e-6)
    assert firing.temps_c[-1] < 150
    assert len(firing.products) == 4 and all(p is not None for p in firing.products)
    mixed = Recipe(peak_c=850, dwell_h=2)
    with pytest.raises(DeviceError):
        furnace.fire(Profile.of(recipe), [recipe, mixed])
    with pytest.raises(DeviceError):
        furnace.fire(Profile.of(recipe), [recipe] * 5)


def test_furnace_heating_is_power_limited_and_a_fast_ramp_lags():
    furnace = BoxFurnace(np.random.default_rng(0), faults=FaultRates.none())
    recipe = Recipe(peak_c=900, dwell_h=1, ramp_c_per_min=30)
    firing = furnace.fire(Profile.of(recipe), [recipe])
    rates = np.diff(firing.temps_c) / np.diff(firing.times_s) * 60
    assert rates.max() < 15  # the heater cannot do 30 degC/min
    lagging = firing.setpoints_c[1:] - firing.temps_c[1:]
    assert np.nanmax(lagging) > 100


def test_a_trip_truncates_the_history_and_the_chemistry_sees_it():
    recipe = Recipe(peak_c=800, dwell_h=8)
    normal = BoxFurnace(np.random.default_rng(1), faults=FaultRates.none()).fire(Profile.of(recipe), [recipe])
    rates = FaultRates(crucible_crack=0.0, furnace_trip=1.0, barcode_misread=0.0, dispenser_jam=0.0)
    tripped = BoxFurnace(np.random.default_rng(1), faults=rates).fire(Profile.of(recipe), [recipe])
    assert tripped.tripped_at_s is not None and normal.tripped_at_s is None
    assert tripped.products[0].target < normal.products[0].target
    assert np.all(np.diff(tripped.temps_c[tripped.times_s > tripped.tripped_at_s + 60]) <= 0)


# ---------------------------------------------------------------- balance, dispenser


def test_balance_settles_first_order_and_drifts():
    balance = Balance(np.random.default_rng(0), tau_s=1.5, noise_g=2e-5, drift_g_per_s=0.0)
    balance.tare()
    balance.place(12.3456)
    balance.advance(0.5)
    early = balance.read()
    assert early < 12.3456 * (1 - math.exp(-0.5 / 1.5)) + 1e-3
    value, waited = balance.weigh_stable(stable_tol_g=1e-4)
    assert value == pytest.approx(12.3456, abs=2e-4)
    assert waited > 1.5 * math.log(12.3456 / 1e-4) / 2  # it had to wait several time constants
    drifting = Balance(np.random.default_rng(0), drift_g_per_s=1e-5, noise_g=0.0)
    drifting.tare()
    drifting.place(5.0)
    drifting.advance(600)
    assert drifting.read() - 5.0 == pytest.approx(600 * 1e-5, rel=1e-3)
    drifting.tare()
    assert drifting.read() == pytest.approx(0.0, abs=1e-9)


def test_dispenser_error_scales_and_jams_report_the_partial_dose():
    dispenser = Dispenser(np.random.default_rng(0), faults=FaultRates.none())
    doses = np.array([dispenser.dispense("Li2CO3", 1.0)[0] for _ in range(400)])
    assert abs(doses.mean() - 1.0) < 0.003 and 0.005 < doses.std() < 0.02
    sticky = np.array([dispenser.dispense("LiOH", 1.0)[0] for _ in range(400)])
    assert sticky.std() > doses.std() * 1.5
    jammer = Dispenser(np.random.default_rng(0), faults=FaultRates(0, 0, 0, 1.0))
    with pytest.raises(DispenserJam) as jam:
        jammer.dispense("MnO2", 2.0)
    assert 0 < jam.value.dispensed_g < 2.0 and "clear the hopper" in str(jam.value)


# ---------------------------------------------------------------- inventory


def test_inventory_refuses_over_use_and_changes_nothing():
    inv = Inventory.with_crucibles(2, {"Li2CO3": 1.0, "MnO2": 10.0}, alert_below_g=2.0)
    need = precursor_masses(Recipe("Li2CO3", "MnO2"), target_mmol=10)
    inv.draw(need)
    assert inv.stocks_g["Li2CO3"] == pytest.approx(1.0 - need["Li2CO3"])
    before = dict(inv.stocks_g)
    with pytest.raises(InventoryRefused) as refused:
        inv.draw({"Li2CO3": 5.0, "MnO2": 1.0})
    assert "Li2CO3" in str(refused.value) and "refill" in str(refused.value)
    assert inv.stocks_g == before and not inv.can_supply({"Li2CO3": 5.0})
    assert inv.low_stocks() == ["Li2CO3"]
    inv.refill("Li2CO3", 10.0)
    assert inv.low_stocks() == [] and inv.can_supply({"Li2CO3": 5.0})
    a, b = inv.take_clean_crucible(), inv.take_clean_crucible()
    with pytest.raises(InventoryRefused):
        inv.take_clean_crucible()
    inv.clean(a)
    inv.set_state(b, "cracked")
    with pytest.raises(InventoryRefused):
        inv.set_state(b, "clean")
    assert (inv.count("clean"), inv.count("cracked")) == (1, 1)


# ---------------------------------------------------------------- faults


def test_faults_occur_at_their_rates_and_replay_by_seed():
    rates = FaultRates(crucible_crack=0.05, furnace_trip=0.1, barcode_misread=0.05, dispenser_jam=0.05)
    reader = BarcodeReader(np.random.default_rng(7), rates)
    reads = [reader.read("CR0042") for _ in range(20000)]
    wrong = sum(r != "CR0042" for r in reads) / len(reads)
    assert wrong == pytest.approx(0.05, abs=0.008)
    assert any(r is None for r in reads) and any(r not in (None, "CR0042") for r in reads)
    assert all(r is None or (len(r) == 6 and r.startswith("CR")) for r in reads)

    jams = 0
    dispenser = Dispenser(np.random.default_rng(7), faults=rates)
    for _ in range(10000):
        try:
            dispenser.dispense("Mn2O3", 1.0)  # cohesion 1.0: the base rate
        except DispenserJam:
            jams += 1
    assert jams / 10000 == pytest.approx(0.05, abs=0.01)

    recipe = Recipe(peak_c=300, dwell_h=0.5, ramp_c_per_min=10)  # short firings: the fault draws are what count
    trips = cracks = 0
    for seed in range(300):
        firing = BoxFurnace(np.random.default_rng(seed), faults=rates).fire(Profile.of(recipe), [recipe] * 4)
        trips += firing.tripped_at_s is not None
        cracks += sum(firing.cracked)
    assert trips / 300 == pytest.approx(0.1, abs=0.04)
    assert cracks / 1200 == pytest.approx(0.05 * 2, abs=0.025)  # x(1 + ramp/10) at 10 degC/min
    again = BoxFurnace(np.random.default_rng(5), faults=rates).fire(Profile.of(recipe), [recipe] * 4)
    first = BoxFurnace(np.random.default_rng(5), faults=rates).fire(Profile.of(recipe), [recipe] * 4)
    assert again.cracked == first.cracked and again.tripped_at_s == first.tripped_at_s
    with pytest.raises(ValueError):
        FaultRates(furnace_trip=1.5)


def test_every_atmosphere_and_route_runs():
    for atm in ATMOSPHERES:
        assert 0 <= fire(Recipe("LiOH", "Mn2O3", atmosphere=atm, dwell_h=1)).target <= 1


def test_fault_rates_parse_overrides_of_the_defaults():
    rates = FaultRates.parse(["crucible_crack=0.2", " furnace_trip = 0.5"])
    assert rates == FaultRates(crucible_crack=0.2, furnace_trip=0.5)  # the others keep their defaults
    for bad in (["crucible=0.2"], ["furnace_trip"], ["furnace_trip=often"], ["furnace_trip=2"]):
        with pytest.raises(ValueError, match="furnace_trip|crucible"):
            FaultRates.parse(bad)


class _Pattern:
    """What an objective plugin reads of a trial: its readings of one pattern."""

    def __init__(self, counts: np.ndarray):
        self.counts = counts

    def readings(self, key: str) -> list[object]:
        return [list(self.counts)] if key == "counts" else [list(xrd.TWO_THETA)]

    def data_keys(self) -> list[str]:
        return ["xrd_counts", "xrd_two_theta"]


def test_the_pattern_of_an_empty_crucible_is_rejected_not_fitted_into_fractions():
    """A cracked crucible spills its charge (the served furnace empties it): its pattern is background and noise,
    whose NNLS fractions are any numbers at all. Recorded, they would tell the optimizer that the recipe makes them;
    the objective refuses the pattern instead, so the trial fails with the reason."""
    from labloop_simulators.solid_state.objectives import ImpurityFraction, TargetPhaseFraction

    from labloop.errors import ObjectiveError

    rng = np.random.default_rng(11)
    for _ in range(3):
        empty = _Pattern(xrd.pattern({}, 50.0, rng))
        for plugin in (TargetPhaseFraction(), ImpurityFraction()):
            with pytest.raises(ObjectiveError, match="no powder"):
                plugin(empty)
    fired = _Pattern(xrd.pattern({"LiMn2O4": 0.9, "Mn2O3": 0.1}, 60.0, rng))
    assert TargetPhaseFraction()(fired) == pytest.approx(0.9, abs=0.03)
    assert ImpurityFraction()(fired) == pytest.approx(0.1, abs=0.03)
