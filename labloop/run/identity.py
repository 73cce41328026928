"""Sample identity: before a step on a station that has a barcode reader (campaign file ``lab.identity.readers``),
read the id of the sample it holds and compare it with the sample the store puts there.

The lab has the last word, as on resume (:mod:`~labloop.run.recovery`): when the code read is not the sample the
store puts in the station (after ``lab.identity.rereads`` more tries, which clear a transient misread), nothing
more is done to that sample. The step is recorded as failed with a reason naming the station, the id expected and
the id read; an operator alert and an audit entry (``sample.mismatch``, with what was read) are written; the
station is taken out of service (it holds a crucible whose identity is in doubt, so no other sample may be put
in it, and the robot does not take it out: an operator does). The store's record of the sample is not changed:
what the lab said is kept beside it, never written over it. A misread that a re-read fixes passes, with an audit
entry (``sample.reread``) and a log line.

A read is a question asked before the step, not data of the trial: it is a plain call on the reader (trigger,
wait, get the signal), not a bluesky run, so it adds no documents to the trial's record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .context import RunContext
from .executor import StepFailed, TrialContext

_log = logging.getLogger("labloop")

#: audit actions: a failed check (an operator alert) and a misread cleared by a re-read (a record only)
MISMATCH = "sample.mismatch"
REREAD = "sample.reread"
#: seconds a reader's trigger may take before the read counts as a no-read
READ_TIMEOUT = 30.0


class SampleMismatch(StepFailed):
    """The station holds another sample than the store says (or its reader read nothing): the trial fails and its
    sample stays where it is for an operator."""


def reader_of(spec: Any, station: str) -> tuple[str, str] | None:
    """``(device, signal)`` of the reader of ``station`` in the campaign file, or None."""
    identity = spec.lab.identity if spec.lab is not None else None
    name = identity.readers.get(station) if identity is not None else None
    if not name:
        return None
    device, _, signal = name.partition(".")
    return device, signal or "code"


def read_code(reader: Any, signal: str, presented: str) -> str | None:
    """One read: trigger the reader when it can be (a failed or late Status is a no-read), then get ``signal``.
    A reader with a ``sample`` signal (an Instrument that refuses to trigger empty) is told the sample presented
    to it, as the store has it; the code it reads comes from the label, not from that signal."""
    try:
        sample = getattr(reader, "sample", None)
        if sample is not None and hasattr(sample, "put"):
            sample.put(presented)
        trigger = getattr(reader, "trigger", None)
        if callable(trigger):
            status = trigger()
            wait = getattr(status, "wait", None)
            if callable(wait):
                wait(READ_TIMEOUT)
        value = getattr(reader, signal).get()
    except Exception as exc:  # noqa: BLE001 - a reader that fails to read gave no read; the retries decide
        _log.info("barcode read on %s failed: %s: %s", getattr(reader, "name", "?"), type(exc).__name__, exc)
        return None
    return str(value) if value not in (None, "") else None


class IdentityCheck:
    """The check before a step; one per :class:`~labloop.run.walk.TrialWalker`."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def check(self, guard: Any, tc: TrialContext, index: int, station: str) -> None:
        """Read the sample ``station`` holds and compare it with the trial's sample, which the store puts there
        (``tc.location`` is the location the store committed with the last move). Raises :class:`SampleMismatch`
        after recording the failed step, the alert and the audit entry, and taking the station out of service."""
        c = self.ctx
        where = reader_of(c.spec, station)
        if where is None or tc.location != station:
            return
        device, signal = where
        expected = tc.sample_id
        rereads = c.spec.lab.identity.rereads  # type: ignore[union-attr]  # a reader implies the section
        reads: list[str | None] = []
        for _ in range(1 + rereads):
            reads.append(read_code(c.lab[device], signal, expected))
            if reads[-1] == expected:
                break
        detail = {"trial": tc.number, "station": station, "reader": device, "expected": expected, "reads": reads}
        if reads[-1] == expected:
            if len(reads) > 1:
                _log.info("trial %s: %s read %s after %d tries", tc.number, station, expected, len(reads))
                c.store.audit(c.campaign.id, REREAD, detail, user="labloop")
            return
        read = next((r for r in reversed(reads) if r is not None), None)
        step = c.workflow[index]
        if read is None:
            said = f"no barcode read ({len(reads)} tries)"
        else:
            said = f"read sample '{read}'" + self._elsewhere(read)
        reason = (
            f"sample identity: {station} holds a crucible that {said}, but the store says sample '{expected}' "
            f"is there; nothing more is done to it"
        )
        guard()  # a runner that lost its lease records nothing
        step_id = c.store.start_step(tc.trial_id, index, step.label, step.kind, 1, station)
        c.store.finish_step(step_id, "failed", None, reason)
        c.alert(
            MISMATCH,
            f"trial {tc.number}: {reason}. {station} is out of service: check the crucible's label by hand and "
            f"take it out (the campaign goes on with the other stations, or pauses for `labloop resume`)",
            {**detail, "read": read, "step": step.label},
        )
        c.res.quarantine(station, f"sample identity in doubt: expected '{expected}', read '{read or 'nothing'}'")
        raise SampleMismatch(step, index, reason, station)

    def _elsewhere(self, read: str) -> str:
        """Where the store puts the sample whose id was read, if it is one of this campaign's."""
        c = self.ctx
        seen = next((s.location for s in c.store.samples(c.campaign.id) if s.sample_id == read), None)
        return f" (the store has that sample in {seen})" if seen else ""


def locating(spec: Any, lab: Any) -> Callable[[str], str | None]:
    """Where the lab says a sample is, for resume (:func:`~labloop.run.recovery.plan_resumptions`): the lab's own
    answer (:meth:`~labloop.run.lab.Lab.locate`), else the barcode readers: a station with a reader holds the
    sample when two reads in a row both name it. Why two: a misread names a neighbour's crucible (one digit off),
    so one read could put a sample where another sits; two that agree on this one do not, and anything less leaves
    the question to an operator, as before (``sample.unlocated``)."""
    identity = spec.lab.identity if spec.lab is not None else None
    readers = []  # (station, reader device, its signal)
    for station in identity.readers if identity is not None else {}:
        found = reader_of(spec, station)
        if found is not None and found[0] in lab.devices:
            readers.append((station, lab.devices[found[0]], found[1]))

    def locate(sample: str) -> str | None:
        where = lab.locate(sample)
        if where:
            return str(where)
        for station, reader, signal in readers:
            if read_code(reader, signal, sample) == sample and read_code(reader, signal, sample) == sample:
                return str(station)
        return None

    return locate
