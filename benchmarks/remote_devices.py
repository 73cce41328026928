"""Remote instruments (issue 10): what the network costs a step, and what 20 agents cost a lab.

Prints JSON lines:

* ``{"bench": "step_overhead", "step": "measure"|"synthesize", ...}``: the same step (a bluesky plan on a
  RunEngine, as the executor runs it) on the same driver and simulated endpoint, in-process and through a
  ``labloop agent`` process (CURVE, JSON, heartbeats); p50/p95 wall seconds of each and the overhead ratio.
* ``{"bench": "rpc_round_trip", ...}``: one call through the proxy to the agent and back (``describe()``).
* ``{"bench": "twenty_agents", ...}``: 20 agent processes, each serving its own simulated SMU, all connected to one
  runner: heartbeat traffic and CPU of the runner and of the agents while idle, and the latency of a measure step
  on each device (one after another and all 20 at once) against the same step with one agent.

* ``{"bench": "killed_agent", ...}``: ``kill -9`` of an agent while a recipe runs: seconds until the Status (and so
  the step) fails, and seconds until the proxy is back once the agent runs again.

Run: ``python benchmarks/remote_devices.py [--steps 40] [--agents 20] [--kills 5] [--part all|overhead|rpc|agents|kill]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from contextlib import ExitStack

import zmq
from bluesky import RunEngine
from labloop_devices.examples.hotplate import Hotplate
from labloop_devices.scpi_smu import ScpiSmu
from labloop_simulators.endpoints.hotplate_server import HotplateServer
from labloop_simulators.endpoints.scpi_smu_server import ScpiSmuServer

from labloop.control.agent_process import AgentProcess
from labloop.run import plans


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def timed_steps(RE, make_plan, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        RE(make_plan())
        out.append(time.perf_counter() - t0)
    return out


def step_overhead(n: int) -> list[dict]:
    rows = []
    RE = RunEngine(context_managers=[])
    with ScpiSmuServer(read_time=0.02) as sim:
        local = ScpiSmu(name="smu", **sim.connection_kwargs(), timeout=2)
        local.sample.put("S")
        timed_steps(RE, lambda: plans.measure(local), 3)  # connect, warm up
        here = timed_steps(RE, lambda: plans.measure(local), n)
        local.disconnect() if hasattr(local, "disconnect") else None
        with AgentProcess(
            "labloop_devices.scpi_smu:ScpiSmu", {**sim.connection_kwargs(), "timeout": 2}, name="smu"
        ) as agent:
            remote = agent.connect()
            remote.sample.put("S")
            timed_steps(RE, lambda: plans.measure(remote), 3)
            there = timed_steps(RE, lambda: plans.measure(remote), n)
            remote.disconnect()
    rows.append(_row("measure", "labloop_devices.scpi_smu:ScpiSmu (read_time 0.02 s)", here, there))
    with HotplateServer(rate=20000) as sim:
        recipe = {"temperature": 80.0, "hold_s": 0.1}
        local = Hotplate(name="plate", **sim.connection_kwargs(), poll=0.01)
        local.sample.put("S")
        timed_steps(RE, lambda: plans.synthesize(local, recipe), 2)
        here = timed_steps(RE, lambda: plans.synthesize(local, recipe), n)
        with AgentProcess(
            "labloop_devices.examples.hotplate:Hotplate", {**sim.connection_kwargs(), "poll": 0.01}, name="plate"
        ) as agent:
            remote = agent.connect()
            remote.sample.put("S")
            timed_steps(RE, lambda: plans.synthesize(remote, recipe), 2)
            there = timed_steps(RE, lambda: plans.synthesize(remote, recipe), n)
            remote.disconnect()
    rows.append(
        _row(
            "synthesize", "labloop_devices.examples.hotplate:Hotplate (hold 0.1 s, temperature monitored)", here, there
        )
    )
    return rows


def rpc_round_trip(n: int) -> dict:
    """One call through the proxy and back (``describe()`` of a served SMU: no hardware involved): what each of a
    step's round trips costs."""
    with ScpiSmuServer() as sim:
        with AgentProcess("labloop_devices.scpi_smu:ScpiSmu", sim.connection_kwargs(), name="smu") as agent:
            dev = agent.connect()
            for _ in range(20):
                dev.describe()
            xs = []
            for _ in range(n):
                t0 = time.perf_counter()
                dev.describe()
                xs.append(time.perf_counter() - t0)
            dev.disconnect()
    return {
        "bench": "rpc_round_trip",
        "call": "describe",
        "n": n,
        "p50_ms": round(1000 * statistics.median(xs), 3),
        "p95_ms": round(1000 * pct(xs, 0.95), 3),
    }


def _row(step, device, here, there):
    return {
        "bench": "step_overhead",
        "step": step,
        "device": device,
        "steps": len(here),
        "in_process_p50_s": round(statistics.median(here), 4),
        "in_process_p95_s": round(pct(here, 0.95), 4),
        "remote_p50_s": round(statistics.median(there), 4),
        "remote_p95_s": round(pct(there, 0.95), 4),
        "added_p50_ms": round(1000 * (statistics.median(there) - statistics.median(here)), 2),
        "overhead_ratio_p50": round(statistics.median(there) / statistics.median(here), 3),
    }


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def all_at_once(devs, rounds):
    """Each device runs ``rounds`` measure steps on its own RunEngine thread, all devices at the same time (a lab
    whose stations all work at once); returns (step times, wall seconds)."""
    out: list[float] = []

    def worker(d):
        R = RunEngine(context_managers=[])
        out.extend(timed_steps(R, lambda: plans.measure(d), rounds))

    threads = [threading.Thread(target=worker, args=(d,)) for d in devs]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out, time.perf_counter() - t0


def twenty_agents(n_agents: int, steps: int) -> dict:
    client = zmq.curve_keypair()
    with ExitStack() as stack:
        sims = [stack.enter_context(ScpiSmuServer(read_time=0.02)) for _ in range(n_agents)]
        agents = []
        t0 = time.perf_counter()
        for i, sim in enumerate(sims):
            a = AgentProcess(
                "labloop_devices.scpi_smu:ScpiSmu",
                {**sim.connection_kwargs(), "timeout": 2},
                name=f"smu{i}",
                client=client,
            )
            stack.callback(a.close)
            agents.append(a.start())
        started = time.perf_counter() - t0
        devs = [a.connect() for a in agents]
        for d in devs:
            stack.callback(d.disconnect)
            d.sample.put("S")
        RE = RunEngine(context_managers=[])
        one = timed_steps(RE, lambda: plans.measure(devs[0]), steps)  # 20 agents connected, steps on one
        # idle: heartbeats only
        time.sleep(1.0)
        window = 5.0
        me0, ag0 = _cpu_s(os.getpid()), [_cpu_s(a.proc.pid) for a in agents]
        rx0 = sum(d._link.rx for d in devs)
        time.sleep(window)
        me1, ag1 = _cpu_s(os.getpid()), [_cpu_s(a.proc.pid) for a in agents]
        rx1 = sum(d._link.rx for d in devs)
        seq = []
        for _ in range(max(1, steps // n_agents)):
            for d in devs:
                seq += timed_steps(RE, lambda d=d: plans.measure(d), 1)
        rounds = max(3, steps // n_agents)
        together, wall = all_at_once(devs, rounds)
        # Baseline, same run: the same 20 drivers and endpoints in this process, all at once.
        local = []
        for i, sim in enumerate(sims):
            dev = ScpiSmu(name=f"local{i}", **sim.connection_kwargs(), timeout=2)
            dev.sample.put("S")
            local.append(dev)
        local_together, local_wall = all_at_once(local, rounds)
        return {
            "bench": "twenty_agents",
            "agents": n_agents,
            "start_all_s": round(started, 2),
            "idle_messages_per_s_at_runner": round((rx1 - rx0) / window, 1),
            "idle_runner_cpu_percent": round(100 * (me1 - me0) / window, 2),
            "idle_agent_cpu_percent_mean": round(100 * statistics.mean(b - a for a, b in zip(ag0, ag1)) / window, 2),
            "step_p50_s_one_device": round(statistics.median(one), 4),
            "step_p50_s_each_in_turn": round(statistics.median(seq), 4),
            "step_p95_s_each_in_turn": round(pct(seq, 0.95), 4),
            "step_p50_s_all_at_once": round(statistics.median(together), 4),
            "step_p95_s_all_at_once": round(pct(together, 0.95), 4),
            "steps_all_at_once": len(together),
            "all_at_once_wall_s": round(wall, 3),
            "in_process_step_p50_s_all_at_once": round(statistics.median(local_together), 4),
            "in_process_step_p95_s_all_at_once": round(pct(local_together, 0.95), 4),
            "in_process_all_at_once_wall_s": round(local_wall, 3),
            "lost_contact_events": sum(d._link.lost for d in devs),
        }


def killed_agent(times: int) -> dict:
    """kill -9 of the agent while a recipe runs: seconds until the proxy's Status fails (the step fails with it),
    and, after the agent is started again, seconds from its "serving" line until the proxy is back."""
    failed_after, back_after, reasons = [], [], set()
    with HotplateServer(rate=20000) as sim:
        with AgentProcess(
            "labloop_devices.examples.hotplate:Hotplate", {**sim.connection_kwargs(), "poll": 0.01}, name="plate"
        ) as agent:
            plate = agent.connect()
            for _ in range(times):
                plate.sample.put("S")
                status = plate.set({"temperature": 80.0, "hold_s": 600})
                time.sleep(0.3)
                done = threading.Event()
                status.add_callback(lambda *_, done=done: done.set())  # this round's event, even if it fires late
                t0 = time.perf_counter()
                agent.kill()
                done.wait(30)
                failed_after.append(time.perf_counter() - t0)
                reasons.add(str(status.exception()).split(" at tcp")[0])
                agent.start()
                t1 = time.perf_counter()
                while not plate.connected:
                    time.sleep(0.005)
                back_after.append(time.perf_counter() - t1)
            plate.disconnect()
    return {
        "bench": "killed_agent",
        "kills": times,
        "heartbeat_s": 0.5,
        "lost_after_s": 2.0,
        "step_failed_after_s_median": round(statistics.median(failed_after), 3),
        "step_failed_after_s_max": round(max(failed_after), 3),
        "reconnected_after_start_s_median": round(statistics.median(back_after), 3),
        "reconnected_after_start_s_max": round(max(back_after), 3),
        "reasons": sorted(reasons),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--part", choices=("all", "overhead", "rpc", "agents", "kill"), default="all")
    ap.add_argument("--kills", type=int, default=5)
    args = ap.parse_args()
    if args.part in ("all", "overhead"):
        for row in step_overhead(args.steps):
            print(json.dumps(row), flush=True)
    if args.part in ("all", "rpc"):
        print(json.dumps(rpc_round_trip(300)), flush=True)
    if args.part in ("all", "agents"):
        print(json.dumps(twenty_agents(args.agents, args.steps)), flush=True)
    if args.part in ("all", "kill"):
        print(json.dumps(killed_agent(args.kills)), flush=True)


if __name__ == "__main__":
    main()
