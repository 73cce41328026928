"""Parameter encoding: campaign values <-> the numeric spaces botorch works in.

Over 500 lines, on purpose: the two spaces and the maps between them must agree column by column for every
parameter kind, and one module keeps that agreement readable in one place (compositions are in ``simplex``).

Two spaces, so that optimizers never see a Cartesian product and models still see good features:

* **search space** ``X`` (``d`` columns, what acquisition optimizers and candidate pools use): one column per
  continuous / integer / discrete parameter, scaled to ``[0, 1]`` (log-scaled where ``log: true``); one column per
  categorical parameter holding its *code* ``0 .. k-1`` (a botorch ``cat_dims`` dimension); one column per
  composition component holding its fraction of ``total`` (an equality constraint ``sum = 1`` ties them).
  Fixed parameters have no column. Linear constraints are rewritten as botorch ``(indices, coefficients, rhs)``
  inequalities on these columns.
* **feature space** (``f`` columns, what the GP kernel sees), computed by :meth:`SearchSpace.features` inside the
  model as an input transform (:class:`FeatureMap`): numeric columns pass through, a categorical code becomes a
  one-hot block or the choice's user-supplied descriptors (min-max scaled to ``[0, 1]``).

Decoding snaps to what the lab can do: integers are rounded, discrete levels and categorical codes go to the
nearest allowed value, compositions on a grid are rounded with the largest-remainder rule so that they still sum
to ``total``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.models.transforms.input import InputTransform
from torch import Tensor

from labloop.errors import LabloopError
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    CompositionParameter,
    ContinuousParameter,
    DiscreteParameter,
    FixedParameter,
    IntegerParameter,
    LinearConstraint,
)

from .simplex import simplex_from_cube, simplex_grid, snap_simplex

DTYPE = torch.double
_TOL = 1e-6


@dataclass(frozen=True)
class Column:
    """One search-space column: which parameter (and composition component) it encodes, and how."""

    name: str  # the trial parameter this column decodes to (a component name for compositions)
    param: str  # the campaign parameter it belongs to (the composition group's name for components)
    kind: str  # 'continuous' | 'integer' | 'discrete' | 'categorical' | 'component'
    lower: float = 0.0
    upper: float = 1.0
    log: bool = False
    levels: tuple[float, ...] = ()  # discrete levels (raw units) or categorical codes
    choices: tuple[str, ...] = ()
    total: float = 1.0
    step: float | None = None


class SearchSpace:
    """The encoding of a campaign's parameters; see the module docstring for the two spaces."""

    def __init__(self, parameters: Sequence[Any], constraints: Sequence[LinearConstraint] = ()):
        self.parameters = list(parameters)
        self.columns: list[Column] = []
        self.fixed: dict[str, Any] = {}
        self.groups: list[list[int]] = []  # column indices of each composition group
        self._descriptors: dict[int, np.ndarray] = {}  # categorical column -> (k x m) scaled descriptors
        for p in self.parameters:
            if isinstance(p, ContinuousParameter):
                self.columns.append(Column(p.name, p.name, "continuous", p.lower, p.upper, p.log))
            elif isinstance(p, IntegerParameter):
                self.columns.append(
                    Column(
                        p.name,
                        p.name,
                        "integer",
                        p.lower,
                        p.upper,
                        p.log,
                        levels=tuple(range(p.lower, p.upper + 1)) if p.upper - p.lower <= 10_000 else (),
                    )
                )
            elif isinstance(p, DiscreteParameter):
                lo, hi = min(p.values), max(p.values)
                if lo == hi:  # a single level is a fixed value
                    self.fixed[p.name] = p.values[0]
                    continue
                self.columns.append(Column(p.name, p.name, "discrete", lo, hi, levels=tuple(p.values)))
            elif isinstance(p, CategoricalParameter):
                col = Column(
                    p.name,
                    p.name,
                    "categorical",
                    0.0,
                    float(len(p.choices) - 1),
                    levels=tuple(float(i) for i in range(len(p.choices))),
                    choices=tuple(p.choices),
                )
                given = p.descriptors
                if given is None and p.encoding != "one_hot":  # SMILES -> RDKit descriptors (.chem)
                    from .chem import descriptors

                    given = descriptors(p.name, list(p.choices), p.encoding)
                if given is not None:
                    d = np.array([given[c] for c in p.choices], dtype=float)
                    span = d.max(0) - d.min(0)
                    d = (d - d.min(0)) / np.where(span > 0, span, 1.0)
                    self._descriptors[len(self.columns)] = d
                self.columns.append(col)
            elif isinstance(p, FixedParameter):
                self.fixed[p.name] = p.value
            elif isinstance(p, CompositionParameter):
                start = len(self.columns)
                for c in p.components:
                    self.columns.append(Column(c, p.name, "component", 0.0, p.total, total=p.total, step=p.step))
                self.groups.append(list(range(start, len(self.columns))))
            else:  # pragma: no cover - labloop.spec's Parameter union is closed
                raise LabloopError(f"unknown parameter type {type(p).__name__}")
        if not self.columns:
            raise LabloopError(
                "the search space has no free parameter (all are fixed)",
                "make at least one parameter continuous, integer, discrete, categorical or a composition",
            )
        self.index = {c.name: i for i, c in enumerate(self.columns)}
        # botorch's (indices, coefficients, rhs) rows: each linear constraint gives one per bound it has
        self.inequality_constraints: list[tuple[Tensor, Tensor, float]] = [
            x for i, c in enumerate(constraints) for x in self._constraint(c, i)
        ]
        self.equality_constraints = [(torch.tensor(g), torch.ones(len(g), dtype=DTYPE), 1.0) for g in self.groups]
        self._check_feasible()

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_spec(cls, spec: CampaignSpec) -> SearchSpace:
        return cls(spec.parameters, spec.constraints)

    def _constraint(self, c: LinearConstraint, i: int) -> list[tuple[Tensor, Tensor, float]]:
        """``lower <= sum_p a_p v_p <= upper`` with ``v_p = lo_p + (hi_p - lo_p) x_p`` -> botorch ``>=`` rows."""
        idx, coef, offset = [], [], 0.0
        for name, a in c.coefficients.items():
            if name in self.fixed:
                v = self.fixed[name]
                if not isinstance(v, (int, float)):
                    raise LabloopError(
                        f"constraints[{i}]: parameter '{name}' is not numeric", "constrain numeric parameters only"
                    )
                offset += a * float(v)
                continue
            col = self.columns[self.index[name]]
            if col.kind == "categorical" or col.log:
                raise LabloopError(
                    f"constraints[{i}]: '{name}' is {'categorical' if col.kind == 'categorical' else 'log-scaled'}, "
                    "so a linear constraint on it is not linear in the search space",
                    "constrain linear-scale numeric parameters only",
                )
            idx.append(self.index[name])
            coef.append(a * (col.upper - col.lower))
            offset += a * col.lower
        out = []
        ix = torch.tensor(idx, dtype=torch.long)
        cf = torch.tensor(coef, dtype=DTYPE)
        if c.lower is not None:
            out.append((ix, cf, float(c.lower - offset)))
        if c.upper is not None:
            out.append((ix, -cf, float(offset - c.upper)))
        return out

    def _check_feasible(self) -> None:
        """Linear program: is there any point of the box satisfying every constraint? Fail before any experiment."""
        if not self.inequality_constraints:
            return
        from scipy.optimize import linprog

        d = self.dim
        a_ub, b_ub = [], []
        for ix, cf, rhs in self.inequality_constraints:  # sum cf x >= rhs  <=>  -cf x <= -rhs
            row = np.zeros(d)
            row[ix.numpy()] = -cf.numpy()
            a_ub.append(row)
            b_ub.append(-rhs)
        a_eq = [np.isin(np.arange(d), g).astype(float) for g in self.groups] or None
        b_eq = [1.0] * len(self.groups) or None
        bounds = [(0.0, 1.0) if c.kind != "categorical" else (0.0, c.upper) for c in self.columns]
        res = linprog(
            np.zeros(d),
            A_ub=np.array(a_ub),
            b_ub=np.array(b_ub),
            A_eq=a_eq and np.array(a_eq),
            b_eq=b_eq,
            bounds=bounds,
            method="highs",
        )
        if res.status != 0:
            raise LabloopError(
                "the constraints cannot all be satisfied within the parameter bounds",
                "check the constraints' limits and signs against the bounds",
            )

    # --------------------------------------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        return len(self.columns)

    @property
    def bounds(self) -> Tensor:
        """``2 x d`` bounds of the search space."""
        b = torch.zeros(2, self.dim, dtype=DTYPE)
        for i, c in enumerate(self.columns):
            b[1, i] = c.upper if c.kind == "categorical" else 1.0
        return b

    @property
    def cat_dims(self) -> dict[int, list[float]]:
        return {i: list(c.levels) for i, c in enumerate(self.columns) if c.kind == "categorical"}

    @property
    def discrete_dims(self) -> dict[int, list[float]]:
        """Integer / discrete columns with their allowed (scaled) values; huge integer ranges stay continuous."""
        out = {}
        for i, c in enumerate(self.columns):
            if c.kind in ("integer", "discrete") and c.levels:
                out[i] = sorted({self._scale(c, float(v)) for v in c.levels})
        return out

    @property
    def is_continuous(self) -> bool:
        return all(c.kind in ("continuous", "component") and c.step is None for c in self.columns)

    def names(self) -> list[str]:
        return [c.name for c in self.columns] + list(self.fixed)

    # ------------------------------------------------------------------------------------------ encode/decode
    @staticmethod
    def _scale(c: Column, v: float) -> float:
        if c.kind == "component":
            return v / c.total
        if c.log:
            return (math.log(v) - math.log(c.lower)) / (math.log(c.upper) - math.log(c.lower))
        return (v - c.lower) / (c.upper - c.lower)

    @staticmethod
    def _unscale(c: Column, x: float) -> float:
        if c.kind == "component":
            return x * c.total
        if c.log:
            return math.exp(math.log(c.lower) + x * (math.log(c.upper) - math.log(c.lower)))
        return c.lower + x * (c.upper - c.lower)

    def encode(self, params: dict[str, Any]) -> Tensor:
        """One trial's parameter values -> a ``d`` search-space row. Raises ``LabloopError`` for bad values."""
        x = torch.empty(self.dim, dtype=DTYPE)
        for i, c in enumerate(self.columns):
            if c.name not in params:
                raise LabloopError(f"parameter '{c.name}' is missing from {params}", "give a value for every parameter")
            v = params[c.name]
            if c.kind == "categorical":
                if str(v) not in c.choices:
                    raise LabloopError(
                        f"'{v}' is not a choice of '{c.name}' (choices: {list(c.choices)})",
                        "use one of the listed choices",
                    )
                x[i] = float(c.choices.index(str(v)))
                continue
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise LabloopError(f"parameter '{c.name}' must be a number, got {v!r}", "give a number") from None
            lo, hi = (0.0, c.total) if c.kind == "component" else (c.lower, c.upper)
            if not (math.isfinite(fv) and lo - 1e-9 * max(1.0, abs(lo)) <= fv <= hi + 1e-9 * max(1.0, abs(hi))):
                raise LabloopError(
                    f"parameter '{c.name}' = {v!r} lies outside [{lo:g}, {hi:g}]",
                    "keep values within the parameter's bounds",
                )
            x[i] = min(max(self._scale(c, fv), 0.0), 1.0)
        return x

    def encode_many(self, rows: Sequence[dict[str, Any]]) -> Tensor:
        """``n`` parameter dicts -> ``n x d``: column by column with numpy (10,000 rows in milliseconds, where a
        campaign of thousands of trials re-encodes them on every ask); a row that does not fit is found again by
        :meth:`encode`, row by row, for its precise error."""
        if not rows:
            return torch.empty(0, self.dim, dtype=DTYPE)
        try:
            return self._encode_columns(rows)
        except (KeyError, ValueError, TypeError):
            return torch.stack([self.encode(r) for r in rows])

    def _encode_columns(self, rows: Sequence[dict[str, Any]]) -> Tensor:
        out = np.empty((len(rows), self.dim))
        for i, c in enumerate(self.columns):
            vals = [r[c.name] for r in rows]
            if c.kind == "categorical":
                code = {ch: float(j) for j, ch in enumerate(c.choices)}
                out[:, i] = [code[str(v)] for v in vals]
                continue
            if any(isinstance(v, (str, bytes)) for v in vals):
                raise ValueError("text in a numeric column")
            a = np.asarray(vals, dtype=float)
            lo, hi = (0.0, c.total) if c.kind == "component" else (c.lower, c.upper)
            if not (
                np.isfinite(a).all()
                and (a >= lo - 1e-9 * max(1.0, abs(lo))).all()
                and (a <= hi + 1e-9 * max(1.0, abs(hi))).all()
            ):
                raise ValueError("outside the bounds")
            if c.kind == "component":
                x = a / c.total
            elif c.log:
                x = (np.log(a) - math.log(c.lower)) / (math.log(c.upper) - math.log(c.lower))
            else:
                x = (a - c.lower) / (c.upper - c.lower)
            out[:, i] = np.clip(x, 0.0, 1.0)
        return torch.as_tensor(out, dtype=DTYPE)

    def snap(self, X: Tensor) -> Tensor:
        """Move ``... x d`` search-space points onto what the lab can do (levels, codes, composition grid)."""
        X = X.clone()
        for i, c in enumerate(self.columns):
            if c.kind == "categorical":
                X[..., i] = X[..., i].round().clamp(0, c.upper)
            elif c.kind in ("integer", "discrete"):
                raw = _unscale_t(c, X[..., i].clamp(0.0, 1.0))
                if c.kind == "integer":
                    v = raw.round().clamp(c.lower, c.upper)
                else:
                    lv = torch.tensor(c.levels, dtype=X.dtype)
                    v = lv[(raw.unsqueeze(-1) - lv).abs().argmin(-1)]
                X[..., i] = _scale_t(c, v)
            else:
                X[..., i] = X[..., i].clamp(0.0, 1.0)
        for g in self.groups:
            X[..., g] = snap_simplex(X[..., g], self.columns[g[0]].step, self.columns[g[0]].total)
        return X

    def decode(self, x: Tensor) -> dict[str, Any]:
        """A ``d`` search-space row -> the trial's parameter values (snapped; fixed parameters included)."""
        x = self.snap(x.reshape(1, -1))[0]
        out: dict[str, Any] = {}
        for i, c in enumerate(self.columns):
            v = float(x[i])
            if c.kind == "categorical":
                out[c.name] = c.choices[int(round(v))]
            elif c.kind == "integer":
                out[c.name] = int(round(self._unscale(c, v)))
            elif c.kind == "discrete":
                out[c.name] = min(c.levels, key=lambda lv: abs(lv - self._unscale(c, v)))
            elif c.kind == "component":
                val = self._unscale(c, v)
                out[c.name] = round(val / c.step) * c.step if c.step else val
                if c.step:  # keep grid values free of float noise (0.30000000000000004)
                    out[c.name] = round(out[c.name], max(0, 12 - int(math.log10(max(c.total, 1e-12)))))
            else:
                out[c.name] = self._unscale(c, v)
        out.update(self.fixed)
        return out

    def decode_many(self, X: Tensor) -> list[dict[str, Any]]:
        return [self.decode(x) for x in X]

    def feasible(self, X: Tensor, tol: float = 1e-6) -> Tensor:
        """``... x d`` -> ``...`` bool: bounds, equality and inequality constraints hold."""
        ok = ((X >= self.bounds[0] - tol) & (X <= self.bounds[1] + tol)).all(-1)
        for ix, cf, rhs in self.inequality_constraints:
            ok &= (X[..., ix] * cf).sum(-1) >= rhs - tol
        for g in self.groups:
            ok &= (X[..., g].sum(-1) - 1.0).abs() <= 1e-4
        return ok

    # ------------------------------------------------------------------------------------------------- sampling
    def sample(self, n: int, seed: int = 0, skip: int = 0) -> Tensor:
        """``n x d`` feasible space-filling points: scrambled Sobol (seeded), compositions via sorted-gap simplex
        mapping, snapped; rows violating linear constraints are rejected. ``skip`` continues the same sequence."""
        from torch.quasirandom import SobolEngine

        d = self.dim
        engine = SobolEngine(max(d, 1), scramble=True, seed=seed)
        if skip:
            engine.fast_forward(skip)
        out: list[Tensor] = []
        drawn = 0
        while len(out) < n:
            U = engine.draw(max(4 * n, 64)).to(DTYPE)
            drawn += len(U)
            X = U.clone()
            for i, c in enumerate(self.columns):
                if c.kind == "categorical":
                    X[:, i] = (U[:, i] * len(c.choices)).floor().clamp(max=len(c.choices) - 1)
            for g in self.groups:
                X[:, g] = simplex_from_cube(U[:, g])
            X = self.snap(X)
            X = X[self.feasible(X)]
            out.extend(X)
            if drawn > 200_000 and not out:
                raise LabloopError(
                    "no random point satisfies the constraints (the feasible region is tiny)",
                    "loosen the constraints or give seed points",
                )
        return torch.stack(out[:n])

    def grid(self, limit: int = 5000) -> Tensor | None:
        """All points of a fully discrete space (``m x d``) when there are at most ``limit``; else None."""
        per_param: list[Tensor] = []  # blocks of columns, each as a (k x width) table of options
        total = 1
        gi = {g[0]: g for g in self.groups}
        in_group = {i for g in self.groups for i in g}
        for i, c in enumerate(self.columns):
            if i in gi:
                col0 = self.columns[i]
                if not col0.step:
                    return None
                opts = simplex_grid(len(gi[i]), int(round(col0.total / col0.step)))
            elif i in in_group:
                continue
            elif c.kind == "categorical":
                opts = torch.tensor(c.levels, dtype=DTYPE)[:, None]
            elif c.kind in ("integer", "discrete") and c.levels:
                opts = torch.tensor(self.discrete_dims[i], dtype=DTYPE)[:, None]
            else:
                return None
            total *= len(opts)
            if total > limit:
                return None
            per_param.append(opts)
        X = per_param[0]
        for block in per_param[1:]:
            X = torch.cat([X.repeat_interleave(len(block), 0), block.repeat(len(X), 1)], 1)
        return X[self.feasible(X)]

    # ------------------------------------------------------------------------------------------------ features
    def feature_owners(self) -> list[str]:
        """The campaign parameter of each feature column (for importance reports)."""
        out = []
        for i, c in enumerate(self.columns):
            if c.kind == "categorical":
                width = self._descriptors[i].shape[1] if i in self._descriptors else len(c.choices)
                out += [c.param] * width
            else:
                out.append(c.name)  # a numeric or component column names itself
        return out

    def features(self, X: Tensor) -> Tensor:
        """``... x d`` search space -> ``... x f`` kernel features (one-hot or descriptors for categoricals)."""
        if not any(c.kind == "categorical" for c in self.columns):
            return X
        parts = []
        for i, c in enumerate(self.columns):
            if c.kind != "categorical":
                parts.append(X[..., i : i + 1])
                continue
            code = X[..., i].round().clamp(0, len(c.choices) - 1).long()
            if i in self._descriptors:
                table = torch.as_tensor(self._descriptors[i], dtype=X.dtype)
                parts.append(table[code])
            else:
                parts.append(torch.nn.functional.one_hot(code, len(c.choices)).to(X.dtype))
        return torch.cat(parts, -1)


class FeatureMap(InputTransform, torch.nn.Module):
    """Botorch input transform ``... x d -> ... x f`` applying :meth:`SearchSpace.features` on train and eval,
    so that acquisition functions are optimized in the search space while the kernel sees one-hot/descriptors."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.transform_on_train = True
        self.transform_on_eval = True
        self.transform_on_fantasize = True

    def transform(self, X: Tensor) -> Tensor:
        return self.space.features(X)

    def equals(self, other: InputTransform) -> bool:
        return isinstance(other, FeatureMap) and other.space is self.space


def _scale_t(c: Column, v: Tensor) -> Tensor:
    if c.log:
        return (v.log() - math.log(c.lower)) / (math.log(c.upper) - math.log(c.lower))
    return (v - c.lower) / (c.upper - c.lower)


def _unscale_t(c: Column, x: Tensor) -> Tensor:
    if c.log:
        return (math.log(c.lower) + x * (math.log(c.upper) - math.log(c.lower))).exp()
    return c.lower + x * (c.upper - c.lower)


# ---------------------------------------------------------------------------------------------------- pools
class CandidatePool:
    """A finite set of allowed points (rows of a CSV, or an enumerated grid): proposals may only be its rows.

    ``X`` is the ``m x d`` search-space encoding; :meth:`index_of` finds a trial's row so that measured, failed
    and pending rows are excluded from proposals.
    """

    def __init__(self, space: SearchSpace, rows: Sequence[dict[str, Any]], X: Tensor | None = None):
        if len(rows) == 0:
            raise LabloopError("the candidate pool is empty", "give a candidates CSV with at least one row")
        self.space = space
        self.rows = [dict(r) for r in rows]
        self.X = space.encode_many(self.rows) if X is None else X
        self.keys = [self._key(x) for x in space.snap(self.X)]
        self._index: dict[tuple, int] = {}
        for i, k in enumerate(self.keys):
            self._index.setdefault(k, i)

    @classmethod
    def from_grid(cls, space: SearchSpace, X: Tensor) -> CandidatePool:
        return cls(space, space.decode_many(X), X)

    @staticmethod
    def _key(x: Tensor) -> tuple:
        return tuple(round(float(v), 7) for v in x)

    def __len__(self) -> int:
        return len(self.rows)

    def index_of(self, params: dict[str, Any]) -> int | None:
        """The pool row equal to ``params`` (after encoding), or None."""
        try:
            x = self.space.encode(params)
        except LabloopError:
            return None
        return self._index.get(self._key(self.space.snap(x[None])[0]))
