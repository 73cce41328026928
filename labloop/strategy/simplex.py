"""Composition parameters' geometry: fractions of several components that sum to a total, sampled uniformly,
projected (and rounded to a grid with the largest-remainder rule) and enumerated. Pure tensor functions used by
:class:`labloop.strategy.space.SearchSpace`; split from space.py because they know nothing of the search space.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor


def simplex_from_cube(U: Tensor) -> Tensor:
    """``n x k`` uniform cube -> ``n x k`` uniform on the simplex (gaps of the sorted first ``k-1`` coordinates)."""
    n, k = U.shape
    s = torch.sort(U[:, : k - 1], dim=1).values
    edges = torch.cat([torch.zeros(n, 1, dtype=U.dtype), s, torch.ones(n, 1, dtype=U.dtype)], 1)
    return edges.diff(dim=1)


def snap_simplex(X: Tensor, step: float | None, total: float) -> Tensor:
    """Project ``... x k`` onto the simplex (clamp, renormalize) and, with a grid step, round with the
    largest-remainder rule so that the units still add up to ``total / step``."""
    X = X.clamp(min=0.0)
    s = X.sum(-1, keepdim=True)
    X = torch.where(s > 1e-12, X / s.clamp(min=1e-12), torch.full_like(X, 1.0 / X.shape[-1]))  # all ~0: centre
    if not step:
        return X
    units = int(round(total / step))
    flat = X.reshape(-1, X.shape[-1]) * units
    base = flat.floor()
    rem = flat - base
    missing = (units - base.sum(-1)).long()
    order = rem.argsort(-1, descending=True)
    ranks = order.argsort(-1)
    base = base + (ranks < missing[:, None]).to(X.dtype)
    return (base / units).reshape(X.shape)


def simplex_grid(k: int, units: int) -> Tensor:
    """All compositions of ``units`` into ``k`` non-negative parts, as fractions (``m x k``; stars and bars)."""
    rows = []
    for bars in combinations(range(units + k - 1), k - 1):
        prev, parts = -1, []
        for b in bars:
            parts.append(b - prev - 1)
            prev = b
        parts.append(units + k - 2 - prev)
        rows.append(parts)
    return torch.tensor(rows, dtype=torch.double) / units  # the search space's DTYPE
