"""Malformed campaign files, generated (issue 21 item 5): whatever is wrong in the file, `labloop validate` and
`labloop run` name it and exit 2, without a traceback and without storing anything. Each generated file breaks the
bundled transparent-conductor campaign (which validates) in one way that can never be right: a value that is not a
finite number where a number belongs, an unknown field, a missing required field, descriptors for a choice that
does not exist or a choice without descriptors, an impossible date."""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import yaml
from campaign_files import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labloop.cli import app

TCO = REPO / "experiments" / "transparent_conductor.yaml"
BASE = yaml.safe_load(TCO.read_text())
CHOICES = BASE["parameters"][0]["choices"]

#: Paths of fields that take a number (and the lab's free-form options, which a simulator reads as numbers).
NUMBER_PATHS = (
    [("parameters", i, k) for i in range(1, 6) for k in ("lower", "upper")]
    + [("parameters", 0, "descriptors", c, j) for c in CHOICES for j in range(3)]
    + [
        ("objectives", 0, "target"),
        ("objectives", 1, "reference"),
        ("outcome_constraints", 0, "lower"),
        ("stopping", "max_trials"),
        ("stopping", "max_wall_time"),
        ("lab", "time_scale"),
        ("lab", "options", "noise"),
        ("seed",),
        ("strategy", "initial_design"),
    ]
)
MAPPINGS = [
    (),
    ("parameters", 0),
    ("parameters", 3),
    ("objectives", 1),
    ("outcome_constraints", 0),
    ("stopping",),
    ("strategy",),
    ("lab",),
    ("workflow", 2),
]
REQUIRED = [
    ("name",),
    ("parameters",),
    ("objectives",),
    ("parameters", 2, "name"),
    ("parameters", 1, "type"),
    ("parameters", 0, "choices"),
    ("objectives", 0, "plugin"),
    ("objectives", 1, "direction"),
    ("workflow", 1, "kind"),
    ("lab", "simulator"),
]


def _not_a_number_text(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return True
    return False


BAD_NUMBERS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, None]),
    st.text(min_size=1, max_size=8).filter(_not_a_number_text),
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=2),
    st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1, max_size=2),
)


def _set(data, path, value):
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _get(data, path):
    for part in path:
        data = data[part]
    return data


@st.composite
def malformed(draw) -> str:
    data = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["number", "unknown", "missing", "descriptor", "no_descriptor", "date"]))
    if kind == "number":
        path = draw(st.sampled_from(NUMBER_PATHS))
        value = draw(BAD_NUMBERS)
        if value is None and path[-1] in ("target", "reference", "max_wall_time"):
            value = math.nan  # None is these fields' "not given"
        _set(data, path, value)
    elif kind == "unknown":
        where = _get(data, draw(st.sampled_from(MAPPINGS)))
        where["zz_" + draw(st.from_regex(r"[a-z_]{1,10}", fullmatch=True))] = draw(st.integers())
    elif kind == "missing":
        path = draw(st.sampled_from(REQUIRED))
        del _get(data, path[:-1])[path[-1]]
    elif kind == "descriptor":
        name = draw(st.from_regex(r"[A-Z][a-z]?", fullmatch=True).filter(lambda c: c not in CHOICES))
        data["parameters"][0]["descriptors"][name] = draw(st.lists(st.floats(-5, 5), min_size=3, max_size=3))
    elif kind == "no_descriptor":
        del data["parameters"][0]["descriptors"][draw(st.sampled_from(CHOICES))]
    text = yaml.safe_dump(data, sort_keys=False)
    if kind == "date":
        year = draw(st.integers(2000, 2100))
        month, day = draw(
            st.one_of(
                st.tuples(st.integers(13, 99), st.integers(1, 28)),
                st.tuples(st.integers(1, 12), st.integers(32, 99)),
                st.tuples(st.just(2), st.integers(30, 31)),
            )
        )
        text += f"sharing: {{embargo_until: {year:04d}-{month:02d}-{day:02d}}}\n"
    return text


def _refused(args: list[str]):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and "error:" in r.output
    return r


def test_the_unbroken_file_validates():
    r = CliRunner().invoke(app, ["validate", str(TCO)])
    assert r.exit_code == 0, r.output


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=malformed())
def test_malformed_campaign_files_are_clear_errors_and_store_nothing(text):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "campaign.yaml"
        path.write_text(text)
        _refused(["validate", str(path)])
        _refused(["run", str(path), "--store", f"sqlite:///{folder / 'labloop.db'}", "--time-scale", "1e6"])
        assert sorted(p.name for p in folder.iterdir()) == ["campaign.yaml"]  # no store, no lab state


def test_the_issues_examples(tmp_path):
    """The ones the issue names: descriptors for Mo, a NaN descriptor, embargo_until: 2027-13-45."""
    data = copy.deepcopy(BASE)
    data["parameters"][0]["descriptors"]["Mo"] = [0.61, 6, 2.16]
    path = tmp_path / "mo.yaml"
    path.write_text(yaml.safe_dump(data))
    assert "descriptors given for ['Mo'], which are not choices" in _refused(["validate", str(path)]).output
    data = copy.deepcopy(BASE)
    data["parameters"][0]["descriptors"]["Ta"][1] = math.nan
    path.write_text(yaml.safe_dump(data))
    assert "parameters[0].descriptors.Ta[1]: nan is not a finite number" in _refused(["validate", str(path)]).output
    path.write_text(TCO.read_text() + "sharing: {embargo_until: 2027-13-45}\n")
    out = _refused(["validate", str(path)]).output
    assert "'2027-13-45' is not a real date" in out and "line" in out and "YYYY-MM-DD" in out
