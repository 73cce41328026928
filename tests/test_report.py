"""``labloop report``: the campaign report of short simulated campaigns (figures exist, are valid SVG and are the
ones the page references; the Pareto front only with several objectives; the summary matches the store; nothing
loads from the network), the random-search expectation's arithmetic, and bad input (unknown campaign, no store, an
empty campaign, no successful trial, an unwritable --out, a trial that does not exist) refused or reported clearly
with nothing half-written."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

import pytest
import yaml
from campaign_files import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from running import two_chamber
from typer.testing import CliRunner

from labloop.cli import app
from labloop.spec import spec_from_text, spec_hash
from labloop.store import Store

cli = CliRunner()
SRC = re.compile(r'<img src="([^"]+)"')
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


def run_campaign(tmp_path: Path, data: dict) -> tuple[str, int]:
    from labloop.run.campaign import CampaignRunner, prepare_text

    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "test.yaml"), store)
    runner.run()
    cid = runner.campaign.id
    store.close()
    return f"sqlite:///{tmp_path / 'labloop.db'}", cid


def single_objective(tmp_path: Path) -> dict:
    """Botorch on the two-chamber lab (model proposals carry importance and predictions), faults, and the dock's
    UV-vis and XRD after the probe."""
    # 14 trials: with faults on two chambers, Sobol trials launched while the first three successes come in can
    # fill a 10-trial budget, leaving no model proposal (with its predictions) to draw
    data = two_chamber(
        max_trials=14,
        options={"dock": True, "dock_minutes": 2, "chamber_fault_rate": 0.15, "data_dir": str(tmp_path / "assets")},
    )
    data["strategy"] = {"name": "botorch", "initial_design": 3}
    flow = data["workflow"][:-1]
    for device in ("uvvis", "xrd"):
        flow += [{"kind": "transfer", "to": device}, {"kind": "measure", "device": device}]
    data["workflow"] = flow + [data["workflow"][-1]]
    data["scheduling"] = {"pause_after_same_failures": 100}
    return data


def two_objectives(tmp_path: Path) -> dict:
    data = yaml.safe_load((REPO / "experiments" / "transparent_conductor.yaml").read_text())
    data["stopping"] = {"max_trials": 6, "target_reached": False}
    data["strategy"] = {"name": "random", "initial_design": 1}
    data["lab"]["time_scale"] = 36000.0
    data["lab"]["options"]["data_dir"] = str(tmp_path / "assets")
    return data


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    return run_campaign(tmp, single_objective(tmp))


def report(*args: str):
    return cli.invoke(app, ["report", *args])


def figures_of(out: Path) -> list[str]:
    html = (out / "index.html").read_text()
    return SRC.findall(html)


def assert_valid_report(out: Path) -> list[str]:
    html = (out / "index.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    files = figures_of(out)
    on_disk = sorted(p.name for p in out.iterdir() if p.name != "index.html")
    assert sorted(files) == on_disk  # every figure written is shown, every figure shown exists
    for name in files:
        root = ET.parse(out / name).getroot()  # well-formed XML ...
        assert root.tag == "{http://www.w3.org/2000/svg}svg"  # ... and an SVG drawing
        assert len(list(root.iter())) > 20
        assert not REMOTE.search((out / name).read_text()), name
    assert not REMOTE.search(html)  # opens offline: no resource from the network
    assert "<script" not in html and "<link" not in html
    return files


def cell(html: str, key: str) -> str:
    m = re.search(rf'<tr id="summary-{re.escape(key)}"><th>[^<]*</th><td>([^<]*)</td></tr>', html)
    assert m, key
    return m.group(1)


# ------------------------------------------------------------------------------------------------ reports
def test_report_of_a_single_objective_campaign(single, tmp_path):
    url, cid = single
    store = Store(url, create=False)
    trials = store.trials(cid)
    campaign = store.campaign(cid)
    streams = {t.number: bool(store.process_points(t.id)) for t in trials}
    store.close()
    done = [t for t in trials if t.state == "done"]
    failed = [t for t in trials if t.state == "failed"]
    assert done and failed and any((t.info or {}).get("predicted") for t in done)  # the fixture has what we draw
    best = min(done, key=lambda t: t.values["sheet_resistance"])

    out = tmp_path / "rep"
    r = report("--store", url, "--campaign", str(cid), "--out", str(out), "--trial", "1", "--trial", "2")
    assert r.exit_code == 0, r.output
    assert str(out / "index.html") in r.output.replace("\n", "")
    files = assert_valid_report(out)
    expected = {
        "convergence-sheet_resistance.svg",
        "importance.svg",
        "predicted-vs-measured.svg",
        "failures.svg",
        f"streams-trial-{best.number}.svg",
        "dock-uvvis.svg",
        "dock-xrd.svg",
    }
    assert expected <= set(files)
    html = unescape((out / "index.html").read_text())
    assert streams[best.number]
    for n in (1, 2):  # asked for: drawn, or the page says why not
        assert (f"streams-trial-{n}.svg" in files) == streams[n]
        assert streams[n] or f"Not drawn: trial {n} recorded no process stream" in html
    assert "pareto.svg" not in files  # one objective: no front

    assert cell(html, "campaign") == f"{campaign.name} (id {cid}, uid {campaign.uid})"
    assert cell(html, "state") == campaign.state
    assert cell(html, "stop-reason") == campaign.stop_reason
    assert cell(html, "trials") == str(len(trials))
    assert cell(html, "trials-done") == str(len(done))
    assert cell(html, "trials-failed") == str(len(failed))
    assert cell(html, "best-trial").startswith(
        f"trial {best.number}: sheet_resistance = {best.values['sheet_resistance']:.4g}"
    )
    assert f"o2_pressure = {best.params['o2_pressure']:.4g}" in cell(html, "best-recipe")
    assert len(re.findall(r'<tr id="trial-\d+"', html)) == len(trials)
    assert f'<tr id="trial-{best.number}" class="best">' in html
    assert "target 5" in html  # the campaign's target is drawn and named
    k = sum(t.source == "sobol" for t in trials)
    assert (
        f"median best of n random draws (shaded: the middle half of outcomes), computed from this campaign's {k} "
        f"space-filling trials" in html
    )


def test_the_pareto_front_appears_for_two_objectives(tmp_path):
    url, cid = run_campaign(tmp_path, two_objectives(tmp_path))
    out = tmp_path / "rep"
    r = report("--store", url, "--out", str(out))
    assert r.exit_code == 0, r.output
    files = assert_valid_report(out)
    assert "pareto.svg" in files
    assert "convergence-sheet_resistance.svg" in files and "convergence-visible_transmittance.svg" in files
    assert "dock-uvvis.svg" in files
    # random search stored no importance: the report says what it shows instead
    html = unescape((out / "index.html").read_text())
    assert "No model proposal stored an importance" in html or "Not drawn: the strategy stored no importance" in html


def test_a_second_report_replaces_the_first_and_leaves_nothing_else(single, tmp_path):
    url, cid = single
    out = tmp_path / "rep"
    assert report("--store", url, "--out", str(out)).exit_code == 0
    (out / "stale.svg").write_text("<svg/>")
    r = report("--store", url, "--out", str(out), "--trial", "3")
    assert r.exit_code == 0, r.output
    assert not (out / "stale.svg").exists()
    assert_valid_report(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temporary folder left beside it


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_campaign_missing_store_and_missing_trial_are_refused_and_write_nothing(single, tmp_path):
    url, cid = single
    out = tmp_path / "rep"
    r = report("--store", url, "--campaign", "nope", "--out", str(out))
    assert r.exit_code == 2 and "holds no campaign 'nope'" in r.output and "fix:" in r.output
    r = report("--store", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(out))
    assert r.exit_code == 2 and "no store at" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "none.db").exists()
    Store(f"sqlite:///{tmp_path / 'none.db'}").close()
    r = report("--store", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(out))
    assert r.exit_code == 2 and "holds no campaign yet" in r.output and "fix:" in r.output
    for p in tmp_path.glob("none.db*"):
        p.unlink()
    r = report("--store", url, "--campaign", str(cid), "--out", str(out), "--trial", "99")
    assert r.exit_code == 2 and "has no trial 99: it has trials 1-14" in r.output and "fix:" in r.output
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_or_unsuitable_out_is_refused(single, tmp_path):
    url, _ = single
    r = report("--store", url, "--out", "/proc/labloop-report")  # not writable, even for root
    assert r.exit_code == 2 and "cannot write the report to /proc/labloop-report" in r.output
    assert "fix:" in r.output and "Traceback" not in r.output
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    r = report("--store", url, "--out", str(afile))
    assert r.exit_code == 2 and "it is a file" in r.output and afile.read_text() == "x"
    r = report("--store", url, "--out", str(afile / "rep"))
    assert r.exit_code == 2 and "does not exist" in r.output
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("keep me")
    (other / "index.html").write_text("<html>my own page</html>")  # an index.html of one's own is no report
    r = report("--store", url, "--out", str(other))
    assert r.exit_code == 2 and "holds no earlier report" in r.output
    assert sorted(p.name for p in other.iterdir()) == ["chapter1.tex", "index.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "thesis"]


def _stored_campaign(tmp_path: Path) -> tuple[Store, int, str]:
    text = (REPO / "experiments" / "thinfilm.yaml").read_text()
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    c = store.create_campaign("empty-one", text, spec_hash(text))
    spec_from_text(text, "x")
    return store, c.id, f"sqlite:///{tmp_path / 'labloop.db'}"


def test_an_empty_campaign_gets_a_page_that_says_so(tmp_path):
    store, cid, url = _stored_campaign(tmp_path)
    store.close()
    out = tmp_path / "rep"
    r = report("--store", url, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "has no trials yet" in r.output
    html = (out / "index.html").read_text()
    assert 'id="no-trials"' in html and "<img" not in html
    assert cell(html, "trials") == "0"
    assert [p.name for p in out.iterdir()] == ["index.html"]


def test_a_campaign_without_a_successful_trial_shows_its_failures(tmp_path):
    store, cid, url = _stored_campaign(tmp_path)
    for i in range(4):
        t = store.add_trial(
            cid,
            {
                "o2_pressure": 0.1 * (i + 1),
                "substrate_temperature": 100 + 100 * i,
                "nb_fraction": 0.05,
                "rf_power": 100 + 50 * i,
                "duration": 30,
            },
            "sobol",
            {},
            "s",
        )
        store.transition(t.id, "proposed", "running")
        store.transition(t.id, "running", "failed", failure_reason="chamber: arc detected")
    store.close()
    out = tmp_path / "rep"
    r = report("--store", url, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "no trial of campaign 'empty-one' succeeded" in r.output.replace("\n", " ")
    files = assert_valid_report(out)
    assert files == ["failures.svg"]
    html = unescape((out / "index.html").read_text())
    assert 'id="no-success"' in html and cell(html, "trials-failed") == "4"
    assert cell(html, "best-trial") == "none: no trial succeeded"
    assert "chamber: arc detected (4)" in html


def test_the_best_so_far_of_a_constrained_campaign_counts_feasible_trials_only(tmp_path):
    """The solid-state campaign's report drew its best-so-far line through a trial over the impurity ceiling
    (0.92 at trial 5) while its summary and every other surface said the target was reached at trial 15; the line
    must only ever take feasible values, and the random-search line must count a draw over the ceiling as a draw
    without a result."""
    from labloop.report.convergence import best_so_far

    text = (REPO / "experiments" / "solid_state.yaml").read_text()
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    store = Store(url)
    cid = store.create_campaign("ss", text, spec_hash(text)).id
    recipe = {"li_source": "Li2CO3", "mn_source": "MnO2", "ratio": 1.0, "ramp_c_per_min": 5.0, "dwell_h": 12.0}
    measured = [(0.70, 0.20), (0.85, 0.03), (0.93, 0.06), (0.88, 0.04), (0.60, 0.01)]
    for i, (target, impurity) in enumerate(measured):
        t = store.add_trial(cid, {**recipe, "peak_c": 700.0 + 20 * i, "atmosphere": "air"}, "sobol", {}, "CR")
        store.transition(t.id, "proposed", "running")
        store.update_trial(t.id, values={"target_phase_fraction": target, "impurity_ceiling": impurity})
        store.transition(t.id, "running", "measured")
        store.transition(t.id, "measured", "done")
    store.close()
    spec = spec_from_text(text, "x")
    points = [(n + 1, v) for n, (v, _) in enumerate(measured)]
    assert best_so_far(points, {2, 4, 5}, spec.objectives[0]) == [(2, 0.85), (4, 0.88), (5, 0.88)]

    out = tmp_path / "rep"
    r = report("--store", url, "--out", str(out))
    assert r.exit_code == 0, r.output
    html = unescape((out / "index.html").read_text())
    assert "hollow dots broke an outcome constraint (impurity_ceiling) and do not count" in html
    assert "2 of them failed or broke a constraint" in html  # trials 1 and 3 of the 5 random draws
    assert "dashed beyond 5 draws" in html
    svg = (out / "convergence-target_phase_fraction.svg").read_text()
    assert "over a constraint (2)" in svg


# ------------------------------------------------------------------------------------------------ arithmetic
def _brute_force(values: list[float], k: int, n: int, q: float) -> float:
    """The q quantile of the best of n draws over all k^n equally likely draw sequences (failures: indexes >=
    len(values)) that have a success: the smallest best value reached by at least a share q of them."""
    bests = sorted(
        min(values[i] for i in seq if i < len(values))
        for seq in itertools.product(range(k), repeat=n)
        if any(i < len(values) for i in seq)
    )
    return next(b for b in bests if sum(x <= b for x in bests) >= q * len(bests) - 1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-100, 100), min_size=1, max_size=4, unique=True),
    st.integers(0, 2),
    st.integers(1, 4),
    st.sampled_from([0.25, 0.5, 0.75]),
)
def test_best_of_n_quantiles_match_enumerating_every_draw(values, failures, n, q):
    from labloop.report.convergence import best_of_n

    k = len(values) + failures
    got = best_of_n(values, k, n, minimize=True, q=q)[n - 1]
    assert got == _brute_force(values, k, n, q)
    assert best_of_n([-v for v in values], k, n, minimize=False, q=q)[n - 1] == -got


def test_best_of_n_improves_with_more_draws_and_levels_off_at_the_sample_best():
    from labloop.report.convergence import best_of_n

    med = best_of_n([5.0, 1.0, 3.0, 1e6], 5, 60, minimize=True)  # one insulating outlier, one failure
    assert med[0] == 3.0  # one draw: the median of the successes (the lower one of an even count)
    assert all(a >= b for a, b in zip(med, med[1:]))
    assert med[-1] == 1.0


def test_pareto_front_respects_directions():
    from labloop.report.pareto import front

    spec = spec_from_text((REPO / "experiments" / "transparent_conductor.yaml").read_text(), "x")
    # sheet resistance: minimize; transmittance: maximize
    pts = [(1, [10.0, 0.7]), (2, [5.0, 0.6]), (3, [20.0, 0.9]), (4, [12.0, 0.65]), (5, [5.0, 0.6])]
    assert front(spec, pts) == [1, 2, 3, 5]  # 4 is beaten by 1 on both; 2 and 5 tie and both stay


# --------------------------------------------------------------------------------------------------- issue 21 item 6
def _stored_synthesis(tmp_path, time_scale=20000.0):
    """One done trial whose synthesis ran 0.9 wall seconds at ``time_scale`` (300 lab minutes), with a monitor's
    stale first reading from before the step, and the run's time scale audited as `labloop run` does."""
    import event_model

    from labloop.run.campaign import prepare_text  # noqa: F401 - the campaign file is a real one

    data = yaml.safe_load((REPO / "experiments" / "thinfilm.yaml").read_text())
    text = yaml.safe_dump(data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    st = Store(url)
    c = st.create_campaign(data["name"], text, spec_hash(text))
    st.audit(c.id, "campaign.lab", {"time_scale": time_scale})
    params = {
        "o2_pressure": 1.0,
        "substrate_temperature": 300.0,
        "nb_fraction": 0.1,
        "rf_power": 200.0,
        "duration": 60.0,
    }
    t = st.add_trial(c.id, params, "sobol", {}, "s-1", state="done")
    st.update_trial(t.id, values={"sheet_resistance": 12.0})
    t0 = 1_800_000_000.0
    bundle = event_model.compose_run(metadata={"plan_name": "synthesize", "step": "synthesize:chamber"}, time=t0)
    d = bundle.compose_descriptor(
        name="chamber_chamber_pressure",
        time=t0,
        data_keys={"chamber_chamber_pressure": {"source": "S", "dtype": "number", "shape": [], "units": "mTorr"}},
    )
    docs = [
        ("start", bundle.start_doc),
        ("descriptor", d.descriptor_doc),
        ("stop", bundle.compose_stop(exit_status="success", time=t0 + 0.9)),
    ]
    points = [
        ("chamber_chamber_pressure", t0 - 0.5, 5.0),
        ("chamber_chamber_pressure", t0, 1.0),
        ("chamber_chamber_pressure", t0 + 0.3, 2.0),
        ("chamber_chamber_pressure", t0 + 0.6, 2.5),
    ]
    step = st.start_step(t.id, 1, "synthesize:chamber", "synthesize", device="chamber")
    st.finish_step(step, "done", bundle.start_doc["uid"], documents=(c.id, t.id, docs, points))
    return st, c, t


def test_process_streams_are_on_process_time_as_steps_without_readings_from_before_the_step(tmp_path):
    from labloop.report.gather import gather
    from labloop.report.streams import process_time

    st, c, t = _stored_synthesis(tmp_path)
    try:
        data = gather(st, c, [t.number])
    finally:
        st.close()
    stream = data.details[t.number].streams["chamber_chamber_pressure"]
    assert stream.step == "synthesize:chamber" and stream.stale == 1
    assert [v for _, v in stream.points] == [1.0, 2.0, 2.5]  # the stale 5.0 is not drawn
    assert [m for m, _ in stream.points] == pytest.approx([0.0, 100.0, 200.0], abs=1e-3)  # 0.3 s x 20000 = 100 min
    xs, ys = process_time(stream)
    assert xs == pytest.approx([0.0, 100.0, 200.0, 300.0], abs=1e-3) and ys[-1] == 2.5  # held to the step's end
    out = tmp_path / "report"
    r = cli.invoke(
        app, ["report", "--store", f"sqlite:///{tmp_path / 'labloop.db'}", "--out", str(out), "--trial", str(t.number)]
    )
    assert r.exit_code == 0, r.output
    page = unescape((out / "index.html").read_text())
    assert "minutes of the lab's clock from the start of the step" in page
    assert "1 reading from before the step" in page


def test_an_altered_asset_is_never_drawn_silently_by_report_or_show(single, tmp_path):
    from labloop.report.gather import gather

    url, cid = single
    store = Store(url, create=False)
    try:
        data = gather(store, store.campaign(cid))
        top = data.top[0]
        trial = next(t for t in data.trials if t.number == top)
        asset = store.assets(cid, trial.id)[0]
    finally:
        store.close()
    path = Path(asset.path)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"tampered")
        out = tmp_path / "rep"
        r = report("--store", url, "--campaign", str(cid), "--out", str(out))
        assert r.exit_code == 0, r.output
        html = unescape((out / "index.html").read_text())
        assert f"trial {top}: {path.name} is altered" in html and "labloop verify" in html
        r = cli.invoke(app, ["show", "trial", str(top), "--store", url, "--campaign", str(cid)])
        assert r.exit_code == 0, r.output
        assert "ALTERED" in r.output and "cannot be trusted" in r.output
    finally:
        path.write_bytes(original)


def test_every_objective_and_constraint_is_cross_validated_on_the_models_scale(tmp_path):
    import math as m

    from labloop.report import crossval
    from labloop.report.gather import gather

    data = yaml.safe_load((REPO / "experiments" / "transparent_conductor.yaml").read_text())
    text = yaml.safe_dump(data)
    st = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    c = st.create_campaign(data["name"], text, spec_hash(text))
    import random

    rnd = random.Random(0)
    for i in range(14):
        p = {
            "dopant": ["Nb", "Ta", "W"][i % 3],
            "o2_pressure": 10 ** rnd.uniform(-1.3, 0.7),
            "substrate_temperature": rnd.uniform(25, 700),
            "nb_fraction": rnd.uniform(0, 0.2),
            "rf_power": rnd.uniform(50, 400),
            "duration": rnd.uniform(10, 120),
        }
        rs = 10 ** (0.5 + 2.5 * m.exp(-p["duration"] / 40) + rnd.gauss(0, 0.05))  # 3 to 600 ohm/sq: decades
        vt = 0.9 - 0.003 * p["duration"] + rnd.gauss(0, 0.01)
        t = st.add_trial(c.id, p, "sobol", {}, f"s-{i}", state="done")
        st.update_trial(t.id, values={"sheet_resistance": rs, "visible_transmittance": vt, "transmittance_floor": vt})
    try:
        rep = gather(st, c)
    finally:
        st.close()
    results = {q.name: crossval.loo(rep, q) for q in crossval.quantities(rep)}
    assert set(results) == {"sheet_resistance", "visible_transmittance", "transmittance_floor"}
    rs, vt = results["sheet_resistance"], results["visible_transmittance"]
    assert rs.log and not vt.log and not results["transmittance_floor"].log  # as the strategy models them
    assert (rs.lo > 0).all()  # a log-modelled quantity's interval never goes negative
    assert len(rs.trials) == 14 and rs.coverage > 0.5  # the smooth truth is predicted from the others
    assert rs.rmse < 0.5  # decades
    out = tmp_path / "rep"
    r = report("--store", f"sqlite:///{tmp_path / 'labloop.db'}", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "loo-cross-validation.svg" in figures_of(out)
    html = unescape((out / "index.html").read_text())
    for name in results:
        assert f"{name}: 14 trials" in html
    # units in every table, and one definition per quantity (how it is measured, on which scale it is modelled)
    for head in (
        "o2_pressure (mTorr)",
        "duration (min)",
        "sheet_resistance (ohm/sq)",
        "visible_transmittance (fraction)",
    ):
        assert f"<th>{head}</th>" in html
    assert re.search(r"best trial</th><td>trial \d+: sheet_resistance = [\d.e+-]+ ohm/sq", html)
    row = re.search(r'<tr id="quantity-visible_transmittance">(.*?)</tr>', html).group(1)
    assert "lower=400, upper=800" in row and "fraction" in row and "linear" in row
    assert "log" in re.search(r'<tr id="quantity-sheet_resistance">(.*?)</tr>', html).group(1)
