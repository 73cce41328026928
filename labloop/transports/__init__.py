"""Instrument transports: one module per protocol, each on the protocol's own library, behind one interface
(:mod:`labloop.transports.base`). The libraries are optional extras (``pip install 'labloop[modbus]'``); a module is
imported only when a device names its transport, so an instrument PC installs only what it speaks.
"""

from __future__ import annotations

import importlib
from typing import Any

from labloop import needs
from labloop.errors import LabloopError

#: transport kind -> (module, class, the extra that installs its library)
KINDS: dict[str, tuple[str, str, str]] = {
    "modbus": ("labloop.transports.modbus", "ModbusTransport", "modbus"),
    "visa": ("labloop.transports.visa", "VisaTransport", "visa"),
    "serial": ("labloop.transports.serial", "SerialTransport", "serial"),
    "opcua": ("labloop.transports.opcua", "OpcuaTransport", "opcua"),
    "epics": ("labloop.transports.epics", "EpicsTransport", "epics"),
    "sila": ("labloop.transports.sila", "SilaTransport", "sila"),
}

#: transport kind -> the top-level module of its protocol library (labloop.needs maps it to the extra)
LIBRARY = {
    "modbus": "pymodbus",
    "visa": "pyvisa",
    "serial": "serial",
    "opcua": "asyncua",
    "epics": "caproto",
    "sila": "sila2",
}


def transport_class(kind: str) -> Any:
    """The transport class for ``kind``; a clear error when it is unknown or its library is not installed."""
    if kind not in KINDS:
        raise LabloopError(f"unknown transport '{kind}'", f"use one of: {', '.join(sorted(KINDS))}")
    module, cls, extra = KINDS[kind]
    # the library itself is imported when the transport connects (on a worker thread, where a missing package would
    # become a failed step): checked here, when the device is built, so the operator is told the extra at once
    needs.require(LIBRARY[kind])
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise LabloopError(
            f"the {kind} transport needs the Python package '{exc.name}', which is not installed",
            f"pip install 'labloop[{extra}]'",
        ) from None
