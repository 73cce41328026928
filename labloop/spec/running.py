"""When the campaign ends (stopping rules) and how its trials share the lab (scheduling)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import _Model


# --------------------------------------------------------------------------------------------------- stopping
class StoppingSpec(_Model):
    """When the campaign ends. The first rule that fires wins and is reported with its evidence."""

    max_trials: int = Field(
        50,
        ge=1,
        description="Budget: trials run in all, failed ones included; proposals an "
        "operator rejected, and trials cancelled before anything was done to them, do not count.",
    )
    target_reached: bool = Field(True, description="Stop as soon as every objective with a target reaches it.")
    max_wall_time: float | None = Field(None, gt=0, description="Wall-clock limit in seconds.")
    no_improvement_rounds: int | None = Field(
        None,
        ge=1,
        description="Stop when the expected improvement stays below `improvement_threshold` this many rounds.",
    )
    improvement_threshold: float = Field(
        1e-3, ge=0, description="Expected improvement (relative to the objective's observed range) counted as none."
    )


# --------------------------------------------------------------------------------------------------- scheduling
class SchedulingSpec(_Model):
    """How trials share the lab."""

    mode: Literal["async", "batch", "sequential"] = Field(
        "async",
        description="async: a new trial starts whenever a first-step station frees (in-flight trials are pending "
        "points); batch: propose strategy.batch_size points, run them all, then propose again; sequential: one "
        "trial at a time.",
    )
    approval: bool = Field(False, description="Proposals wait for `labloop approve` / `labloop reject`.")
    quarantine_after: int = Field(
        3, ge=1, description="Take a station out of service after this many consecutive failed steps."
    )
    lookahead: int = Field(
        1,
        ge=0,
        le=16,
        description="async: trials proposed ahead and queued for the next free first-step station, so a station "
        "that frees never waits for the optimizer.",
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="async: at most this many trials unfinished at once (proposed, queued or walking); none: as "
        "many as the free first-step stations and lookahead allow. Why: a lab that holds many samples in long steps "
        "(four 4-crucible furnaces firing for a day) otherwise proposes most of its budget before the first result "
        "comes back, all of it from the initial design; a cap trades throughput for proposals that learn.",
    )
    pause_after_same_failures: int = Field(
        5,
        ge=0,
        description="Pause the campaign when this many trials in a row failed in a workflow step with the same "
        "cause (a systematic fault: a missing file, a broken instrument) instead of spending the budget on it; "
        "objective plugins' rejections do not count; 0 never pauses.",
    )
    on_crash: Literal["resume", "wait"] = Field(
        "resume",
        description="When the campaign's process dies under `labloop serve` (a crash, kill -9): resume restarts it "
        "at once (as `labloop resume` would); wait leaves it for an operator's `labloop resume`.",
    )
    crash_resumes: int = Field(
        3,
        ge=0,
        le=100,
        description="on_crash: resume restarts the campaign at most this many times; a campaign that keeps crashing "
        "is then left for an operator, so a crash loop stops.",
    )
