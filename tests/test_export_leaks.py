"""Exports that leak nothing (issue 21 item 3): for every sharing class and format, nothing in an export describes or
points at a hidden field or data kind, nothing refers to a document not in the file, no absolute path, and timing
that can reveal a closed recipe field is left out (``sharing.derived``), the manifest naming each thing left out.
``labloop export --check`` proves it on the bundled campaigns and on a campaign built to tempt leaks."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import event_model
import pytest
import yaml
from campaign_files import REPO, thinfilm, write
from typer.testing import CliRunner

from labloop.cli import app
from labloop.data.leakcheck import check_export, dangling
from labloop.errors import SpecError
from labloop.spec import parse_spec, spec_hash
from labloop.store import Store

runner = CliRunner()
CLASSES = ("open", "shared-closed", "closed")
FORMATS = ("csv", "json", "jsonl", "parquet", "documents")


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _run(tmp_path, data, name):
    path = write(tmp_path, data, f"{name}.yaml")
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    r = invoke("run", str(path), "--store", url, "--time-scale", "2e5")
    assert "Traceback" not in r.output, r.output
    return url


def _tempting():
    """The transparent conductor with its dock shared-closed, the recipe's duration and the visible-transmittance
    objective closed (its transmittance floor, the same measurement, shared-closed), and faults, so that failure
    reasons exist."""
    data = yaml.safe_load((REPO / "experiments" / "transparent_conductor.yaml").read_text())
    data["stopping"] = {"max_trials": 5, "target_reached": False}
    data["strategy"]["initial_design"] = 5
    data["lab"]["options"]["fault_rate"] = 0.15
    data["sharing"] = {
        "default": "open",
        "fields": {
            "dock": "shared-closed",
            "duration": "closed",
            "visible_transmittance": "closed",
            "transmittance_floor": "shared-closed",
        },
    }
    return data


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    folder = tmp_path_factory.mktemp("leaks")
    short = {"stopping": {"max_trials": 2, "target_reached": False}}
    tco = yaml.safe_load((REPO / "experiments" / "transparent_conductor.yaml").read_text())
    tco.update(short)
    tco["strategy"]["initial_design"] = 2
    thin = thinfilm(**short)
    thin["strategy"]["initial_design"] = 2
    return folder, {
        "thinfilm": _run(folder, thin, "thinfilm"),
        "tco": _run(folder, tco, "tco"),
        "tempting": _run(folder, _tempting(), "tempting"),
    }


def _export(url, out, klass, fmt):
    r = invoke("export", "--store", url, "--class", klass, "--format", fmt, "--output", str(out))
    assert r.exit_code == 0, r.output
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())


@pytest.mark.parametrize("name", ["thinfilm", "tco", "tempting"])
@pytest.mark.parametrize("klass", CLASSES)
def test_every_class_and_format_passes_the_leak_check(campaigns, name, klass):
    folder, urls = campaigns
    for fmt in FORMATS:
        out = folder / f"{name}-{klass}.{fmt}"
        _export(urls[name], out, klass, fmt)
        r = invoke("export", "--check", str(out), "--store", urls[name])
        assert r.exit_code == 0, r.output
        assert "nothing its class may not see" in r.output
        if fmt == "documents":  # event-model's validation and a bluesky replay pass
            router = event_model.RunRouter([lambda n, d: ([event_model.DocumentRouter()], [])])
            for line in out.read_text().splitlines():
                n, d = json.loads(line)
                event_model.schema_validators[event_model.DocumentNames[n]].validate(d)
                router(n, d)


def test_the_tempting_campaign_open_export_holds_no_dock_asset_no_timing_and_says_why(campaigns):
    folder, urls = campaigns
    out = folder / "t-open.documents"
    man = _export(urls["tempting"], out, "open", "documents")
    text = out.read_text()
    docs = [json.loads(line) for line in text.splitlines()]
    names = {n for n, _ in docs}
    assert not names & {"stream_resource", "stream_datum", "resource", "datum"}  # the spectra are dock data
    assert "file://" not in text and "uvvis_transmittance" not in text and "visible_transmittance" not in text
    assert "duration" not in text and "absorption_edge" not in text
    # the chamber's streams last the recipe's duration: left out, and the manifest says so and why
    assert not any(n == "descriptor" and "chamber_pressure" in json.dumps(d) for n, d in docs)
    left = {(e["what"], e["why"]) for e in man["left_out"]}
    assert any(
        w.startswith("stream chamber_chamber_pressure of synthesize") and "duration (closed)" in why for w, why in left
    )
    assert any(w.startswith("stream chamber_substrate_temperature of synthesize") for w, _ in left)
    assert any(w.startswith("stream primary of measure:uvvis") and "dock" in why for w, why in left)
    # the floor is the same measurement as the closed objective: hidden from shared-closed too
    man_sc = _export(urls["tempting"], folder / "t-sc.csv", "shared-closed", "csv")
    why = {f["field"]: f["why"] for f in man_sc["fields_left_out"]}
    assert "same measurement as visible_transmittance" in why["transmittance_floor"]
    assert "transmittance_floor" not in (folder / "t-sc.csv").read_text().splitlines()[0]


def test_the_check_names_each_leak_of_an_unredacted_export(campaigns):
    """The owner's documents handed to an open viewer: the check finds hidden names, values, paths and exits 1."""
    folder, urls = campaigns
    closed = folder / "owner.documents"
    _export(urls["tempting"], closed, "closed", "documents")
    manifest = json.loads(closed.with_name(closed.name + ".manifest.json").read_text())
    manifest["class"] = "open"
    closed.with_name(closed.name + ".manifest.json").write_text(json.dumps(manifest))
    st = Store(urls["tempting"], create=False)
    try:
        findings = check_export(st, closed)
    finally:
        st.close()
    kinds = {f.kind for f in findings}
    assert {"hidden name", "hidden value"} <= kinds
    assert any("duration" in f.detail for f in findings)
    r = invoke("export", "--check", str(closed), "--store", urls["tempting"])
    assert r.exit_code == 1 and "leak hidden name" in r.output and "finding(s)" in r.output


def test_dangling_references_and_absolute_paths_are_found():
    bundle = event_model.compose_run(metadata={"sample_id": "s"})
    desc = bundle.compose_descriptor(name="primary", data_keys={"x": {"source": "S", "dtype": "number", "shape": []}})
    res = {
        "uid": "r1",
        "data_key": "x",
        "mimetype": "application/x-hdf5",
        "parameters": {},
        "uri": "file://localhost/home/me/x.h5",
        "run_start": bundle.start_doc["uid"],
    }
    datum = {
        "uid": "r1/0",
        "stream_resource": "r1",
        "descriptor": "gone",
        "seq_nums": {"start": 1, "stop": 2},
        "indices": {"start": 0, "stop": 1},
    }
    stop = bundle.compose_stop(exit_status="success")
    stop["num_events"] = {"primary": 1, "baseline": 1}
    lines = [
        json.dumps(x)
        for x in (
            ["start", bundle.start_doc],
            ["descriptor", desc.descriptor_doc],
            ["stream_resource", res],
            ["stream_datum", datum],
            ["stop", stop],
        )
    ]
    found = dangling("\n".join(lines))
    assert [f.detail for f in found] == [
        "a stream_datum refers to descriptor gone, which is not in the file",
        "a stop document counts events of stream 'baseline', which is not in the file",
    ]
    from labloop.data.leakcheck import _paths

    assert [f.detail for f in _paths("\n".join(lines))] == ["file://localhost/home/me/x.h5"]


# ---------------------------------------------------------------------------------------- derived and timing
SPEC = {
    "name": "timing",
    "parameters": [
        {"name": "rf_power", "type": "continuous", "lower": 50, "upper": 400},
        {"name": "duration", "type": "continuous", "lower": 10, "upper": 120},
    ],
    "objectives": [
        {
            "name": "sheet_resistance",
            "direction": "minimize",
            "plugin": "reading",
            "options": {"field": "probe_sheet_resistance"},
        }
    ],
    "workflow": [{"kind": "synthesize", "device": "chamber"}, {"kind": "measure", "device": "probe"}],
    "sharing": {"default": "open", "fields": {"duration": "closed"}},
}
REASON = "synthesize:chamber: chamber: plasma extinguished at 112.9 min into the recipe"


def _store(tmp_path, derived=None):
    data = json.loads(json.dumps(SPEC))
    if derived is not None:
        data["sharing"]["derived"] = derived
    text = yaml.safe_dump(data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    st = Store(url)
    c = st.create_campaign("timing", text, spec_hash(text))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    t = st.add_trial(c.id, {"rf_power": 200.0, "duration": 118.4567}, "sobol", {}, "s", state="failed")
    st.update_trial(t.id, failure_reason=REASON, started_at=now, finished_at=now)
    bundle = event_model.compose_run(
        metadata={
            "plan_name": "synthesize",
            "step": "synthesize:chamber",
            "recipe": {"rf_power": 200.0, "duration": 118.4567},
            "sample_id": "s",
            "trial": 1,
        }
    )
    docs = [("start", bundle.start_doc)]
    for i, key in enumerate(("chamber_chamber_pressure", "chamber_substrate_temperature")):
        d = bundle.compose_descriptor(name=key, data_keys={key: {"source": "S", "dtype": "number", "shape": []}})
        docs += [
            ("descriptor", d.descriptor_doc),
            ("event", d.compose_event(data={key: 0.5 + i}, timestamps={key: 0}, seq_num=1)),
        ]
    docs.append(("stop", bundle.compose_stop(exit_status="fail", reason="plasma extinguished at 112.9 min")))
    step = st.start_step(t.id, 0, "synthesize:chamber", "synthesize", device="chamber")
    st.finish_step(step, "failed", bundle.start_doc["uid"], error=REASON, documents=(c.id, t.id, docs, []))
    st.close()
    return url


def _open(tmp_path, url, fmt):
    out = tmp_path / f"open.{fmt}"
    man = _export(url, out, "open", fmt)
    return out.read_text(), man


def test_by_default_the_streams_and_failure_reason_of_a_step_with_a_closed_recipe_field_are_left_out(tmp_path):
    url = _store(tmp_path)
    text, man = _open(tmp_path, url, "jsonl")
    assert json.loads(text)["failure_reason"] is None and "112.9" not in text
    assert any(
        e["what"] == "failure reason" and e["trials"] == [1] and "duration (closed)" in e["why"]
        for e in man["left_out"]
    )
    text, man = _open(tmp_path, url, "documents")
    docs = [json.loads(line) for line in text.splitlines()]
    assert [n for n, _ in docs] == ["start", "stop"]
    assert docs[-1][1]["reason"] == "" and docs[-1][1]["num_events"] == {}
    assert {e["what"] for e in man["left_out"]} == {
        "stream chamber_chamber_pressure of synthesize:chamber",
        "stream chamber_substrate_temperature of synthesize:chamber",
        "stop reason of synthesize:chamber",
    }


def test_sharing_derived_narrows_what_timing_hides(tmp_path):
    url = _store(tmp_path, derived={"duration": ["chamber_pressure"]})
    text, man = _open(tmp_path, url, "jsonl")
    assert json.loads(text)["failure_reason"] == REASON  # not declared derived: kept
    text, man = _open(tmp_path, url, "documents")
    keys = {k for n, d in map(json.loads, text.splitlines()) if n == "descriptor" for k in d["data_keys"]}
    assert keys == {"chamber_substrate_temperature"}
    assert [e["why"] for e in man["left_out"]] == [
        "sharing.derived says it is derived from duration (closed), which this class may not see"
    ]
    (tmp_path / "reason").mkdir()
    url = _store(tmp_path / "reason", derived={"duration": ["failure_reason"]})
    text, _ = _open(tmp_path / "reason", url, "jsonl")
    assert json.loads(text)["failure_reason"] is None


def test_derived_of_an_unknown_field_is_a_spec_error():
    data = json.loads(json.dumps(SPEC))
    data["sharing"]["derived"] = {"durations": ["chamber_pressure"]}
    with pytest.raises(SpecError) as e:
        parse_spec(data, "c.yaml")
    assert "sharing.derived.durations: unknown field 'durations'" in str(e.value) and "duration" in str(e.value)


def test_check_of_a_missing_file_or_unknown_class_is_explained(tmp_path):
    url = _store(tmp_path)
    r = runner.invoke(app, ["export", "--check", str(tmp_path / "nope.csv"), "--store", url])
    assert r.exit_code == 2 and "is not a file" in r.output and "Traceback" not in r.output
    bare = tmp_path / "bare.csv"
    bare.write_text("trial,state\n1,failed\n")
    r = runner.invoke(app, ["export", "--check", str(bare), "--store", url])
    assert r.exit_code == 2 and "give --class" in r.output
    r = runner.invoke(app, ["export", "--check", str(bare), "--class", "open", "--store", url])
    assert r.exit_code == 0, r.output
