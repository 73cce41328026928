"""Acquisition variants that exist only for the strategy pilots (RESULTS-strategy.md, "How the default was chosen"),
not for campaigns.

``ei_ts`` (pilot E: analytic LogEI and a Thompson sample alternating by trial count) and ``mix`` (UCB and a Thompson
sample alternating) were tried and not adopted. They live here, outside :mod:`labloop`, so that the production
strategy's options are exactly the documented, tested ones (:class:`labloop.spec.BotorchOptions`).
``replay_tables.py`` builds :class:`PilotStrategy`, which accepts them on top of every production option, so a pilot
is rerun as it was:

    python benchmarks/replay_tables.py --options '{"acquisition": "ei_ts", "kernel": "matern"}' \\
        --runs benchmarks/results/strategy_pilots/E.jsonl --seeds 5
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from labloop.spec import BotorchOptions
from labloop.strategy.base import Observation
from labloop.strategy.bayes import BayesAsk, BotorchStrategy

PILOT_ACQUISITIONS = ("mix", "ei_ts")


class PilotOptions(BotorchOptions):
    """The production options, plus the pilot-only acquisitions."""

    # the production Literal, widened by the pilot-only values (hence the ignore)
    acquisition: Literal["auto", "logei", "qlognei", "ts", "ucb", "mix", "ei_ts"] = Field(  # type: ignore[assignment]
        "auto",
        description="The production values, plus mix: UCB (even trial counts) / Thompson sample (odd); "
        "ei_ts: LogEI (even) / Thompson sample (odd; pools only, LogEI elsewhere).",
    )


class _PilotState(BayesAsk):
    def _acquisition_kind(self, model: Any, outputs: Any, m: int) -> str:
        kind = self.s.options["acquisition"]
        if kind == "mix":  # alternate: exploit (UCB, small beta) / explore (Thompson sample) by trial count
            return "ucb" if self.count % 2 == 0 else "ts"
        if kind == "ei_ts":  # alternate: exploit (LogEI) / explore (Thompson sample) by trial count
            return "logei" if self.count % 2 == 0 or self.pool is None else "ts"
        return super()._acquisition_kind(model, outputs, m)


class PilotStrategy(BotorchStrategy):
    """:class:`BotorchStrategy` that also accepts ``acquisition: mix | ei_ts`` (benchmark pilots only)."""

    options_model = PilotOptions

    def bookkeeping(
        self, observations: list[Observation], pending: list[dict[str, Any]], fixed: dict[str, Any] | None = None
    ) -> BayesAsk:
        return _PilotState(self, observations, pending, fixed)
