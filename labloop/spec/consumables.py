"""Consumables a campaign draws on: precursor stocks (grams, millilitres) and countable items (crucibles), with
how much each trial uses as a function of its parameters.

Why in the campaign file: what a recipe consumes is part of the recipe (a powder synthesis weighs out
``mass_li2co3_g`` of Li2CO3), and the optimizer must not propose a recipe the shelf cannot supply. The store keeps
the levels (labloop/store/inventory.py); this module only describes them and evaluates a trial's use.

A use is a parameter's name, a constant, or a small arithmetic formula of parameters (``+ - * /``, numbers,
parentheses), parsed with :mod:`ast` and evaluated by walking the tree: never ``eval``, so a campaign file cannot
run code. A choice test, ``(li_source == 'LiOH')``, is 1 when a categorical parameter has that choice and 0
otherwise: which powder a recipe weighs out depends on the precursor chosen (``(li_source == 'LiOH') * 0.12 *
ratio`` grams of LiOH), and a test is the one thing a categorical parameter may do in a use.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Literal, cast

from pydantic import Field, field_validator, model_validator

from .base import _Model

#: units a stock may be counted in (an item, e.g. a crucible, is counted)
UNITS = ("g", "mg", "kg", "mL", "L", "count")


class UseError(ValueError):
    """A use formula that cannot be evaluated (or parsed): says which and how to fix it."""


_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def parse_use(text: str | float | int) -> ast.expr:
    """The formula as a checked tree (numbers, names, + - * /, unary minus); raises :class:`UseError`."""
    if isinstance(text, bool):
        raise UseError("a yes/no is not an amount (fix: give a number, a parameter name or a formula)")
    if isinstance(text, (int, float)):
        return ast.Constant(float(text))
    try:
        tree = ast.parse(str(text), mode="eval").body
    except SyntaxError:
        raise UseError(
            f"'{text}' is not a formula (fix: a parameter name, a number, or e.g. 'mass_g * 0.4 + 0.1')"
        ) from None
    choices = set()  # the string constants of well-formed choice tests: the only strings a use may hold
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            test = _choice_test(node)
            if test is None:
                raise UseError(
                    f"'{text}': a comparison in a use must test one parameter against one choice, e.g. "
                    f"(li_source == 'LiOH') (fix: write it that way)"
                )
            choices.add(id(node.comparators[0]))
    for node in ast.walk(tree):
        ok = isinstance(
            node,
            (ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.USub, ast.UAdd, ast.Compare, ast.Eq, ast.NotEq, *_OPS),
        ) or (
            isinstance(node, ast.Constant)
            and ((isinstance(node.value, (int, float)) and not isinstance(node.value, bool)) or id(node) in choices)
        )
        if not ok:
            raise UseError(
                f"'{text}' uses {type(node).__name__}, which a use formula may not (fix: only parameter "
                f"names, numbers, + - * / and parentheses)"
            )
    return tree


def _number(node: ast.Constant) -> float:
    """A constant's value as a float: :func:`parse_use` admits only int and float constants (typeshed types
    ``Constant.value`` as any literal: str, bytes, complex, ...)."""
    return float(cast(float, node.value))


def _choice_test(node: ast.Compare) -> tuple[str, str, bool] | None:
    """``(parameter, choice, equal)`` of ``name == 'choice'`` (or ``!=``); None for any other comparison."""
    if len(node.ops) != 1 or not isinstance(node.ops[0], (ast.Eq, ast.NotEq)) or not isinstance(node.left, ast.Name):
        return None
    right = node.comparators[0]
    if not isinstance(right, ast.Constant) or not isinstance(right.value, str):
        return None
    return node.left.id, right.value, isinstance(node.ops[0], ast.Eq)


def names_in(tree: ast.expr) -> list[str]:
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)})


def choice_tests(tree: ast.expr) -> list[tuple[str, str]]:
    """``(parameter, choice)`` of every choice test in a parsed use."""
    tests = (_choice_test(n) for n in ast.walk(tree) if isinstance(n, ast.Compare))
    return [(t[0], t[1]) for t in tests if t is not None]


def amount_names(tree: ast.expr) -> list[str]:
    """The parameters a use takes as numbers (every name outside a choice test)."""
    tested = {id(n.left) for n in ast.walk(tree) if isinstance(n, ast.Compare)}
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in tested})


def evaluate(tree: ast.expr, params: dict[str, Any]) -> float:
    """The formula's value for a trial's parameters; raises :class:`UseError` (not numeric, division by zero)."""
    if isinstance(tree, ast.Constant):
        return _number(tree)
    if isinstance(tree, ast.Name):
        v = params.get(tree.id)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise UseError(f"parameter '{tree.id}' is {v!r}, not a finite number")
        return float(v)
    if isinstance(tree, ast.Compare):
        name, choice, equal = _choice_test(tree) or ("", "", True)  # parse_use admits only choice tests
        return 1.0 if (str(params.get(name)) == choice) == equal else 0.0
    if isinstance(tree, ast.UnaryOp):
        v = evaluate(tree.operand, params)
        return -v if isinstance(tree.op, ast.USub) else v
    if isinstance(tree, ast.BinOp):
        a, b = evaluate(tree.left, params), evaluate(tree.right, params)
        if isinstance(tree.op, ast.Div) and b == 0:
            raise UseError("division by zero")
        return float(_OPS[type(tree.op)](a, b))
    raise UseError(f"cannot evaluate {type(tree).__name__}")  # pragma: no cover - parse_use refused it


def affine(tree: ast.expr) -> tuple[float, dict[str, float]] | None:
    """``(constant, {parameter: coefficient})`` when the formula is affine in the parameters (what a linear
    constraint can carry to the optimizer), None when it is not (a product or quotient of parameters)."""
    if isinstance(tree, ast.Constant):
        return _number(tree), {}
    if isinstance(tree, ast.Name):
        return 0.0, {tree.id: 1.0}
    if isinstance(tree, ast.UnaryOp):
        inner = affine(tree.operand)
        if inner is None or isinstance(tree.op, ast.UAdd):
            return inner
        return -inner[0], {k: -v for k, v in inner[1].items()}
    if isinstance(tree, ast.BinOp):
        a, b = affine(tree.left), affine(tree.right)
        if a is None or b is None:
            return None
        if isinstance(tree.op, (ast.Add, ast.Sub)):
            sign = 1.0 if isinstance(tree.op, ast.Add) else -1.0
            coef = dict(a[1])
            for k, v in b[1].items():
                coef[k] = coef.get(k, 0.0) + sign * v
            return a[0] + sign * b[0], coef
        if isinstance(tree.op, ast.Mult) and (not a[1] or not b[1]):
            (factor, lin) = (a[0], b) if not a[1] else (b[0], a)
            return factor * lin[0], {n: factor * v for n, v in lin[1].items()}
        if isinstance(tree.op, ast.Div) and not b[1] and b[0] != 0:
            return a[0] / b[0], {n: v / b[0] for n, v in a[1].items()}
    return None


class StockSpec(_Model):
    """One consumable: a precursor powder, a solvent, or countable items (``unit: count``, e.g. crucibles, which
    are clean or used: a trial uses clean ones, an operator's cleaning puts them back)."""

    unit: Literal["g", "mg", "kg", "mL", "L", "count"] = Field(description="Unit of the amounts.")
    initial: float = Field(description="What is on the shelf when the campaign starts (>= 0).")
    alert_below: float | None = Field(
        None,
        description="Alert the operator when what is left (not "
        "reserved by a trial) falls below this; closed by a refill.",
    )
    cleaning: str | None = Field(
        None,
        description="Items only: the operator's task that turns used items clean "
        "again (shown in the alert); recorded with `labloop inventory refill`.",
    )

    @model_validator(mode="after")
    def _check(self) -> StockSpec:
        for field in ("initial", "alert_below"):
            v = getattr(self, field)
            if v is not None and v < 0:
                raise ValueError(
                    f"{field}: a stock cannot hold a negative amount ({v:g}) (fix: give an amount >= 0 in {self.unit})"
                )
        if self.cleaning is not None and self.unit != "count":
            raise ValueError(
                "'cleaning' is for counted items (unit: count), not a stock in "
                f"{self.unit} (fix: remove it or use unit: count)"
            )
        return self


class ConsumablesSpec(_Model):
    """``lab.consumables``: the stocks, and what one trial uses of each."""

    stocks: dict[str, StockSpec] = Field(min_length=1, description="Stock name -> unit, initial amount, alert.")
    use: dict[str, str | float] = Field(
        default_factory=dict,
        description="Stock name -> what one trial uses: a parameter name, a number, or a "
        "formula of parameters with + - * / (e.g. 'mass_g * li_fraction'); a choice test (li_source == 'LiOH') "
        "is 1 or 0. Reserved when the trial is proposed, drawn when it starts.",
    )

    @field_validator("stocks")
    @classmethod
    def _names(cls, v: dict[str, StockSpec]) -> dict[str, StockSpec]:
        for name in v:
            if not name or len(name) > 80 or not name.replace("_", "a").replace("-", "a").isalnum():
                raise ValueError(f"stock '{name}' is not a usable name: use letters, digits, '_' or '-'")
        return v

    @model_validator(mode="after")
    def _check(self) -> ConsumablesSpec:
        for name, text in self.use.items():
            if name not in self.stocks:
                raise ValueError(
                    f"use.{name}: unknown stock '{name}' (fix: declare it under stocks, one of: "
                    f"{', '.join(self.stocks)})"
                )
            try:
                tree = parse_use(text)
            except UseError as exc:
                raise ValueError(f"use.{name}: {exc}") from None
            if isinstance(tree, ast.Constant) and _number(tree) < 0:
                raise ValueError(
                    f"use.{name}: a trial cannot use a negative amount ({_number(tree)}) (fix: give an amount >= 0)"
                )
        return self

    def trees(self) -> dict[str, ast.expr]:
        return {name: parse_use(text) for name, text in self.use.items()}

    def uses(self, params: dict[str, Any]) -> dict[str, float]:
        """What a trial with ``params`` uses of each stock; raises :class:`UseError` naming the stock."""
        out = {}
        for name, tree in self.trees().items():
            try:
                out[name] = evaluate(tree, params)
            except UseError as exc:
                raise UseError(f"lab.consumables.use.{name}: {exc}") from None
            if out[name] < 0:
                raise UseError(
                    f"lab.consumables.use.{name} is {out[name]:g} for this trial: a trial cannot "
                    f"use a negative amount (fix: a formula that stays >= 0 over the parameters' bounds)"
                )
        return out

    def unknown_parameters(self, known: set[str]) -> list[tuple[str, str]]:
        """``(stock, name)`` of every name a use formula gives that is not a parameter."""
        return [(stock, n) for stock, tree in self.trees().items() for n in names_in(tree) if n not in known]
