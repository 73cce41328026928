"""Sharing classes (campaign file `sharing:`) and `labloop export --class`: a viewer sees exactly the fields of its
class and less restrictive ones, in every format, and a field it may not see appears nowhere in what it gets: not
in a column, not in document data or metadata, not as a value under another name."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from datetime import UTC, date, datetime

import event_model
import pytest
import yaml
from campaign_files import thinfilm, write
from typer.testing import CliRunner

from labloop.cli import app
from labloop.data.sharing import Policy
from labloop.errors import SpecError
from labloop.spec import parse_spec, spec_hash
from labloop.store import Store

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------------------------------- the spec
SPEC = {
    "name": "share-test",
    "parameters": [
        {"name": "thickness", "type": "continuous", "lower": 1, "upper": 100},
        {"name": "anneal_temp", "type": "continuous", "lower": 20, "upper": 600},
        {"name": "nb_fraction", "type": "continuous", "lower": 0, "upper": 0.3},
    ],
    "objectives": [
        {
            "name": "sheet_resistance",
            "direction": "minimize",
            "plugin": "reading",
            "options": {"field": "probe_sheet_resistance"},
        }
    ],
    "outcome_constraints": [
        {"name": "transmittance", "plugin": "reading", "lower": 0.8, "options": {"field": "probe_transmittance"}}
    ],
    "sharing": {
        "default": "closed",
        "fields": {
            "thickness": "open",
            "anneal_temp": "shared-closed",
            "nb_fraction": "closed",
            "sheet_resistance": "open",
            "transmittance": "shared-closed",
            "process_streams": "open",
            "dock": "shared-closed",
            "failure_reason": "open",
            "evidence": "open",
            "source": "open",
        },
        # the recipe's hidden fields give nothing away through the syntheses' timing (the default assumes they may)
        "derived": {"anneal_temp": [], "nb_fraction": []},
    },
}
CLASSES = ("open", "shared-closed", "closed")
HIDDEN = {  # what each class must never receive
    "open": ["anneal_temp", "nb_fraction", "transmittance"],
    "shared-closed": ["nb_fraction"],
    "closed": [],
}


def _spec(**sharing):
    data = yaml.safe_load(yaml.safe_dump(SPEC))
    data["sharing"] = sharing
    return data


def test_absent_sharing_section_closes_everything():
    data = yaml.safe_load(yaml.safe_dump(SPEC))
    del data["sharing"]
    policy = Policy(parse_spec(data))
    assert set(policy.table().values()) == {"closed"}
    assert set(policy.table()) >= {
        "thickness",
        "sheet_resistance",
        "transmittance",
        "process_streams",
        "dock",
        "failure_reason",
        "evidence",
        "source",
    }


def test_unknown_field_is_a_spec_error_listing_the_fields():
    with pytest.raises(SpecError) as e:
        parse_spec(_spec(fields={"thicknes": "open"}), "c.yaml")
    msg = str(e.value)
    assert "c.yaml: sharing.fields.thicknes: unknown field 'thicknes'" in msg
    for allowed in (
        "thickness",
        "nb_fraction",
        "sheet_resistance",
        "transmittance",
        "process_streams",
        "dock",
        "failure_reason",
        "evidence",
        "source",
        "parameters",
        "objectives",
    ):
        assert allowed in msg


@pytest.mark.parametrize(
    "sharing, where",
    [({"fields": {"thickness": "public"}}, "sharing.fields.thickness"), ({"default": "secret"}, "sharing.default")],
)
def test_unknown_class_is_a_spec_error_listing_the_classes(sharing, where):
    with pytest.raises(SpecError) as e:
        parse_spec(_spec(**sharing), "c.yaml")
    msg = str(e.value)
    assert f"c.yaml: {where}: " in msg and "is not a sharing class" in msg
    assert "open, shared-closed, closed" in msg


def test_misspelled_sharing_key_is_an_unknown_field():
    with pytest.raises(SpecError) as e:
        parse_spec(_spec(defualt="open"), "c.yaml")
    assert "sharing.defualt: unknown field" in str(e.value) and "default, fields, embargo_until" in str(e.value)


def test_a_parameter_named_like_a_data_kind_cannot_be_classified():
    data = _spec(fields={"dock": "open"})
    data["parameters"][0]["name"] = "dock"
    with pytest.raises(SpecError) as e:
        parse_spec(data, "c.yaml")
    assert "ambiguous" in str(e.value)


def test_embargo_turns_closed_into_shared_closed_from_that_day():
    spec = parse_spec(
        _spec(
            default="closed", fields={"thickness": "open", "anneal_temp": "shared-closed"}, embargo_until="2027-06-01"
        )
    )
    before, on = Policy(spec, date(2027, 5, 31)), Policy(spec, date(2027, 6, 1))
    assert (before.klass("nb_fraction"), before.klass("thickness"), before.klass("anneal_temp")) == (
        "closed",
        "open",
        "shared-closed",
    )
    assert not before.embargo_lifted and on.embargo_lifted
    assert (on.klass("nb_fraction"), on.klass("thickness"), on.klass("anneal_temp"), on.klass("dock")) == (
        "shared-closed",
        "open",
        "shared-closed",
        "shared-closed",
    )


def test_groups_and_single_fields():
    spec = parse_spec(
        _spec(default="open", fields={"parameters": "closed", "thickness": "open", "objectives": "shared-closed"})
    )
    p = Policy(spec)
    assert [
        p.klass(n) for n in ("thickness", "anneal_temp", "nb_fraction", "sheet_resistance", "transmittance", "dock")
    ] == ["open", "closed", "closed", "shared-closed", "shared-closed", "open"]


# --------------------------------------------------------------------------------------------------- a stored campaign
TRIALS = [  # params, values, state, failure reason
    (
        {"thickness": 12.5, "anneal_temp": 351.1234567891, "nb_fraction": 0.0731234567891},
        {"sheet_resistance": 4.212345678, "transmittance": 0.8712345678912},
        "done",
        None,
    ),
    (
        {"thickness": 40.25, "anneal_temp": 512.9876543219, "nb_fraction": 0.1912345678912},
        {},
        "failed",
        "chamber refused nb_fraction=0.1912345678912: above the target's limit",
    ),
    (
        {"thickness": 77.75, "anneal_temp": 122.4567891234, "nb_fraction": 0.2234567891234},
        {"sheet_resistance": 91.87654321, "transmittance": 0.6543219876543},
        "done",
        None,
    ),
]


def _info(params):
    return {
        "importance": {"thickness": 0.5, "anneal_temp": 0.3, "nb_fraction": 0.2},
        "n_train": 6,
        "predicted_best": {"params": dict(params), "sheet_resistance": 3.3},
        "acquisition": -1.25,
        "acquisition_kind": "qLogNoisyExpectedImprovement",
        "predicted": {"objective": "sheet_resistance", "mean": 5.5, "interval_95": [1.0, 30.0]},
    }


def _run_docs(md, streams, t0):
    """One run's documents: ``streams`` = [(stream name, {key: value})], one event each."""
    bundle = event_model.compose_run(metadata=md, time=t0)
    docs = [("start", bundle.start_doc)]
    for i, (stream, data) in enumerate(streams):
        obj = "chamber" if stream == "primary" else stream
        d = bundle.compose_descriptor(
            name=stream,
            time=t0 + i,
            data_keys={
                k: {"source": f"SIM:{k}", "dtype": "number" if isinstance(v, float) else "string", "shape": []}
                for k, v in data.items()
            },
            object_keys={obj: list(data)},
            configuration={
                obj: {
                    "data": {f"{obj}_sample": md["sample_id"]},
                    "timestamps": {f"{obj}_sample": t0},
                    "data_keys": {f"{obj}_sample": {"source": "SIM:s", "dtype": "string", "shape": []}},
                }
            },
            hints={obj: {"fields": list(data)}},
        )
        docs.append(("descriptor", d.descriptor_doc))
        docs.append(("event", d.compose_event(data=data, timestamps=dict.fromkeys(data, t0), seq_num=1, time=t0 + i)))
    docs.append(("stop", bundle.compose_stop(exit_status="success", reason="", time=t0 + 10)))
    return docs


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("share")
    url = f"sqlite:///{folder / 'labloop.db'}"
    text = yaml.safe_dump(SPEC, sort_keys=False)
    st = Store(url)
    c = st.create_campaign(SPEC["name"], text, spec_hash(text))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for params, values, state, reason in TRIALS:
        t = st.add_trial(c.id, params, "model", _info(params), "smp", state=state)
        st.update_trial(t.id, values=values, failure_reason=reason, started_at=now, finished_at=now)
        md = {"campaign": SPEC["name"], "trial": t.number, "sample_id": t.sample_id}
        synth = _run_docs(
            {
                **md,
                "plan_name": "synthesize",
                "station": "chamber",
                "recipe": dict(params),
                "nb_fraction": params["nb_fraction"],
                "operator_note": "thin film",
            },
            [
                ("chamber_pressure", {"chamber_pressure": 0.0123456}),
                ("chamber_anneal_temp", {"chamber_anneal_temp": params["anneal_temp"] - 0.5}),
                (
                    "primary",
                    {
                        "chamber_nb_fraction": params["nb_fraction"],
                        "chamber_phase": "idle",
                        "chamber_pressure": 0.0123456,
                    },
                ),
            ],
            1000.0 + t.number,
        )
        step = st.start_step(t.id, 1, "synthesize:chamber", "synthesize", device="chamber")
        st.finish_step(step, "done", synth[0][1]["uid"], documents=(c.id, t.id, synth, []))
        if values:
            meas = _run_docs(
                {**md, "plan_name": "measure", "instrument": "probe"},
                [
                    (
                        "primary",
                        {
                            "probe_sheet_resistance": values["sheet_resistance"],
                            "probe_transmittance": values["transmittance"],
                            "probe_current": 0.01,
                            "probe_raw": params["nb_fraction"],
                        },
                    )
                ],
                2000.0 + t.number,
            )
            step = st.start_step(t.id, 3, "measure:probe", "measure", device="probe")
            st.finish_step(step, "done", meas[0][1]["uid"], documents=(c.id, t.id, meas, []))
        else:
            step = st.start_step(t.id, 3, "measure:probe", "measure", device="probe")
            st.finish_step(step, "failed", None, error=reason)
    st.close()
    return url, folder


def _hidden_values(klass):
    out = []
    for params, values, _, _ in TRIALS:
        out += [v for k, v in {**params, **values}.items() if k in HIDDEN[klass]]
    return out


def _assert_nothing_hidden(klass, blob: bytes, where: str):
    for name in HIDDEN[klass]:
        assert name.encode() not in blob, f"{where}: '{name}' leaks into a {klass} export"
    for v in _hidden_values(klass):
        assert repr(v).encode() not in blob, f"{where}: value {v!r} leaks into a {klass} export"
        assert struct.pack("<d", v) not in blob, f"{where}: binary value {v!r} leaks into a {klass} export"


def _export(url, folder, klass, fmt):
    out = folder / f"{klass}.{fmt}"
    r = invoke("export", "--store", url, "--class", klass, "--format", fmt, "--output", str(out))
    assert r.exit_code == 0, r.output
    return out, json.loads((folder / f"{out.name}.manifest.json").read_text())


@pytest.mark.parametrize("klass", CLASSES)
def test_csv_and_jsonl_hold_exactly_what_the_class_may_see(stored, klass):
    url, folder = stored
    out, man = _export(url, folder, klass, "csv")
    text = out.read_text()
    _assert_nothing_hidden(klass, out.read_bytes(), "csv")
    header = text.splitlines()[0].split(",")
    assert header[:4] == ["trial", "state", "sample_id", "stations"]
    assert len(text.splitlines()) == 1 + len(TRIALS)  # failed and non-best trials included
    assert "thickness" in header and "sheet_resistance" in header and "source" in header
    assert ("nb_fraction" in header) == (klass == "closed")
    assert ("anneal_temp" in header) == (klass != "open")

    out, man = _export(url, folder, klass, "jsonl")
    _assert_nothing_hidden(klass, out.read_bytes(), "jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["trial"] for r in rows] == [1, 2, 3] and [r["state"] for r in rows] == ["done", "failed", "done"]
    assert rows[0]["stations"] == ["chamber", "probe"] and rows[0]["sample_id"] == "smp-0001"
    assert rows[0]["thickness"] == 12.5 and rows[0]["source"] == "model"
    reason = rows[1]["failure_reason"]
    assert ("<closed>" in reason) if klass != "closed" else ("nb_fraction" in reason)
    evidence = {k for k in rows[0] if k.startswith("evidence.")}
    if klass == "open":  # the evidence predicts the objectives, and transmittance is hidden from open
        assert not evidence
        assert any(f["field"] == "evidence" and "transmittance" in f["why"] for f in man["fields_left_out"])
    else:
        assert {"evidence.acquisition", "evidence.predicted.mean", "evidence.importance.thickness"} <= evidence
        assert ("evidence.importance.nb_fraction" in evidence) == (klass == "closed")

    assert man["class"] == klass
    left_out = {f["field"]: f["class"] for f in man["fields_left_out"]}
    for name in HIDDEN[klass]:
        assert name in left_out
    assert left_out.get("nb_fraction", "closed") == "closed"
    included = {f["field"] for f in man["fields_included"]}
    assert "thickness" in included and not (included & set(HIDDEN[klass]))
    prov = man["provenance"]
    assert prov["campaign"] == "share-test" and len(prov["campaign_file_sha256"]) == 64
    assert prov["store"] == url and prov["labloop_version"] and prov["user"] and prov["exported_at"]
    f = man["files"][0]
    assert f["path"] == out.name and f["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert f["rows"] == len(TRIALS) and f["trials"] == len(TRIALS)


@pytest.mark.parametrize("klass", CLASSES)
def test_parquet_reads_back(stored, klass):
    import pyarrow.parquet as pq

    url, folder = stored
    out, man = _export(url, folder, klass, "parquet")
    _assert_nothing_hidden(klass, out.read_bytes(), "parquet bytes")
    table = pq.read_table(out)
    assert table.num_rows == len(TRIALS) == man["files"][0]["rows"]
    _assert_nothing_hidden(klass, json.dumps(table.to_pylist()).encode(), "parquet columns")
    _assert_nothing_hidden(klass, " ".join(table.column_names).encode(), "parquet column names")
    rows = table.to_pylist()
    assert rows[0]["stations"] == ["chamber", "probe"] and rows[1]["state"] == "failed"
    import pandas as pd  # a researcher reads it back with pandas (in the test extra)

    frame = pd.read_parquet(out)
    assert list(frame["trial"]) == [1, 2, 3]


@pytest.mark.parametrize("klass", CLASSES)
def test_documents_replay_into_a_bluesky_callback_without_hidden_fields(stored, klass):
    url, folder = stored
    out, man = _export(url, folder, klass, "documents")
    blob = out.read_bytes()
    _assert_nothing_hidden(klass, blob, "documents")
    docs = [tuple(json.loads(line)) for line in blob.decode().splitlines()]
    assert man["files"][0]["rows"] == len(docs)
    counts: dict[str, int] = {}

    class Count(event_model.DocumentRouter):
        def start(self, doc):
            counts["start"] = counts.get("start", 0) + 1

        def descriptor(self, doc):
            counts["descriptor"] = counts.get("descriptor", 0) + 1

        def event(self, doc):
            counts["event"] = counts.get("event", 0) + 1

        def stop(self, doc):
            counts["stop"] = counts.get("stop", 0) + 1

    router = event_model.RunRouter([lambda name, doc: ([Count()], [])])
    for name, doc in docs:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
        router(name, doc)
    assert counts["start"] == counts["stop"] == 5  # 3 syntheses, 2 measurements
    starts = [d for n, d in docs if n == "start"]
    assert all("recipe" in d and "thickness" in d["recipe"] for d in starts if d.get("plan_name") == "synthesize")
    assert all(d.get("operator_note") == "thin film" for d in starts if d.get("plan_name") == "synthesize")
    keys = {k for n, d in docs if n == "descriptor" for k in d["data_keys"]}
    assert "chamber_pressure" in keys  # an open process stream
    assert ("chamber_anneal_temp" in keys) == (klass != "open")  # the process stream of a shared-closed parameter
    assert ("probe_current" in keys) == (klass != "open")  # dock data: shared-closed
    assert ("chamber_nb_fraction" in keys) == (klass == "closed")
    stream_names = {d["name"] for n, d in docs if n == "descriptor"}
    for n, d in docs:
        if n == "stop":
            assert set(d["num_events"]) <= stream_names


def test_closed_view_without_class_keeps_todays_export(stored):
    url, folder = stored
    r = invoke("export", "--store", url, "--format", "csv")
    assert r.exit_code == 0
    assert r.output.splitlines()[0] == (
        "trial,state,thickness,anneal_temp,nb_fraction,sheet_resistance,transmittance,failure_reason,started,finished"
    )
    r = invoke("export", "--store", url, "--format", "jsonl")
    assert r.exit_code == 0 and "nb_fraction" in r.output  # no --class: the owner sees everything
    out = folder / "legacy.csv"
    assert invoke("export", "--store", url, "--output", str(out)).exit_code == 0
    assert out.read_text() == invoke("export", "--store", url).output
    assert json.loads((folder / "legacy.csv.manifest.json").read_text())["class"] == "closed"


def test_embargo_lifted_shares_closed_fields_with_shared_closed(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(SPEC))
    data["sharing"]["embargo_until"] = "2020-01-01"
    text = yaml.safe_dump(data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    st = Store(url)
    c = st.create_campaign("embargoed", text, spec_hash(text))
    st.add_trial(c.id, TRIALS[0][0], "sobol", {}, "e", state="done")
    st.close()
    r = invoke("export", "--store", url, "--class", "shared-closed", "--format", "jsonl")
    assert r.exit_code == 0 and json.loads(r.output)["nb_fraction"] == TRIALS[0][0]["nb_fraction"]
    r = invoke("export", "--store", url, "--class", "open", "--format", "jsonl")
    assert "nb_fraction" not in r.output


# --------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--class", "public"], "--class"),
        (["--format", "xlsx"], "--format"),
        (["--campaign", "nope"], "holds no campaign 'nope'"),
        (["--format", "parquet"], "give --output"),
    ],
)
def test_bad_input_is_explained_and_writes_nothing(stored, tmp_path, args, expected):
    url, _ = stored
    out = tmp_path / "x.out"
    extra = [] if "parquet" in args else ["--output", str(out)]
    r = runner.invoke(app, ["export", "--store", url, *args, *extra])
    assert r.exit_code == 2, r.output
    assert expected in r.output and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["missing/out.csv", "."])
def test_unwritable_output_is_an_error_and_leaves_nothing(stored, tmp_path, where):
    url, _ = stored
    target = tmp_path / where
    r = invoke("export", "--store", url, "--class", "open", "--output", str(target))
    assert r.exit_code == 2 and "cannot write" in r.output and "fix:" in r.output
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_no_partial_file_and_keeps_the_old_one(stored, tmp_path, monkeypatch):
    url, _ = stored
    out = tmp_path / "out.jsonl"
    out.write_text("previous export\n")
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the manifest: the output's temporary file is written, then this fails
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    r = invoke("export", "--store", url, "--class", "open", "--format", "jsonl", "--output", str(out))
    assert r.exit_code == 2 and "No space left on device" in r.output
    assert out.read_text() == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# --------------------------------------------------------------------------------------------------- a real run
def test_a_real_campaign_exported_open_hides_closed_parameters(tmp_path):
    data = thinfilm(stopping={"max_trials": 2, "target_reached": False})
    data["strategy"]["initial_design"] = 2
    data["sharing"] = {
        "default": "closed",
        "fields": {"o2_pressure": "open", "sheet_resistance": "open", "process_streams": "open"},
    }
    path = write(tmp_path, data)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    r = invoke("run", str(path), "--store", url, "--time-scale", "2e6")
    assert r.exit_code == 0, r.output
    st = Store(url)
    trials = st.trials(st.campaign().id)
    st.close()
    hidden = ["substrate_temperature", "nb_fraction", "rf_power", "duration"]
    for fmt in ("csv", "documents"):
        out = tmp_path / f"open.{fmt}"
        assert invoke("export", "--store", url, "--class", "open", "--format", fmt, "--output", str(out)).exit_code == 0
        blob = out.read_bytes()
        for name in hidden:
            assert name.encode() not in blob
            for t in trials:
                assert json.dumps(t.params[name]).encode() not in blob
    docs = [json.loads(line) for line in (tmp_path / "open.documents").read_text().splitlines()]
    router = event_model.RunRouter([lambda name, doc: ([event_model.DocumentRouter()], [])])
    for name, doc in docs:
        router(name, doc)
    assert sum(1 for n, _ in docs if n == "start") == 2 * len(data["workflow"])


def test_data_keys_are_traced_to_the_fields_they_carry():
    data = _spec(default="open", fields={"nb_fraction": "closed", "transmittance": "closed"})
    data["parameters"][2]["setpoint"] = "chamber.nb_target"
    data["outcome_constraints"][0]["options"] = {"field": "spec_t550"}
    from labloop.data.sharing import View

    view = View(Policy(parse_spec(data)), "open")
    assert view.key_fields("chamber_nb_target") == {"nb_fraction"}  # the parameter's setpoint
    assert view.key_fields("spec_t550") == {"transmittance"}  # the reading the outcome constraint is made of
    assert view.key_fields("chamber_anneal_temp") == {"anneal_temp"}  # ophyd's device_component naming
    assert not view.key_visible("spec_t550", "dock") and view.key_visible("probe_current", "dock")
    assert view.redact("nb_fraction=0.2 too high") == "<closed> too high"
    assert view.redact("limit of transmittance: 1e-3; chamber_nb_fraction=2") == "limit of <closed>; chamber_<closed>"


def test_object_and_stream_names_of_hidden_fields_are_removed_too():
    from types import SimpleNamespace

    from labloop.data.sharing import View

    view = View(Policy(parse_spec(_spec(default="open", fields={"nb_fraction": "closed"}))), "open")
    trial = SimpleNamespace(params={"nb_fraction": 0.1234567}, values={})
    bundle = event_model.compose_run(metadata={"sample_id": "s"})
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            k: {"source": "SIM", "dtype": "number", "shape": []} for k in ("chamber_pressure", "chamber_nb_fraction")
        },
        object_keys={"chamber_pressure": ["chamber_pressure"], "chamber_nb_fraction": ["chamber_nb_fraction"]},
        configuration={"chamber_nb_fraction": {"data": {}, "timestamps": {}, "data_keys": {}}},
        hints={"chamber_nb_fraction": {"fields": ["chamber_nb_fraction"]}},
    )
    hidden_stream = bundle.compose_descriptor(
        name="nb_fraction", data_keys={"x": {"source": "SIM", "dtype": "number", "shape": []}}, object_keys={"x": ["x"]}
    )
    docs = [
        ("start", bundle.start_doc),
        ("descriptor", desc.descriptor_doc),
        (
            "event",
            desc.compose_event(
                data={"chamber_pressure": 1.5, "chamber_nb_fraction": 0.1234567},
                timestamps={"chamber_pressure": 0, "chamber_nb_fraction": 0},
                seq_num=1,
            ),
        ),
        ("descriptor", hidden_stream.descriptor_doc),
        ("event", hidden_stream.compose_event(data={"x": 1.0}, timestamps={"x": 0}, seq_num=1)),
        ("stop", bundle.compose_stop(exit_status="success")),
    ]
    out = view.documents(trial, docs)
    blob = json.dumps(out)
    assert "nb_fraction" not in blob and "0.1234567" not in blob
    assert [n for n, _ in out] == ["start", "descriptor", "event", "stop"]
    assert out[-1][1]["num_events"] == {"primary": 1}


def test_the_manifest_never_carries_the_store_password(stored, tmp_path):
    from labloop.data import sharing

    url, _ = stored
    st = Store(url, create=False)
    try:
        exp = sharing.build(st, None, "open", "csv")
    finally:
        st.close()
    man = sharing.manifest(exp, "csv", tmp_path / "x.csv", "postgresql://lab:s3cret@db.example:5432/lab")
    assert "s3cret" not in json.dumps(man) and man["provenance"]["store"].startswith("postgresql://lab:***@")
