"""Simulated endpoints: TCP servers on loopback that speak the same wire protocols as real instruments.

Each is a context manager (``with ScpiSmuServer() as sim: ...``) listening on ``127.0.0.1`` on an ephemeral port,
with fault injection (``sim.inject("slow" | "garbage" | "disconnect" | "silent", ...)``, ``sim.drop_clients()``), so
drivers and the conformance kit can be proven before anyone touches hardware.
"""

from .base import FaultPlan, LineServer

__all__ = ["FaultPlan", "LineServer"]
