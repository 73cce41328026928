"""SiLA 2 lab robots and instruments (liquid handlers, plate readers) through the sila2 package's client.

Address: ``sila://HOST:PORT`` (or ``HOST:PORT``); option ``insecure`` (default true: a lab network without the
server's certificate; give ``root_certs`` as a PEM file path for an encrypted server).

A point reads a property (``feature``, ``property``); a writable point names the unobservable command that sets
it (``setter``) and that command's parameter (``parameter``, default: the property's name). A command is a
feature's command with the parameters it takes from the step's arguments (``args``: SiLA parameter -> argument
name; a setpoint's command receives ``value``) or fixed (``params``), and the response it returns (``response``, default the first). An
observable command is run to completion (its execution info polled) within the command's timeout.

SiLA errors are the instrument answering: a defined execution error (e.g. OutOfRange), an undefined execution
error (a firmware fault), a validation error: each a :class:`RefusedError` naming the error's identifier and
message; the channel is kept. A gRPC failure (server gone, connection reset) or no answer in time drops the
channel; the next request reconnects. gRPC's transport runs in its C core, so the bytes of a garbled reply are
not available to show: such a reply fails as a connection error with gRPC's own description.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field
from sila2.client import SilaClient
from sila2.client.client_observable_command import ClientObservableCommand
from sila2.framework.abc.sila_error import SilaError
from sila2.framework.errors.defined_execution_error import DefinedExecutionError
from sila2.framework.errors.sila_connection_error import SilaConnectionError

from .base import PointModel, RefusedError, ReplyError, Transport

#: seconds between checks that the server is still there while an observable command runs
HEARTBEAT = 0.5


class SilaPoint(PointModel):
    feature: str = Field(description="The feature's identifier (e.g. PlateReaderControl).")
    property: str = Field(description="The property read.")
    setter: str | None = Field(None, description="The unobservable command that sets it (writable points).")
    parameter: str | None = Field(None, description="The setter's parameter (default: the property's name).")


class SilaCommand(PointModel):
    feature: str
    command: str
    args: dict[str, str] = Field(default_factory=dict, description="SiLA parameter -> the step argument's name.")
    params: dict[str, Any] = Field(default_factory=dict, description="SiLA parameter -> a fixed value.")
    response: str | None = Field(None, description="The response returned (default: the first one).")


class SilaTransport(Transport):
    kind = "sila"
    Point = SilaPoint
    Command = SilaCommand

    def __init__(self, address: str, *, insecure: bool = True, root_certs: str | None = None, **options: Any):
        super().__init__(address, **options)
        self.insecure, self.root_certs = bool(insecure), root_certs
        self.client: Any = None
        self._interrupted = threading.Event()
        # one worker per request: a gRPC call without a deadline is abandoned (and its channel closed) on timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="labloop-sila")

    # -- connection ---------------------------------------------------------------------------------------------
    def _open(self) -> None:
        hostport = self.address.split("://", 1)[-1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise self.error(
                "connect",
                f"'{self.address}' has no HOST:PORT",
                ReplyError,
                "write sila://HOST:PORT (the SiLA server's address)",
            )
        # Reachable first, with a plain socket: a gRPC channel that fails to connect keeps its subchannel in
        # reconnect backoff, shared with the next channel to the same address, which would then fail too
        socket.create_connection((host, int(port)), timeout=self.connect_timeout).close()
        certs = Path(self.root_certs).read_bytes() if self.root_certs else None
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                self.client = self._in_time(
                    lambda: SilaClient(host, int(port), insecure=self.insecure and not certs, root_certs=certs),
                    self.connect_timeout,
                )
                return
            except SilaConnectionError:
                # gRPC may still be backing off from the last connection to this address (a rebooted server)
                if time.monotonic() + 0.2 > deadline:
                    raise
                time.sleep(0.2)

    def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    # -- values -------------------------------------------------------------------------------------------------
    def _read(self, point: SilaPoint) -> Any:
        prop = self._child(point.feature, point.property)
        return self._in_time(prop.get, self.timeout)

    def _write(self, point: SilaPoint, value: Any) -> None:
        if point.setter is None:
            raise self.failure(
                f"property {point.property} has no setter command",
                ReplyError,
                "name the command that sets it ('setter') in the point",
            )
        setter = self._child(point.feature, point.setter)
        self._in_time(lambda: setter(**{point.parameter or point.property: value}), self.timeout)

    def _command(self, command: SilaCommand, args: dict[str, Any], timeout: float) -> Any:
        missing = [a for a in command.args.values() if a not in args]
        if missing:
            raise self.failure(
                f"the command needs argument(s) {missing}; given {sorted(args)}",
                ReplyError,
                "name the command's arguments in its 'args'",
            )
        params = {**command.params, **{p: args[a] for p, a in command.args.items()}}
        fn = self._child(command.feature, command.command)
        deadline = time.monotonic() + timeout
        self._interrupted.clear()
        if isinstance(fn, ClientObservableCommand):
            instance = self._in_time(lambda: fn(**params), timeout)
            beat = time.monotonic()
            while not instance.done:  # execution info arrives on sila2's subscription thread
                if time.monotonic() - beat > HEARTBEAT:  # that thread does not notice a server gone: ask
                    self._in_time(self.client.SiLAService.ServerUUID.get, self.timeout)
                    beat = time.monotonic()
                if self._interrupted.is_set():
                    raise self.failure(
                        "stopped while the command was running (stop() was called; the "
                        "instrument finishes or cancels it by itself)",
                        RefusedError,
                        "run the step again",
                    )
                if time.monotonic() > deadline:
                    raise self.failure(
                        f"the command was still running after {timeout:g} s "
                        f"(status {instance.status}, progress {instance.progress})"
                    )
                time.sleep(0.02)
            responses = self._in_time(instance.get_responses, max(deadline - time.monotonic(), 0.1))
        else:
            responses = self._in_time(lambda: fn(**params), timeout)
        if responses is None or len(responses) == 0:
            return None
        return getattr(responses, command.response) if command.response else responses[0]

    def interrupt(self) -> None:
        """Stop waiting for a running observable command (the device's stop()); the channel stays open."""
        self._interrupted.set()

    def _child(self, feature: str, name: str) -> Any:
        try:
            return getattr(getattr(self.client, feature), name)
        except AttributeError:
            raise self.failure(
                f"the server has no {feature}.{name}",
                ReplyError,
                "check the feature and its command/property identifiers against the server's features",
            ) from None

    def _in_time(self, fn: Any, timeout: float) -> Any:
        future = self._pool.submit(fn)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise self.failure(f"no reply in time (none within {timeout:g} s)") from None
        except DefinedExecutionError as exc:
            raise self.failure(
                f"SiLA defined execution error {exc.identifier}: {exc.message}",
                RefusedError,
                "check the value and the instrument's state against the feature",
            ) from None
        except SilaError as exc:
            raise self.failure(
                f"SiLA {type(exc).__name__}: {' '.join(str(exc).split())}",
                RefusedError,
                "check the value and the instrument's state against the feature",
            ) from None
