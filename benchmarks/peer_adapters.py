"""Optuna (GPSampler, TPESampler) and HEBO as peers on the pool-based lookup tables (issue 25 item 3).

Imported by ``benchmarks/peers.py`` (methods ``optuna_gp``, ``optuna_tpe``, ``hebo``); runs in the peers' own
virtualenv (see shared/PEERS.md), never in labloop's.

Neither peer can be told "only these rows", so each adapter (the same for all three, as PEERS.md asks):

* encodes the table's inputs: text columns as categorical; numeric columns with at most ``LEVELS`` distinct values
  as ordered integer levels (index into the sorted values); the other numeric columns as continuous between their
  smallest and largest value;
* starts from the same 5 seeded rows as every method (told as completed trials; Optuna's ``n_startup_trials`` and
  HEBO's ``rand_sample`` are set to 5, so their models start where the others' do);
* maps a proposal that is not an unmeasured row to the nearest unmeasured row (numeric columns scaled to [0, 1],
  plus 1 per categorical mismatch: ``Table.nearest_unmeasured``), and tells the peer what was really measured
  (Optuna: the proposed trial as FAIL and the measured row as a completed trial via ``add_trial``; HEBO: it
  observes the measured row);
* counts how often a proposal had to be mapped (``mapped``, with the median mapping distance, and how many of those
  were a row already measured): on tables whose inputs are compositions summing to 1 almost every proposal is, which
  handicaps the peer; on all-categorical tables the mapped proposals are the peer asking for a measured row again.
"""

from __future__ import annotations

import statistics
import warnings
from typing import Any

import numpy as np
import pandas as pd

LEVELS = 20  # numeric columns with at most this many distinct values are ordered integer levels


class _Encoding:
    """Table columns <-> a peer's parameters (see the module docstring)."""

    def __init__(self, table):
        self.t = table
        self.kind: dict[str, str] = {}
        self.levels: dict[str, list[Any]] = {}
        self.bounds: dict[str, tuple[float, float]] = {}
        for c in table.inputs:
            if c not in table.numeric:
                self.kind[c] = "cat"
                self.levels[c] = sorted(table.df[c].astype(str).unique().tolist())
                continue
            values = sorted(table.df[c].unique().tolist())
            if len(values) <= LEVELS:
                self.kind[c], self.levels[c] = "level", values
            else:
                self.kind[c] = "float"
                self.bounds[c] = (float(values[0]), float(values[-1]))

    def encode(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the peer's parameters."""
        row = self.t.df.iloc[i]
        out: dict[str, Any] = {}
        for c, k in self.kind.items():
            if k == "cat":
                out[c] = str(row[c])
            elif k == "level":
                out[c] = self.levels[c].index(row[c])
            else:
                out[c] = float(row[c])
        return out

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """The peer's parameters as a point in table units."""
        out: dict[str, Any] = {}
        for c, k in self.kind.items():
            v = params[c]
            if k == "cat":
                out[c] = str(v)
            elif k == "level":
                out[c] = self.levels[c][int(round(float(v)))]
            else:
                out[c] = float(v)
        return out


class _Mapped:
    """The shared part: a proposal -> an unmeasured row, and the count of mapped proposals."""

    def __init__(self, table):
        self.t = table
        self.enc = _Encoding(table)
        self.n_proposals = self.n_mapped = self.n_measured_again = 0
        self.dists: list[float] = []

    def to_row(self, params: dict[str, Any], measured: set) -> tuple[int, bool]:
        self.n_proposals += 1
        point = self.enc.decode(params)
        exact = self.t.row_of(point)
        if exact is not None and exact not in measured:
            return exact, False
        # a row already measured (a peer may propose it again): on tables where every combination of the
        # inputs is a row, this, not "off the pool", is why proposals are mapped
        self.n_measured_again += exact is not None
        i, dist = self.t.nearest_unmeasured(point, measured)
        self.n_mapped += 1
        self.dists.append(dist)
        return i, True

    def extra(self) -> dict:
        return {
            "peer_proposals": self.n_proposals,
            "peer_mapped": self.n_mapped,
            "peer_mapped_measured_row": self.n_measured_again,
            "peer_median_map_dist": round(statistics.median(self.dists), 4) if self.dists else None,
            "peer_encoding": {k: sum(1 for v in self.enc.kind.values() if v == k) for k in ("cat", "level", "float")},
        }


class _Optuna(_Mapped):
    sampler_name = ""

    def __init__(self, table, seed: int, init: list[int]):
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        super().__init__(table)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.optuna = optuna
        self.dists_ = {}
        for c, k in self.enc.kind.items():
            if k == "cat":
                self.dists_[c] = CategoricalDistribution(self.enc.levels[c])
            elif k == "level":
                self.dists_[c] = IntDistribution(0, len(self.enc.levels[c]) - 1)
            else:
                self.dists_[c] = FloatDistribution(*self.enc.bounds[c])
        self.study = optuna.create_study(
            direction="minimize" if table.minimize else "maximize", sampler=self.make_sampler(seed, len(init))
        )
        for i in init:
            self.observe(i, table.y[i])
        self._trial = None

    def make_sampler(self, seed: int, n_start: int):
        raise NotImplementedError

    def observe(self, i: int, y: float) -> None:
        self.study.add_trial(
            self.optuna.trial.create_trial(params=self.enc.encode(i), distributions=self.dists_, value=float(y))
        )

    def propose(self, measured: set) -> int:
        trial = self.study.ask(self.dists_)
        i, mapped = self.to_row(trial.params, measured)
        if mapped:  # not a row: the proposal failed, the measured row is added as its own trial
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            self._trial = None
        else:
            self._trial = trial
        return i

    def observe_proposed(self, i: int, y: float) -> None:
        if self._trial is not None:
            self.study.tell(self._trial, float(y))
            self._trial = None
        else:
            self.observe(i, y)


class OptunaGP(_Optuna):
    def make_sampler(self, seed: int, n_start: int):
        return self.optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_start)


class OptunaTPE(_Optuna):
    def make_sampler(self, seed: int, n_start: int):
        return self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_start)


def _hebo_shim() -> None:
    """HEBO 0.3.x calls ``DataFrame.append`` and numpy's removed aliases (np.float, ...): restore them."""
    for name, typ in (("float", float), ("int", int), ("bool", bool), ("object", object)):
        if name not in np.__dict__:
            setattr(np, name, typ)
    if not hasattr(pd.DataFrame, "append"):

        def append(self, other, ignore_index=False, **kw):
            other = other if isinstance(other, pd.DataFrame) else pd.DataFrame([other])
            return pd.concat([self, other], ignore_index=ignore_index)

        pd.DataFrame.append = append


class HEBOPeer(_Mapped):
    def __init__(self, table, seed: int, init: list[int]):
        _hebo_shim()
        import torch
        from hebo.design_space.design_space import DesignSpace
        from hebo.optimizers.hebo import HEBO

        super().__init__(table)
        np.random.seed(seed)
        torch.manual_seed(seed)
        spec = []
        for c, k in self.enc.kind.items():
            if k == "cat":
                spec.append({"name": c, "type": "cat", "categories": self.enc.levels[c]})
            elif k == "level":
                spec.append({"name": c, "type": "int", "lb": 0, "ub": len(self.enc.levels[c]) - 1})
            else:
                spec.append({"name": c, "type": "num", "lb": self.enc.bounds[c][0], "ub": self.enc.bounds[c][1]})
        self.opt = HEBO(DesignSpace().parse(spec), rand_sample=len(init), scramble_seed=seed)
        self.sign = 1.0 if table.minimize else -1.0  # HEBO minimizes
        for i in init:
            self.observe(i, table.y[i])

    def observe(self, i: int, y: float) -> None:
        self.opt.observe(pd.DataFrame([self.enc.encode(i)]), np.array([[self.sign * float(y)]]))

    def propose(self, measured: set) -> int:
        rec = self.opt.suggest(n_suggestions=1)
        i, _ = self.to_row(rec.iloc[0].to_dict(), measured)
        return i  # HEBO observes the row really measured (observe_proposed is not needed)
