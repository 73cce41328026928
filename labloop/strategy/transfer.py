"""Transfer from earlier campaigns: a multi-task GP over this campaign and related ones (``strategy.related``).

Why a multi-task GP and not pooled data. Prior data (``strategy.prior_data``) is pooled: it is believed to be the
*same* experiment. Last year's campaign on another aryl halide or another substrate is not: its optimum may sit
elsewhere, its yields on another scale, and some of it may not carry over at all. A multi-task GP (Swersky et al.
2013, "Multi-task Bayesian optimization"; Bonilla et al. 2008; botorch's ``MultiTaskGP``) models each campaign as a
task with a shared kernel over the parameters times a learned task covariance ``B`` (an ``IndexKernel``): where
the data say the tasks move together, an observation of the related task informs this one; where they do not, the
learned correlation falls towards zero. But not far enough with few own points: measured with shuffled tables
(docs/benchmarks/archive.md §14.2), correlations of 0.2-0.5 were learned for unrelated campaigns, and their points (and
their say in the shared lengthscales) pulled the model: both seeds found the top 1 % later than without transfer. Hence
the guard below. Every proposal reports, per earlier campaign, whether it was used, its learned correlation and why
(``info["related"]``), so a person sees which earlier campaign the model trusts.

No harm (:func:`guarded_multitask`, every ask). Transfer is a model choice, so it is checked the way model choices
are: by how well each candidate model predicts this campaign's own points when each is left out. Leave-one-out
(LOO) log predictive density estimates the expected log predictive density of new points (Vehtari, Gelman & Gabry
2017), and for a GP it has a closed form from one inverse of the covariance (Rasmussen & Williams 2006, §5.4.2), so
it costs no refits. It asks exactly the question that matters: when this campaign's point is hidden, do the earlier
campaign's points predict it better? An unrelated campaign that pulls the model shows up as worse predictions there.

1. Fit the multi-task GP with every related campaign. For each campaign ``t``: the LOO log scores of the own points
   given the other own points plus ``t``'s points, minus those given the other own points alone (same
   hyperparameters). ``t`` is kept if the summed gain exceeds one standard error of that sum.
2. Refit with the kept campaigns when some were dropped (their points also shaped the shared hyperparameters).
3. The kept campaigns together, with the refitted hyperparameters, must still pass the same test (own points given
   own + kept points against own points alone). If no campaign is kept, the usual single-task GP (fitted anyway)
   proposes, as if no earlier campaign had been given.

Why not compare the multi-task model with that single-task GP directly (the first version did): the single-task
GP's hyperparameters (with one-hot features, one lengthscale per choice: 32 on the Buchwald-Hartwig tables) are
fitted to the very points it is then scored on, so its LOO is optimistic, while the multi-task hyperparameters are
fitted mostly to related points. In the first Buchwald-Hartwig run (table b, 30 own points) every related table
passed its own test by 4-13 nats, yet the combined model lost to the single-task GP, and transfer was off all run.
Comparing with and without the related points under the same hyperparameters asks only what the data add.

Why one standard error: both comparisons are between a simpler model (without the campaign, without transfer) and a
richer one, and the "one-standard-error rule" (Breiman et al. 1984; Hastie, Tibshirani & Friedman 2009, §7.10) takes
the richer one only when it is better by more than the noise of the estimate. It is a convention, not a value fitted
to any benchmark. Two standard errors were tried first and were too strict: they rejected a campaign that is the
same curve shifted in the unit test (gain 1.98 standard errors; pointwise LOO gains are heavy-tailed, a related
campaign predicts a few points far better and the rest a little, which inflates the standard error), and in the
first Buchwald-Hartwig run every related table at 7 own points (gains 1.6-2 standard errors). So this choice has
seen one run of that benchmark; nothing else was adjusted to it.

Several campaigns: each per-campaign test lets an unrelated campaign through with the one-SE rule's one-sided
chance, about 16 % (for a gain that is noise, roughly normal); with four earlier campaigns tested side by side, some
unrelated one passes about half the time, and the guard re-decides every ask. Measured (docs/benchmarks/archive.md
§14.2, 30 rows per earlier campaign): shuffled tables were kept in many asks of most runs. So the level is shared among
the ``k`` campaigns tested together (Bonferroni: each needs ``z(1 - 0.159 / k)`` standard errors, 1.75 for four, 1 for
one), which keeps the chance that any unrelated one passes at that of a single test. The combined check (3) is one test
and keeps one standard error. This change was made after seeing those runs (said here so the reader can discount it);
its reasoning is the textbook family-wise error rate, not a value fitted to the tables.

What happens with few own points (5 at the start): the LOO estimates are noisy, the standard errors large, so the
rule mostly falls back to no transfer unless the related campaigns' gain is large even on 5 points. That is the
conservative side on purpose: with 5 points, no transfer is close to space filling, which costs an experiment or
two; trusting an unrelated campaign can steer the search for many. The check is made afresh every ask with one
more own point, so a campaign wrongly dropped early comes back once the evidence is there, and one wrongly kept is
dropped. Below 3 own points no leave-one-out is possible: every campaign is used, and the report says so untested.
Known weakness: a campaign whose effect is negligible but consistent (on the synthetic unit problem a shuffled one:
+0.06 nats over 12 points, standard error 0.03) passes the one-SE rule; its pull on the predictions is then as small
as its gain, but it keeps a say in the shared hyperparameters. A floor on the gain itself would stop that, at the
price of turning transfer on later; no floor was set. Known bias: related values are aligned to the own points' mean and spread including the left-out point (a little
leak, for transfer). Not checked: a kept campaign's say in the shared hyperparameters (each test holds them fixed). Related: RGPE (Feurer, Letham & Bakshy 2018) weights
earlier models by a ranking loss on the own points and drops those clearly worse than the own model; Tighineanu
et al. (2022) review how learned task similarity needs enough own data.

How the data are prepared, each ask:

* the related campaigns' objective values go through this campaign's objective transform, and are then moved
  affinely onto this campaign's mean and spread (per task): the ``IndexKernel`` learns per-task scale, but a yield
  table at 80 % next to one at 20 % would otherwise spend the shared mean and outputscale on the offset;
* at most ``related_points`` related observations are used (a seeded random subset, the same share from each
  related campaign): the GP's cost is cubic in all observations, own and related;
* hyperparameters are fitted on a subset of at most ``FIT_SUBSET`` points (every own point, related points drawn
  per task), then the GP conditions on everything with them, as :func:`labloop.strategy.modeling.fit_gp` does.

Only the first objective is transferred (outcome constraints and the failure model see this campaign's data).
Where this works: candidate pools (model inputs are kernel features) and spaces without categorical parameters
(features = search space); a continuous or mixed space with categorical parameters is refused at the start, with
the fix, rather than silently pooled (:func:`check_supported`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, cast

import torch
from botorch.models import MultiTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from labloop.errors import LabloopError

from . import quiet
from .modeling import _note, hyperparameters, short_error
from .space import DTYPE, SearchSpace

FIT_SUBSET = 300


def check_supported(space: SearchSpace, has_pool: bool) -> None:
    """Refuse ``strategy.related`` where the multi-task model cannot see the kernel features (see module doc)."""
    if not has_pool and space.cat_dims:
        raise LabloopError(
            "strategy.related: transfer from earlier campaigns needs a candidate pool when the campaign has "
            f"categorical parameters ({', '.join(space.columns[i].name for i in space.cat_dims)})",
            "give the campaign a candidates CSV (`candidates:`), or remove strategy.related (or use prior_data to "
            "pool the earlier data as the same experiment)",
        )


def align(y_task: Tensor, y_own: Tensor) -> Tensor:
    """``y_task`` moved affinely onto ``y_own``'s mean and standard deviation (see module docstring)."""
    mu, sd = float(y_own.mean()), float(y_own.std()) if len(y_own) > 1 else 1.0
    mu_t, sd_t = float(y_task.mean()), float(y_task.std()) if len(y_task) > 1 else 1.0
    sd = sd if sd > 0 else 1.0
    sd_t = sd_t if sd_t > 0 else 1.0
    return (y_task - mu_t) / sd_t * sd + mu


def _subsample(tasks: Sequence[tuple[str, Tensor, Tensor]], limit: int, seed: int) -> list[tuple[str, Tensor, Tensor]]:
    """At most ``limit`` related points in all, the same share from each task, seeded."""
    total = sum(len(X) for _, X, _ in tasks)
    if total <= limit:
        return list(tasks)
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, X, y in tasks:
        k = max(2, int(limit * len(X) / total))
        idx = torch.randperm(len(X), generator=g)[:k]
        out.append((name, X[idx], y[idx]))
    return out


def _stack(X_own: Tensor, y_own: Tensor, tasks: Sequence[tuple[str, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    Xs = [torch.cat([X_own, torch.zeros(len(X_own), 1, dtype=DTYPE)], -1)]
    ys = [y_own]
    for t, (_, X, y) in enumerate(tasks, start=1):
        Xs.append(torch.cat([X, torch.full((len(X), 1), float(t), dtype=DTYPE)], -1))
        ys.append(y)
    return torch.cat(Xs), torch.cat(ys)


def _build(X: Tensor, Y: Tensor, kernel: str, n_tasks: int) -> MultiTaskGP:
    covar = None
    if kernel != "rbf":  # labloop's pool kernel (Matern-5/2, dimension-scaled prior); botorch's RBF otherwise
        from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior

        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=X.shape[-1] - 1, use_rbf_kernel=False)
    return MultiTaskGP(
        X,
        Y,
        task_feature=-1,
        output_tasks=[0],
        all_tasks=list(range(n_tasks)),
        outcome_transform=Standardize(m=1),
        covar_module=covar,
    )


def fit_multitask(
    X_own: Tensor,
    y_own: Tensor,
    related: Sequence[tuple[str, Tensor, Tensor]],
    *,
    kernel: str = "matern",
    related_points: int = 1000,
    seed: int = 0,
    init: dict[str, Tensor] | None = None,
    maxiter: int = 100,
    fallbacks: list[str] | None = None,
) -> MultiTaskGP:
    """A ``MultiTaskGP`` whose output is this campaign (task 0) given its own ``(X_own, y_own)`` (``n x f``,
    ``n x 1``, larger is better) and each related task's ``(name, X, y)`` in the same model inputs and scale."""
    # a task without rows (dropped by the guard) keeps its index, so that hyperparameters carry over (warm start)
    tasks = [(name, X, align(y, y_own) if len(X) else y) for name, X, y in related]
    tasks = _subsample(tasks, related_points, seed)
    n_tasks = len(tasks) + 1
    X, Y = _stack(X_own, y_own, tasks)
    fit_X, fit_Y = X, Y
    if len(X) > FIT_SUBSET:  # every own point, related points drawn from each task in proportion
        room = max(2 * len(tasks), FIT_SUBSET - len(X_own))
        fit_X, fit_Y = _stack(X_own, y_own, _subsample(tasks, room, seed + 1))
    model = _build(fit_X, fit_Y, kernel, n_tasks)
    if init:
        try:
            model.load_state_dict(init, strict=False)
            maxiter = min(maxiter, 30)
        except (RuntimeError, KeyError) as exc:
            _note(fallbacks, f"warm start of the multi-task model skipped ({short_error(exc)})")
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    from botorch.fit import fit_gpytorch_mll

    with quiet.captured():
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
        except Exception as exc:  # noqa: BLE001 - usable with its starting hyperparameters, and recorded
            _note(fallbacks, f"fit of the multi-task model failed ({short_error(exc)}): prior-mode hyperparameters")
    if fit_X is not X:
        full = _build(X, Y, kernel, n_tasks)
        full.load_state_dict(hyperparameters(model), strict=False)
        model = full
    model.eval()
    # for task_correlations; a plain list kept in the module's __dict__, which torch's stubs type as Tensor | Module
    model.related_names = [name for name, _, _ in tasks]  # type: ignore[assignment]
    return model


def task_correlations(model: MultiTaskGP) -> dict[str, float]:
    """The learned correlation of each related task with this campaign (task 0), from the ``IndexKernel``."""
    names = getattr(model, "related_names", [])
    ik = next((k for k in model.covar_module.modules() if hasattr(k, "num_tasks")), None)
    if ik is None:
        return {}
    with torch.no_grad():
        B = ik.covar_matrix
        B = B.to_dense() if hasattr(B, "to_dense") else B
    out = {}
    for t, name in enumerate(names, start=1):
        denom = math.sqrt(max(float(B[0, 0]) * float(B[t, t]), 1e-300))
        out[name] = round(float(B[0, t]) / denom, 3)
    return out


MIN_OWN_FOR_CHECK = 3
SE_RULE = 1.0  # "clearly": the one-standard-error rule (Breiman et al. 1984; Hastie et al. 2009, 7.10), "No harm"


def _joint(model: Any) -> tuple[Tensor, Tensor, Tensor, float]:
    """The model's prior mean, covariance plus noise and targets at its training points (standardized units,
    as the model holds them) and the standard deviation that takes standardized units back to the modelling
    scale: every log score is reported on that scale so that the two models compare."""
    X = model.train_inputs[0]
    with torch.no_grad():
        # a multi-task model's noise is per task (botorch's HadamardGaussianLikelihood): it needs the task column
        noisy = model.likelihood(model.forward(X), *([X[..., -1:]] if isinstance(model, MultiTaskGP) else []))
        K = noisy.covariance_matrix
        K = K.to_dense() if hasattr(K, "to_dense") else K
    tf = getattr(model, "outcome_transform", None)
    sd = float(tf.stdvs.reshape(-1)[0]) if tf is not None and hasattr(tf, "stdvs") else 1.0
    return noisy.mean.detach().reshape(-1), K.detach(), model.train_targets.detach().reshape(-1), sd


def _loo(joint: tuple[Tensor, Tensor, Tensor, float], evaluate: Tensor, condition: Tensor) -> Tensor:
    """Leave-one-out log predictive densities of the points ``evaluate`` (indices, all in ``condition``), each
    given the other ``condition`` points, with the hyperparameters fixed (Rasmussen & Williams 2006, eq. 5.10-5.12:
    one inverse, no refit)."""
    m, K, y, sd = joint
    Ks = K[condition][:, condition]
    jitter = 1e-8 * float(Ks.diagonal().mean())
    L, info = torch.linalg.cholesky_ex(Ks + jitter * torch.eye(len(condition), dtype=Ks.dtype))
    if int(info):  # not positive definite even with jitter: no evidence either way
        return torch.full((len(evaluate),), float("nan"), dtype=DTYPE)
    Kinv = torch.cholesky_inverse(L)
    alpha = Kinv @ (y - m)[condition]
    pos = torch.searchsorted(condition, evaluate)
    d = Kinv.diagonal()[pos]
    var, resid = 1.0 / d, alpha[pos] / d
    return -0.5 * torch.log(2 * math.pi * var) - 0.5 * resid**2 / var - math.log(sd)


def loo_scores(model: Any) -> Tensor:
    """The leave-one-out log predictive density of each of this campaign's own points (task 0 of a multi-task
    model, every point of a single-task one; in the order given), on the modelling scale."""
    joint = _joint(model)
    own = _own_index(model, len(joint[2]))
    return _loo(joint, own, torch.arange(len(joint[2])))


def loo_score(model: Any) -> float:
    """Their sum: the leave-one-out estimate of the model's expected log predictive density for this campaign."""
    return float(loo_scores(model).sum())


def threshold(tests: int) -> float:
    """Standard errors a gain must exceed when ``tests`` campaigns are tested side by side: the one-standard-error
    rule's one-sided level (about 16 %) shared among them (Bonferroni), so that the chance that *some* unrelated
    campaign passes stays that of one test (module docstring, "Several campaigns"). One test: exactly 1."""
    return SE_RULE if tests <= 1 else NormalDist().inv_cdf(1.0 - (1.0 - NormalDist().cdf(SE_RULE)) / tests)


def _clearly_better(d: Tensor, tests: int = 1) -> tuple[bool, float, float]:
    """``(better, gain, se)`` for pointwise log-score differences ``d``: the one-standard-error rule, with the
    threshold of :func:`threshold` when ``tests`` campaigns are tested together."""
    gain, se = float(d.sum()), float((len(d) * d.var()).sqrt()) if len(d) > 1 else float("inf")
    return math.isfinite(gain) and gain > threshold(tests) * se, gain, se


def _train_x(model: MultiTaskGP) -> Tensor:
    """The model's training inputs (task column last): gpytorch keeps them as a tuple, typed by torch as a Module's
    attribute (Tensor | Module)."""
    return cast(tuple[Tensor, ...], model.train_inputs)[0]


def _own_index(model: Any, n: int) -> Tensor:
    if isinstance(model, MultiTaskGP):
        return torch.nonzero(_train_x(model)[:, -1] == 0).reshape(-1)
    return torch.arange(n)


def guarded_multitask(
    single: Any,
    X_own: Tensor,
    y_own: Tensor,
    related: Sequence[tuple[str, Tensor, Tensor]],
    *,
    warm: dict[tuple, dict[str, Tensor]] | None = None,
    **fit_kw: Any,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The objective's model with the "no harm" guard: ``(model, report)``, where ``model`` is a multi-task GP
    with the related campaigns that help predict this campaign, or ``single`` (the model without transfer, fitted
    on the own points ``X_own, y_own``) when none does; ``report`` says per related campaign whether it was used,
    its learned correlation and why. See the module docstring ("No harm") for the reasoning.

    ``warm``: fitted hyperparameters by tuple of used task names, updated here (a speed-up only)."""
    warm = {} if warm is None else warm
    related = [task for task in related if len(task[1])]
    names = [name for name, _, _ in related]
    key = tuple(names)
    mt = fit_multitask(X_own, y_own, related, init=warm.get(key), **fit_kw)
    warm[key] = hyperparameters(mt)
    corr = task_correlations(mt)
    n = len(X_own)
    if n < MIN_OWN_FOR_CHECK:  # leave-one-out on one or two points predicts from one or none: no test possible
        why = f"used untested: {n} own point(s), leave-one-out needs {MIN_OWN_FOR_CHECK}"
        return mt, {name: {"used": True, "correlation": corr.get(name), "why": why} for name in names}
    joint = _joint(mt)
    tasks_col = _train_x(mt)[:, -1]
    own = _own_index(mt, len(joint[2]))
    base = _loo(joint, own, own)  # the same hyperparameters, the related points left out
    report: dict[str, dict[str, Any]] = {}
    keep = []
    related_names: list[str] = getattr(mt, "related_names", [])
    for t, name in enumerate(related_names, start=1):
        cond = torch.nonzero((tasks_col == 0) | (tasks_col == t)).reshape(-1)
        # per own point: how much better it is predicted with this task's points than without them
        used, gain, se = _clearly_better(_loo(joint, own, cond) - base, tests=len(related_names))
        what = f"log score {gain:+.2f}, standard error {se:.2f}, over this campaign's {n} points"
        report[name] = {
            "used": used,
            "correlation": corr.get(name),
            "loo_gain": round(gain, 3) if math.isfinite(gain) else None,
            "loo_gain_se": round(se, 3) if math.isfinite(se) else None,
            "why": f"its points clearly improve the leave-one-out prediction ({what})"
            if used
            else f"dropped: its points do not clearly improve the leave-one-out prediction ({what})",
        }
        keep.append(used)
    if not any(keep):
        return single, report
    if not all(keep):  # refit without the dropped ones' points: they also shaped the shared hyperparameters
        # (the dropped tasks keep their index with no rows, so the fit starts from the one above: a cold fit of
        # the multi-task model costs about five warm ones)
        mt = fit_multitask(
            X_own,
            y_own,
            [task if k else (task[0], task[1][:0], task[2][:0]) for task, k in zip(related, keep)],
            init=hyperparameters(mt),
            **fit_kw,
        )
        corr = task_correlations(mt)
        for name, k in zip(names, keep):
            if k:
                report[name]["correlation"] = corr.get(name)
    # the kept campaigns together, with the refitted hyperparameters, must still clearly help
    joint = _joint(mt)
    own = _own_index(mt, len(joint[2]))
    better, gain, se = _clearly_better(_loo(joint, own, torch.arange(len(joint[2]))) - _loo(joint, own, own))
    if not better:
        for name in (name for name, k in zip(names, keep) if k):
            report[name].update(
                used=False,
                why=(
                    f"dropped with the other kept campaigns: together they do not clearly improve the leave-one-out "
                    f"prediction of this campaign's {n} points (log score {gain:+.2f}, standard error {se:.2f})"
                ),
            )
        return single, report
    return mt, report
