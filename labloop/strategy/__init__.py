"""Strategies: what to run next. ``make_strategy`` builds the one a campaign names.

``spec.strategy.name`` is ``'botorch'`` (default, :class:`BotorchStrategy`), ``'random'``
(:class:`RandomStrategy`), an entry point in ``labloop.strategies``, or a ``package.module:attribute`` callable
taking ``(spec, candidates)`` and returning an object with ``ask(n, observations, pending)`` (and, to take part in
batch sharing, a ``fixed`` keyword: parameter values every proposal must have; see :mod:`.bookkeeping`). The
built-ins' options are typed (:class:`labloop.spec.BotorchOptions`, :class:`labloop.spec.RandomOptions`) and
checked when the campaign file is read; a plugin's ``strategy.options`` reach it as given, unless the callable has an ``options_model``
attribute (a pydantic model), which then checks them here, before anything runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labloop import plugins
from labloop.errors import LabloopError
from labloop.spec import CampaignSpec, checked_options

from .base import Observation, Proposal, Strategy
from .evidence import StopEvidence, improvement_stalled

if TYPE_CHECKING:
    from .space import CandidatePool, SearchSpace

__all__ = [
    "BotorchStrategy",
    "CandidatePool",
    "Observation",
    "Proposal",
    "RandomStrategy",
    "SearchSpace",
    "StopEvidence",
    "Strategy",
    "improvement_stalled",
    "make_strategy",
]


def __getattr__(name: str) -> Any:
    """``from labloop.strategy import BotorchStrategy`` (or RandomStrategy, SearchSpace, CandidatePool) loads it on
    first use: they need torch (and botorch), which takes seconds to import, and what only needs ``Observation`` or
    ``make_strategy`` (the run loop's imports, the store's readers, a test collection) should not pay for it."""
    if name in ("SearchSpace", "CandidatePool"):
        from . import space

        return getattr(space, name)
    key = {"BotorchStrategy": "botorch", "RandomStrategy": "random"}.get(name)
    if key is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _builtin(key)


def _builtin(name: str) -> Any:
    """A built-in strategy's class, imported on first use: importing torch and botorch takes seconds, and commands
    that only read the store (status, export) or validate a spec's schema should not pay for it."""
    if name == "botorch":
        from .bayes import BotorchStrategy

        return BotorchStrategy
    if name == "random":
        from .random import RandomStrategy

        return RandomStrategy
    return None


def make_strategy(spec: CampaignSpec, candidates: CandidatePool | None = None, **options: Any) -> Strategy:
    """The strategy ``spec.strategy.name`` names, built for ``spec`` (and restricted to ``candidates`` if given,
    else to the rows of the CSV ``spec.candidates`` names, if any).

    Raises ``LabloopError`` for unknown names, infeasible spaces and bad options before any experiment runs.
    """
    if candidates is None and spec.candidates:
        from .tables import candidate_pool

        candidates = candidate_pool(spec, spec.candidates)
    name = spec.strategy.name
    factory = _builtin(name)
    if factory is None:
        factory = plugins.load(name, "labloop.strategies")
    model = getattr(factory, "options_model", None)  # a plugin may declare a pydantic model of its options
    if model is not None and name not in (
        "botorch",
        "random",
    ):  # built-ins check theirs themselves (also for keyword options)
        checked_options(model, {**spec.strategy.options, **options}, name)
    strategy = factory(spec, candidates, **options)
    if not callable(getattr(strategy, "ask", None)):
        raise LabloopError(
            f"strategy '{name}' has no ask(n, observations, pending) method",
            "a strategy plugin must return an object with ask(n, observations, pending)",
        )
    return strategy
