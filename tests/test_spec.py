"""Campaign files validate with messages that name the file, the field path and the fix."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from labloop.errors import SpecError
from labloop.spec import CampaignSpec, load_spec, parse_spec, spec_from_text

BASE = {
    "name": "t",
    "parameters": [{"name": "x", "type": "continuous", "lower": 0.0, "upper": 1.0}],
    "objectives": [{"name": "y", "direction": "minimize", "plugin": "reading", "options": {"field": "y"}}],
}


def _with(**changes):
    d = yaml.safe_load(yaml.safe_dump(BASE))
    d.update(changes)
    return d


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)


@given(lower=finite, upper=finite, log=st.booleans())
@settings(max_examples=200, deadline=None)
def test_continuous_bounds_accept_exactly_the_ordered_pairs(lower, upper, log):
    data = _with(parameters=[{"name": "x", "type": "continuous", "lower": lower, "upper": upper, "log": log}])
    valid = lower < upper and (not log or lower > 0)
    if valid:
        p = parse_spec(data).parameters[0]
        assert (p.lower, p.upper, p.log) == (lower, upper, log)
    else:
        with pytest.raises(SpecError) as e:
            parse_spec(data, "c.yaml")
        assert str(e.value).startswith("c.yaml: parameters[0]")


@given(lower=st.integers(-1000, 1000), upper=st.integers(-1000, 1000))
@settings(max_examples=100, deadline=None)
def test_integer_bounds(lower, upper):
    data = _with(parameters=[{"name": "n", "type": "integer", "lower": lower, "upper": upper}])
    if lower < upper:
        assert parse_spec(data).parameters[0].upper == upper
    else:
        with pytest.raises(SpecError, match=r"parameters\[0\]: lower \(.*\) must be below upper"):
            parse_spec(data, "c.yaml")


@given(value=st.one_of(st.text(min_size=1, max_size=5).filter(lambda s: not _is_number(s)), st.lists(st.integers())))
@settings(max_examples=50, deadline=None)
def test_non_numeric_bounds_are_rejected_with_their_path(value):
    data = _with(parameters=[{"name": "x", "type": "continuous", "lower": value, "upper": 1.0}])
    with pytest.raises(SpecError, match=r"c.yaml: parameters\[0\]\.lower"):
        parse_spec(data, "c.yaml")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


@given(choices=st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=8))
@settings(max_examples=50, deadline=None)
def test_categorical_choices_must_be_unique(choices):
    data = _with(parameters=[{"name": "c", "type": "categorical", "choices": choices}])
    if len(set(choices)) == len(choices):
        assert parse_spec(data).parameters[0].choices == choices
    else:
        with pytest.raises(SpecError, match="choices must be unique"):
            parse_spec(data)


def test_lower_above_upper_message_reads_like_the_style_guide():
    data = _with(parameters=[{"name": "x", "type": "continuous", "lower": 400, "upper": 300}])
    with pytest.raises(SpecError) as e:
        parse_spec(data, "experiments/x.yaml")
    assert str(e.value) == "experiments/x.yaml: parameters[0]: lower (400.0) must be below upper (300.0)"


def test_unknown_field_is_named_with_its_path_and_a_fix():
    data = _with(stopping={"max_trails": 10})
    with pytest.raises(SpecError) as e:
        parse_spec(data, "c.yaml")
    assert (
        "c.yaml: stopping.max_trails: unknown field (fix: remove it or correct its spelling; the fields here "
        "are: max_trials, target_reached" in str(e.value)
    )


def test_unknown_parameter_type_and_missing_fields():
    data = _with(parameters=[{"name": "x", "type": "continuos", "lower": 0, "upper": 1}])
    with pytest.raises(SpecError, match=r"parameters\[0\]"):
        parse_spec(data, "c.yaml")
    data = dict(BASE)
    del data["objectives"]
    with pytest.raises(SpecError, match="c.yaml: objectives: Field required"):
        parse_spec(data, "c.yaml")


def test_cross_field_checks():
    with pytest.raises(SpecError, match="parameter names must be unique"):
        parse_spec(_with(parameters=BASE["parameters"] * 2))
    with pytest.raises(SpecError, match=r"constraints\[0\] names unknown parameters \['z'\]"):
        parse_spec(_with(constraints=[{"coefficients": {"z": 1.0}, "upper": 1}]))
    with pytest.raises(SpecError, match="needs a workflow"):
        parse_spec(_with(lab={"simulator": "thinfilm"}))
    with pytest.raises(SpecError, match="band: \\[low, high\\]"):
        parse_spec(_with(objectives=[{"name": "y", "direction": "band", "plugin": "reading"}]))


def test_composition_expands_to_component_names():
    spec = parse_spec(
        _with(parameters=[{"name": "mix", "type": "composition", "components": ["a", "b", "c"], "step": 0.1}])
    )
    assert spec.parameter_names() == ["a", "b", "c"]
    with pytest.raises(SpecError, match="must divide total"):
        parse_spec(_with(parameters=[{"name": "m", "type": "composition", "components": ["a", "b"], "step": 0.3}]))


def test_objective_goals():
    spec = CampaignSpec.model_validate(
        _with(
            objectives=[
                {"name": "r", "direction": "minimize", "target": 5, "plugin": "p"},
                {"name": "c", "direction": "maximize", "target": 1e-2, "plugin": "p"},
                {"name": "b", "direction": "band", "band": [1, 2], "plugin": "p"},
            ]
        )
    )
    r, c, b = spec.objectives
    assert r.reached(5.0) and r.reached(4.9) and not r.reached(5.1) and not r.reached(math.nan)
    assert c.reached(0.02) and not c.reached(0.005)
    assert b.reached(1.5) and not b.reached(2.5)
    assert r.better(1, 2) and c.better(2, 1) and b.better(1.5, 1.9)


def test_files_unreadable_or_not_yaml(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\nparameters: 3\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML at line \d+"):
        load_spec(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(scalar)


# ------------------------------------------------------------------------------------------ strategy options
def _strategy_yaml(section: str) -> str:
    return yaml.safe_dump(BASE) + section


@pytest.mark.parametrize(
    "section, expected",
    [
        (
            "strategy:\n  options: {kernel: maternn}\n",
            "c.yaml: strategy.options.kernel: 'maternn' is not allowed (allowed: one of 'auto', 'matern', 'rbf', "
            "'matern_gamma', 'additive', 'edbo') (fix: use an allowed value (BotorchOptions in labloop/spec/strategy.py "
            "describes each option))",
        ),
        (
            "strategy:\n  options: {acquisition: ei}\n",
            "c.yaml: strategy.options.acquisition: 'ei' is not allowed (allowed: one of 'auto', 'logei', 'qlognei', 'ts', "
            "'ucb')",
        ),
        (
            "strategy:\n  options: {acquisiton: ts}\n",
            "c.yaml: strategy.options.acquisiton: unknown option 'acquisiton' for the botorch strategy (allowed options: "
            "acquisition, kernel, incumbent,",
        ),
        (
            "strategy:\n  options: {mc_samples: 0}\n",
            "c.yaml: strategy.options.mc_samples: 0 is not allowed (allowed: an integer >= 1 and <= 65536)",
        ),
        (
            "strategy:\n  options: {beta: [2.0, -1]}\n",
            "c.yaml: strategy.options.beta: [2.0, -1] is not allowed (allowed: a number > 0 or a list of (a number > 0))",
        ),
        (
            "strategy:\n  options: {log_outcome: sometimes}\n",
            "c.yaml: strategy.options.log_outcome: 'sometimes' is not allowed (allowed: one of 'auto' or true or false)",
        ),
        (
            "strategy:\n  options: {incumbent: best}\n",
            "c.yaml: strategy.options.incumbent: 'best' is not allowed (allowed: one of 'posterior_mean', 'observed')",
        ),
        (
            "strategy:\n  name: random\n  options: {kernel: rbf}\n",
            "c.yaml: strategy.options.kernel: unknown option 'kernel' for the random strategy (allowed options: "
            "grid_limit) (fix: remove it or correct its spelling)",
        ),
    ],
)
def test_bad_strategy_options_name_the_field_the_value_and_the_allowed_values(section, expected):
    with pytest.raises(SpecError) as e:
        spec_from_text(_strategy_yaml(section), "c.yaml")
    assert str(e.value).startswith(expected)


def test_several_bad_options_are_reported_one_line_each():
    with pytest.raises(SpecError) as e:
        spec_from_text(_strategy_yaml("strategy:\n  options: {kernel: x, warp: maybe, nope: 1}\n"), "c.yaml")
    lines = str(e.value).splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "strategy.options.kernel",
        "strategy.options.warp",
        "strategy.options.nope",
    ]


def test_valid_strategy_options_and_plugin_options():
    # every value docs/research/optimizer.md lists, and the documented spelling (an options mapping under strategy)
    for acq in ("auto", "logei", "qlognei", "ts", "ucb"):
        for kernel in ("matern", "rbf", "additive", "matern_gamma", "edbo"):
            s = spec_from_text(
                _strategy_yaml(f"strategy:\n  options: {{acquisition: {acq}, kernel: {kernel}}}\n"), "c.yaml"
            )
            assert s.strategy.options == {"acquisition": acq, "kernel": kernel}
    s = spec_from_text(
        _strategy_yaml(
            "strategy:\n  options: {beta: [0.5, 2], max_noise: null, log_outcome: true,"
            " warp: true, explore_below: 3.0e-4}\n"
        ),
        "c.yaml",
    )
    assert s.strategy.options["beta"] == [0.5, 2] and s.strategy.options["log_outcome"] is True
    # a plugin strategy's options are its own business: passed on as given
    s = spec_from_text(
        _strategy_yaml("strategy:\n  name: mylab.strategies:Grid\n  options: {kernel: anything}\n"), "c.yaml"
    )
    assert s.strategy.options == {"kernel": "anything"}


def test_bundled_campaign_files_stay_valid():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))
    assert files
    for f in files:
        assert load_spec(f).strategy.name == "botorch"


def test_options_models_describe_every_field():
    from labloop.spec import STRATEGY_OPTIONS

    for model in STRATEGY_OPTIONS.values():
        assert model.model_config.get("extra") == "forbid"
        assert all(f.description for f in model.model_fields.values()), model.__name__


def test_spec_package_reexports_every_model_and_keeps_the_schema_whole():
    """labloop.spec is a package split by concern; `from labloop.spec import X` is the public way in, and the root
    model's schema still reaches every section's model (the split moved code, it changed no field)."""
    import labloop.spec as spec_pkg

    for name in spec_pkg.__all__:
        assert getattr(spec_pkg, name) is not None, name
    defs = set(spec_pkg.CampaignSpec.model_json_schema()["$defs"])
    assert defs == {
        "BatchSpec",
        "BestSpec",
        "CalibrationPolicy",
        "CategoricalParameter",
        "CompositionParameter",
        "ConsumablesSpec",
        "ContinuousParameter",
        "DeviceSpec",
        "DiscreteParameter",
        "ExpertBelief",
        "FixedParameter",
        "IdentitySpec",
        "IntegerParameter",
        "LabSpec",
        "LinearConstraint",
        "ObjectiveSpec",
        "OutcomeConstraintSpec",
        "PriorDataSpec",
        "SchedulingSpec",
        "SharingSpec",
        "StepSpec",
        "StockSpec",
        "StoppingSpec",
        "StrategySpec",
        "SuspenderSpec",
    }
