"""User-facing errors.

Operators are not programmers: every error labloop raises on purpose names the problem and the fix, and the CLI
prints it without a traceback. Anything that is not a ``LabloopError`` is a bug in labloop and is shown as such.
"""

from __future__ import annotations


class LabloopError(Exception):
    """An error an operator can act on: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  fix: {fix}")


class SpecError(LabloopError):
    """A campaign file is unreadable or inconsistent; raised before anything moves or is stored."""


class PluginError(LabloopError):
    """An entry point or ``module:attr`` reference cannot be resolved."""


class ObjectiveError(LabloopError):
    """An objective plugin could not turn a trial's documents into a value; the trial fails with this reason."""


class StoreError(LabloopError):
    """The store cannot be opened or holds nothing that was asked for."""


class DeviceError(LabloopError):
    """A device refused a command or failed while executing it (limits, faults, malformed replies)."""


class LimitError(DeviceError):
    """A setpoint lies outside the limits a device declares. Devices refuse it whatever the campaign says."""
