"""A strategy plugin that records what each ask saw: random points (the built-in random strategy) whose proposal
info says how many results and pending points the ask was given. Used to check what the scheduler hands the
strategy, not how well it optimizes."""

from __future__ import annotations

from typing import Any

from labloop.strategy import Proposal, RandomStrategy


class RecordingStrategy:
    def __init__(self, spec: Any, candidates: Any = None, **kw: Any):
        self.inner = RandomStrategy(spec, candidates)
        self.asks: list[tuple[int, int, int]] = []  # (n, results, pending) of every ask

    def ask(self, n: int, observations: list, pending: list) -> list:
        self.asks.append((n, len(observations), len(pending)))
        return [
            Proposal(
                p.params,
                p.source,
                {
                    **p.info,
                    "seen": len(observations),
                    "failed_seen": sum(o.failed for o in observations),
                    "pending": len(pending),
                },
            )
            for p in self.inner.ask(n, observations, pending)
        ]
