"""An expert's belief about where the optimum lies, as a density over the search space (piBO).

Why: a chemist often knows roughly where to look ("around 450 degC", "one of these two ligands"). piBO (Hvarfner
et al., ICLR 2022) uses such a belief twice: the initial design is drawn from it instead of the whole space, and
the acquisition function is multiplied by the belief's density raised to ``beta / n`` after ``n`` trials, so the
belief steers the first proposals and fades as measurements take over. For log-valued acquisitions (all of
labloop's defaults) the product is a sum of logs.

What a wrong belief costs is measured, not assumed (archive §36): on the solid-state lab a confident belief on the
wrong side of every parameter kept all 40 trials in its corner in 10 of 10 seeds (from nothing: 8 of 10 reached the
goal). The whole initial design is drawn from the belief, none of it met the impurity ceiling, and while nothing
measured is feasible the constrained acquisition refines the best infeasible point, which lies in the belief's
corner; a weaker ``beta`` (4, 0.5) did not free it. Give widths you would bet on, or none.

The density is a product over the parameters the expert spoke about: a Gaussian in the parameter's search-space
scale (``[0, 1]``, log-scaled where the parameter is) for numeric ones, and for categorical ones the preferred
choices at full weight and every other choice at ``OTHER_CHOICE_WEIGHT``. It is unnormalized (its maximum is 1),
which the argmax of a weighted acquisition does not care about.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from labloop.spec import ExpertBelief

from .space import DTYPE, SearchSpace

OTHER_CHOICE_WEIGHT = 0.2  # prior weight of a categorical choice the expert did not prefer (preferred: 1)


class ExpertPrior(torch.nn.Module):
    """``log pi(x)`` over search-space points, and the piBO-shaped initial design (see module docstring)."""

    def __init__(self, space: SearchSpace, beliefs: dict[str, ExpertBelief]):
        super().__init__()
        self.space = space
        self.numeric: list[tuple[int, float, float]] = []  # (column, centre, width) in search-space units
        self.categorical: list[tuple[int, list[int]]] = []  # (column, preferred codes)
        for name, belief in beliefs.items():
            i = next(j for j, c in enumerate(space.columns) if c.param == name)
            col = space.columns[i]
            if belief.prefer is not None:
                self.categorical.append((i, [col.choices.index(ch) for ch in belief.prefer]))
                continue
            assert belief.center is not None and belief.width is not None, "ExpertBelief: a numeric one has both"
            c, w = float(belief.center), float(belief.width)
            centre = SearchSpace._scale(col, c)
            # the width in search-space units: how far one standard deviation moves, towards the roomier side
            edge = c + w if c + w <= col.upper else c - w
            if col.log and edge <= 0:
                edge = c * math.exp(w / max(c, 1e-300))
            width = abs(SearchSpace._scale(col, min(max(edge, col.lower), col.upper)) - centre)
            self.numeric.append((i, centre, max(width, 1e-3)))

    def forward(self, X: Tensor) -> Tensor:
        """``... x d`` search-space points -> ``...`` log densities (0 at the belief's centre)."""
        out = torch.zeros(X.shape[:-1], dtype=X.dtype)
        for i, centre, width in self.numeric:
            out = out - 0.5 * ((X[..., i] - centre) / width) ** 2
        for i, codes in self.categorical:
            code = X[..., i].round()
            liked = torch.zeros_like(code, dtype=torch.bool)
            for k in codes:
                liked |= code == k
            out = out + torch.where(liked, 0.0, math.log(OTHER_CHOICE_WEIGHT)).to(X.dtype)
        return out

    def shape(self, U: Tensor) -> Tensor:
        """Space-filling points (``n x d``, uniform numeric columns) -> the same points drawn from the belief:
        each believed numeric column through the Gaussian's quantile function (clipped to the bounds), each
        believed categorical column onto the preferred choices. Snapped; other columns are left as they are."""
        X = U.clone().to(DTYPE)
        normal = torch.distributions.Normal(0.0, 1.0)
        for i, centre, width in self.numeric:
            q = normal.icdf(U[:, i].clamp(1e-6, 1 - 1e-6))
            X[:, i] = (centre + width * q).clamp(0.0, 1.0)
        for i, codes in self.categorical:
            n = len(self.space.columns[i].choices)
            X[:, i] = torch.tensor(
                [float(codes[int(k) * len(codes) // n]) for k in U[:, i].round().tolist()], dtype=DTYPE
            )
        return self.space.snap(X)

    def weight_exponent(self, strength: float, n_observations: int) -> float:
        """piBO's ``beta / n``: the belief counts as much as ``beta`` trials' worth of evidence, then fades."""
        return float(strength) / max(1, n_observations)
