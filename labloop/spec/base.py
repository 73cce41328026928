"""The base of every campaign-file model: unknown fields are errors, numbers are finite numbers, and a yes/no is
never taken for a 1 or a 0. Every other module of :mod:`labloop.spec` builds on :class:`_Model`."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator


def _yes_no_as_number(annotation: Any, value: Any) -> bool:
    """Whether ``value`` holds a yes/no where ``annotation`` wants a number (also inside lists, tuples and dict
    values: descriptors, levels, coefficients, bands): a slip, not a 1 or a 0."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _yes_no_as_number(args[0], value)
    if annotation in (int, float):
        return isinstance(value, bool)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return len(members) == 1 and _yes_no_as_number(members[0], value)
    if origin is list and isinstance(value, list) and args:
        return any(_yes_no_as_number(args[0], v) for v in value)
    if origin is tuple and isinstance(value, (list, tuple)) and args and Ellipsis not in args:
        return any(_yes_no_as_number(a, v) for a, v in zip(args, value))
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return any(_yes_no_as_number(args[1], v) for v in value.values())
    return False


class _Model(BaseModel):
    """Base for every spec model: unknown fields are errors (a typo must not be silently ignored), and a number is
    a finite number: NaN and infinities, and yes/no where a number belongs, are errors, not values."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_yes_no_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if field is not None and _yes_no_as_number(field.annotation, value):
                    raise ValueError(f"{key}: a yes/no (true/false) where a number belongs (fix: give a number)")
        return data
