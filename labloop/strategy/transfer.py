"""Transfer from earlier campaigns: a multi-task GP over this campaign and related ones (``strategy.related``).

Why a multi-task GP and not pooled data. Prior data (``strategy.prior_data``) is pooled: it is believed to be the
*same* experiment. Last year's campaign on another aryl halide or another substrate is not: its optimum may sit
elsewhere, its yields on another scale, and some of it may not carry over at all. A multi-task GP (Swersky et al.
2013, "Multi-task Bayesian optimization"; Bonilla et al. 2008; botorch's ``MultiTaskGP``) models each campaign as a
task with a shared kernel over the parameters times a learned task covariance ``B`` (an ``IndexKernel``): where
the data say the tasks move together, an observation of the related task informs this one; where they do not, the
learned correlation falls towards zero and the related data are ignored. So an unrelated earlier campaign costs a
little model fitting and little else (measured with a shuffled table: BENCHMARKS.md §14). The learned correlations
are reported with every proposal (``info["related"]``), so a person sees which earlier campaign the model trusts.

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
from typing import Any, Sequence

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
            "pool the earlier data as the same experiment)")


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
    return MultiTaskGP(X, Y, task_feature=-1, output_tasks=[0], all_tasks=list(range(n_tasks)),
                       outcome_transform=Standardize(m=1), covar_module=covar)


def fit_multitask(X_own: Tensor, y_own: Tensor, related: Sequence[tuple[str, Tensor, Tensor]], *,
                  kernel: str = "matern", related_points: int = 1000, seed: int = 0,
                  init: dict[str, Tensor] | None = None, maxiter: int = 100,
                  fallbacks: list[str] | None = None) -> MultiTaskGP:
    """A ``MultiTaskGP`` whose output is this campaign (task 0) given its own ``(X_own, y_own)`` (``n x f``,
    ``n x 1``, larger is better) and each related task's ``(name, X, y)`` in the same model inputs and scale."""
    tasks = [(name, X, align(y, y_own)) for name, X, y in related if len(X)]
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
    model.related_names = [name for name, _, _ in tasks]  # for task_correlations
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


def related_tasks(observations: Sequence[Any]) -> dict[str, list[Any]]:
    """Observations of related campaigns (``task`` set), grouped by task, in order of first appearance."""
    out: dict[str, list[Any]] = {}
    for o in observations:
        if getattr(o, "task", None):
            out.setdefault(o.task, []).append(o)
    return out
