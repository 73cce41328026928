"""The acquisition half of a Bayesian-optimization ask: optimizing an acquisition function over the candidate
pool (every free row, sequential greedy, Kriging believer or Thompson samples) or over the continuous/mixed search
space, choosing the pool's 'auto' acquisition and incumbent, and the evidence each model proposal carries.

A mixin of :class:`labloop.strategy.bayes.BayesAsk` (it works on that ask's state: ``self.s`` the strategy and its
options, ``self.pool``, ``self.space``, ``self.fallbacks``, ``self.region`` ...); split from bayes.py so that each
module stays readable. See the module docstring of :mod:`labloop.strategy.bayes` for why each choice is made.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import gpytorch
import torch
from botorch.acquisition.analytic import LogExpectedImprovement
from botorch.models import ModelListGP
from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating
from botorch.sampling.pathwise import draw_matheron_paths
from torch import Tensor

from labloop.errors import LabloopError

from . import quiet
from .modeling import lengthscale_importance, short_error
from .space import DTYPE


class AcquisitionMixin:
    """Acquisition optimization and explanations of one ask (mixed into :class:`~labloop.strategy.bayes.BayesAsk`)."""

    s: Any
    pool: Any
    space: Any
    spec: Any
    fallbacks: list[str]
    region: Any
    believer: bool
    believed: Tensor | None
    related: Any
    in_flight_believed = 0  # trials in flight the acquisition's model believes (search spaces, see _in_flight)
    prior_exponent: float
    max_ei_rel: float | None
    kind: str
    _best_f: float | None
    _free_logei: tuple[Any, Tensor] | None
    _pool_F: Tensor | None
    fixed_cols: dict[int, float]

    if TYPE_CHECKING:  # provided by Bookkeeping, the other base of BayesAsk (declared here for the type checker only:
        # defined at run time they would shadow Bookkeeping's in BayesAsk's MRO)
        def free_rows(self) -> Tensor: ...

        @property
        def count(self) -> int: ...

    def _fx(self, X: Tensor) -> Tensor:
        """Search space -> model inputs: kernel features in pool mode (the model is fitted on them directly, which
        is faster and lets pathwise Thompson samples run on them), the search space itself otherwise (the model's
        ``FeatureMap`` input transform featurizes, so that optimizers work in the search space)."""
        return self.space.features(X) if self.pool is not None else X

    def pool_features(self) -> Tensor:
        assert self.pool is not None
        if self._pool_F is None:
            self._pool_F = self.space.features(self.pool.X)
        return self._pool_F

    def _incumbent(self, model, outputs) -> float:
        """The value to improve on (modelling scale): the best measured value (``incumbent: observed``), or the
        largest posterior mean at a measured point (``posterior_mean``, the "plug-in" EI of Picheny et al.
        2013): with noisy measurements the best measured value is an optimistic draw, and EI against it
        believes too little improvement is left anywhere else, so it keeps resampling near that lucky row."""
        if self._best_f is None:
            if self.s.options["incumbent"] == "observed":
                self._best_f = float(outputs[0][1].max())
            else:
                with torch.no_grad(), gpytorch.settings.skip_posterior_variances():
                    self._best_f = float(model.models[0].posterior(outputs[0][0]).mean.max())
        return self._best_f

    def _auto_pool_kind(self, model, outputs, m: int) -> str:
        """'ts' on a small pool (see :attr:`BotorchStrategy.small_pool`); else 'logei', or 'ts' when the model
        expects (almost) nothing more from any free row (``explore_below``, off by default).

        Expected improvement exploits: it samples next to the best rows until the model believes nothing is left
        to gain. On the benchmark tables that belief was right on large smooth pools (crossed barrel: the best
        relative EI stays ~1e-3 until the best row is found) and wrong on small noisy ones (autoam, perovskite:
        it falls to 1e-5..1e-7 while the best row is still unmeasured, and EI then repeats near-ties). When the
        largest EI over the free rows is below ``explore_below`` of the observed range, this step is a Thompson
        sample instead: it explores where the model is unsure, in proportion to the chance of the optimum being
        there. Off by default (``explore_below: 0``): in a pilot (10 seeds, best measured value as incumbent,
        threshold 3e-4) it helped the small tables (median 41 -> 33 on autoam) and hurt Buchwald-Hartwig c and
        crossed barrel (95 -> 135, 58 -> 67); see benchmarks/RESULTS-strategy.md. The largest relative EI is
        reported either way (``pool_max_expected_improvement_rel``): it is what the model still expects from the
        pool. Several objectives always use qLogNEHVI."""
        if m > 1:
            return "logei"
        if self.s.small_pool and self.s.expert is None:  # a belief weights EI (piBO); a Thompson sample has no log
            return "ts"
        y = outputs[0][1]
        span = float(y.max() - y.min()) or 1.0
        free = self.free_rows()
        if len(free) == 0:
            return "logei"
        acq = LogExpectedImprovement(model.models[0], best_f=self._incumbent(model, outputs))
        with torch.no_grad():
            values = self._on_rows(acq, self._fx(self.pool.X[free]))
        self._free_logei = (acq, values)  # _optimize_pool reuses these when the step exploits with this LogEI
        best = float(values.max())
        self.max_ei_rel = math.exp(best) / span if best < 700 else float("inf")
        return "ts" if self.max_ei_rel < float(self.s.options["explore_below"]) else "logei"

    def _on_rows(self, acq, F: Tensor) -> Tensor:
        """``acq`` on each row of ``F`` (``r x f`` model inputs) as ``r`` values, ``max_batch_size`` rows at a
        time."""
        bs = int(self.s.options["max_batch_size"])
        return torch.cat([acq(F[a : a + bs].unsqueeze(-2)) for a in range(0, len(F), bs)])

    def _optimize(self, acq, n: int, model) -> tuple[Tensor, Tensor]:
        """``n`` search-space points (``n x d``) and their acquisition values (``n``)."""
        opt = self.s.options
        if self.pool is not None:
            return self._optimize_pool(acq, n, model)
        bounds = self.region.box if self.region is not None else self.space.bounds  # the trust region, if local
        fixed = dict(self.fixed_cols)  # an ask with fixed values: optimized over the other columns
        if fixed:
            bounds = bounds.clone()
            for i, value in fixed.items():  # a trust region's box need not hold the fixed value: widened to it
                bounds[0, i], bounds[1, i] = min(float(bounds[0, i]), value), max(float(bounds[1, i]), value)
        kwargs: dict[str, Any] = dict(
            q=n,
            num_restarts=int(opt["num_restarts"]),
            raw_samples=int(opt["raw_samples"]),
            inequality_constraints=self.space.inequality_constraints or None,
            equality_constraints=self.space.equality_constraints or None,
            fixed_features=fixed or None,
        )
        # botorch retries an optimization that failed with new initial conditions (and warns "Optimization
        # failed ..."): a fallback, recorded; other warnings go on to the filters of ask()
        # botorch draws its raw samples' seed from torch's global RNG: seeded here by the campaign's seed and the
        # trial count, so a proposal depends on the campaign, not on what else ran in the process (and the caller's
        # RNG stream is left untouched)
        with quiet.captured() as caught, torch.random.fork_rng():
            torch.manual_seed(self.s.seed * 7919 + self.count)
            # fixed columns are not searched: a space whose every discrete column is fixed is continuous here
            discrete = {i: lv for i, lv in self.space.discrete_dims.items() if i not in fixed}
            cats = {i: lv for i, lv in self.space.cat_dims.items() if i not in fixed}
            if discrete or cats:
                X, v = optimize_acqf_mixed_alternating(
                    acq, bounds=bounds, discrete_dims=discrete or None, cat_dims=cats or None, **kwargs
                )
            else:
                X, v = optimize_acqf(acq, bounds=bounds, sequential=True, **kwargs)
        for w in caught:
            if str(w.message).startswith("Optimization failed"):
                line = f"acquisition optimizer: {short_error(w.message, with_type=False)}"
                if line not in self.fallbacks:
                    self.fallbacks.append(line)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        assert v is not None  # botorch returns no values only with return_best_only=False, not used here
        X = self.space.snap(X.detach())
        return X, v.detach().reshape(-1).expand(len(X)) if v.numel() == 1 else v.detach().reshape(-1)

    def _optimize_pool(self, acq, n: int, model) -> tuple[Tensor, Tensor]:
        """Evaluate the acquisition on every free pool row (``b x 1 x f`` batches) and take the best; for ``n > 1``
        sequential greedy, each chosen row becoming pending for the next (what ``optimize_acqf_discrete`` does,
        keeping row indices). With ``acq=None``: Thompson sampling, one pathwise posterior sample per point."""
        assert self.pool is not None
        free = self.free_rows()
        if len(free) == 0:
            raise LabloopError(
                "every row of the candidate pool has been measured, failed or is pending",
                "add candidates or end the campaign",
            )
        if self.region is not None:  # a local model: the free rows inside its trust region, if there are any
            inside = free[self.region.inside(self.pool_features()[free])]
            free = inside if len(inside) else free
        F = self._fx(self.pool.X[free])
        k = min(n, len(free))
        # piBO on a pool: log acquisition + (beta / n) log belief, row by row
        log_belief = self.prior_exponent * self.s.expert(self.pool.X[free]) if self.prior_exponent else None
        picked: list[int] = []
        vals: list[float] = []
        with torch.no_grad():
            if acq is None:
                gp = self._believing(model.models[0])
                with torch.random.fork_rng():  # seeded by campaign seed and trial count; caller's RNG untouched
                    torch.manual_seed(self.s.seed * 7919 + self.count)
                    try:
                        paths = draw_matheron_paths(gp, sample_shape=torch.Size([k]))
                        samples = paths(F)  # k x m: k joint posterior samples over every free row
                    except NotImplementedError as exc:  # no pathwise sampler for this kernel: exact joint samples
                        self.fallbacks.append(
                            f"pathwise Thompson sampling unavailable for kernel '{self.s.options['kernel']}' "
                            f"({short_error(exc)}): used exact joint posterior samples over the {len(F)} free rows"
                        )
                        samples = gp.posterior(F).rsample(torch.Size([k])).reshape(k, -1)
                for j in range(k):
                    v = samples[j].clone()
                    if picked:
                        v[torch.tensor(picked)] = -float("inf")
                    i = int(v.argmax())
                    picked.append(i)
                    vals.append(float(v[i]))
            elif self.believer:
                picked, vals = self._believer_pool(acq, F, k, log_belief)
            else:
                base_pending = getattr(acq, "X_pending", None)
                for j in range(k):
                    self._pick_row(acq, F, picked, vals, log_belief)
                    if j + 1 < k:
                        chosen = F[torch.tensor(picked)]
                        acq.set_X_pending(chosen if base_pending is None else torch.cat([base_pending, chosen]))
        return self.pool.X[free[torch.tensor(picked)]], torch.tensor(vals, dtype=DTYPE)

    def _believing(self, gp):
        """``gp`` conditioned on its own posterior mean at the pending rows (the Kriging believer), or ``gp`` when
        nothing is pending. Why for Thompson sampling: a sample drawn from the GP that ignores the trials in flight
        peaks where they already are, so with several stations the next proposal lands beside a pending one (only
        the pending row itself was excluded); believing them collapses the variance there and the sample's argmax
        goes where the model is still unsure, as the believer does for LogEI."""
        if self.believed is None or not len(self.believed):
            return gp
        mean = gp.posterior(self.believed).mean.reshape(-1, 1)
        return gp.condition_on_observations(self.believed, mean)

    def _believer_pool(self, acq, F: Tensor, k: int, log_belief: Tensor | None) -> tuple[list[int], list[float]]:
        """``k`` free rows (indices into ``F``) by the Kriging believer (Ginsbourger et al. 2010): analytic LogEI
        on every row, take the best, condition the GP on its own posterior mean there (the variance near it
        collapses, so the next pick goes where the model still expects something), raise the incumbent if that
        mean is above it, repeat. Pending rows are believed the same way before the first pick. Why: on a pool the
        Monte Carlo qLogEI of the fantasy path re-estimates every row's joint posterior with the chosen ones at
        each pick, and its first pick is not the q = 1 pick; the believer's first pick is, and each later pick
        costs one rank-one update and one analytic pass."""
        gp, best_f = acq.model, float(acq.best_f.reshape(-1)[0])
        picked: list[int] = []
        vals: list[float] = []

        def believe(gp, X: Tensor):
            mean = gp.posterior(X).mean.reshape(-1, 1)
            return gp.condition_on_observations(X, mean), float(mean.max())

        if self.believed is not None and len(self.believed):
            gp, m = believe(gp, self.believed)
            best_f = max(best_f, m)
            acq = LogExpectedImprovement(gp, best_f=best_f)
        for j in range(k):
            i = self._pick_row(acq, F, picked, vals, log_belief)
            if j + 1 < k:
                gp, m = believe(gp, F[i : i + 1])
                best_f = max(best_f, m)
                acq = LogExpectedImprovement(gp, best_f=best_f)
        return picked, vals

    def _pick_row(self, acq, F: Tensor, picked: list[int], vals: list[float], log_belief: Tensor | None) -> int:
        """The best row of ``F`` by ``acq`` (plus the expert's log belief) not yet picked; appended to ``picked``
        and its value to ``vals``. The first pick reuses the LogEI values ``_auto_pool_kind`` computed."""
        if not picked and self._free_logei is not None and acq is self._free_logei[0] and self.region is None:
            v = self._free_logei[1].clone()  # already evaluated on these rows (all of them: no local region)
        else:
            v = self._on_rows(acq, F)
        if log_belief is not None:
            v = v + log_belief
        if picked:
            v[torch.tensor(picked)] = -float("inf")
        i = first_best(v)
        picked.append(i)
        vals.append(float(v[i]))
        return i

    def _in_flight(self, model, X_pending: Tensor | None, X_base: Tensor, single: bool) -> tuple[Any, Tensor, Any]:
        """The model the acquisition sees, its baseline and its ``X_pending``: in a search space with one objective
        (``single``: and no probability-of-feasibility step) and ``batch_selection: believer`` (the default), the
        model believing the trials in flight (:func:`believe_in_flight`); otherwise (pools believe their own way,
        several objectives, related campaigns, ``fantasy``) ``X_pending`` as Monte Carlo fantasies."""
        believe = self.pool is None and single and not self.related and self.s.options["batch_selection"] == "believer"
        if not believe or X_pending is None or not len(X_pending):
            return model, X_base, X_pending
        self.in_flight_believed = len(X_pending)
        return *believe_in_flight(model, X_pending, X_base), None

    # ------------------------------------------------------------------------------------- explanations
    def _explain(self, model, transforms, outputs) -> dict[str, Any]:
        """Parameter importance and the model's predicted best point, shared by this round's proposals."""
        gp0 = model.models[0]
        info: dict[str, Any] = {
            "importance": lengthscale_importance(gp0, self.space),
            "n_train": int(len(outputs[0][0])),
        }
        if self.in_flight_believed:  # why a proposal is not beside a trial in flight (see _in_flight)
            info["in_flight_believed"] = self.in_flight_believed
        if self.pool is not None:
            X = self.pool.X
        else:
            X = torch.cat([outputs[0][0], self.space.sample(256, seed=self.s.seed + 1)])
        with torch.no_grad(), gpytorch.settings.skip_posterior_variances():  # means only: no m x m covariance
            mean = gp0.posterior(self._fx(X)).mean.squeeze(-1)
        j = int(mean.argmax())
        info["predicted_best"] = {
            "params": self.space.decode(X[j]),
            self.spec.objectives[0].name: float(transforms[0].inverse(mean[j])),
        }
        return info

    def _point_info(self, model, transforms, outputs, x: Tensor, acq_value: float) -> dict[str, Any]:
        gp0 = model.models[0]
        with torch.no_grad():
            post = gp0.posterior(self._fx(x[None]))
            mu, sd = float(post.mean.reshape(-1)[0]), float(post.variance.reshape(-1)[0].clamp(min=0).sqrt())
        y = outputs[0][1]
        span = float(y.max() - y.min()) or 1.0
        if len(self.spec.objectives) == 1:
            # analytic EI over the best observed value, whatever acquisition chose x: E[max(f(x) - y*, 0)] =
            # sd * (z Phi(z) + phi(z)), z = (mu - y*) / sd, in the objective's modelling scale
            z = (mu - float(y.max())) / max(sd, 1e-12)
            nd = torch.distributions.Normal(0.0, 1.0)
            ei = max(sd, 1e-12) * (z * float(nd.cdf(torch.tensor(z))) + math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
        else:  # expected hypervolume improvement from the log-acquisition value
            ei = math.exp(acq_value) if acq_value < 700 else float("inf")
        lo, hi = sorted(
            (
                float(transforms[0].inverse(torch.tensor(mu - 2 * sd))),
                float(transforms[0].inverse(torch.tensor(mu + 2 * sd))),
            )
        )
        # 'improvement' is what the campaign's stopping rule reads (labloop.run.stopping): relative to the observed range
        return {
            "acquisition": acq_value,
            "acquisition_kind": self.kind,
            "expected_improvement": ei,
            "expected_improvement_rel": ei / span,
            "improvement": ei / span,
            "predicted": {
                "objective": self.spec.objectives[0].name,
                "mean": float(transforms[0].inverse(torch.tensor(mu))),
                "interval_95": [lo, hi],
            },
        }


#: values within this fraction of the best (or of 1, near zero) are a tie: rows the model cannot tell apart
TIE = 1e-9


def first_best(values: Tensor) -> int:
    """The first row whose value ties the best. Why not ``argmax``: rows the model cannot tell apart (categories
    never measured, whose one-hot columns carry no data) get the same value up to rounding noise in the last bits,
    and which one wins by noise changes with the library version and the thread count; the first of them is the
    same proposal everywhere (tests/test_strategy_pinned.py pins it)."""
    best = float(values.max())
    if not math.isfinite(best):
        return int(values.argmax())
    ties = (values >= best - TIE * max(1.0, abs(best))).nonzero()
    return int(ties[0, 0])


def believe_in_flight(model: Any, X_pending: Tensor | None, X_base: Tensor) -> tuple[Any, Tensor]:
    """The Kriging believer (Ginsbourger et al. 2010) for a search space: every GP of ``model`` (a ``ModelListGP``)
    conditioned on its own posterior mean at the trials in flight, which join the baseline; returns the believing
    model and baseline (``model`` and ``X_base`` when nothing is in flight). Why not only ``X_pending`` (the
    Monte Carlo fantasies of the joint posterior): with several stations, four or five trials are in flight at each
    ask, and the fantasy acquisition values a point only by what it adds to the best of them all, so it steers
    away from every region where a pending trial might improve, the incumbent's among them; the believer only
    collapses the variance at the pending points (the next proposal does not repeat them) and keeps the mean, as
    the pool's believer does (docs/benchmarks/archive.md section 37)."""
    if X_pending is None or not len(X_pending):
        return model, X_base
    gps = []
    with torch.no_grad():
        for gp in model.models:
            mean = gp.posterior(X_pending).mean.reshape(-1, 1)
            gps.append(gp.condition_on_observations(X_pending, mean))
    return ModelListGP(*gps), torch.cat([X_base, X_pending])
