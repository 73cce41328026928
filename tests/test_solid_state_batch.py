"""Batch firings on the solid-state lab (issue 24 items 2-3 on the served lab): a box furnace fires up to four
crucibles on one profile.

* The robot adapter puts each crucible into a free slot of the furnace and takes it back from the slot it is in,
  by the arm controller's own record of what it placed where (``Placed`` on the arm's OPC UA server), also when a
  new adapter (a restarted orchestrator) asks: the store only says ``furnace2``. Without the record every crucible
  went to slot 1 and the second one collided (a protective stop).
* The furnace adapter takes a batch's recipe (``samples``, ``batch``) and refuses a firing that does not name
  exactly the crucibles inside.
* The campaign with ``lab.batching.furnace`` (capacity 4, shared proposals) against the protocol servers: a
  firing holds more than one crucible (the run start documents' ``batch``), every crucible ends in its rack slot,
  the arms never stopped on a collision.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from labloop_devices.solid_state.cell import CellRobot, furnace
from labloop_simulators.solid_state_lab.campaign import ServedLab, point_at
from labloop_simulators.solid_state_lab.robot import RobotEndpoint
from labloop_simulators.solid_state_lab.world import World

from labloop.contract import Move
from labloop.errors import DeviceError
from labloop.run.campaign import CampaignRunner, prepare_text
from labloop.spec import load_spec
from labloop.store import Store
from labloop.transports.simulation import SimulatorProcess

CAMPAIGN = Path(__file__).resolve().parent.parent / "experiments" / "solid_state.yaml"


def move(robot: CellRobot, sample: str, source: str, destination: str) -> None:
    robot.set(Move(sample, source, destination)).wait(timeout=60)


def where(world: World, code: str) -> str:
    return str(world.read()["crucibles"][code]["location"])


def test_two_crucibles_share_a_furnace_in_two_slots_and_come_out_of_their_own(tmp_path: Path) -> None:
    world = World(tmp_path / "world.json")
    with RobotEndpoint(robot="robot2", world=str(world.path), time_scale=3000.0) as arm:
        robot = CellRobot(name="robot2", address=arm.address)
        try:
            move(robot, "s-0001", "load_lock", "furnace2")
            move(robot, "s-0002", "load_lock", "furnace2")  # slot 1 is taken: slot 2 (slot 1 again: a collision)
            assert (where(world, "CR0001"), where(world, "CR0002")) == ("f2s1", "f2s2")
            assert robot.placed() == {"f2s1": "CR0001", "f2s2": "CR0002"}
            assert not robot._value("Fault")
        finally:
            robot.disconnect()
        # a restarted orchestrator: a new adapter, the arm (and its record) as it was
        again = CellRobot(name="robot2", address=arm.address)
        try:
            move(again, "s-0002", "furnace2", "xrd")  # the second one out first: its own slot, not slot 1
            assert (where(world, "CR0001"), where(world, "CR0002")) == ("f2s1", "xrd")
            move(again, "s-0003", "load_lock", "furnace2")  # the freed slot
            assert where(world, "CR0003") == "f2s2"
            move(again, "s-0001", "furnace2", "storage")
            move(again, "s-0003", "furnace2", "storage")
            assert [where(world, c) for c in ("CR0001", "CR0003")] == ["rack01", "rack03"]
            assert again.placed() == {"rack01": "CR0001", "rack03": "CR0003", "xrd": "CR0002"}
            assert not again._value("Fault")
            with pytest.raises(DeviceError, match=r"no CR0004 in furnace2"):  # never placed: refused, no guess
                again.do_move(Move("s-0004", "furnace2", "xrd"))
            for n in (4, 5, 6, 7):
                move(again, f"s-{n:04d}", "load_lock", "furnace1")
            with pytest.raises(DeviceError, match=r"furnace1 is full"):
                again.do_move(Move("s-0008", "load_lock", "furnace1"))
            assert where(world, "CR0008") == "rack08"  # refused before the arm moved
            again._call("Move", "rack01", "balance")  # a client that names no tag: the source's entry travels on
            while again._value("Busy"):
                time.sleep(0.02)
            assert again.placed()["balance"] == "CR0001" and "rack01" not in again.placed()
        finally:
            again.disconnect()


def test_the_furnace_fires_only_the_crucibles_its_recipe_names() -> None:
    dev = furnace(name="furnace1", address="tcp://127.0.0.1:1")
    profile = {"peak_c": 800, "ramp_c_per_min": 5, "dwell_h": 10, "atmosphere": "O2"}
    with pytest.raises(DeviceError, match="no crucible loaded"):
        dev.set({**profile, "samples": ["s-0001"], "batch": "furnace-1"})
    dev.samples.put(["s-0001", "s-0002"])
    with pytest.raises(DeviceError, match=r"names \['s-0001'\] but the furnace holds \['s-0001', 's-0002'\]"):
        dev.set({**profile, "samples": ["s-0001"], "batch": "furnace-1"})
    dev.disconnect()


def test_a_crucible_labloop_did_not_put_in_the_furnace_stops_the_firing(tmp_path: Path) -> None:
    """The controller counts the crucibles in its slots (register 11): one that labloop did not put there (an
    operator's, a stale one) would be fired with the batch, so the firing is refused before anything heats."""
    world = World(tmp_path / "world.json")
    with world.transaction() as w:
        w["crucibles"]["CR0001"]["location"], w["crucibles"]["CR0009"]["location"] = "f1s1", "f1s3"
    server = "labloop_simulators.solid_state_lab.furnace:BoxFurnaceController"
    with SimulatorProcess(server, {"furnace": 1, "world": str(world.path), "time_scale": 3000.0}) as sim:
        dev = furnace(name="furnace1", address=sim.address)
        try:
            dev.samples.put(["s-0001"])
            with pytest.raises(DeviceError, match=r"counts 2 crucible\(s\) in its slots, labloop put 1"):
                dev.set({"peak_c": 300, "ramp_c_per_min": 20, "dwell_h": 0, "atmosphere": "air", "samples": ["s-0001"]})
            assert not dev.running.get() and not world.read()["crucibles"]["CR0009"]["firings"]  # nothing heated
        finally:
            dev.disconnect()


def batched(endpoints: dict[str, Any], trials: int) -> dict[str, Any]:
    data = point_at(yaml.safe_load(CAMPAIGN.read_text()), endpoints)
    data["strategy"] = {"name": "random", "initial_design": 1}  # no optimizer import: the batches, not the model
    data["stopping"] = {"max_trials": trials, "target_reached": False}
    return data


def test_the_campaign_file_declares_the_furnaces_as_batch_stations() -> None:
    spec = load_spec(CAMPAIGN)
    batch = spec.lab.batching["furnace"]
    assert batch.capacity == 4 and batch.share_proposals
    assert set(batch.batch_key) == {"ramp_c_per_min", "peak_c", "dwell_h", "atmosphere"}  # the whole profile
    assert batch.max_wait_s > 0


def test_a_batched_campaign_fires_several_crucibles_at_once_and_puts_every_one_back(tmp_path: Path) -> None:
    trials = 6
    with ServedLab(tmp_path / "lab", time_scale=20000) as lab:
        path = tmp_path / "campaign.yaml"
        path.write_text(yaml.safe_dump(batched(lab.endpoints, trials), sort_keys=False))
        store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
        runner = CampaignRunner.start(prepare_text(path.read_text(), str(path)), store)
        runner.run()
        world = World(lab.endpoints["world"]).read()
        log = (tmp_path / "lab" / "serve.log").read_text()
    got = store.trials(runner.campaign.id)
    assert [t.state for t in got] == ["done"] * trials, [t.failure_reason for t in got]
    steps = store.steps(campaign_id=runner.campaign.id)
    fired = [s for s in steps if s.kind == "synthesize" and s.device.startswith("furnace")]
    assert len(fired) == trials and all(s.state == "done" for s in fired)
    batches: dict[str, dict[str, Any]] = {}
    for uid in {s.run_uid for s in fired}:
        [start] = [doc for name, doc in store.documents(run_uid=uid) if name == "start"]
        batches[start["batch"]["batch"]] = start["batch"]
    assert sum(len(b["samples"]) for b in batches.values()) == trials
    assert max(len(b["samples"]) for b in batches.values()) > 1, batches  # one firing held several crucibles
    for t in got:
        crucible = world["crucibles"][CellRobot.crucible(t.sample_id)]
        assert crucible["location"] == f"rack{int(CellRobot.crucible(t.sample_id)[2:]):02d}"  # back in its slot
        assert len(crucible["firings"]) == 1 and crucible["firings"][0]["atmosphere"] == t.params["atmosphere"]
        assert crucible["firings"][0]["peak_c"] == pytest.approx(t.params["peak_c"], abs=1e-3)
    assert "collision" not in log
    store.close()
