"""The materials dock of the simulated thin-film lab (profilometer, UV-vis, XRD, microscope) and large data as
assets: the physics of each instrument, HDF5 files referenced by StreamResource/StreamDatum documents with their
sha256 in the store, ``labloop verify``, and bad data (NaN) refused."""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from labloop_devices.assets import ArraySpec, check_finite
from labloop_simulators.thinfilm import characterization as ch
from labloop_simulators.thinfilm import physics
from labloop_simulators.thinfilm.lab import build_lab, data_folder
from running import intervals, start, two_chamber
from typer.testing import CliRunner

from labloop.cli import app
from labloop.errors import DeviceError
from labloop.run import plans
from labloop.run.executor import describe_failure
from labloop.run.objectives import TrialData
from labloop.store.assets import read_arrays, sha256_file

cli = CliRunner()


def good() -> dict:
    """The simulator's best recipe (anatase, conducting, ~1.5 um): physics.optimum() finds it numerically (scipy)
    and caches it; called in the tests, not at import, so collecting the suite does not run the optimizer."""
    return dict(physics.optimum().recipe)


DOCK_STEPS = ("profilometer", "uvvis", "xrd", "microscope")


def made(**changes):
    recipe = {**good(), **changes}
    return physics.film(recipe).as_dict(), recipe


# ------------------------------------------------------------------------------------------------ physics
def test_thicker_film_transmits_less():
    thin, thick = made(duration=15), made(duration=110)
    assert thick[0]["thickness_nm"] > 5 * thin[0]["thickness_nm"]
    t_thin, t_thick = ch.transmittance(*thin), ch.transmittance(*thick)
    assert t_thick.mean() < t_thin.mean() - 0.1
    vis = (ch.WAVELENGTHS >= 400) & (ch.WAVELENGTHS <= 700)
    assert t_thick[vis].mean() < t_thin[vis].mean()
    assert np.all((t_thick >= 0) & (t_thick <= 1)) and np.all((t_thin >= 0) & (t_thin <= 1))
    bare = ch.transmittance({}, None)
    assert bare[ch.WAVELENGTHS >= 500].min() > 0.9  # glass alone: ~92 % (two surfaces)


def test_spectrum_has_an_absorption_edge_free_carrier_loss_and_fringes():
    film, recipe = made()
    T = ch.transmittance(film, recipe)
    lam = ch.WAVELENGTHS
    assert T[lam <= 330].max() < 0.05  # above the band gap: opaque
    insulating = {**film, "carrier_density_cm3": 1e17}
    T_ins = ch.transmittance(insulating, recipe)
    ir = lam >= 1000
    assert T[ir].mean() < T_ins[ir].mean() - 0.05  # free electrons absorb in the near IR (Drude)
    assert ch.band_gap(film, recipe) > ch.band_gap(insulating, recipe) + 0.1  # Burstein-Moss widening
    vis = T[(lam >= 500) & (lam <= 900)]
    turns = np.sum(np.diff(np.sign(np.diff(vis))) != 0)
    assert turns >= 4  # thin-film interference fringes


def test_xrd_shows_amorphous_anatase_or_rutile_by_temperature_and_oxygen():
    cases = {150.0: math.nan, 450.0: 25.28, 690.0: 27.45}
    for temperature, expected in cases.items():
        film, recipe = made(substrate_temperature=temperature)
        pattern = ch.xrd_pattern(film, recipe)
        peak = ch.main_peak(ch.TWO_THETA, np.random.default_rng(1).poisson(pattern).astype(float))
        if math.isnan(expected):
            assert math.isnan(peak), f"{temperature} degC should be amorphous, found a peak at {peak}"
        else:
            assert peak == pytest.approx(expected, abs=0.1), temperature
    assert ch.phases(*made(substrate_temperature=450.0))["anatase"] > 0.9
    # little oxygen (strongly reducing growth) nucleates rutile in a film that would otherwise be anatase
    low_o2 = ch.phases(*made(o2_pressure=0.05))
    assert low_o2["rutile"] > 5 * ch.phases(*made())["rutile"] and low_o2["rutile"] > 0.15
    # hotter films have larger grains: narrower peaks (Scherrer)
    assert ch.state(*made(substrate_temperature=600.0))["grain_nm"] > ch.state(*made())["grain_nm"]
    assert ch.scherrer_fwhm(25.3, 100.0) < ch.scherrer_fwhm(25.3, 20.0)


def test_haze_grows_with_thickness_porosity_and_cracks():
    thin, thick = made(duration=15), made(duration=110)
    assert ch.haze(*thick) > ch.haze(*thin)
    cold, warm = made(substrate_temperature=120.0), made(substrate_temperature=450.0)
    assert ch.porosity(*cold) > 0.9 > 0.1 > ch.porosity(*warm)  # Thornton zone 1 below T/Tm ~ 0.3
    assert ch.roughness(*cold) > ch.roughness(*made(substrate_temperature=300.0))
    very_thick = made(duration=120, rf_power=350.0)
    assert ch.cracks(*very_thick) > ch.cracks(*thin) == 0
    rng = np.random.default_rng(3)
    clear = ch.image_metrics(ch.micrograph(*thin, rng))
    cracked = ch.image_metrics(ch.micrograph(*very_thick, rng))
    assert cracked["crack_fraction"] > 0.05 > clear["crack_fraction"]
    assert cracked["contrast"] > clear["contrast"]
    img = ch.micrograph(*thin, rng, noise=0.03)
    assert img.shape == (64, 64) and 0.0 <= img.min() and img.max() <= 1.0


# ------------------------------------------------------------------------------------------------ devices
def _dock_lab(tmp_path, **options):
    return build_lab(
        {"dock": True, "data_dir": str(tmp_path / "data"), "dock_minutes": 1, **options}, time_scale=36000.0
    )


def _place(lab, device, sample="s-1", **changes):
    film, recipe = made(**changes)
    reg = lab.devices[device].registry
    reg.move(sample, device, "placed by hand")
    reg.update(sample, "coated", film=film, recipe=recipe)
    lab.devices[device].sample.put(sample)


def test_dock_is_opt_in_and_reachable_by_the_robot(tmp_path):
    plain = build_lab({}, time_scale=36000.0)
    assert sorted(plain.devices) == ["chamber", "probe", "robot"]
    assert plain.devices["robot"].positions == ("load_lock", "chamber", "probe", "storage", "hotel")
    lab = _dock_lab(tmp_path)
    assert set(DOCK_STEPS) <= set(lab.devices)
    assert set(DOCK_STEPS) <= set(lab.devices["robot"].positions)
    assert data_folder({}, str(tmp_path), "my campaign") == str(tmp_path / "my-campaign-data")


def test_dock_measurements_emit_stream_resources_and_hdf5_files(tmp_path):
    lab = _dock_lab(tmp_path)
    RE = RunEngine(context_managers=[])
    for device, key, shape in (
        ("uvvis", "uvvis_transmittance", (401,)),
        ("xrd", "xrd_counts", (1201,)),
        ("microscope", "microscope_image", (64, 64)),
    ):
        _place(lab, device, sample=f"s-{device}")
        docs = []
        RE(plans.measure(lab[device]), lambda n, d: docs.append((n, d)))  # noqa: B023 - RE runs it here and now
        names = [n for n, _ in docs]
        assert names.index("stream_resource") < names.index("stream_datum") < names.index("event")
        desc = next(d for n, d in docs if n == "descriptor")
        assert desc["data_keys"][key]["external"] == "STREAM:" and desc["data_keys"][key]["shape"] == list(shape)
        event = next(d for n, d in docs if n == "event")
        assert key not in event["data"]  # the array is in the file, the event has the scalars
        (frame,) = read_arrays(docs, key)
        assert frame.shape == shape and np.isfinite(frame).all()
    (spectrum,) = read_arrays(docs_of(RE, lab, "uvvis"), "transmittance")
    assert spectrum.shape == (401,)
    peak = [d for n, d in docs_of(RE, lab, "xrd") if n == "event"][0]["data"]["xrd_main_peak"]
    assert peak == pytest.approx(25.28, abs=0.1)
    files = sorted(os.listdir(tmp_path / "data"))
    assert len(files) == 5 and all(f.endswith(".h5") for f in files)
    with h5py.File(tmp_path / "data" / files[0], "r") as f:
        assert f.attrs["instrument"] in ("uvvis", "xrd", "microscope")


def docs_of(RE, lab, device):
    docs = []
    RE(plans.measure(lab[device]), lambda n, d: docs.append((n, d)))
    return docs


def test_a_spectrum_with_nan_is_refused_with_a_clear_error(tmp_path):
    with pytest.raises(
        DeviceError,
        match=r"uvvis: transmittance: 2 of 5 values are NaN or infinite \(first at "
        r"index 1\)",
    ):
        check_finite("uvvis: transmittance", np.array([0.5, np.nan, 0.4, np.inf, 0.3]))
    lab = _dock_lab(tmp_path)
    uvvis = lab["uvvis"]
    _place(lab, "uvvis")
    uvvis.read_out = lambda T: np.where(np.arange(T.size) % 100 == 7, np.nan, T)  # a detector gone bad
    docs = []
    RE = RunEngine(context_managers=[])
    with pytest.raises(Exception) as err:
        RE(plans.measure(uvvis), lambda n, d: docs.append((n, d)))
    assert describe_failure(err.value) == (
        "uvvis: transmittance: 4 of 401 values are NaN or infinite (first at index 7); refused, nothing was stored"
    )
    assert not any(n in ("stream_resource", "event") for n, _ in docs)
    assert not (tmp_path / "data").exists() or not os.listdir(tmp_path / "data")  # nothing was written
    with pytest.raises(DeviceError, match=r"array 'wavelength' has shape \(3,\), declared \(401,\)"):
        uvvis.write_arrays({"wavelength": np.zeros(3), "transmittance": np.zeros(3)})
    assert ArraySpec((2,)).dtype == "<f8"


# ------------------------------------------------------------------------------------------------ campaign
def dock_campaign(tmp_path, max_trials=4):
    data = two_chamber(
        max_trials=max_trials, options={"dock": True, "dock_minutes": 2, "data_dir": str(tmp_path / "assets")}
    )
    flow = data["workflow"][:-1]  # ... measure on the probe (the objective), then the dock, then storage
    for device in DOCK_STEPS:
        flow += [{"kind": "transfer", "to": device}, {"kind": "measure", "device": device}]
    data["workflow"] = flow + [data["workflow"][-1]]
    return data


def test_campaign_with_dock_stores_assets_with_checksums_and_verify_finds_changes(tmp_path):
    store, runner = start(dock_campaign(tmp_path), tmp_path)
    decision = runner.run()
    cid = runner.campaign.id
    assert decision.rule == "budget"
    trials = store.trials(cid)
    assert [t.state for t in trials] == ["done"] * 4
    steps = store.steps(campaign_id=cid)
    for device in DOCK_STEPS:  # every sample went through the whole dock
        assert sorted(s.trial_id for s in steps if s.device == device and s.state == "done") == [t.id for t in trials]
    assets = store.assets(cid)
    assert len(assets) == 3 * 4  # uvvis, xrd, microscope: one file each per sample (two arrays share a file)
    for a in assets:
        assert Path(a.path).parent == tmp_path / "assets"
        assert sha256_file(a.path) == (a.sha256, a.size)
    by_trial = {t.id: [a for a in assets if a.trial_id == t.id] for t in trials}
    assert all(len(v) == 3 for v in by_trial.values())
    # the objective did not change; the dock's data are there for any plugin that wants them
    t = trials[0]
    data = TrialData(t.params, store.documents(trial_id=t.id))
    assert t.values["sheet_resistance"] == pytest.approx(data.readings("sheet_resistance")[0])
    (spectrum,) = data.arrays("transmittance")
    (wavelengths,) = data.arrays("wavelength")
    assert spectrum.shape == wavelengths.shape == (401,) and wavelengths[0] == 300.0
    (image,) = data.arrays("microscope_image")
    assert image.shape == (64, 64)
    assert len(data.readings("profilometer_thickness")) == 1
    assert data.readings("xrd_main_peak")[0] is None or 20 < data.readings("xrd_main_peak")[0] < 32
    store.close()

    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = cli.invoke(app, ["verify", "--store", url, "--campaign", str(cid)])
    assert r.exit_code == 0, r.output
    assert "all 12 asset files of campaign 'thinfilm-nb-tio2' are intact" in r.output

    altered, missing = assets[0].path, assets[4].path
    with open(altered, "r+b") as f:  # one flipped byte in the middle
        f.seek(os.path.getsize(altered) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.remove(missing)
    r = cli.invoke(app, ["verify", "--store", url])
    assert r.exit_code == 2
    assert f"altered: {altered}" in r.output and f"missing: {missing}" in r.output
    assert "2 of 12 asset files of the store are not as recorded (1 missing, 1 altered)" in r.output
    assert "fix: restore those files from a backup" in r.output and "Traceback" not in r.output


def test_dock_instruments_pass_the_driver_conformance_kit(tmp_path):
    from labloop.devkit import conformance

    lab = _dock_lab(tmp_path)
    for device in DOCK_STEPS:
        report = conformance.run_conformance(lab[device], grace=0.5)
        assert report.ok, report.summary()
        if device != "profilometer":
            assert "more written to files" in report["describe_read_agree"].message


def test_the_scheduler_keeps_dock_instruments_busy_in_parallel(tmp_path):
    """No scheduler change: each dock instrument is a station of its own kind, so one sample is in the XRD while
    the next is on the UV-vis (instruments' own times: XRD 32 min, UV-vis 5 min, ...; one-second depositions)."""
    data = dock_campaign(tmp_path, max_trials=4)
    del data["lab"]["options"]["dock_minutes"]
    data["lab"]["time_scale"] = 3600.0
    store, runner = start(data, tmp_path)
    assert runner.run().rule == "budget"
    cid = runner.campaign.id
    assert [t.state for t in store.trials(cid)] == ["done"] * 4
    dock = [(a, b, s) for a, b, s in intervals(store, cid, "measure") if s.device in DOCK_STEPS]
    assert len(dock) == 4 * len(DOCK_STEPS)
    parallel = [
        (s, t)
        for i, (a, b, s) in enumerate(dock)
        for c, d, t in dock[i + 1 :]
        if a < d and c < b and s.trial_id != t.trial_id
    ]
    assert parallel, "two samples should be measured in the dock at the same time"
    assert all(s.device != t.device for s, t in parallel)  # one sample per instrument at a time
    store.close()
