"""The conformance kit through the network: a driver served by a real ``labloop agent`` process, checked through
its :class:`~labloop.control.remote.RemoteDevice` proxy (``labloop devices check --remote``).

Why: the scheduler only ever sees the proxy of a remote instrument, so the proxy must keep every promise the kit
checks (Status that ends, limits refused at once, stop() that stops, garbage that fails with the raw reply, a
dropped connection that heals). The driver's simulated endpoint runs here, in the checking process, so the kit's
fault injection (garbage, slow replies, hang-ups) reaches the driver inside the agent unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labloop import plugins
from labloop.control.agent_process import AgentProcess
from labloop.errors import LabloopError

from . import conformance


def check_remote(
    target: str,
    config: Mapping[str, Any] | None = None,
    *,
    simulator: bool = True,
    timeout: float | None = None,
    grace: float = 1.0,
    only: Iterable[str] | None = None,
    name: str = "dut",
) -> conformance.Report:
    """Serve ``target`` from an agent process (with ``config``), and run the checks on its proxy."""
    conformance._select(only)
    obj = plugins.load(target, "labloop.devices")
    config = dict(config or {})
    sim_options = dict(config.pop("simulator_options", None) or {})
    name = str(config.pop("name", name))
    endpoint = None
    sim_ref = getattr(obj, "simulator", None)
    if simulator and isinstance(sim_ref, str) and "host" not in config:
        endpoint = plugins.load(sim_ref, "labloop.simulators")(**sim_options)
        endpoint.start()
        config = {**endpoint.connection_kwargs(), **config}
    agent = AgentProcess(target, config, name=name)
    proxy = None
    try:
        try:
            agent.start()
            proxy = agent.connect()
        except LabloopError as exc:
            return conformance.Report(
                f"{target} (remote)", [conformance.CheckResult("construct", "fail", f"{exc.problem} (fix: {exc.fix})")]
            )
        report = conformance.run_conformance(
            proxy, endpoint=endpoint, timeout=timeout, grace=grace, only=only, target=f"{target} (remote)"
        )
        report.results.insert(
            0,
            conformance.CheckResult(
                "construct",
                "pass",
                f"served by `labloop agent` at {agent.address}, checked through its proxy"
                + (f", against its simulator {sim_ref}" if endpoint else ""),
            ),
        )
        return report
    finally:
        if proxy is not None:
            proxy.disconnect()
        agent.close()
        if endpoint is not None:
            endpoint.close()
