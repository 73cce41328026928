"""Sample identity (issue 24 item 6): a station with a barcode reader reads the sample it holds before a step; a
mismatch with where the store says the sample is fails that step with the reason, an operator alert and an audit
entry, and nothing more is done to that sample; a misread that a re-read clears passes. On the simulated thin-film
lab with a reader per chamber (``lab.options.barcode``) and injected faults."""

from __future__ import annotations

import pytest
import yaml
from running import two_chamber
from typer.testing import CliRunner

from labloop.cli import app
from labloop.data.view import campaign_view
from labloop.errors import SpecError
from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.store import Store

READERS = {"chamber1": "chamber1_reader", "chamber2": "chamber2_reader"}


def campaign(max_trials: int = 4, readers: dict | None = None, rereads: int = 2) -> dict:
    data = two_chamber(max_trials=max_trials, options={"barcode": True})
    data["lab"]["identity"] = {"readers": READERS if readers is None else readers, "rereads": rereads}
    return data


def run(data: dict, tmp_path, fault=None):
    """Run the campaign to its end; ``fault(lab)`` injects faults into the built lab first."""
    prepared = prepare_text(yaml.safe_dump(data), "test.yaml")
    if fault is not None:
        fault(prepared.lab)
    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    alerts: list[dict] = []
    runner = CampaignRunner.start(prepared, store, lambda kind, d: alerts.append(d) if kind == "alert" else None)
    decision = runner.run()
    return store, runner.campaign.id, decision, alerts, prepared.lab


def swap_first_on_chamber1(lab) -> None:
    lab.devices["chamber1_reader"].swap_next = True


def test_a_swapped_label_fails_the_step_alerts_audits_and_the_next_trials_go_on(tmp_path):
    store, cid, decision, alerts, lab = run(campaign(), tmp_path, swap_first_on_chamber1)
    assert decision.rule == "budget"
    trials = store.trials(cid)
    failed = [t for t in trials if t.state == "failed"]
    assert len(failed) == 1
    bad = failed[0]
    reads = lab.devices["chamber1_reader"].reads
    wrong = reads[0]
    assert wrong and wrong != bad.sample_id
    assert reads[:3] == [wrong] * 3  # a swap is not cleared by the two re-reads
    # the reason names the station, the id expected and the id read
    assert "sample identity: chamber1" in bad.failure_reason
    assert f"read sample '{wrong}'" in bad.failure_reason and f"sample '{bad.sample_id}'" in bad.failure_reason
    # the deposition never ran on it: its synthesize step is recorded as failed with that reason
    synth = [s for s in store.steps(bad.id) if s.kind == "synthesize"]
    assert [(s.state, s.device) for s in synth] == [("failed", "chamber1")]
    assert "sample identity" in synth[0].error
    # the audit entry keeps what the lab said; the store's record of the sample is not rewritten
    entry = next(a for a in store.audit_log(cid) if a.action == "sample.mismatch")
    assert entry.detail["expected"] == bad.sample_id and entry.detail["read"] == wrong
    assert entry.detail["station"] == "chamber1" and entry.detail["reads"] == [wrong] * 3
    sample = next(s for s in store.samples(cid) if s.trial_id == bad.id)
    assert (sample.sample_id, sample.location) == (bad.sample_id, "chamber1")  # not moved, not renamed
    # no further move for that sample: no cleanup, and chamber1 is out of service
    assert [s.kind for s in store.steps(bad.id)] == ["transfer", "synthesize"]
    assert lab.devices["robot"].registry.location(bad.sample_id) == "chamber1"
    # an operator alert, live and in the campaign view (what the dashboard and `labloop status` show)
    assert any("sample identity: chamber1" in a["message"] for a in alerts)
    view = campaign_view(store, cid)
    assert any(a["action"] == "sample.mismatch" and wrong in a["message"] for a in view["alerts"])
    assert view["quarantined"] == ["chamber1"]
    status = CliRunner().invoke(
        app, ["status", "--store", f"sqlite:///{tmp_path / 'labloop.db'}"], env={"COLUMNS": "300"}
    )
    assert status.exit_code == 0, status.output
    assert "out of service: chamber1" in status.output
    assert f"alert: trial {bad.number}: sample identity: chamber1" in status.output
    # the other trials went on, on the other chamber, and were measured
    done = [t for t in trials if t.state == "done"]
    assert len(done) == 3
    later = [s for t in done for s in store.steps(t.id) if s.kind == "synthesize"]
    assert {s.device for s in later if s.started_at > synth[0].started_at} <= {"chamber2"}
    store.close()


def test_a_transient_misread_is_read_again_and_passes(tmp_path):
    def misread(lab):
        lab.devices["chamber1_reader"].misread_next = 1
        lab.devices["chamber2_reader"].misread_next = 1

    store, cid, decision, alerts, lab = run(campaign(max_trials=3), tmp_path, misread)
    assert [t.state for t in store.trials(cid)] == ["done"] * 3
    rereads = [a for a in store.audit_log(cid) if a.action == "sample.reread"]
    assert rereads, "the misread was not recorded"
    for a in rereads:
        assert len(a.detail["reads"]) == 2 and a.detail["reads"][-1] == a.detail["expected"]
        assert a.detail["reads"][0] != a.detail["expected"]
    assert not any(a.action == "sample.mismatch" for a in store.audit_log(cid))
    assert campaign_view(store, cid)["quarantined"] == []
    store.close()


def test_a_misread_with_no_reread_allowed_fails(tmp_path):
    """``rereads: 0``: the first misread decides (so the re-read is what passes the test above)."""
    store, cid, _, _, lab = run(
        campaign(max_trials=2, rereads=0),
        tmp_path,
        lambda lab: setattr(lab.devices["chamber1_reader"], "misread_next", 1),
    )
    failed = [t for t in store.trials(cid) if t.state == "failed"]
    assert len(failed) == 1 and "sample identity: chamber1" in failed[0].failure_reason
    store.close()


def test_without_the_rule_the_swapped_sample_is_processed(tmp_path):
    """The same swap with no reader named: the deposition runs on a sample whose label says otherwise. This is
    what the check prevents (the first test fails on this behaviour)."""
    data = campaign(readers={})
    store, cid, _, alerts, lab = run(data, tmp_path, swap_first_on_chamber1)
    assert [t.state for t in store.trials(cid)] == ["done"] * 4
    assert lab.devices["chamber1_reader"].reads == []  # nobody asked it
    assert not any(a.action == "sample.mismatch" for a in store.audit_log(cid))
    store.close()


@pytest.mark.parametrize(
    ("readers", "problem"),
    [
        ({"chamber1": "scanner"}, "lab.identity.readers.chamber1: the reader 'scanner' is not a device of the lab"),
        ({"chamber9": "chamber1_reader"}, "lab.identity.readers.chamber9: the lab has no station 'chamber9'"),
        ({"chamber1": "chamber1_reader.label"}, "device 'chamber1_reader' has no signal 'label'"),
    ],
)
def test_the_campaign_file_refuses_a_reader_that_is_not_a_device(readers, problem):
    with pytest.raises(SpecError) as err:
        prepare_text(yaml.safe_dump(campaign(readers=readers)), "test.yaml")
    assert problem in str(err.value.problem)


def test_barcode_faults_need_the_readers():
    data = two_chamber(options={"barcode_swap_rate": 0.1})
    with pytest.raises(SpecError, match="barcode fault rates need barcode readers"):
        prepare_text(yaml.safe_dump(data), "test.yaml")
