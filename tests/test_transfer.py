"""Transfer from earlier campaigns (strategy.related, labloop.strategy.transfer): a multi-task GP, not pooling.

Small synthetic pools; the benefit on the Buchwald-Hartwig tables is measured in benchmarks/transfer.py.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from labloop.errors import LabloopError
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    ContinuousParameter,
    ObjectiveSpec,
    PriorDataSpec,
    StrategySpec,
)
from labloop.strategy import Observation, make_strategy
from labloop.strategy.priors import file_priors, from_record, related_store_observations, to_record
from labloop.strategy.replay import run_replay, with_related
from labloop.strategy.tables import table_lab

FAST = {"mc_samples": 32, "raw_samples": 64, "num_restarts": 2}
LEVELS = [i / 19 for i in range(20)]


def _y(x: float, c: str, shift: float = 0.0) -> float:
    return -((x - 0.6) ** 2) * 10 + {"a": 0.0, "b": 1.0, "c": 0.5}[c] + shift


def _write(path: Path, rows: list[dict], cols=("x", "c", "y")) -> str:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cols))
        w.writeheader()
        w.writerows([{k: r[k] for k in cols} for r in rows])
    return str(path)


def _table(shift: float = 0.0, shuffle: int | None = None) -> list[dict]:
    rows = [{"x": x, "c": c, "y": _y(x, c, shift)} for x in LEVELS for c in "abc"]
    if shuffle is not None:
        ys = [r["y"] for r in rows]
        random.Random(shuffle).shuffle(ys)
        rows = [{**r, "y": y} for r, y in zip(rows, ys)]
    return rows


def _lab(tmp_path: Path, related: list[str]):
    target = _write(tmp_path / "target.csv", _table())
    lab = table_lab(target, "y", "max", seed=0, initial_design=4, budget=20)
    lab.spec.strategy.options.update(FAST)
    return with_related(lab, related)


def test_related_campaign_is_a_task_of_a_multitask_gp_not_this_campaigns_trials(tmp_path):
    rel = _write(tmp_path / "earlier.csv", _table(shift=5.0))  # same shape, another level: related
    lab, prior = _lab(tmp_path, [rel])
    assert len(prior) == 60 and {o.task for o in prior} == {"csv:earlier.csv"}
    strat = make_strategy(lab.spec, lab.pool)
    own = [Observation(dict(lab.pool.rows[i]), {"y": lab.values[i]}) for i in (0, 17, 31, 44, 58)]
    props = strat.ask(2, prior + own, [])
    assert all(p.source == "model" for p in props)
    # the related campaign measured every row; this one only five: the related rows stay proposable
    taken = {(o.params["x"], o.params["c"]) for o in own}
    assert all((p.params["x"], p.params["c"]) not in taken for p in props)
    report = props[0].info["related"]  # per earlier campaign: used or dropped by the guard, and why
    assert set(report) == {"csv:earlier.csv"}
    entry = report["csv:earlier.csv"]
    assert isinstance(entry["used"], bool) and -1 <= entry["correlation"] <= 1 and "leave-one-out" in entry["why"]
    assert props[0].info["n_train"] == 5  # the campaign's own data; the related rows are the other task


def test_guard_keeps_a_related_campaign_and_not_a_shuffled_one(tmp_path):
    rel = _write(tmp_path / "related.csv", _table(shift=3.0))
    shuf = _write(tmp_path / "shuffled.csv", _table(shift=3.0, shuffle=1))
    own_rows = range(0, 60, 3)  # 20 own rows
    reports = {}
    for name, paths in (("both", [rel, shuf]), ("shuffled", [shuf])):
        lab, prior = _lab(tmp_path, paths)
        own = [Observation(dict(lab.pool.rows[i]), {"y": lab.values[i]}) for i in own_rows]
        reports[name] = make_strategy(lab.spec, lab.pool).ask(1, prior + own, [])[0].info["related"]
    both = reports["both"]
    assert both["csv:related.csv"]["used"] is True, both
    assert both["csv:related.csv"]["loo_gain"] > both["csv:related.csv"]["loo_gain_se"]  # the one-SE rule
    # the shuffled campaign barely changes the predictions next to the related one ...
    assert abs(both["csv:shuffled.csv"]["loo_gain"]) < both["csv:related.csv"]["loo_gain"], both
    # ... and alone it is not used: the model without transfer proposes
    alone = reports["shuffled"]["csv:shuffled.csv"]
    assert alone["used"] is False and alone["why"].startswith("dropped"), alone


def _synthetic(n_own: int, seed: int = 0):
    """A 1-D problem: this campaign's points, a related campaign (the same curve, shifted and scaled) and an
    unrelated one (the related values shuffled), as model inputs and values."""
    import torch

    g = torch.Generator().manual_seed(seed)
    f = lambda x: torch.sin(6 * x) + 0.5 * x
    X_own = torch.rand(n_own, 1, generator=g, dtype=torch.float64)
    X_rel = torch.linspace(0, 1, 60, dtype=torch.float64).unsqueeze(-1)
    y_rel = 3 * f(X_rel) + 10
    return X_own, f(X_own), ("related", X_rel, y_rel), ("unrelated", X_rel, y_rel[torch.randperm(60, generator=g)])


def test_guard_on_a_synthetic_problem_keeps_related_not_unrelated_and_falls_back_to_no_transfer():
    import torch
    from botorch.models import MultiTaskGP

    from labloop.strategy.modeling import fit_gp
    from labloop.strategy.transfer import guarded_multitask

    torch.manual_seed(0)  # botorch retries a failed fit from random starting points
    X_own, y_own, related, unrelated = _synthetic(12)
    single = fit_gp(None, X_own, y_own, kernel="matern")
    model, report = guarded_multitask(single, X_own, y_own, [related, unrelated], kernel="matern")
    assert report["related"]["used"] and isinstance(model, MultiTaskGP), report
    # the unrelated campaign helps far less (it is dropped, or kept for a gain within the noise of the related one)
    assert report["unrelated"]["loo_gain"] < report["related"]["loo_gain_se"], report
    if not report["unrelated"]["used"]:  # refitted without its points (it keeps its task index, with no rows)
        assert 2 not in set(model.train_inputs[0][:, -1].tolist())
    # alone, an unrelated campaign is dropped (the model without transfer proposes, itself), or kept for a gain that
    # is a small fraction of what the related one adds on the same points: the 1-SE rule lets a consistent but
    # negligible gain through (see the module doc)
    gains = {}
    for task in (related, unrelated):
        model, report = guarded_multitask(single, X_own, y_own, [task], kernel="matern")
        gains[task[0]] = report[task[0]]["loo_gain"]
        if task is unrelated and not report["unrelated"]["used"]:
            assert model is single
    assert gains["unrelated"] < 0.1 * gains["related"], gains


def test_guard_with_too_few_own_points_uses_the_related_campaigns_and_says_so():
    from botorch.models import MultiTaskGP

    from labloop.strategy.modeling import fit_gp
    from labloop.strategy.transfer import guarded_multitask

    X_own, y_own, related, unrelated = _synthetic(2)
    single = fit_gp(None, X_own, y_own, kernel="matern")
    model, report = guarded_multitask(single, X_own, y_own, [related, unrelated], kernel="matern")
    assert isinstance(model, MultiTaskGP) and all(r["used"] for r in report.values())
    assert "2 own point(s)" in report["unrelated"]["why"]


def test_leave_one_out_scores_match_refitting_without_each_point():
    """The closed form (one inverse) against conditioning a GP with the same hyperparameters on n - 1 points."""
    import torch
    from botorch.models import SingleTaskGP

    from labloop.strategy.modeling import fit_gp
    from labloop.strategy.transfer import loo_score

    X, y, _, _ = _synthetic(8, seed=3)
    m = fit_gp(None, X, y, kernel="matern")
    mean, sd = m.outcome_transform.means, m.outcome_transform.stdvs
    ys = (y - mean) / sd
    total = 0.0
    for i in range(len(X)):
        rest = [j for j in range(len(X)) if j != i]
        gp = SingleTaskGP(
            X[rest],
            ys[rest],
            outcome_transform=None,
            covar_module=m.covar_module,
            likelihood=m.likelihood,
            mean_module=m.mean_module,
        ).eval()
        with torch.no_grad():
            post = gp.posterior(X[i : i + 1], observation_noise=True)
        mu, var = float(post.mean.detach()), float(post.variance.detach())
        total += -0.5 * math.log(2 * math.pi * var) - 0.5 * (float(ys[i]) - mu) ** 2 / var - math.log(float(sd))
    assert loo_score(m) == pytest.approx(total, rel=1e-4)


def test_replay_with_a_related_table_runs_and_counts_only_its_own_experiments(tmp_path):
    rel = _write(tmp_path / "earlier.csv", _table(shift=2.0))
    lab, prior = _lab(tmp_path, [rel])
    res = run_replay(lab, 8, initial_rows=[0, 20, 40, 59], prior=prior)
    assert len(res.history) == 8 and res.sources[:4] == ["initial"] * 4
    assert res.sources[4:] == ["model"] * 4 and "related" in res.last_info
    assert len(set(res.rows)) == 8
    # one record per proposal round of which earlier campaigns the model used, agreeing with the last report
    assert len(res.related_used) == 4
    assert res.related_used[-1] == [n for n, r in res.last_info["related"].items() if r["used"]]


def test_related_records_keep_their_task_for_resume(tmp_path):
    rel = _write(tmp_path / "earlier.csv", _table())
    _, prior = _lab(tmp_path, [rel])
    assert [o.task for o in from_record(to_record(prior[:3]))] == ["csv:earlier.csv"] * 3
    own = Observation({"x": 0.0, "c": "a"}, {"y": 1.0})
    assert from_record(to_record([own]))[0].task is None


def test_bad_related_inputs_are_clear_errors_before_anything_runs(tmp_path):
    target = _write(tmp_path / "target.csv", _table())
    lab = table_lab(target, "y", "max", seed=0, budget=10)
    # no shared columns at all
    other = _write(tmp_path / "other.csv", [{"t": 1, "q": 2}] * 3, cols=("t", "q"))
    with pytest.raises(LabloopError, match=r"related\[0\].*lacks columns.*shared with this campaign: none"):
        with_related(lab, [other])
    # the same names, another type: text where this campaign has numbers
    typed = _write(tmp_path / "typed.csv", [{"x": "high", "c": "a", "y": 1.0}] * 3)
    with pytest.raises(LabloopError, match=r"none of the 3 rows.*parameter 'x' has 'high'") as exc:
        with_related(lab, [typed])
    assert "same parameters, types and choices" in exc.value.fix
    # a continuous campaign with a categorical parameter and no pool: refused when the strategy is built
    spec = CampaignSpec(
        name="mixed",
        parameters=[
            ContinuousParameter(name="x", lower=0, upper=1),
            CategoricalParameter(name="c", choices=list("ab")),
            ContinuousParameter(name="z", lower=0, upper=1),
        ],
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        strategy=StrategySpec(related=[PriorDataSpec(csv=target)], options=FAST),
    )
    with pytest.raises(LabloopError, match=r"needs a candidate pool.*categorical parameters \(c\)"):
        make_strategy(spec)
    assert file_priors(spec.model_copy(update={"strategy": StrategySpec()})) == []


def test_stored_campaign_with_other_parameter_types_is_refused():
    spec = CampaignSpec(
        name="now",
        parameters=[ContinuousParameter(name="x", lower=0, upper=1)],
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
    )
    earlier = (
        "name: before\nparameters:\n  - {name: x, type: categorical, choices: [lo, hi]}\n"
        "objectives:\n  - {name: y, direction: maximize, plugin: reading}\n"
    )
    store = SimpleNamespace(campaign=lambda ref: SimpleNamespace(name="before", id=1, spec_text=earlier))
    with pytest.raises(
        LabloopError,
        match=r"campaign 'before' has other parameters.*x: ContinuousParameter here, "
        "CategoricalParameter there",
    ):
        related_store_observations(spec, store, "before")


def test_pool_strategy_with_related_and_small_pool_thompson_sampling(tmp_path):
    """A small pool (Thompson sampling by default) also takes the multi-task model."""
    from labloop.strategy import BotorchStrategy

    rel = _write(tmp_path / "earlier.csv", _table(shift=1.0))
    target = _write(tmp_path / "target.csv", _table())
    lab = table_lab(target, "y", "max", seed=0, initial_design=4, budget=40)  # 60 rows <= 2 x 40: small
    lab.spec.strategy.options.update(FAST)
    lab, prior = with_related(lab, [rel])
    strat = BotorchStrategy(lab.spec, lab.pool)
    assert strat.small_pool
    own = [Observation(dict(lab.pool.rows[i]), {"y": lab.values[i]}) for i in (0, 17, 31, 44)]
    p = strat.ask(1, prior + own, [])[0]
    assert p.source == "model" and p.info["acquisition_kind"] == "ThompsonSampling" and "related" in p.info


def test_a_believer_batch_with_related_campaigns_uses_the_monte_carlo_form(tmp_path):
    """The Kriging believer conditions the GP on its own mean at each chosen row; the multi-task GP would need the
    rows' task column for that, so with related campaigns a batch falls back to qLogEI with X_pending."""
    from labloop.strategy.bayes import BotorchStrategy

    rel = _write(tmp_path / "earlier.csv", _table(shift=5.0))
    lab, prior = _lab(tmp_path, [rel])
    strat = BotorchStrategy(lab.spec, lab.pool, batch_selection="believer")
    own = [Observation(dict(lab.pool.rows[i]), {"y": lab.values[i]}) for i in (0, 17, 31, 44, 58)]
    props = strat.ask(3, prior + own, [])
    assert len({(p.params["x"], p.params["c"]) for p in props}) == 3 and all(p.source == "model" for p in props)
    assert all(p.info["acquisition_kind"] == "qLogExpectedImprovement" for p in props)


def test_several_related_campaigns_share_the_one_standard_error_level():
    from statistics import NormalDist

    from labloop.strategy.transfer import threshold

    one_sided = 1 - NormalDist().cdf(1.0)  # the one-SE rule's chance of passing a gain that is noise
    assert threshold(1) == 1.0
    for k in (2, 4, 8):
        assert 1 - NormalDist().cdf(threshold(k)) == pytest.approx(one_sided / k)
    assert threshold(2) < threshold(4) < threshold(8)
