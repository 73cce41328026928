"""Async proposals that know what is in flight (issue 25): a proposal queued for a busy station is re-asked when
results arrive before it starts; the stale proposal stays on record (the trial's info and the audit log)."""

from __future__ import annotations

from running import start, two_chamber

from labloop.states import LEARNED_FROM, TrialState

S = TrialState


def _known_before(trials, when) -> int:
    return sum(1 for u in trials if u.state in LEARNED_FROM and u.finished_at is not None and u.finished_at <= when)


def test_a_queued_proposal_is_re_asked_when_results_arrive_before_it_starts(tmp_path):
    data = two_chamber(max_trials=10)
    data["strategy"] = {"name": "recording_strategy:RecordingStrategy", "initial_design": 1}
    data["scheduling"] = {"lookahead": 1}
    store, runner = start(data, tmp_path)
    decision = runner.run()
    cid = runner.campaign.id
    trials = store.trials(cid)
    assert decision.rule == "budget"
    assert [t.state for t in trials] == [S.DONE] * 10  # re-asking used no budget and left nothing behind
    reasked = [t for t in trials if t.info.get("replaced")]
    assert reasked, "no queued proposal was ever re-asked"
    audit = [a for a in store.audit_log(cid) if a.action == "trial.reasked"]
    assert len(audit) == sum(len(t.info["replaced"]) for t in reasked)
    for t in reasked:
        old = t.info["replaced"][-1]
        # the replaced proposal is on record and it was stale: its ask saw fewer results than the re-ask (the
        # random strategy may draw the same point again: it is seeded by the count of trials, which is unchanged)
        assert old["results_seen"] < t.info["seen"] and f"{old['results_seen']} seen" in old["reason"]
        assert any(a.detail["trial"] == t.number and a.detail["params"] == old["params"] for a in audit)
        assert t.info["seen"] <= _known_before(trials, t.started_at)
    store.close()


def test_without_lookahead_nothing_is_queued_or_re_asked(tmp_path):
    data = two_chamber(max_trials=6)
    data["strategy"] = {"name": "recording_strategy:RecordingStrategy", "initial_design": 1}
    data["scheduling"] = {"lookahead": 0}
    store, runner = start(data, tmp_path)
    runner.run()
    trials = store.trials(runner.campaign.id)
    assert [t.state for t in trials] == [S.DONE] * 6 and not any(t.info.get("replaced") for t in trials)
    store.close()
