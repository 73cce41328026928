"""Consumables and inventory (issue 24, item 5): the campaign file's ``lab.consumables``, stock levels and movements
in the store (reserved when a trial is proposed, drawn when it starts, released if it never does), the optimizer
asked only for what is left, low-stock alerts closed by an audited refill, and every surface showing the levels."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from labloop_devices.solid_state.cell import masses
from running import in_background, start, two_chamber
from typer.testing import CliRunner

from labloop.cli import app
from labloop.cli.inventory import stock_lines
from labloop.data.view import campaign_view
from labloop.errors import SpecError, StoreError
from labloop.run.inventory import InventoryGuard, guard
from labloop.spec import parse_spec
from labloop.states import TrialState as S
from labloop.store import Store
from labloop.strategy import make_strategy

cli = CliRunner()


def consumables(**changes):
    """Nb target (g, drawn by the deposition's duration), a dopant powder (a product of parameters: not linear),
    and crucible-like counted items."""
    out = {
        "stocks": {
            "Nb": {"unit": "g", "initial": 100, "alert_below": 40},
            "dopant": {"unit": "mg", "initial": 1000},
            "crucible": {
                "unit": "count",
                "initial": 4,
                "alert_below": 2,
                "cleaning": "wash used crucibles in dilute HCl and dry at 120 C",
            },
        },
        "use": {"Nb": "duration", "dopant": "duration * nb_fraction", "crucible": 1},
    }
    out.update(changes)
    return out


def campaign_data(cons=None, **changes):
    data = two_chamber(**changes)
    data["lab"]["consumables"] = cons or consumables()
    return data


def new_campaign(tmp_path, data=None):
    data = data or campaign_data()
    st = Store(f"sqlite:///{tmp_path / 'inv.db'}")
    c = st.create_campaign(data["name"], yaml.safe_dump(data), "0" * 64)
    st.open_stocks(c.id)
    return st, c


def params(duration=30.0, nb_fraction=0.1):
    return {
        "o2_pressure": 1.0,
        "substrate_temperature": 300.0,
        "nb_fraction": nb_fraction,
        "rf_power": 100.0,
        "duration": duration,
    }


def levels(st, cid):
    return {s["name"]: s for s in st.stock_levels(cid)}


# ------------------------------------------------------------------------------------------------ campaign file
def test_bad_consumables_are_refused_naming_the_problem_and_the_fix():
    def problem(cons):
        with pytest.raises(SpecError) as err:
            parse_spec(campaign_data(cons), "c.yaml")
        return str(err.value.problem) + " " + str(err.value.fix or "")

    msg = problem(consumables(use={"Nb": "mass_nb_g"}))
    assert "lab.consumables.use.Nb: unknown parameter 'mass_nb_g'" in msg and "fix: use one of: o2_pressure" in msg
    msg = problem(consumables(stocks={"Nb": {"unit": "g", "initial": -5}}, use={"Nb": "duration"}))
    assert (
        "lab.consumables.stocks.Nb: initial: a stock cannot hold a negative amount (-5) (fix: give an amount >= 0 in g)"
    ) in msg
    assert "negative amount (-2.0)" in problem(consumables(use={"Nb": -2}))
    assert "unknown stock 'Ta'" in problem(consumables(use={"Ta": 1}))
    assert "uses Call" in problem(consumables(use={"Nb": "__import__('os').getcwd()"}))  # no code runs
    assert "uses Attribute" in problem(consumables(use={"Nb": "duration.real"}))
    assert "'cleaning' is for counted items" in problem(
        consumables(stocks={"Nb": {"unit": "g", "initial": 1, "cleaning": "wash"}}, use={})
    )
    spec = parse_spec(campaign_data(), "c.yaml")
    assert spec.lab.consumables.uses(params(30, 0.1)) == {"Nb": 30.0, "dopant": pytest.approx(3.0), "crucible": 1.0}


# ------------------------------------------------------------------------------------------------ store
def test_reserved_when_proposed_drawn_when_started_released_when_never_started(tmp_path):
    st, c = new_campaign(tmp_path)
    a = st.add_trial(c.id, params(30), "sobol", {}, "ab")
    b = st.add_trial(c.id, params(20), "sobol", {}, "ab")
    lv = levels(st, c.id)
    assert (lv["Nb"]["level"], lv["Nb"]["reserved"], lv["Nb"]["left"]) == (100, 50, 50)
    st.transition(a.id, S.PROPOSED, S.RUNNING)
    lv = levels(st, c.id)
    assert (lv["Nb"]["level"], lv["Nb"]["reserved"]) == (70, 20)
    assert (lv["crucible"]["level"], lv["crucible"]["used"], lv["crucible"]["reserved"]) == (3, 1, 1)
    st.transition(a.id, S.RUNNING, S.FAILED)  # failed after starting: the material is gone
    st.transition(b.id, S.PROPOSED, S.REJECTED)  # never started: back on the shelf
    lv = levels(st, c.id)
    assert (lv["Nb"]["level"], lv["Nb"]["reserved"], lv["crucible"]["level"]) == (70, 0, 3)
    kinds = [(n, m.kind, m.amount) for n, m in st.stock_movements(c.id) if n == "Nb"]
    assert kinds == [
        ("Nb", "initial", 100),
        ("Nb", "reserve", 30),
        ("Nb", "reserve", 20),
        ("Nb", "draw", 30),
        ("Nb", "release", 20),
    ]
    with pytest.raises(StoreError, match=r"needs 80 g of Nb; 70 left") as err:
        st.add_trial(c.id, params(80), "model", {}, "ab")
    assert "labloop inventory refill" in err.value.fix
    assert [t.number for t in st.trials(c.id)] == [1, 2]  # the refused trial was not added
    st.update_trial(b.id, params=params(10))  # a re-asked proposal is reserved anew (b is rejected: nothing held)
    assert levels(st, c.id)["Nb"]["reserved"] == 0
    st.close()


def test_nothing_reserved_reads_zero_not_what_float_sums_leave(tmp_path):
    """Reserving 0.1 and 0.2 g and drawing them again leaves 2.8e-17 g in a float sum; an operator read "reserved
    2.77556e-17" in status. Nothing reserved is 0."""
    st, c = new_campaign(tmp_path)
    trials = [st.add_trial(c.id, params(d), "sobol", {}, "ab") for d in (0.1, 0.2)]
    for t in trials:
        st.transition(t.id, S.PROPOSED, S.RUNNING)
    lv = levels(st, c.id)
    assert lv["Nb"]["reserved"] == 0 and lv["Nb"]["left"] == pytest.approx(99.7)
    assert "reserved 0)" in " ".join(stock_lines([lv["Nb"]]))


def test_parallel_trials_draw_and_refill_without_losing_a_gram(tmp_path):
    """Trials starting in parallel (one thread each, as the scheduler's workers do) and an operator's refills at
    the same time: every draw and refill is counted once, and nothing is reserved beyond the shelf."""
    st, c = new_campaign(tmp_path)
    trials = [st.add_trial(c.id, params(30), "model", {}, "ab") for _ in range(3)]
    with pytest.raises(StoreError, match="needs 30 g of Nb; 10 left"):  # a 4th would overdraw
        st.add_trial(c.id, params(30), "model", {}, "ab")
    errors = []

    def run(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    jobs = [lambda t=t: st.transition(t.id, S.PROPOSED, S.RUNNING) for t in trials]
    jobs += [lambda: st.refill(c.id, "Nb", 5, "ana") for _ in range(3)]
    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lv = levels(st, c.id)["Nb"]
    assert (lv["level"], lv["reserved"]) == (100 - 90 + 15, 0)
    assert all(m.level_after >= 0 for _, m in st.stock_movements(c.id))
    assert sorted(m.kind for n, m in st.stock_movements(c.id) if n == "Nb").count("draw") == 3
    st.close()


def test_alert_opens_below_threshold_and_a_refill_closes_it_audited(tmp_path):
    st, c = new_campaign(tmp_path)
    st.add_trial(c.id, params(30), "sobol", {}, "ab")
    assert not [a for a in campaign_view(st, c.id)["alerts"] if a["action"] == "inventory.low"]
    t = st.add_trial(c.id, params(40), "sobol", {}, "ab")  # 30 left < 40
    st.add_trial(c.id, params(5), "sobol", {}, "ab")  # 3 crucibles reserved: 1 left < 2
    view = campaign_view(st, c.id)
    low = [a for a in view["alerts"] if a["action"] == "inventory.low"]
    assert len(low) == 2 and "stock Nb: 30 g left, below 40" in low[0]["message"]
    assert "stock crucible: 1 count left, below 2; refill it" in low[1]["message"]
    assert [s["name"] for s in view["inventory"] if s["low"]] == ["Nb", "crucible"]
    st.transition(t.id, S.PROPOSED, S.RUNNING)
    with pytest.raises(StoreError, match="no stock 'Ta'"):
        st.refill(c.id, "Ta", 5, "ana")
    with pytest.raises(StoreError, match="not an amount"):
        st.refill(c.id, "Nb", -5, "ana")
    st.refill(c.id, "Nb", 10, "ana")  # still below: the alert stays open
    assert "stock Nb" in " ".join(a["message"] for a in campaign_view(st, c.id)["alerts"])
    st.refill(c.id, "Nb", 50, "ana")
    st.refill(c.id, "crucible", 2, "ben")  # the used crucible cleaned, and one new
    view = campaign_view(st, c.id)
    assert not [a for a in view["alerts"] if a["action"] == "inventory.low"]
    crucible = next(s for s in view["inventory"] if s["name"] == "crucible")
    assert (crucible["level"], crucible["used"], crucible["left"]) == (5, 0, 3)
    refills = [
        (a.user, a.detail["stock"], a.detail["amount"]) for a in st.audit_log(c.id) if a.action == "inventory.refill"
    ]
    assert refills == [("ana", "Nb", 10), ("ana", "Nb", 50), ("ben", "crucible", 2)]
    st.close()


# ------------------------------------------------------------------------------------------------ proposals
def test_a_recipe_needing_more_than_is_left_is_not_proposed(tmp_path):
    data = campaign_data(
        consumables(
            stocks={"Nb": {"unit": "g", "initial": 200}, "dopant": {"unit": "mg", "initial": 5}},
            use={"Nb": "duration", "dopant": "duration * nb_fraction"},
        )
    )
    data["strategy"] = {"name": "random", "initial_design": 20}
    st, c = new_campaign(tmp_path, data)
    st.add_trial(c.id, params(120, 0.0), "seed", {}, "ab")
    st.add_trial(c.id, params(45, 0.0), "seed", {}, "ab")  # 35 g of Nb left
    spec = parse_spec(data, "c.yaml")
    inner = make_strategy(spec)
    pending = [t.params for t in st.trials(c.id)]
    unguarded = inner.ask(6, [], pending)  # without the rule: recipes beyond what is left
    assert any(p.params["duration"] > 35 for p in unguarded)
    assert any(p.params["duration"] * p.params["nb_fraction"] > 5 for p in unguarded)
    guarded = guard(inner, spec, st, c.id)
    assert isinstance(guarded, InventoryGuard)
    out = guarded.ask(3, [], pending)
    assert 1 <= len(out) <= 3
    assert sum(p.params["duration"] for p in out) <= 35 + 1e-9  # the linear constraint (Nb)
    assert sum(p.params["duration"] * p.params["nb_fraction"] for p in out) <= 5 + 1e-9  # re-asked (dopant)
    for p in out:  # and the store takes them: nothing overdrawn
        st.add_trial(c.id, p.params, p.source, {}, "ab")
    assert all(s["left"] >= 0 for s in st.stock_levels(c.id))
    while levels(st, c.id)["Nb"]["left"] >= 10:  # what is left shrinks below the smallest recipe (10 min)
        st.add_trial(c.id, params(levels(st, c.id)["Nb"]["left"] - 5, 0.0), "seed", {}, "ab")
    with pytest.raises(Exception, match="stock Nb has .* left; every recipe needs at least 10") as err:
        guarded.ask(1, [], [t.params for t in st.trials(c.id)])
    assert "labloop inventory refill" in err.value.fix
    assert guard(inner, parse_spec(two_chamber(), "c.yaml"), st, c.id) is inner  # no consumables: as it was
    st.close()


# ------------------------------------------------------------------------------------------------ surfaces
def test_status_and_the_inventory_command_show_levels_and_record_refills(tmp_path):
    st, c = new_campaign(tmp_path)
    st.add_trial(c.id, params(70), "sobol", {}, "ab")
    st.close()
    url = f"sqlite:///{tmp_path / 'inv.db'}"
    r = cli.invoke(app, ["status", "--store", url])
    assert r.exit_code == 0, r.output
    assert "stocks:" in r.output and "Nb: 30 g left (on the shelf 100, reserved 70) LOW: below 40" in r.output
    r = cli.invoke(app, ["status", "--store", url, "--json"])
    inv = {s["name"]: s for s in json.loads(r.output)["inventory"]}
    assert (inv["Nb"]["left"], inv["Nb"]["low"], inv["crucible"]["unit"]) == (30, True, "count")
    r = cli.invoke(app, ["inventory", c.name, "--store", url])
    assert r.exit_code == 0 and "crucible: 3 count left" in r.output, r.output
    r = cli.invoke(app, ["inventory", "refill", c.name, "Nb", "25", "--store", url])
    assert r.exit_code != 0 and "--by" in r.output
    r = cli.invoke(app, ["inventory", "refill", c.name, "Nb", "lots", "--by", "ana", "--store", url])
    assert r.exit_code != 0 and "'lots' is not an amount" in r.output
    r = cli.invoke(app, ["inventory", "refill", c.name, "Nb", "25", "--by", "ana", "--store", url])
    assert r.exit_code == 0 and "Nb refilled by 25 g: 55 left (recorded by ana)" in r.output, r.output
    r = cli.invoke(app, ["status", "--store", url])
    assert "Nb: 55 g left (on the shelf 125, reserved 70)" in r.output and "LOW" not in r.output


def test_a_campaign_draws_per_trial_with_parallel_trials(tmp_path):
    """The real loop: two chambers in parallel, lookahead; every started trial drew its duration in grams of Nb,
    the shelf never went below zero, and the low alert opened on the way."""
    data = campaign_data(
        consumables(stocks={"Nb": {"unit": "g", "initial": 1000, "alert_below": 800}}, use={"Nb": "duration"}),
        max_trials=6,
    )
    st, runner = start(data, tmp_path)
    th, result = in_background(runner)
    th.join(120)
    assert result["decision"].rule == "budget"
    trials = st.trials(runner.campaign.id)
    started = [t for t in trials if t.started_at is not None]
    assert len(started) == 6
    moves = st.stock_movements(runner.campaign.id)
    draws = {m.trial_id: m.amount for _, m in moves if m.kind == "draw"}
    assert draws == {t.id: pytest.approx(t.params["duration"]) for t in started}
    lv = levels(st, runner.campaign.id)["Nb"]
    assert lv["level"] == pytest.approx(1000 - sum(draws.values())) and lv["reserved"] == pytest.approx(0)
    assert all(m.level_after >= 0 for _, m in moves)
    view = campaign_view(st, runner.campaign.id)
    assert view["inventory"][0]["name"] == "Nb"
    assert [a["action"] for a in view["alerts"] if a["action"] == "inventory.low"] == (
        ["inventory.low"] if lv["left"] < 800 else []
    )
    st.close()


def test_a_live_view_with_stocks_reads_them_again_after_a_proposal(tmp_path):
    """A proposal reserves, a start draws: the event does not carry the levels, so a view with stocks is marked
    stale (the surface reads the view again); one without stocks is not."""
    from labloop.data.view import apply

    st, c = new_campaign(tmp_path)
    view = campaign_view(st, c.id)
    trial = {"number": 1, "state": "proposed", "params": params(30), "sample_id": "ab-0001"}
    assert apply(view, {"seq": view["last_seq"] + 1, "kind": "proposal", "body": {"trial": trial}}).get("stale")
    view = {**campaign_view(st, c.id), "inventory": []}
    assert not apply(view, {"seq": view["last_seq"] + 1, "kind": "proposal", "body": {"trial": trial}}).get("stale")
    st.close()


def test_a_campaign_out_of_stock_pauses_for_the_operator_and_a_refill_lets_it_go_on(tmp_path):
    """When not one recipe fits what is left, the campaign pauses saying which stock to refill (it never proposes
    beyond the shelf); the operator's refill and resume let it finish."""
    from running import wait_for

    data = campaign_data(
        consumables(stocks={"Nb": {"unit": "g", "initial": 40, "alert_below": 20}}, use={"Nb": "duration"}),
        max_trials=6,
    )
    st, runner = start(data, tmp_path)
    cid = runner.campaign.id
    th, result = in_background(runner)
    wait_for(lambda: st.campaign(cid).state == "paused", timeout=120)
    note = st.campaign(cid).note
    assert "stock Nb has" in note and "every recipe needs at least 10" in note and "inventory refill" in note
    assert len(st.trials(cid)) < 6 and levels(st, cid)["Nb"]["left"] < 10
    assert any(a["action"] == "inventory.low" for a in campaign_view(st, cid)["alerts"])
    st.refill(cid, "Nb", 1000, "ana")
    st.request(cid, "resume", user="ana")
    th.join(120)
    assert result["decision"].rule == "budget"
    assert len([t for t in st.trials(cid) if t.started_at is not None]) == 6
    assert all(m.level_after >= 0 for _, m in st.stock_movements(cid))
    assert (
        not any(a["action"] == "inventory.low" for a in campaign_view(st, cid)["alerts"])
        or levels(st, cid)["Nb"]["left"] < 20
    )
    st.close()


def test_the_dashboards_api_carries_the_levels(tmp_path):
    """The page draws the view's ``inventory`` (web/static/app.js): /api/campaigns/NAME serves it."""
    from starlette.testclient import TestClient
    from web_helpers import add_user

    from labloop.web.app import Dashboard

    st, c = new_campaign(tmp_path)
    st.add_trial(c.id, params(70), "sobol", {}, "ab")
    token = add_user(st, "vera", "viewer")
    dash = Dashboard(f"sqlite:///{tmp_path / 'inv.db'}", tail=False)
    with TestClient(dash.app(), base_url="http://127.0.0.1") as client:
        r = client.get(f"/api/campaigns/{c.name}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    inv = {s["name"]: s for s in r.json()["inventory"]}
    assert (inv["Nb"]["left"], inv["Nb"]["low"], inv["crucible"]["left"]) == (30, True, 3)
    assert any(a["action"] == "inventory.low" for a in r.json()["alerts"])
    st.close()


# ------------------------------------------------------------------------------------------------ choice tests
SOLID_STATE = Path(__file__).resolve().parent.parent / "experiments" / "solid_state.yaml"


def test_a_use_may_test_a_categorical_choice_and_nothing_else_of_it():
    """Which powder a recipe weighs out depends on the precursor chosen: ``(li_source == 'LiOH') * 0.12 * ratio``.
    A test is 1 or 0; a categorical parameter may appear only in a test, against one of its own choices."""
    data = yaml.safe_load(SOLID_STATE.read_text())

    def problem(use):
        changed = json.loads(json.dumps(data))
        changed["lab"]["consumables"]["use"] = use
        with pytest.raises(SpecError) as err:
            parse_spec(changed, "c.yaml")
        return f"{err.value.problem} {err.value.fix or ''}"

    assert "'LiOHx' is not a choice of 'li_source'" in problem({"LiOH": "(li_source == 'LiOHx') * ratio"})
    assert "tests a parameter that is not categorical" in problem({"LiOH": "(ratio == 'high') * 0.1"})
    assert "must test one parameter against one choice" in problem({"LiOH": "(ratio > 1) * 0.1"})
    assert "must test one parameter" in problem({"LiOH": "('LiOH' == li_source) * 0.1"})
    msg = problem({"LiOH": "li_source * 0.1"})
    assert "'li_source' is not numeric" in msg and "(li_source == 'Li2CO3')" in msg  # the fix shows the way
    assert "uses Constant" in problem({"LiOH": "'LiOH' * 2"})  # a string outside a test is no amount

    spec = parse_spec(data, "c.yaml")
    for li in ("Li2CO3", "LiOH", "LiNO3", "Li2O"):
        for mn in ("MnO2", "Mn2O3", "MnCO3", "Mn3O4"):
            uses = spec.lab.consumables.uses({"li_source": li, "mn_source": mn, "ratio": 1.1})
            powders = {k: v for k, v in uses.items() if k != "crucible" and v > 0}
            assert powders == pytest.approx(masses(li, mn, 1.1), rel=1e-4)  # what the dispenser doses
            assert uses["crucible"] == 1.0


def test_a_precursor_that_ran_short_is_not_proposed_and_the_others_still_are(tmp_path):
    data = yaml.safe_load(SOLID_STATE.read_text())
    data["strategy"] = {"name": "random", "initial_design": 50}
    data["lab"]["consumables"]["stocks"]["LiOH"]["initial"] = 0.3  # two LiOH recipes at most (0.12 * ratio each)
    spec = parse_spec(data, "c.yaml")
    st = Store(f"sqlite:///{tmp_path / 'inv.db'}")
    c = st.create_campaign(data["name"], yaml.safe_dump(data), "0" * 64)
    st.open_stocks(c.id)
    recipe = {"li_source": "LiOH", "mn_source": "MnO2", "ratio": 1.2, "ramp_c_per_min": 5.0, "peak_c": 800.0}
    recipe |= {"dwell_h": 12.0, "atmosphere": "O2"}
    st.add_trial(c.id, recipe, "seed", {}, "ss")
    st.add_trial(c.id, recipe, "seed", {}, "ss")  # 0.3 - 2 * 0.1437 = 0.0126 g of LiOH left
    inner = make_strategy(spec)
    unguarded = [p.params["li_source"] for p in inner.ask(24, [], [])]
    assert "LiOH" in unguarded  # without the rule a quarter of the recipes would need LiOH
    guarded = guard(inner, spec, st, c.id)
    out = guarded.ask(8, [], [t.params for t in st.trials(c.id)])
    assert out and all(p.params["li_source"] != "LiOH" for p in out)
    assert len({p.params["li_source"] for p in out}) >= 2  # the other three lithium sources are still proposed
    for p in out:
        st.add_trial(c.id, p.params, p.source, {}, "ss")
    assert all(s["left"] >= 0 for s in st.stock_levels(c.id))
    st.close()


def test_the_stock_guard_passes_fixed_values_on_and_says_whether_its_strategy_takes_them(tmp_path):
    """A shared batch proposal (labloop/run/batch_share.py) goes through the stock guard: the fixed values reach the
    strategy, and the recipes still fit the shelf."""
    from labloop.strategy.base import accepts_fixed

    data = campaign_data(consumables(stocks={"Nb": {"unit": "g", "initial": 200}}, use={"Nb": "duration"}))
    data["strategy"] = {"name": "random", "initial_design": 20}
    st, c = new_campaign(tmp_path, data)
    st.add_trial(c.id, params(120, 0.0), "seed", {}, "ab")
    st.add_trial(c.id, params(45, 0.0), "seed", {}, "ab")  # 35 g of Nb left
    spec = parse_spec(data, "c.yaml")
    guarded = guard(make_strategy(spec), spec, st, c.id)
    assert accepts_fixed(guarded)
    out = guarded.ask(2, [], [t.params for t in st.trials(c.id)], fixed={"rf_power": 222.0})
    assert out and all(p.params["rf_power"] == 222.0 for p in out)
    assert sum(p.params["duration"] for p in out) <= 35 + 1e-9

    class Old:
        def ask(self, n, observations, pending):
            return []

    assert not accepts_fixed(guard(Old(), spec, st, c.id))
    st.close()
