"""The simulated solid-state lab on real protocols: ``labloop sim serve solid_state`` starts every instrument server
in its own process; the lab's declarative devices (and the robots' driver) pass the conformance kit against it; one
sample goes dispense -> weigh -> furnace -> XRD through labloop devices and its pattern shows the target phase; a
furnace trip and a killed furnace server fail their steps with a DeviceError naming transport and address; SIGTERM
stops the command and every server it started.

One lab for the module (starting ten servers costs tens of seconds on a loaded machine); the tests run in file order
and each leaves the world as it found it except where it says. Time scale 20000: a 10-hour firing takes 2 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from instrument_helpers import wait_status
from labloop_devices.base import Move
from labloop_devices.solid_state import cell
from labloop_devices.solid_state.robot import OpcuaRobot
from labloop_simulators.solid_state import xrd
from labloop_simulators.solid_state.chemistry import PHASES
from labloop_simulators.solid_state_lab.lab import Attached
from labloop_simulators.solid_state_lab.world import World

from labloop.declarative import device
from labloop.devkit import conformance
from labloop.errors import DeviceError

TIME_SCALE = 20000
START_BOUND = 400.0  # generous: ten servers importing asyncua/pymodbus/numpy on a shared 2-core machine


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Lab:
    def __init__(self, proc: subprocess.Popen[bytes], ports: Path, info: dict[str, Any]):
        self.proc, self.ports, self.info = proc, ports, info
        self.world = World(info["world"])
        self.built: list[Any] = []

    def entry(self, name: str) -> dict[str, Any]:
        return self.info["devices"][name]

    def dev(self, name: str) -> Any:
        e = self.entry(name)
        d = (
            OpcuaRobot(name=name, address=e["address"])
            if "driver" in e
            else device(name, file=e["file"], address=e["address"])
        )
        self.built.append(d)
        return d

    def place(self, code: str, location: str) -> None:
        with self.world.transaction() as w:
            w["crucibles"][code]["location"] = location

    def where(self, code: str) -> str:
        return self.world.read()["crucibles"][code]["location"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("solid_state_lab")
    ports = folder / "ports.json"
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - open for the whole module, closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labloop",
            "sim",
            "serve",
            "solid_state",
            "--time-scale",
            str(TIME_SCALE),
            "--ports-file",
            str(ports),
            "--base-port",
            "0",
            "--no-faults",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    deadline = time.monotonic() + START_BOUND
    while not ports.exists():
        assert proc.poll() is None, (folder / "serve.log").read_text()
        assert time.monotonic() < deadline, "the lab did not start: " + (folder / "serve.log").read_text()
        time.sleep(0.2)
    lab = Lab(proc, ports, json.loads(ports.read_text()))
    try:
        yield lab
    finally:
        for d in lab.built:
            d.disconnect()
        if proc.poll() is None:  # the SIGTERM test did not run or failed; the servers exit with the command
            proc.kill()  # (each watches the pipe from it)
            proc.wait(10)
        log.close()


def test_the_command_serves_every_instrument_on_its_protocol(lab: Lab) -> None:
    devices = lab.info["devices"]
    assert set(devices) == {
        "furnace1",
        "furnace2",
        "furnace3",
        "furnace4",
        "dispenser",
        "balance",
        "barcode",
        "xrd",
        "robot1",
        "robot2",
    }
    protocols = {n: d["protocol"] for n, d in devices.items()}
    assert protocols["furnace3"] == "modbus" and protocols["dispenser"] == "opcua" and protocols["xrd"] == "visa"
    assert protocols["balance"] == protocols["barcode"] == "serial" and protocols["robot2"] == "opcua"
    assert all("127.0.0.1" in d["address"] for d in devices.values())
    assert len({d["pid"] for d in devices.values()}) == 10 and all(_pid_alive(d["pid"]) for d in devices.values())
    assert lab.info["time_scale"] == TIME_SCALE


def _conformance(lab: Lab, name: str) -> conformance.Report:
    dev = lab.dev(name)
    endpoint = Attached(lab.entry(name))
    try:
        return conformance.run_conformance(dev, endpoint=endpoint, target=name)
    finally:
        endpoint.close()


def test_every_device_passes_the_conformance_kit_against_the_lab(lab: Lab) -> None:
    # the robots first, with the stations they shuttle between (xrd -> balance) empty
    for robot in ("robot1", "robot2"):
        report = _conformance(lab, robot)
        assert report.ok, report.summary()
    # crucibles on the stations that measure or fill one (what the lab would have there)
    for code, where in (("CR0021", "dispenser"), ("CR0022", "balance"), ("CR0023", "xrd")):
        lab.place(code, where)
    try:
        for name in ("furnace1", "furnace2", "furnace3", "furnace4", "dispenser", "balance", "barcode", "xrd"):
            report = _conformance(lab, name)
            assert report.ok, report.summary()
            assert (
                report["set_completes" if "furnace" in name or name == "dispenser" else "trigger_completes"].outcome
                == "pass"
            ), report.summary()
    finally:
        for code in ("CR0021", "CR0022", "CR0023"):
            lab.place(code, f"rack{int(code[2:]):02d}")


def test_one_sample_from_powders_to_a_pattern_with_the_target_phase(lab: Lab) -> None:
    robot1, robot2 = lab.dev("robot1"), lab.dev("robot2")
    dispenser, balance, barcode = lab.dev("dispenser"), lab.dev("balance"), lab.dev("barcode")
    furnace, diffractometer = lab.dev("furnace1"), lab.dev("xrd")
    sample = "CR0001"

    def move(robot: Any, source: str, destination: str) -> None:
        assert wait_status(robot.set(Move(sample, source, destination))) is None
        assert lab.where(sample) == destination

    move(robot1, "rack01", "dispenser")
    dispenser.sample.put(sample)
    stock_before = float(dispenser.stock_MnO2.get())
    for precursor, grams in ((3, 0.0747), (4, 0.8694)):  # Li2O, MnO2: 5 mmol LiMn2O4 at Li/Mn = 0.5
        assert wait_status(dispenser.set({"precursor": precursor, "mass_g": grams})) is None
        assert float(dispenser.dispensed.get()) == pytest.approx(grams, rel=0.1)
    powders = lab.world.read()["crucibles"][sample]["powders"]
    assert set(powders) == {"Li2O", "MnO2"}
    assert float(dispenser.stock_MnO2.get()) == pytest.approx(stock_before - powders["MnO2"], abs=1e-9)

    balance.run_command("zero")  # zero the empty pan first: the zero drifts (2 ug per model second) until then
    zeroed = time.monotonic()
    move(robot1, "dispenser", "balance")
    barcode.sample.put(sample)
    assert wait_status(barcode.trigger()) is None
    assert barcode.read()["barcode_code"]["value"] == sample  # the identity check a station makes
    balance.sample.put(sample)
    assert wait_status(balance.trigger()) is None
    weight = float(balance.read()["balance_weight"]["value"])
    drift = 2e-6 * TIME_SCALE * (time.monotonic() - zeroed)  # the most the zero can have drifted since
    assert weight == pytest.approx(12.5 + sum(powders.values()), abs=0.01 + drift)  # crucible + powders, settled

    move(robot2, "balance", "f1s1")
    assert int(furnace.occupied.get()) == 1
    furnace.sample.put(sample)
    seen: list[float] = []
    furnace.temperature.subscribe(lambda value, **_: seen.append(value), run=False)
    exc = wait_status(furnace.set({"peak_c": 840, "ramp_c_per_min": 10, "dwell_min": 120, "atmosphere": 1}), 120)
    assert exc is None, exc
    assert max(seen) > 800 and float(furnace.temperature.get()) < 150  # fired, then cooled to unload
    fired = lab.world.read()["crucibles"][sample]
    assert fired["firings"][-1]["atmosphere"] == "O2" and fired["product"]["fractions"]["LiMn2O4"] > 0.6

    move(robot2, "f1s1", "xrd")
    diffractometer.sample.put(sample)
    assert wait_status(diffractometer.trigger(), 60) is None
    reading = diffractometer.read()
    assert reading["xrd_sample_code"]["value"] == sample
    two_theta, counts = reading["xrd_two_theta"]["value"], reading["xrd_counts"]["value"]
    assert len(counts) == len(xrd.TWO_THETA) and np.allclose(two_theta, xrd.TWO_THETA)
    for pos, _ in xrd.peaks("LiMn2O4")[:3]:  # the target's strongest reflections stand out of the background
        i = int(np.argmin(abs(two_theta - pos)))
        assert counts[i - 3 : i + 4].max() > 3 * xrd.background(np.array([pos]))[0]
    fractions, _ = xrd.estimate_fractions(counts, list(PHASES))
    assert fractions["LiMn2O4"] == pytest.approx(fired["product"]["fractions"]["LiMn2O4"], abs=0.05)
    move(robot2, "xrd", "rack01")


def test_a_furnace_trip_fails_the_firing_naming_the_alarm_transport_and_address(lab: Lab) -> None:
    furnace = lab.dev("furnace2")
    furnace.sample.put("CR0002")
    address = lab.entry("furnace2")["address"]
    endpoint = Attached(lab.entry("furnace2"))
    try:  # the longest firing the limits allow (2.5 model days: seconds here), tripped once it runs
        status = furnace.set({"peak_c": 1000, "ramp_c_per_min": 0.5, "dwell_min": 1800, "atmosphere": 0})
        deadline = time.monotonic() + 60
        while not furnace.running.get() and not status.done and time.monotonic() < deadline:
            time.sleep(0.02)
        endpoint.inject("trip")
        exc = wait_status(status, 60)
        assert isinstance(exc, DeviceError), "the firing was not failed by the trip"
        assert "tripped" in str(exc) and f"modbus {address}" in str(exc)
        assert not furnace.health().ok and "tripped" in furnace.health().message
    finally:
        endpoint.clear_faults()
        endpoint.close()
    assert furnace.health().ok


def test_a_jammed_dispenser_fails_the_dose_and_a_misread_label_is_a_plausible_wrong_code(lab: Lab) -> None:
    dispenser, barcode = lab.dev("dispenser"), lab.dev("barcode")
    lab.place("CR0004", "dispenser")
    entry = lab.entry("dispenser")
    endpoint, reader = Attached(entry), Attached(lab.entry("barcode"))
    try:
        dispenser.sample.put("CR0004")
        endpoint.inject("jam")
        exc = wait_status(dispenser.set({"precursor": 4, "mass_g": 1.0}), 60)
        assert isinstance(exc, DeviceError) and "jammed" in str(exc) and f"opcua {entry['address']}" in str(exc)
        part = lab.world.read()["crucibles"]["CR0004"]["powders"]["MnO2"]
        assert 0 < part < 1.0  # what came out before the jam is in the crucible
        endpoint.clear_faults()
        assert wait_status(dispenser.set({"precursor": 4, "mass_g": 0.2}), 60) is None  # cleared: doses again

        lab.place("CR0004", "balance")
        barcode.sample.put("CR0004")
        reader.inject("misread")
        assert wait_status(barcode.trigger()) is None
        misread = barcode.code.get()
        assert misread != "CR0004" and len(misread) == 6 and sum(a != b for a, b in zip(misread, "CR0004")) == 1
        assert wait_status(barcode.trigger()) is None and barcode.code.get() == "CR0004"
    finally:
        endpoint.close()
        reader.close()
        lab.place("CR0004", "rack04")


def test_after_a_trip_the_furnace_stops_its_program_and_fires_again_at_once(lab: Lab) -> None:
    """A trip ends the firing with the program still started (run = 1) while the furnace cools for seconds here,
    hours in a lab: unless the step stops it, the next firing's run = 1 is no new start, and the controller shows
    the old trip, failing the next crucible too. The step stops the program when an alarm ends it."""
    furnace = lab.dev("furnace4")
    furnace.sample.put("CR0007")
    endpoint = Attached(lab.entry("furnace4"))
    try:
        status = furnace.set({"peak_c": 1000, "ramp_c_per_min": 20, "dwell_min": 600, "atmosphere": 0})
        deadline = time.monotonic() + 60
        while furnace.temperature.get() < 700 and not status.done and time.monotonic() < deadline:
            time.sleep(0.01)
        endpoint.inject("trip")
        exc = wait_status(status, 60)
        assert isinstance(exc, DeviceError) and "tripped" in str(exc)
        assert furnace.run.get() == 0  # the program was stopped (the controller still shows the trip)
        firings = endpoint.state()["firings"]
        assert (
            wait_status(furnace.set({"peak_c": 200, "ramp_c_per_min": 20, "dwell_min": 0, "atmosphere": 0}), 60) is None
        )
        assert endpoint.state()["firings"] == firings + 1 and not endpoint.state()["tripped"]
    finally:
        endpoint.clear_faults()
        endpoint.close()


def test_the_cells_dispenser_clears_a_jam_and_doses_the_rest(lab: Lab) -> None:
    """A jam stops a dose part-way, the part that came out in the crucible; the campaign's dispenser clears it on
    the instrument and dispenses the rest (repeating the step would overdose the crucible), and says so in the
    step's reading; the next crucible finds the dispenser ready, not refusing every dose while jammed."""
    entry = lab.entry("dispenser")
    dispenser = cell.dispenser(name="dispenser", address=entry["address"])
    lab.built.append(dispenser)
    endpoint = Attached(entry)
    try:
        for code, jam in (("CR0008", True), ("CR0009", False)):
            lab.place(code, "dispenser")
            dispenser.sample.put(code)
            if jam:
                endpoint.inject("jam")
            assert wait_status(dispenser.set({"li_source": "LiOH", "mn_source": "MnO2", "ratio": 1.0}), 60) is None
            assert dispenser.jams_cleared.get() == int(jam) and not dispenser.jammed.get()
            powders = lab.world.read()["crucibles"][code]["powders"]
            for powder, grams in cell.masses("LiOH", "MnO2", 1.0).items():
                assert powders[powder] == pytest.approx(grams, rel=0.05)  # its recipe, topped up after the jam
            lab.place(code, f"rack{code[-2:]}")
        doses = endpoint.state()["doses"]
        assert doses[-5][2] < 0.5 * doses[-5][1] and doses[-4][1] == pytest.approx(
            doses[-5][1] - doses[-5][2], abs=1e-3
        )
        # a jam left by a dose outside the campaign (a raw dose, uncleared): said as such, not as BadInvalidState
        lab.place("CR0010", "dispenser")
        dispenser.sample.put("CR0010")
        endpoint.inject("jam")
        assert isinstance(wait_status(dispenser.set({"precursor": 4, "mass_g": 0.1}), 60), DeviceError)
        with pytest.raises(DeviceError, match="jammed before this crucible's dose"):
            dispenser.set({"li_source": "LiOH", "mn_source": "MnO2", "ratio": 1.0})
    finally:
        endpoint.clear_faults()
        endpoint.close()
        lab.place("CR0010", "rack10")


def test_a_killed_furnace_server_fails_its_step_naming_transport_and_address(lab: Lab) -> None:
    furnace = lab.dev("furnace3")
    furnace.sample.put("CR0003")
    entry = lab.entry("furnace3")
    status = furnace.set({"peak_c": 1000, "ramp_c_per_min": 0.5, "dwell_min": 1800, "atmosphere": 0})
    deadline = time.monotonic() + 60
    while not furnace.running.get() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(entry["pid"], signal.SIGKILL)  # the controller loses power mid-firing
    exc = wait_status(status, 60)
    assert isinstance(exc, DeviceError)
    assert exc.transport == "modbus" and exc.address == entry["address"]  # type: ignore[attr-defined]
    assert f"modbus {entry['address']}" in str(exc)
    other = lab.dev("furnace4")  # the other instruments keep serving
    assert other.health().ok


@pytest.mark.parametrize(
    "target",
    [
        "furnace.yaml",
        "dispenser.yaml",
        "balance.yaml",
        "barcode.yaml",
        "xrd.yaml",
        "labloop_devices.solid_state.robot:OpcuaRobot",
    ],
)
def test_each_description_passes_the_kit_against_its_own_simulator(target: str) -> None:
    """What ``labloop devices check FILE.yaml --simulated`` runs: the file's own simulation block, no lab."""
    from labloop_simulators.solid_state_lab.lab import devices_folder

    from labloop.devkit import instruments

    if target.endswith(".yaml"):
        report = instruments.check_file(devices_folder() / target, simulated=True)
    else:
        report = conformance.check_device(target)
    assert report.ok, report.summary()
    assert report["construct"].outcome == "pass" and "simulator" in report["construct"].message


def test_sigterm_stops_the_command_and_every_server(lab: Lab) -> None:
    pids = [d["pid"] for d in lab.info["devices"].values()]
    lab.proc.send_signal(signal.SIGTERM)
    assert lab.proc.wait(60) == 0
    deadline = time.monotonic() + 30
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _pid_alive(p)]
    assert not lab.ports.exists()  # the endpoints file goes with the lab
