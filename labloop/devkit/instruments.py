"""``labloop devices check FILE.yaml [--simulated] [--remote]``: the conformance kit on a declarative device.

With ``--simulated`` the simulator named by the file's ``simulation:`` block is started in its own process (a real
protocol server on 127.0.0.1), the device is pointed at it and checked through the real client library, fault
checks included (the simulator's fault proxy answers garbage, replies late, hangs up); it is stopped afterwards.
With ``--remote`` the device is served by a real ``labloop agent`` process and checked through its proxy.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labloop.errors import LabloopError

from . import conformance

FACTORY = "labloop.declarative:device"


class _RebootOnly:
    """The kit's endpoint for a simulator without a fault proxy (EPICS CA announces its own ports, so no proxy can
    stand in front of it): no garbage or late replies to inject (those checks are skipped, saying why); the kit's
    dropped connection is the IOC rebooting on the same port."""

    def __init__(self, sim: Any):
        self.sim = sim

    def drop_clients(self) -> None:
        self.sim.restart()

    def clear_faults(self) -> None:
        pass


def is_instrument_file(target: str) -> bool:
    return target.endswith((".yaml", ".yml"))


def check_file(
    path: str | Path,
    *,
    simulated: bool,
    remote: bool = False,
    timeout: float | None = None,
    grace: float = 1.0,
    only: Iterable[str] | None = None,
    name: str = "dut",
) -> conformance.Report:
    from labloop.declarative import device, load_spec
    from labloop.transports.simulation import SimulatorProcess

    conformance._select(only)
    path = Path(path)
    spec = load_spec(path)
    sim = None
    where = ""
    config: dict[str, Any] = {"file": str(path.resolve())}
    if simulated:
        if spec.simulation is None:
            raise LabloopError(
                f"{path} has no 'simulation:' block: nothing to start for --simulated",
                "add simulation: {server: module:Class, options: {...}}, or check the real "
                "instrument without --simulated",
            )
        sim = SimulatorProcess(spec.simulation.server, spec.simulation.options).start()
        config["address"] = sim.address
        where = f" against its simulator {spec.simulation.server} at {sim.address}"
    label = f"{path} ({spec.model})" + (" (remote)" if remote else "")
    dev: Any = None
    agent: Any = None
    try:
        if remote:
            from labloop.control.agent_process import AgentProcess

            agent = AgentProcess(FACTORY, config, name=name)
            try:
                agent.start()
                dev = agent.connect()
            except LabloopError as exc:
                return conformance.Report(
                    label, [conformance.CheckResult("construct", "fail", f"{exc.problem} (fix: {exc.fix})")]
                )
            built = f"served by `labloop agent` at {agent.address}, checked through its proxy{where}"
        else:
            dev = device(name, **config)
            built = f"built {type(dev).__name__} from {path}{where}"
        endpoint = sim if sim is None or sim.proxied else _RebootOnly(sim)
        report = conformance.run_conformance(
            dev, endpoint=endpoint, timeout=timeout, grace=grace, only=only, target=label
        )
        report.results.insert(0, conformance.CheckResult("construct", "pass", built))
        return report
    finally:
        if dev is not None:
            try:
                dev.disconnect()
            except Exception:  # noqa: BLE001 - the report is made; a device that fails to let go must not hide it
                pass
        if agent is not None:
            agent.close()
        if sim is not None:
            sim.close()
