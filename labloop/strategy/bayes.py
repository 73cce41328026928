"""The default strategy: Gaussian-process Bayesian optimization composed from botorch pieces.

Stateless: every :meth:`BotorchStrategy.ask` rebuilds everything from ``observations`` and ``pending`` (the
store is the truth), in this order:

1. **seed points** from the campaign file that are neither observed nor pending, as given;
2. **initial design** while fewer than ``strategy.initial_design`` trials exist (or fewer than two succeeded):
   scrambled Sobol points seeded by ``spec.seed`` (in pool mode: the nearest unused pool row of each);
3. **model proposals**: independent ``SingleTaskGP``\\ s (:mod:`.modeling`, ARD kernel) for each objective
   (larger-is-better scale), each outcome constraint, and a failure indicator (1 = failed) when any trial
   failed; the acquisition is ``qLogNoisyExpectedImprovement`` (one objective) or
   ``qLogNoisyExpectedHypervolumeImprovement`` (several), with outcome constraints and ``P(failure) < 1/2`` as
   smoothed constraints (so the acquisition is multiplied by the probability of feasibility); every trial in
   flight believed at the models' mean (``batch_selection``, ``_in_flight``) or as ``X_pending``; optionally
   (``nothing_feasible: feasibility``), one objective, nothing measured feasible: the probability of feasibility.
   It is optimized

   * over the candidate pool (or the enumerated grid of a small, fully discrete space) by evaluating it on every
     remaining row (sequential greedy for ``q > 1``; measured, failed and pending rows excluded). On a pool the
     default (``acquisition: auto``) is **expected improvement** over the model's best mean at a measured point:
     the analytic ``LogExpectedImprovement`` for one proposal with nothing in flight (exact, deterministic,
     ~0.1 s on 2000 rows), ``qLogExpectedImprovement`` with ``X_pending`` for batches, in-flight trials and
     constraints; on a pool that is *small* against the budget (:class:`BotorchStrategy`), **Thompson sampling**
     (one pathwise posterior sample per proposal, argmax over the free rows; a batch of independent samples is
     diverse by construction; the samples are drawn from the GP conditioned on its own mean at the pending rows, so
     trials in flight are believed, not only excluded). Measured on the benchmark tables (docs/benchmarks/archive.md
     §3): expected improvement finds the best row of the large tables sooner (Thompson samples spread over many
     near-equal rows: crossed barrel 79 vs 124 experiments), Thompson sampling that of the small ones. ``explore_below``
     optionally turns a step into a Thompson sample when the model expects almost nothing from any free row;
   * with ``optimize_acqf`` for continuous spaces (compositions as equality constraints, linear constraints as
     inequalities);
   * with ``optimize_acqf_mixed_alternating`` when integer/discrete/categorical columns are present (no Cartesian
     product is ever built).

Two extensions, each in its own module: above ``local_above`` successful measurements (``model_scope``) the
models are fitted on the points nearest the incumbent and the acquisition is optimized in their trust region
(:mod:`.large`: thousands of experiments at a cost independent of n); observations of earlier related campaigns
(``strategy.related``, ``Observation.task``) make the objective's model a multi-task GP (:mod:`.transfer`).

Each model proposal's ``info`` carries the evidence a runner and a person need: the acquisition value, the
expected improvement relative to the observed range (for the "no further improvement" stopping rule), the
prediction at the point, the parameter importance from ARD lengthscales and the model's predicted best point, and
``fallbacks``: one line for each thing that did not run as configured in that ask (a GP fit that failed or that
botorch retried, an acquisition that does not apply and what was used instead, Thompson sampling on joint samples
where the kernel has no pathwise sampler, an optimizer restart, a warm start, warp or log transform not applied).
Options are typed: :class:`labloop.spec.BotorchOptions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, cast

import gpytorch
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import LogExpectedImprovement
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.acquisition.monte_carlo import qUpperConfidenceBound
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.acquisition.prior_guided import PriorGuidedAcquisitionFunction
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.model import Model
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from labloop.spec import BotorchOptions, CampaignSpec, checked_options

from . import quiet
from .acquisition import AcquisitionMixin
from .base import Observation, Proposal
from .bookkeeping import Bookkeeping, StrategyBase
from .expert import ExpertPrior
from .feasibility import Bounds, at_least, at_most, constraint_scale, feasibility_acquisition, feasible_count
from .feasibility import kept as feasibility_kept
from .feasibility import reason as feasibility_reason
from .large import LOCAL_FIT_SUBSET, LocalRegion, local_outputs
from .modeling import ObjectiveTransform, WarpedTransform, feature_groups, fit_models, hyperparameters
from .space import DTYPE, CandidatePool
from .transfer import check_supported, guarded_multitask

# Every option, its type, default and allowed values: labloop.spec.BotorchOptions (validated when the campaign
# file is read, and again by BotorchStrategy for options given as keywords).


def _measured(ok: list[tuple[Tensor, Observation]], name: str) -> list[tuple[Tensor, float]]:
    """``(x, value)`` of each of ``ok`` whose value of ``name`` is measured and finite."""
    rows = []
    for x, o in ok:
        v = o.values.get(name)
        if v is not None and math.isfinite(float(v)):
            rows.append((x, float(v)))
    return rows


def _first_output(Z: Tensor, X: Tensor | None = None) -> Tensor:
    """The single objective's samples (output 0) of ``Z``, as a ``GenericMCObjective``."""
    return Z[..., 0]


@contextmanager
def _torch_threads(n: int):
    """Run with ``n`` torch threads, then restore. Small GP linear algebra (n <= a few thousand) gains nothing from
    threads, and on a shared 2-core machine OpenMP spin-waiting made one fit 10-40x slower (16 s vs 0.4 s measured
    at n = 200); one thread also leaves the other core to the RunEngine. The thread count is process-wide state, but
    only the strategy uses torch, and one thread at a time runs it (labloop.run.workers.AskService): RunEngines and
    drivers never see it change."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class BotorchStrategy(StrategyBase):
    """GP-based Bayesian optimization over a campaign's search space or candidate pool (see module docstring).

    ``small_pool``: a candidate pool of at most ``small_pool`` (default 2) times the campaign's budget
    (``stopping.max_trials``) rows. There the campaign can afford to explore, and with ``kernel`` and
    ``acquisition`` left at 'auto' it uses Thompson sampling on an RBF GP; on larger pools, expected improvement
    on a Matern-5/2 GP (in continuous and mixed spaces: qLogNEI on an RBF GP, botorch's defaults, unchanged
    since the demo benchmark was measured with them). Why two rules: on the 15 benchmark tables (10 seeds
    each, budget 150, benchmarks/RESULTS-strategy.md) Thompson sampling found the best row of the four small
    tables (94-178 rows) 1.3-1.9x sooner than expected improvement, and expected improvement found it sooner on
    the large ones (crossed barrel 600 rows: 79 vs 124 experiments; Buchwald-Hartwig c: 114 vs >150), where
    Thompson samples spread over many near-equal rows. The threshold was chosen on those tables; nothing
    guarantees it transfers, so both halves stay selectable (``acquisition``, ``kernel``).
    """

    name = "botorch"
    #: the options this strategy accepts (``strategy.options`` and keyword options), checked on construction
    options_model: type[BotorchOptions] = BotorchOptions

    def __init__(self, spec: CampaignSpec, candidates: CandidatePool | None = None, **options: Any):
        self.options = checked_options(self.options_model, {**spec.strategy.options, **options}, self.name).model_dump()
        super().__init__(spec, candidates, grid_limit=int(self.options["grid_limit"]))
        # Which model and acquisition 'auto' means for this campaign: fixed by the pool's size and the budget
        self.small_pool = (
            self.pool is not None and len(self.pool) <= float(self.options["small_pool"]) * spec.stopping.max_trials
        )
        if self.options["kernel"] == "auto":  # Matern-5/2 where measured better (large pools), else botorch's RBF
            large_pool = self.pool is not None and not self.small_pool
            self.options["kernel"] = "matern" if large_pool else "rbf"
        self.expert = ExpertPrior(self.space, spec.strategy.expert_prior) if spec.strategy.expert_prior else None
        if spec.strategy.related:  # refused now, not at the first model proposal (transfer.check_supported)
            check_supported(self.space, self.pool is not None)
        self._warm: dict[tuple, list] = {}  # cache of fitted hyperparameters (a speed-up, never information)
        self._warm_mt: dict[tuple, dict] = {}  # the same for the multi-task models, by related campaigns used

    # ----------------------------------------------------------------------------------------------- public
    def ask(
        self,
        n: int,
        observations: list[Observation],
        pending: list[dict[str, Any]],
        fixed: dict[str, Any] | None = None,
    ) -> list[Proposal]:
        """``n`` proposals, none equal to an observed (measured or failed) or pending point; ``fixed``: values of
        some parameters every proposal must take (the acquisition is optimized over the others; see
        :mod:`.bookkeeping`)."""
        if n < 1:
            return []
        # exact Cholesky up to 4000 points (gpytorch switches to approximate CG/Lanczos above 800 by default, which
        # is slower here and makes proposals depend on solver tolerances)
        # jitter added to a Cholesky, a stalled line search, a retried optimizer start: expected on small data,
        # handled by botorch, and noise to an operator; what matters is recorded as a fallback where it happens.
        # Captured in this thread only (labloop.strategy.quiet): RunEngines on other threads keep their warnings.
        with _torch_threads(self.options["threads"]), quiet.captured(), gpytorch.settings.max_cholesky_size(4000):
            state = self.bookkeeping(observations, pending, fixed)
            out: list[Proposal] = []
            out += state.seed_points(n)
            out += state.initial_design(n - len(out))
            if len(out) < n:
                out += state.model_proposals(n - len(out))
            return out

    def bookkeeping(
        self, observations: list[Observation], pending: list[dict[str, Any]], fixed: dict[str, Any] | None = None
    ) -> BayesAsk:
        """This ask's state: the shared bookkeeping plus the models and acquisition (override to extend)."""
        return BayesAsk(self, observations, pending, fixed)


class BayesAsk(AcquisitionMixin, Bookkeeping):
    """Everything one ``ask`` derives from the observations (the bookkeeping of :class:`Bookkeeping`, plus the
    models and the acquisition of this ask); discarded afterwards."""

    s: BotorchStrategy

    def __init__(
        self,
        strat: BotorchStrategy,
        observations: list[Observation],
        pending: list[dict[str, Any]],
        fixed: dict[str, Any] | None = None,
    ):
        # observations of earlier related campaigns (strategy.related) go to the multi-task model only: they are
        # not this campaign's trials (not taken, not counted, not the incumbent): Bookkeeping keeps them apart
        super().__init__(strat, observations, pending, fixed)
        # derived once per ask by model_proposals and reused, never carried to the next ask
        self.max_ei_rel: float | None = None  # largest relative EI over the free pool rows ('auto' on pools)
        self.prior_exponent = 0.0  # piBO's beta / n for this ask, 0 without an expert belief
        self._best_f: float | None = None  # the incumbent (see _incumbent)
        self._free_logei: tuple[Any, Tensor] | None = None  # analytic LogEI and its values on the free rows
        self.believer = False  # pool batches by Kriging believer (options.batch_selection), see _believer_pool
        self.believed: Tensor | None = None  # pending rows (model inputs) the believer conditions on first
        # every run-time fallback of this ask (a failed fit, an acquisition that could not apply, ...), one line
        # each for people; stored with each model proposal as info["fallbacks"]
        self.fallbacks: list[str] = []
        self.region: LocalRegion | None = None  # the trust region of a local model (model_scope, .large)
        self._pool_F: Tensor | None = None  # kernel features of every pool row, computed once when needed

    def shape_design(self, U: Tensor) -> Tensor:
        """Space-filling points drawn from the expert's belief instead, where there is one (and the shaped
        points still satisfy the linear constraints)."""
        if self.s.expert is None:
            return U
        X = self.s.expert.shape(U)
        ok = self.space.feasible(X)
        return torch.where(ok.unsqueeze(-1), X, U)

    # ---------------------------------------------------------------------------------------------- model
    def model_proposals(self, n: int) -> list[Proposal]:
        spec = self.s.spec
        fx = self._fx
        ok = [(x, o) for x, o in zip(self.obs_X, self.obs) if not o.failed]
        opt = self.s.options
        # each objective's measured values (None: not measured; both transforms leave those out)
        measured = {
            obj.name: [v for v in (o.values.get(obj.name) for _, o in ok) if v is not None] for obj in spec.objectives
        }
        scales = [ObjectiveTransform.infer(obj, measured[obj.name], opt["log_outcome"]) for obj in spec.objectives]
        for sc in scales:
            if opt["log_outcome"] is True and not sc.log and sc.spec.direction != "band":
                self.fallbacks.append(f"log_outcome: '{sc.spec.name}' has values <= 0: modelled without log")
        transforms: list[ObjectiveTransform | WarpedTransform] = list(scales)
        if opt["warp"]:  # Yeo-Johnson output warping (see WarpedTransform)
            transforms = [
                WarpedTransform.fit(sc, measured[obj.name], self.fallbacks) for obj, sc in zip(spec.objectives, scales)
            ]
        outputs: list[tuple[Tensor, Tensor]] = []
        for obj, tf in zip(spec.objectives, transforms):
            rows = _measured(ok, obj.name)
            X = torch.stack([r[0] for r in rows])
            outputs.append((fx(X), tf(torch.tensor([r[1] for r in rows], dtype=DTYPE)).unsqueeze(-1)))
        labels = [f"'{obj.name}'" for obj in spec.objectives]
        constraints: list[Callable[[Tensor], Tensor]] = []
        limits: dict[int, Bounds] = {}  # the same limits by output, for the probability of feasibility
        for oc in spec.outcome_constraints:
            rows = _measured(ok, oc.name)
            if len(rows) < 2:
                continue  # nothing to learn from yet
            idx = len(outputs)
            labels.append(f"outcome constraint '{oc.name}'")
            y, lo, hi = constraint_scale(
                torch.tensor([r[1] for r in rows], dtype=DTYPE), oc.lower, oc.upper, opt["log_constraint"]
            )
            outputs.append((fx(torch.stack([r[0] for r in rows])), y.unsqueeze(-1)))
            limits[idx] = (lo, hi)
            if lo is not None:
                constraints.append(at_least(idx, lo))
            if hi is not None:
                constraints.append(at_most(idx, hi))
        n_failed = sum(o.failed for o in self.obs)
        if n_failed:
            idx = len(outputs)
            labels.append("the failure model")
            outputs.append((fx(self.obs_X), torch.tensor([[float(o.failed)] for o in self.obs], dtype=DTYPE)))
            constraints.append(at_most(idx, 0.5))  # P(failure) < 1/2
            limits[idx] = (None, 0.5)
        outputs = self._localize(outputs)
        # warm start from the previous ask's hyperparameters when the outputs are the same kind (a speed-up only)
        signature = (len(outputs), len(constraints), opt["kernel"], opt["max_noise"], tuple(self.related))
        inits = self.s._warm.get(signature, ()) if opt["warm_start"] else ()
        space = None if self.pool is not None else self.space
        gps = fit_models(
            space,
            outputs,
            inits,
            labels,
            kernel=opt["kernel"],
            max_noise=opt["max_noise"],
            groups=feature_groups(self.space),
            fallbacks=self.fallbacks,
            **({"fit_subset": LOCAL_FIT_SUBSET} if self.region is not None else {}),
        ).models
        # cast: fit_models fits SingleTaskGPs, ModelListGP.models is typed as a ModuleList of any Module
        self.s._warm = {signature: [hyperparameters(cast(SingleTaskGP, gp)) for gp in gps]}
        related_report = None
        if self.related:  # the objective as task 0 of a multi-task GP with the related campaigns that pass the guard
            gps[0], related_report = guarded_multitask(
                gps[0],
                *outputs[0],
                self._related_outputs(transforms[0], outputs[0][1]),
                warm=self.s._warm_mt if opt["warm_start"] else {},
                kernel=opt["kernel"],
                related_points=int(opt["related_points"]),
                seed=self.s.seed,
                fallbacks=self.fallbacks,
            )
        model = ModelListGP(*gps)

        m = len(spec.objectives)
        X_base = outputs[0][0]
        in_flight = self.in_flight()
        X_pending = fx(in_flight) if len(in_flight) else None
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([int(opt["mc_samples"])]), seed=self.s.seed)
        single = GenericMCObjective(_first_output)
        # nothing measured is feasible yet: optionally the probability of feasibility, not constrained EI (.feasibility)
        n_feasible = feasible_count([o for _, o in ok], spec.outcome_constraints)
        explore = opt["nothing_feasible"] == "feasibility" and m == 1 and bool(limits) and n_feasible == 0
        model_a, X_base, X_pending = self._in_flight(model, X_pending, X_base, m == 1 and not explore)
        kind = "feasibility" if explore else self._acquisition_kind(model, outputs, m)
        asked = opt["acquisition"]
        what = f"acquisition '{kind}'" + (f" (from '{asked}')" if asked != kind else "")
        if explore:
            acq: AcquisitionFunction | None = feasibility_acquisition(
                [gps[i] for i in limits], list(limits.values()), X_pending
            )
        elif m > 1:
            if asked != "auto":
                self.fallbacks.append(
                    f"{what} is for one objective: {m} objectives use qLogNoisyExpectedHypervolumeImprovement"
                )
            Ys = [outputs[i][1].squeeze(-1) for i in range(m)]
            ref = []
            for obj, tf, y in zip(spec.objectives, transforms, Ys):
                if obj.reference is not None:
                    ref.append(float(tf(torch.tensor([obj.reference], dtype=DTYPE))[0]))
                else:  # nadir of what was seen, minus a tenth of the range
                    ref.append(float(y.min() - 0.1 * (y.max() - y.min() + 1e-9)))
            acq = qLogNoisyExpectedHypervolumeImprovement(
                model,
                ref_point=ref,
                X_baseline=X_base,
                sampler=sampler,
                objective=IdentityMCMultiOutputObjective(outcomes=list(range(m))),
                constraints=constraints or None,
                X_pending=X_pending,
                prune_baseline=True,
            )
        elif kind == "ucb" and not constraints:
            betas = opt["beta"] if isinstance(opt["beta"], (list, tuple)) else [opt["beta"]]
            beta = float(betas[self.count % len(betas)])  # a cycle: mostly exploit, explore every k-th trial
            acq = qUpperConfidenceBound(model_a, beta=beta, sampler=sampler, objective=single, X_pending=X_pending)
        elif kind == "ts" and not constraints and self.pool is not None:
            acq = None  # Thompson sampling over the pool, below, on the GP that believes the pending rows
            self.believed = X_pending
        elif kind == "logei":
            best_f = self._incumbent(model, outputs)
            # not with related campaigns: conditioning the multi-task GP on believed rows needs their task column,
            # which the believer does not add (the Monte Carlo form handles X_pending there)
            believer = (
                self.pool is not None and not constraints and opt["batch_selection"] == "believer" and not self.related
            )
            if believer or (X_pending is None and not constraints and n == 1):
                # exact and deterministic: the analytic form (a Kriging believer for batches and pending rows)
                acq = (
                    self._free_logei[0]
                    if self._free_logei is not None
                    else LogExpectedImprovement(cast(Model, model_a.models[0]), best_f=best_f)
                )
                self.believed = X_pending if believer and X_pending is not None else None
                self.believer = believer
            else:  # pending points and constraints need the Monte Carlo form
                acq = qLogExpectedImprovement(
                    model_a,
                    best_f=best_f,
                    sampler=sampler,
                    objective=single,
                    X_pending=X_pending,
                    constraints=constraints or None,
                )
        else:
            if kind != "qlognei":  # 'ucb' or 'ts' where they cannot apply
                why = (
                    "needs a candidate pool"
                    if kind == "ts" and self.pool is None
                    else "cannot weigh outcome constraints or failed trials"
                )
                self.fallbacks.append(f"{what} {why}: used qLogNoisyExpectedImprovement")
            acq = qLogNoisyExpectedImprovement(
                model_a,
                X_baseline=X_base,
                sampler=sampler,
                objective=single,
                X_pending=X_pending,
                constraints=constraints or None,
                prune_baseline=True,
            )

        self.kind = "ThompsonSampling" if acq is None else type(acq).__name__
        # the expert's belief weights log-valued acquisitions (piBO); Thompson samples and UCB stay unweighted
        if self.s.expert is not None and not self.kind.startswith(("Log", "qLog")):
            self.fallbacks.append(
                f"expert_prior not applied: {self.kind} is not a log-valued acquisition "
                f"(piBO weights LogEI, qLogEI, qLogNEI and qLogNEHVI)"
            )
        if self.s.expert is not None and acq is not None and type(acq).__name__.startswith(("Log", "qLog")):
            self.prior_exponent = self.s.expert.weight_exponent(spec.strategy.expert_prior_strength, len(self.obs))
            if self.pool is None:
                pend = getattr(acq, "X_pending", None)
                if pend is not None:
                    acq.set_X_pending(None)  # botorch wants pending points on the wrapper, not inside
                acq = PriorGuidedAcquisitionFunction(
                    acq, self.s.expert, log=True, prior_exponent=self.prior_exponent, X_pending=pend
                )
        cands, values = self._optimize(acq, n, model)
        info = self._explain(model, transforms, outputs)
        if self.fallbacks:  # everything that did not go as configured in this ask, for the trial's record
            info["fallbacks"] = list(self.fallbacks)
        if explore:
            info["acquisition_reason"] = feasibility_reason(len(ok), len(limits))
        elif limits and spec.outcome_constraints and n_feasible == 0:
            info["acquisition_reason"] = feasibility_kept(len(ok))
        if self.prior_exponent:
            info["expert_prior_exponent"] = self.prior_exponent
        if self.max_ei_rel is not None:  # why 'auto' chose exploitation or a Thompson sample
            info["pool_max_expected_improvement_rel"] = self.max_ei_rel
        if self.region is not None:
            info["local_model"] = self.region.describe()
        if related_report is not None:  # per earlier campaign: used or dropped, its learned correlation, and why
            info["related"] = related_report
        out = []
        for x, v in zip(cands, values):
            opt_x = x
            if self.is_taken(x):  # snapped onto an observed/pending point: fall back to space filling
                x = self.space_filling(self.count + 7919)
                if x is None:
                    break
                self.mark(x)
                # the acquisition optimum is itself evidence (for a measured point EI is ~0): keep it
                note = "the model's optimum was already measured or pending: space-filling point instead"
                out.append(
                    self.proposal(
                        x,
                        "sobol",
                        {
                            **info,
                            **self._point_info(model, transforms, outputs, opt_x, float(v)),
                            "note": note,
                            "fallbacks": [*info.get("fallbacks", []), note],
                        },
                    )
                )
                continue
            self.mark(x)
            out.append(self.proposal(x, "model", {**info, **self._point_info(model, transforms, outputs, x, float(v))}))
        return out

    def _related_outputs(self, tf, y_own: Tensor) -> list[tuple[str, Tensor, Tensor]]:
        """Each related campaign's objective data as ``(name, model inputs, t(y))`` (the same transform as this
        campaign's objective; values this campaign's transform cannot take are left out)."""
        name = self.spec.objectives[0].name
        out = []
        for task, obs in self.related.items():
            rows = [
                o
                for o in obs
                if not o.failed and o.values.get(name) is not None and math.isfinite(float(o.values[name]))
            ]
            if not rows:
                continue
            X = self._fx(self.encode([o.params for o in rows], f"related observation ({task})"))
            y = tf(torch.tensor([float(o.values[name]) for o in rows], dtype=DTYPE)).unsqueeze(-1)
            ok = torch.isfinite(y).reshape(-1)
            out.append((task, X[ok], y[ok]))
        return out

    def _acquisition_kind(self, model, outputs, m: int) -> str:
        """The acquisition this step uses: ``options.acquisition``, with 'auto' resolved (see module docstring;
        with a local model in a continuous or mixed space: LogEI against the local posterior mean's best, as on
        pools: qLogNEI's baseline of every local point costs more and adds little in a box around the centre)."""
        kind = self.s.options["acquisition"]
        if kind == "auto":
            if self.pool is not None:
                kind = self._auto_pool_kind(model, outputs, m)
            else:
                kind = "logei" if self.region is not None and m == 1 else "qlognei"
        return kind

    def _localize(self, outputs: list[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """The outputs the models are fitted on: all of them, or (``model_scope``, :mod:`.large`) each cut down to
        its ``local_points`` nearest the incumbent, with the trust region kept in ``self.region``."""
        opt = self.s.options
        scope = opt["model_scope"]
        if scope == "exact" or (scope == "auto" and len(outputs[0][0]) <= int(opt["local_above"])):
            return outputs
        if self.pool is not None:  # model inputs are kernel features already
            bounds = torch.stack([self.pool_features().min(0).values, self.pool_features().max(0).values])
            metric, fixed = None, ()
        else:  # distances in kernel features (one-hot categoricals), the box in the search space
            bounds, metric, fixed = self.space.bounds, self.space.features, tuple(self.space.cat_dims)
        local, self.region = local_outputs(outputs, bounds, int(opt["local_points"]), metric, fixed)
        return local
