"""VISA instruments (SCPI source-measure units, spectrometers, LCR meters) through pyvisa.

Addresses are VISA resource names: ``TCPIP0::10.0.0.5::5025::SOCKET`` (raw SCPI socket), ``TCPIP0::10.0.0.5::INSTR``
(VXI-11), ``USB0::...::INSTR``, ``GPIB0::12::INSTR``, ``ASRL/dev/ttyUSB0::INSTR``. The backend is a transport
option: ``backend: "@py"`` (pyvisa-py, pure Python, the default), ``"@ivi"`` (a vendor's VISA library) or
``"FILE.yaml@sim"`` (pyvisa-sim dialogues).

A point is a SCPI query and how to read its reply (``pattern``: a regular expression whose group ``value``, or
first group, is the value; default: the whole reply) and/or a ``write`` template (``":SOUR:CURR {value:g}"``). With
``check_errors`` (default) every write is followed by ``:SYST:ERR?``: an instrument that queued an error refused
the write (:class:`RefusedError` naming the error). A command is a line sent, then (``wait``, default ``*OPC?``)
the completion query answered when the operation completed, then optionally a ``result`` query.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from .base import PointModel, RefusedError, ReplyError, Transport, socket_hung_up

_NO_ERROR = re.compile(r"^\s*[+]?0\s*,")


def _regex(v: str | None) -> str | None:
    if v is not None:
        re.compile(v)
    return v


class VisaPoint(PointModel):
    query: str | None = None
    pattern: str | None = None
    write: str | None = None
    check_errors: bool = True

    _check = field_validator("pattern")(classmethod(lambda cls, v: _regex(v)))


class VisaCommand(PointModel):
    send: str
    wait: str | None = "*OPC?"
    result: str | None = None
    pattern: str | None = None
    check_errors: bool = True

    _check = field_validator("pattern")(classmethod(lambda cls, v: _regex(v)))


class VisaTransport(Transport):
    kind = "visa"
    Point = VisaPoint
    Command = VisaCommand

    def __init__(
        self,
        address: str,
        *,
        backend: str = "@py",
        read_termination: str = "\n",
        write_termination: str = "\n",
        **options: Any,
    ):
        super().__init__(address, **options)
        self.backend, self.read_termination, self.write_termination = backend, read_termination, write_termination
        self._rm: Any = None
        self._inst: Any = None

    def _open(self) -> None:
        import pyvisa

        self._rm = pyvisa.ResourceManager(self.backend)
        self._inst = self._rm.open_resource(
            self.address,
            open_timeout=int(self.connect_timeout * 1000),
            read_termination=self.read_termination,
            write_termination=self.write_termination,
            timeout=int(self.timeout * 1000),
        )

    def _close(self) -> None:
        inst, self._inst = self._inst, None
        rm, self._rm = self._rm, None
        if inst is not None:
            inst.close()
        if rm is not None:
            rm.close()

    def _idle_dropped(self) -> bool:
        """A raw socket resource (pyvisa-py's TCPIP SOCKET session holds a plain socket) is checked for a hang-up;
        other resources learn of it on the next request."""
        try:
            session = self._inst.visalib.sessions[self._inst.session]
        except (AttributeError, KeyError, TypeError):
            return False
        return socket_hung_up(getattr(session, "interface", None))

    def _query(self, line: str, timeout: float | None = None) -> str:
        inst = self._inst
        inst.timeout = int((timeout or self.timeout) * 1000)
        try:
            return inst.query(line)
        except UnicodeDecodeError as exc:
            raise self.failure(f"raw reply {exc.object!r} to {line!r} is not text", ReplyError) from None

    def _errors_after(self, what: str) -> None:
        reply = self._query(":SYST:ERR?")
        if not _NO_ERROR.match(reply):
            if not re.match(r"^\s*[+-]?\d+\s*,", reply):
                raise self.failure(f"raw reply {reply!r} to ':SYST:ERR?' is not an error queue entry", ReplyError)
            raise self.failure(
                f"the instrument refused {what!r}: {reply.strip()}",
                RefusedError,
                "check the value and the instrument's mode against its manual",
            )

    def _parse(self, reply: str, pattern: str | None, asked: str) -> str:
        if pattern is None:
            return reply.strip()
        m = re.fullmatch(pattern, reply.strip())
        if m is None:
            raise self.failure(f"raw reply {reply!r} to {asked!r} does not match {pattern!r}", ReplyError)
        return m.group("value") if "value" in m.re.groupindex else (m.group(1) if m.re.groups else m.group(0))

    def _read(self, point: VisaPoint) -> Any:
        if point.query is None:
            raise self.failure("this point has no query (it is write-only)")
        return self._parse(self._query(point.query), point.pattern, point.query)

    def _write(self, point: VisaPoint, value: Any) -> None:
        if point.write is None:
            raise self.failure("this point has no write template (it is read-only)")
        line = point.write.format(value=value)
        self._inst.write(line)
        if point.check_errors:
            self._errors_after(line)

    def _command(self, command: VisaCommand, args: dict[str, Any], timeout: float) -> Any:
        line = command.send.format(**args)
        if line.rstrip().endswith("?"):
            reply = self._query(line, timeout)
            return self._parse(reply, command.pattern, line)
        self._inst.write(line)
        if command.wait:
            done = self._query(command.wait, timeout)
            if done.strip() not in ("1", "+1"):
                raise self.failure(f"raw reply {done!r} to {command.wait!r} (completion) is not 1", ReplyError)
        if command.check_errors:
            self._errors_after(line)
        if command.result:
            return self._parse(self._query(command.result), command.pattern, command.result)
        return None
