"""Search-space encoding: every parameter type round-trips, constraints hold, infeasible spaces fail early."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labloop.errors import LabloopError
from labloop.spec import (
    CategoricalParameter,
    CompositionParameter,
    ContinuousParameter,
    DiscreteParameter,
    FixedParameter,
    IntegerParameter,
    LinearConstraint,
)

MIXED = [
    ContinuousParameter(name="power", lower=10, upper=200),
    ContinuousParameter(name="pressure", lower=1e-3, upper=10, log=True),
    IntegerParameter(name="cycles", lower=1, upper=20),
    DiscreteParameter(name="temp", values=[100, 250, 400]),
    CategoricalParameter(name="solvent", choices=["water", "ethanol", "dmso"]),
    CategoricalParameter(name="ligand", choices=["L1", "L2"], descriptors={"L1": [0.1, 3.0], "L2": [0.9, 1.0]}),
    FixedParameter(name="substrate", value="glass"),
    CompositionParameter(name="mix", components=["cs", "fa", "ma"], step=0.1),
]


@settings(max_examples=60, deadline=None)
@given(
    power=st.floats(10, 200),
    pressure=st.floats(1e-3, 10),
    cycles=st.integers(1, 20),
    temp=st.sampled_from([100.0, 250.0, 400.0]),
    solvent=st.sampled_from(["water", "ethanol", "dmso"]),
    ligand=st.sampled_from(["L1", "L2"]),
    parts=st.lists(st.integers(0, 10), min_size=2, max_size=2),
)
def test_every_parameter_type_round_trips(power, pressure, cycles, temp, solvent, ligand, parts):
    from labloop.strategy.space import SearchSpace

    a, b = sorted(parts)
    mix = {"cs": a / 10, "fa": (b - a) / 10, "ma": (10 - b) / 10}
    params = {
        "power": power,
        "pressure": pressure,
        "cycles": cycles,
        "temp": temp,
        "solvent": solvent,
        "ligand": ligand,
        "substrate": "glass",
        **mix,
    }
    space = SearchSpace(MIXED)
    x = space.encode(params)
    assert x.shape == (space.dim,) and bool(space.feasible(x))
    back = space.decode(x)
    assert math.isclose(back["power"], power, rel_tol=1e-9)
    assert math.isclose(back["pressure"], pressure, rel_tol=1e-9)
    assert back["cycles"] == cycles and back["temp"] == temp
    assert back["solvent"] == solvent and back["ligand"] == ligand and back["substrate"] == "glass"
    for k in ("cs", "fa", "ma"):
        assert math.isclose(back[k], mix[k], abs_tol=1e-9)


def test_features_one_hot_and_descriptors():
    from labloop.strategy.space import SearchSpace

    space = SearchSpace(MIXED)
    x = space.encode(
        {
            "power": 10,
            "pressure": 1,
            "cycles": 1,
            "temp": 100,
            "solvent": "dmso",
            "ligand": "L2",
            "cs": 1,
            "fa": 0,
            "ma": 0,
        }
    )
    f = space.features(x[None])[0]
    owners = space.feature_owners()
    assert len(owners) == f.numel() == space.dim - 2 + 3 + 2
    onehot = f[[i for i, o in enumerate(owners) if o == "solvent"]]
    assert onehot.tolist() == [0.0, 0.0, 1.0]
    desc = f[[i for i, o in enumerate(owners) if o == "ligand"]]
    assert desc.tolist() == [1.0, 0.0]  # min-max scaled descriptors of L2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=4, max_size=4), st.sampled_from([None, 0.1, 0.25]))
def test_snapped_compositions_sum_to_total_and_lie_on_grid(raw, step):
    import torch

    from labloop.strategy.simplex import snap_simplex as _snap_simplex

    x = _snap_simplex(torch.tensor([raw], dtype=torch.double), step, 1.0)[0]
    assert abs(float(x.sum()) - 1.0) < 1e-9 and bool((x >= 0).all())
    if step:
        units = x / step
        assert torch.allclose(units, units.round(), atol=1e-9)


def test_simplex_grid_counts_stars_and_bars():
    from labloop.strategy.simplex import simplex_grid as _simplex_grid

    assert len(_simplex_grid(6, 10)) == math.comb(15, 5)  # the OER plates' 10 at% grid over 6 elements


def test_samples_respect_linear_constraints_and_grid():
    from labloop.strategy.space import SearchSpace

    params = [
        ContinuousParameter(name="a", lower=0, upper=10),
        ContinuousParameter(name="b", lower=0, upper=10),
        IntegerParameter(name="n", lower=0, upper=5),
    ]
    space = SearchSpace(params, [LinearConstraint(coefficients={"a": 1, "b": 1}, upper=5)])
    for p in space.decode_many(space.sample(50, seed=1)):
        assert p["a"] + p["b"] <= 5 + 1e-6 and isinstance(p["n"], int)


def test_infeasible_constraints_fail_before_any_experiment():
    from labloop.strategy.space import SearchSpace

    params = [ContinuousParameter(name="a", lower=0, upper=1), ContinuousParameter(name="b", lower=0, upper=1)]
    with pytest.raises(LabloopError, match="cannot all be satisfied"):
        SearchSpace(params, [LinearConstraint(coefficients={"a": 1, "b": 1}, lower=3)])


def test_constraint_on_categorical_is_refused():
    from labloop.strategy.space import SearchSpace

    params = [CategoricalParameter(name="c", choices=["x", "y"]), ContinuousParameter(name="a", lower=0, upper=1)]
    with pytest.raises(LabloopError, match="categorical"):
        SearchSpace(params, [LinearConstraint(coefficients={"c": 1}, upper=1)])


@pytest.mark.parametrize(
    "bad,match",
    [({"power": 500}, "outside"), ({"solvent": "acetone"}, "not a choice"), ({"power": "hot"}, "must be a number")],
)
def test_bad_values_are_clear_errors(bad, match):
    from labloop.strategy.space import SearchSpace

    params = {
        "power": 10,
        "pressure": 1,
        "cycles": 1,
        "temp": 100,
        "solvent": "dmso",
        "ligand": "L2",
        "cs": 1,
        "fa": 0,
        "ma": 0,
        **bad,
    }
    with pytest.raises(LabloopError, match=match):
        SearchSpace(MIXED).encode(params)


def test_small_discrete_space_enumerates_and_large_does_not():
    from labloop.strategy.space import SearchSpace

    small = SearchSpace(
        [CategoricalParameter(name="c", choices=list("abcd")), IntegerParameter(name="n", lower=0, upper=4)]
    )
    assert small.grid().shape == (20, 2)
    assert SearchSpace(MIXED).grid() is None  # continuous columns: no enumeration


def test_pool_finds_rows_and_refuses_empty():
    from labloop.strategy.space import CandidatePool, SearchSpace

    space = SearchSpace(
        [CategoricalParameter(name="c", choices=["x", "y"]), ContinuousParameter(name="a", lower=0, upper=1)]
    )
    pool = CandidatePool(space, [{"c": "x", "a": 0.5}, {"c": "y", "a": 0.25}])
    assert pool.index_of({"c": "y", "a": 0.25}) == 1 and pool.index_of({"c": "y", "a": 0.3}) is None
    with pytest.raises(LabloopError, match="empty"):
        CandidatePool(space, [])
