"""Proposals that share a batch (``lab.batching.KIND.share_proposals``, labloop/run/batch_share.py; issue 24 item 3):
the rule on a fake batch station (which key a proposal is constrained to, the price of sharing, the fallbacks, the
promise that keeps an open batch waiting while the optimizer thinks), then whole campaigns on the thin-film lab
with a CONTINUOUS anneal key: with sharing the furnace's firings hold several samples, without it one each.

Every campaign assertion is on what the store recorded (runs' start documents, trials' info), never a duration."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from test_batch_walk import furnace_rows, run_campaign, start_md

from labloop.errors import LabloopError
from labloop.run.batch_share import SharedAsk, acquisition_ratio
from labloop.run.batching import BatchFormer, Prospect
from labloop.spec import BatchSpec
from labloop.strategy import Proposal


class Station:
    """A furnace kind of capacity 4 keyed on anneal_c, with prospects set by the test and the ask's promises."""

    def __init__(self, **share: Any):
        self.spec = BatchSpec(capacity=4, batch_key=["anneal_c"], max_wait_s=1e9, share_proposals=True, **share)
        self.walking: list[Prospect] = []
        self.sharer: SharedAsk | None = None
        self.former = BatchFormer("furnace", self.spec, lambda: 0.0, self._prospects)
        self.batches = SimpleNamespace(formers={"furnace": self.former})

    def _prospects(self) -> list[Prospect]:
        promised = self.sharer.promises("furnace") if self.sharer else []
        return self.walking + [Prospect(-1 - i, k) for i, k in enumerate(promised)]

    def share(self, strategy: Any) -> SharedAsk:
        self.sharer = SharedAsk(strategy, self.batches, {"furnace": self.spec})  # type: ignore[arg-type]
        return self.sharer


class Counter:
    """A strategy: anneal_c 250 + 10 k for the k-th unconstrained point, fixed values where asked; records asks."""

    def __init__(self, on_ask=None, acquisition=None):
        self.asked: list[dict | None] = []
        self.on_ask = on_ask or (lambda fixed: None)
        self.acquisition = acquisition or {}

    def ask(self, n, observations, pending, fixed=None):
        self.asked.append(fixed)
        self.on_ask(fixed)
        out = []
        for _ in range(n):
            params = {"x": 0.5, "anneal_c": 250.0 + 10 * len(self.asked), **(fixed or {})}
            a = self.acquisition.get("shared" if fixed else "free")
            out.append(Proposal(params, "model", {} if a is None else {"acquisition": a, "acquisition_kind": "qLogX"}))
        return out


def test_a_proposal_fills_the_open_batch_with_room_first_then_the_largest_group_and_opens_a_key_when_none_has_room():
    st = Station()
    st.former.join(1, "s1", {"anneal_c": 300.0})  # open, 1 of 4, waiting for trial 2 (a prospect of its key)
    st.walking = [Prospect(2, (300.0,)), Prospect(3, (410.0,)), Prospect(4, (410.0,))]
    strat = Counter()
    out = st.share(strat).ask(4, [], [])
    # the open batch (1 member + 1 prospect) takes two more; then the 410 group (2 prospects) takes two more
    assert [p.params["anneal_c"] for p in out] == [300.0, 300.0, 410.0, 410.0]
    assert strat.asked == [{"anneal_c": 300.0}, {"anneal_c": 300.0}, {"anneal_c": 410.0}, {"anneal_c": 410.0}]
    first = out[0].info["batch_share"]
    assert first["shared"] is True and first["targets"][0]["batch"] == st.former.open[0].id
    assert first["targets"][0]["with_trials"] == [1, 2] and first["targets"][0]["room"] == 2
    # every group is full now (multiples of 4): the next proposal opens a new key, and the one after shares it
    st.sharer.release()  # the proposer stored them: trials 10-13, prospects of their own now
    st.walking += [Prospect(10 + i, (p.params["anneal_c"],)) for i, p in enumerate(out)]
    more = st.sharer.ask(2, [], [p.params for p in out])
    assert strat.asked[-2:] == [None, {"anneal_c": more[0].params["anneal_c"]}]
    assert more[0].info["batch_share"]["shared"] is False
    assert more[1].params["anneal_c"] == more[0].params["anneal_c"]


def test_sharing_without_a_key_or_room_to_share_is_refused_at_validation():
    import pydantic

    for bad in ({"capacity": 1, "batch_key": ["anneal_c"]}, {"capacity": 4, "batch_key": []}):
        with pytest.raises(pydantic.ValidationError, match="share_proposals needs a capacity above 1 and a batch_key"):
            BatchSpec(share_proposals=True, **bad)


def test_without_sharing_nothing_is_constrained():
    """The control for the test above: a station without share_proposals asks the strategy as given."""
    from labloop.run.batch_share import share_asks

    st = Station()
    plain = BatchSpec(capacity=4, batch_key=["anneal_c"])
    assert share_asks(Counter(), st.batches, {"furnace": plain}) is None  # type: ignore[arg-type]
    assert share_asks(Counter(), st.batches, {"furnace": st.spec}) is not None  # type: ignore[arg-type]


def test_an_open_batch_keeps_waiting_while_the_optimizer_is_asked_for_its_key():
    st = Station()
    batch = st.former.join(1, "s1", {"anneal_c": 300.0})
    assert st.former.due(batch, 0.0) == "no_company"  # nobody else has its key: it would fire alone now
    seen: list[str | None] = []
    st.share(Counter(on_ask=lambda fixed: seen.append(st.former.due(batch, 0.0)))).ask(1, [], [])
    assert seen == [None]  # during the ask the promised proposal is company: it waits
    st.sharer.release()  # the proposer stored the trial (a prospect of its own from then on)
    assert st.former.due(batch, 0.0) == "no_company"


def test_the_price_of_sharing_takes_the_constrained_proposal_only_when_its_improvement_is_close_enough():
    def run(ratio: float) -> Proposal:
        st = Station(share_min_ratio=ratio)
        st.walking = [Prospect(2, (300.0,))]
        return st.share(Counter(acquisition={"shared": -3.0, "free": -1.0})).ask(1, [], [])[0]

    cheap, dear = run(0.1), run(0.5)  # the constrained EI is exp(-2) = 0.135 of the free one
    assert cheap.params["anneal_c"] == 300.0 and cheap.info["batch_share"]["shared"] is True
    assert dear.params["anneal_c"] != 300.0 and dear.info["batch_share"]["shared"] is False
    assert dear.info["batch_share"]["acquisition_ratio"] == pytest.approx(0.1353, abs=1e-3)
    assert "< share_min_ratio 0.5" in dear.info["batch_share"]["why"]
    # not comparable (no model value, or not log-valued): shared
    assert acquisition_ratio(Proposal({}, "sobol"), Proposal({}, "sobol")) is None


def test_a_strategy_without_fixed_or_a_failed_constrained_ask_falls_back_to_an_unconstrained_proposal():
    class Old:
        def ask(self, n, observations, pending):
            return [Proposal({"x": 0.1, "anneal_c": 333.0}, "random")]

    class NoRow(Counter):
        def ask(self, n, observations, pending, fixed=None):
            if fixed:
                raise LabloopError("no free row of the candidate pool has {'anneal_c': 300.0}", "add rows")
            return super().ask(n, observations, pending)

    for strat, why in ((Old(), "takes no `fixed`"), (NoRow(), "the constrained ask failed: no free row")):
        st = Station()
        st.walking = [Prospect(2, (300.0,))]
        [p] = st.share(strat).ask(1, [], [])
        assert p.params["anneal_c"] != 300.0 and p.info["batch_share"]["shared"] is False
        assert why in p.info["batch_share"]["why"]


# ------------------------------------------------------------------ campaigns on the thin-film lab
def continuous_furnace(share: bool, trials: int = 8) -> dict:
    from test_batch_walk import furnace_campaign

    data = furnace_campaign(slots=4, capacity=4, trials=trials)
    data["strategy"] = {"name": "random", "initial_design": 1}
    anneal = next(p for p in data["parameters"] if p["name"] == "anneal_c")
    anneal.clear()
    anneal.update(
        {"name": "anneal_c", "type": "continuous", "lower": 250, "upper": 450, "setpoint": "furnace.anneal_c"}
    )
    data["lab"]["batching"]["furnace"]["share_proposals"] = share
    return data


def firings(store, cid) -> list[dict]:
    rows = furnace_rows(store, cid)
    return [start_md(store, uid) for uid in sorted({r.run_uid for r in rows.values()})]


@pytest.mark.parametrize("share", [True, False])
def test_a_continuous_anneal_key_shares_firings_only_when_proposals_share(tmp_path, share):
    store, c, runner = run_campaign(continuous_furnace(share), tmp_path)
    trials = store.trials(c.id)
    assert [t.state for t in trials] == ["done"] * 8
    fired = firings(store, c.id)
    sizes = [len(f["recipe"]["samples"]) for f in fired]
    assert sum(sizes) == 8
    fill = sum(sizes) / (len(fired) * 4)
    by_sample = {t.sample_id: t for t in trials}
    for f in fired:  # every sample of one firing was proposed with the firing's temperature
        assert {by_sample[s].params["anneal_c"] for s in f["recipe"]["samples"]} == {f["recipe"]["anneal_c"]}
    if share:
        assert fill > 0.25 and max(sizes) > 1
        notes = [t.info["batch_share"] for t in trials]
        assert any(n["shared"] for n in notes) and not all(n["shared"] for n in notes)
    else:
        assert sizes == [1] * 8 and fill == 0.25  # independent continuous draws never share a key
        assert all("batch_share" not in (t.info or {}) for t in trials)
    store.close()
