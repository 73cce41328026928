"""Reading a campaign file: YAML to :class:`CampaignSpec`, and pydantic's errors turned into one line per problem
(``experiments/x.yaml: parameters[2].upper: lower (400) must be below upper (300)``), never a traceback."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from .campaign import CampaignSpec
from .strategy import OptionsError


# --------------------------------------------------------------------------------------------------- loading
def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("continuous", "integer", "discrete", "categorical", "fixed", "composition", "linear"):
            continue  # discriminator tag: not part of the user's path
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_FIXES = {
    "extra_forbidden": "remove it or correct its spelling",
    "missing": "add it",
    "union_tag_invalid": "use one of the listed types",
    "literal_error": "use one of the listed values",
    "enum": "use one of the listed values",
    "float_parsing": "give a number",
    "int_parsing": "give a whole number",
    "bool_parsing": "give true or false",
}


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at ``loc`` of a campaign file (for 'unknown field': the answer, not a pointer)."""
    import types
    import typing

    t: Any = CampaignSpec
    for part in loc:
        while True:  # strip Annotated / Optional wrappers
            origin = typing.get_origin(t)
            if origin is typing.Annotated:
                t = typing.get_args(t)[0]
            elif origin in (typing.Union, types.UnionType):
                members = [a for a in typing.get_args(t) if a is not type(None)]
                tagged = [
                    m
                    for m in members
                    if isinstance(m, type)
                    and issubclass(m, BaseModel)
                    and getattr(m.model_fields.get("type"), "default", None) == part
                ]
                if tagged:
                    t = tagged[0]
                    break
                if len(members) != 1:
                    return []
                t = members[0]
            else:
                break
        if (
            isinstance(t, type)
            and issubclass(t, BaseModel)
            and getattr(t.model_fields.get("type"), "default", None) == part
        ):
            continue  # the discriminator tag pydantic puts in the path
        origin = typing.get_origin(t)
        if isinstance(part, int) and origin is list:
            t = typing.get_args(t)[0]
        elif origin is dict:
            t = typing.get_args(t)[1]
        elif isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
            t = t.model_fields[part].annotation
        else:
            return []
    while typing.get_origin(t) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(t) if a is not type(None)]
        if len(members) != 1:
            return []
        t = members[0]
    if isinstance(t, type) and issubclass(t, BaseModel):
        return list(t.model_fields)
    return []


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``file: field.path: message (fix: ...)``."""
    lines = []
    for err in exc.errors():
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, OptionsError):  # one line per bad strategy option, with its own path
            where = _loc(err["loc"])
            where = "" if where == "(top level)" else where + "."
            lines += [
                f"{source}: {where}options{'.' + k if k else ''}: {m} (fix: {fix})" for k, m, fix in error.problems
            ]
            continue
        msg = err["msg"].removeprefix("Value error, ")
        fix = _FIXES.get(err["type"])
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            allowed = _fields_at(err["loc"][:-1])
            if allowed:
                fix = f"{fix}; the fields here are: {', '.join(allowed)}"
        where = _loc(err["loc"])  # a rule across fields names its own path in the message
        lines.append(
            f"{source}: {'' if where == '(top level)' else where + ': '}{msg}" + (f" (fix: {fix})" if fix else "")
        )
    return "\n".join(lines)


def _non_finite(data: Any, where: tuple[Any, ...] = ()) -> list[tuple[str, float]]:
    """Every NaN or infinity in parsed YAML, with its path (``lab.options.noise``)."""
    if isinstance(data, float) and not math.isfinite(data):
        return [(_loc(where), data)]
    if isinstance(data, dict):
        return [b for k, v in data.items() for b in _non_finite(v, (*where, k))]
    if isinstance(data, list):
        return [b for i, v in enumerate(data) for b in _non_finite(v, (*where, i))]
    return []


def parse_spec(data: Any, source: str = "<campaign>") -> CampaignSpec:
    """Validate already-parsed YAML/JSON data; raise :class:`SpecError` naming ``source`` and the field path."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: the campaign file must be a mapping of fields, got {type(data).__name__}",
            "start from experiments/thinfilm.yaml",
        )
    bad = _non_finite(data)
    if bad:  # options of plugins, simulators and strategies are free-form: no field type stops a .nan there
        raise SpecError(
            "\n".join(f"{source}: {where}: {v} is not a finite number" for where, v in bad), "give a finite number"
        )
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(source, exc)) from None


def read_spec_text(path: str | Path) -> str:
    """The campaign file's text (stored verbatim with the campaign, together with its hash)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read the file: {exc}", "check permissions and that it is UTF-8 text") from None


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but a date that cannot exist (``2027-13-45``) is a YAML error with its line, not a bare
    ValueError from deep inside the constructor."""


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{node.value}' is not a real date ({exc})", node.start_mark
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def spec_from_text(text: str, source: str) -> CampaignSpec:
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(exc, "problem", exc))
        fix = (
            "write a real day as YYYY-MM-DD"
            if "is not a real date" in problem
            else "fix the YAML syntax (indentation, colons, quotes)"
        )
        raise SpecError(f"{source}: not valid YAML{where}: {problem}", fix) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value YAML cannot build, e.g. a date 2027-13-45
        raise SpecError(
            f"{source}: a value is not what it looks like: {exc}",
            "check dates (YYYY-MM-DD, a real day) and numbers in the file",
        ) from None
    return parse_spec(data, source)


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign file."""
    return spec_from_text(read_spec_text(path), str(path))


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
