"""Remote instruments (issue 10, item 4): ``labloop agent`` processes and the RemoteDevice proxy.

Real agent subprocesses, real CURVE sockets, real simulated endpoints; no timing assertions (the benchmarks time
things): a killed agent must fail the step with a clear reason, and the step must succeed again after a restart.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import yaml
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labloop_simulators.endpoints.hotplate_server import HotplateServer
from labloop_simulators.endpoints.robot_arm_server import RobotArmServer
from labloop_simulators.endpoints.scpi_smu_server import ScpiSmuServer
from typer.testing import CliRunner

from labloop.control import wire
from labloop.control.agent_process import AgentProcess
from labloop.control.remote import connect
from labloop.devkit.remote_check import check_remote
from labloop.errors import DeviceError, LabloopError, LimitError

HOTPLATE = "labloop_devices.examples.hotplate:Hotplate"
PLATE_CFG = {"timeout": 0.3, "status_timeout": 20, "poll": 0.01}


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_status(status, timeout=20.0):
    done = threading.Event()
    status.add_callback(lambda *_: done.set())
    assert done.wait(timeout), "the Status never finished (a hang)"
    return status.exception() if not status.success else None


@pytest.fixture
def plate_sim():
    with HotplateServer(rate=2000) as sim:
        yield sim


@pytest.fixture
def plate_agent(plate_sim, tmp_path):
    agent = AgentProcess(HOTPLATE, {**plate_sim.connection_kwargs(), **PLATE_CFG}, name="plate", folder=tmp_path)
    with agent:
        yield agent


# -- the proxy is an ordinary device ------------------------------------------------------------------------------------
def test_the_proxy_reads_sets_refuses_and_streams_like_the_device(plate_agent):
    plate = plate_agent.connect()
    try:
        assert plate.name == "plate" and plate.limits["temperature"] == (20.0, 300.0)
        assert plate.process_signals == ("temperature",) and plate.role == "station"
        assert set(plate.describe()) == set(plate.read()) == {"plate_temperature"}
        assert plate.health().ok
        with pytest.raises(LimitError, match="outside the device limits"):
            plate.set({"temperature": 900})
        seen = []
        plate.temperature.subscribe(lambda value=None, **_: seen.append(value))
        plate.sample.put("S-1")
        assert plate.sample.get() == "S-1"
        assert wait_status(plate.set({"temperature": 150, "hold_s": 0.1})) is None
        assert abs(plate.read()["plate_temperature"]["value"] - 150) <= 1.0
        wait_for(lambda: any(v and abs(v - 150) <= 1.0 for v in seen), what="pushed temperature updates")
        assert len(seen) > 2  # the ramp was streamed, not just the end
        stop_me = plate.set({"temperature": 200, "hold_s": 60})
        plate.stop()
        err = wait_status(stop_me)
        assert isinstance(err, DeviceError) and "stop" in str(err)
    finally:
        plate.disconnect()


def test_a_campaign_device_name_must_match_the_agents(plate_agent):
    with pytest.raises(LabloopError, match="serves device 'plate', the campaign calls it 'hotplate'") as exc:
        connect(plate_agent.address, plate_agent.agent_public, name="hotplate", keys=plate_agent.client)
    assert "--name hotplate" in exc.value.fix


# -- identities ---------------------------------------------------------------------------------------------------------
def test_an_unknown_client_key_is_refused_and_the_trusted_one_still_works(plate_agent):
    stranger = zmq.curve_keypair()
    with pytest.raises(LabloopError) as exc:
        connect(plate_agent.address, plate_agent.agent_public, keys=stranger, timeout=1.0)
    assert plate_agent.address in exc.value.problem and "refused this runner's key" in exc.value.problem
    assert stranger[0].decode() in exc.value.fix and "trusted_keys" in exc.value.fix
    impostor_key = zmq.curve_keypair()[0]  # the campaign expects another agent there: never talked to
    with pytest.raises(LabloopError) as exc:
        connect(plate_agent.address, impostor_key, keys=plate_agent.client, timeout=1.0)
    assert plate_agent.address in exc.value.problem
    plate = plate_agent.connect()
    assert plate.health().ok
    plate.disconnect()


# -- the agent dies mid-step ---------------------------------------------------------------------------------------------
def test_killed_agent_fails_the_running_action_with_the_reason_and_the_proxy_reconnects(plate_agent):
    plate = plate_agent.connect()
    try:
        plate.sample.put("S-1")
        long = plate.set({"temperature": 120, "hold_s": 600})
        plate_agent.kill()
        err = wait_status(long, timeout=15)
        assert isinstance(err, DeviceError)
        assert "lost contact" in err.problem and plate_agent.address in err.problem and "no heartbeat" in err.problem
        with pytest.raises(DeviceError, match="lost contact"):
            plate.read()  # calls fail at once while it is gone, never hang
        plate_agent.start()
        wait_for(lambda: plate.connected, what="the proxy to reconnect")
        plate.sample.put("S-2")  # the restarted agent forgot everything: the proxy carries on
        assert wait_status(plate.set({"temperature": 100, "hold_s": 0.05})) is None
    finally:
        plate.disconnect()


# -- garbage from an agent -----------------------------------------------------------------------------------------------
class RogueAgent:
    """Answers hello like an instrument, then garbage: what a broken or foreign service on the port looks like."""

    def __init__(self, client_public: bytes, garbage: bytes):
        self.ctx = zmq.Context()
        self.public, secret = zmq.curve_keypair()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.curve_server = True
        self.sock.curve_publickey, self.sock.curve_secretkey = self.public, secret
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.garbage, self.stop = garbage, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        info = {
            "name": "probe",
            "boot": "b1",
            "protocols": ["Readable", "Triggerable", "Stoppable"],
            "role": "instrument",
            "limits": {},
            "signals": {},
            "conformance": {},
        }
        while not self.stop.is_set():
            if not self.sock.poll(50):
                continue
            ident, raw = self.sock.recv_multipart()
            req = json.loads(raw)
            if req["method"] in ("hello", "ping"):
                self.sock.send_multipart(
                    [
                        ident,
                        wire.encode(
                            {
                                "id": req["id"],
                                "ok": True,
                                "result": info if req["method"] == "hello" else {"boot": "b1"},
                            }
                        ),
                    ]
                )
            else:
                self.sock.send_multipart([ident, self.garbage])
        self.sock.close(0)
        self.ctx.term()


def test_an_agent_answering_garbage_fails_the_step_with_the_raw_reply():
    from bluesky import RunEngine

    from labloop.run import plans
    from labloop.run.executor import describe_failure

    client = zmq.curve_keypair()
    rogue = RogueAgent(client[0], b"\x15#?OVERHEAT 0x7f not json")
    probe = connect(rogue.address, rogue.public, name="probe", keys=client)
    try:
        RE = RunEngine(context_managers=[])
        with pytest.raises(Exception) as exc:
            RE(plans.measure(probe))
        reason = describe_failure(exc.value)
        assert "not the agent protocol" in reason and "OVERHEAT 0x7f not json" in reason, reason
    finally:
        probe.disconnect()
        rogue.stop.set()


# -- bad input to the agent ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    with HotplateServer(rate=2000) as sim:
        agent = AgentProcess(
            HOTPLATE, {**sim.connection_kwargs(), **PLATE_CFG}, name="plate", folder=tmp_path_factory.mktemp("fuzz")
        )
        with agent:
            ctx = zmq.Context()
            sock = ctx.socket(zmq.DEALER)
            sock.curve_serverkey = agent.agent_public
            sock.curve_publickey, sock.curve_secretkey = agent.client
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(agent.address)
            yield agent, sock
            sock.close(0)
            ctx.term()


def reply_to(sock, rid, timeout=10.0):
    """The agent's reply to request ``rid`` (heartbeats and other replies skipped); None when none came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.poll(100):
            msg = json.loads(sock.recv())
            if msg.get("id") == rid:
                return msg
    return None


def _answers_ping(sock, rid):
    sock.send(wire.encode({"v": 1, "id": rid, "method": "ping"}))
    reply = reply_to(sock, rid)
    return reply is not None and reply["ok"] is True


messages = st.one_of(
    st.binary(max_size=300).map(lambda b: [b]),
    st.lists(st.binary(max_size=40), min_size=2, max_size=4),  # multi-frame
    st.builds(
        lambda v, i, m, a: [json.dumps({"v": v, "id": i, "method": m, "args": a}).encode()],
        st.one_of(st.integers(-2, 3), st.text(max_size=3), st.none()),
        st.one_of(st.integers(-5, 2**60), st.text(max_size=5), st.floats(allow_nan=False)),
        st.sampled_from(["read", "set", "signal_put", "subscribe", "nope", "", "hello", "trigger"]),
        st.one_of(
            st.dictionaries(
                st.sampled_from(["value", "signal", "x"]),
                st.one_of(st.integers(), st.text(max_size=8), st.none(), st.lists(st.integers(), max_size=3)),
            ),
            st.integers(),
            st.text(max_size=5),
        ),
    ),
    st.binary(min_size=1, max_size=200).map(lambda b: [b'{"v": 1, "id": 1, "method": "read"' + b]),  # truncated
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(messages, min_size=1, max_size=5))
def test_random_truncated_multiframe_and_wrongly_typed_messages_never_crash_or_hang_the_agent(fuzz_target, batch):
    agent, sock = fuzz_target
    for frames in batch:
        sock.send_multipart(frames)
    while sock.poll(20):  # drain error replies (each one a JSON object, never a crash)
        reply = json.loads(sock.recv())
        assert isinstance(reply, dict)
    assert _answers_ping(sock, 424242), agent.output[-5:]
    assert agent.proc.poll() is None


def test_oversized_and_refused_requests_get_errors_or_drops_and_change_nothing(fuzz_target):
    agent, sock = fuzz_target
    sock.send(wire.encode({"v": 1, "id": 5, "method": "signal_put", "args": {"signal": "sample", "value": "S-9"}}))
    assert reply_to(sock, 5)["ok"] is True
    for bad, code in [
        ({"v": 2, "id": 6, "method": "read"}, "bad_request"),
        ({"v": 1, "id": 7, "method": "launch_missiles"}, "unknown_method"),
        ({"v": 1, "id": 8, "method": "signal_put", "args": {"signal": "nope", "value": 1}}, "bad_request"),
        ({"v": 1, "id": 9, "method": "set", "args": {"value": {"temperature": 9999}}}, "device_error"),
    ]:
        sock.send(wire.encode(bad))
        reply = reply_to(sock, bad["id"])
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        assert reply["error"]["problem"]
    ctx = zmq.Context.instance()
    big = ctx.socket(zmq.DEALER)  # over 1 MiB: 0MQ drops the connection; the agent lives on
    big.curve_serverkey = agent.agent_public
    big.curve_publickey, big.curve_secretkey = agent.client
    big.setsockopt(zmq.LINGER, 0)
    big.connect(agent.address)
    big.send(b"{" + b" " * (wire.MAX_BYTES + 10) + b"}")
    assert reply_to(big, None, timeout=0.5) is None
    big.close(0)
    sock.send(wire.encode({"v": 1, "id": 10, "method": "signal_get", "args": {"signal": "sample"}}))
    assert reply_to(sock, 10) == {"id": 10, "ok": True, "result": "S-9"}  # nothing the refused requests sent changed it
    assert _answers_ping(sock, 11)


# -- conformance through the network -------------------------------------------------------------------------------------
SMU = {"timeout": 0.3, "status_timeout": 3}
ARM = {"timeout": 0.3, "move_timeout": 1, "status_timeout": 3, "simulator_options": {"move_time": 0.02}}
PLATE = {"timeout": 0.3, "status_timeout": 3, "poll": 0.01, "simulator_options": {"rate": 5000}}
THINFILM = "labloop_simulators.thinfilm.lab:build_lab"


@pytest.mark.parametrize(
    "target,config",
    [
        ("labloop_devices.scpi_smu:ScpiSmu", SMU),
        ("labloop_devices.robot_arm:RobotArm", ARM),
        (HOTPLATE, PLATE),
        (THINFILM, {"name": "chamber", "time_scale": 20000}),
        (THINFILM, {"name": "probe", "time_scale": 20000}),
        (THINFILM, {"name": "robot", "time_scale": 20000}),
    ],
    ids=["smu", "arm", "hotplate", "sim-chamber", "sim-probe", "sim-robot"],
)
def test_every_bundled_driver_and_simulated_device_passes_the_kit_through_its_remote_proxy(target, config):
    report = check_remote(target, dict(config), grace=0.5)
    assert report.ok, report.summary()
    if not target.startswith(THINFILM):  # drivers: every fault check exercised through the network
        assert all(r.outcome == "pass" for r in report.results), report.summary()


def test_cli_devices_check_remote(tmp_path):
    from labloop.cli import app

    (tmp_path / "smu.yaml").write_text("timeout: 0.3\nstatus_timeout: 3\n")
    result = CliRunner().invoke(
        app,
        [
            "devices",
            "check",
            "labloop_devices.scpi_smu:ScpiSmu",
            "--remote",
            "--config",
            str(tmp_path / "smu.yaml"),
            "--grace",
            "0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "(remote)" in result.output and "all checks passed" in result.output


# -- the campaign file ---------------------------------------------------------------------------------------------------
def test_remote_entries_are_checked_for_shape():
    from labloop.spec import DeviceSpec

    key = zmq.curve_keypair()[0].decode()
    assert DeviceSpec(remote="tcp://10.0.0.5:7600", agent="probe-pc").agent == "probe-pc"
    assert DeviceSpec(remote="tcp://10.0.0.5:7600", agent_key=key).agent_key == key
    for bad, words in [
        ({"remote": "10.0.0.5:7600", "agent": "a"}, "tcp://HOST:PORT"),
        ({"remote": "tcp://10.0.0.5:99999", "agent": "a"}, "tcp://HOST:PORT"),
        ({"remote": "tcp://h:1"}, "name the agent"),
        ({"remote": "tcp://h:1", "agent": "a", "agent_key": key}, "one of the two"),
        ({"remote": "tcp://h:1", "agent_key": "short"}, "40 characters"),
        ({"driver": "x:Y", "remote": "tcp://h:1", "agent": "a"}, "either 'driver'"),
        ({"driver": "x:Y", "agent": "a"}, "belong to a remote device"),
        ({"remote": "tcp://h:1", "agent": "a", "config": {"x": 1}}, "drop 'config'"),
    ]:
        with pytest.raises(ValueError, match=words):
            DeviceSpec(**bad)


def _campaign(tmp_path, plate_addr, plate_key, smu_addr, smu_key, arm_sim, measure_retries=0):
    positions = ["load_lock", "plate", "smu", "storage"]
    return {
        "name": f"remote-{tmp_path.name}",
        "parameters": [{"name": "temperature", "type": "continuous", "lower": 40, "upper": 120}],
        "objectives": [{"name": "sheet_resistance", "plugin": "sheet_resistance", "direction": "minimize"}],
        "stopping": {"max_trials": 2, "target_reached": False},
        "strategy": {"name": "random", "initial_design": 1},
        "lab": {
            "devices": {
                "robot": {
                    "driver": "robot_arm",
                    "config": {**arm_sim.connection_kwargs(), "positions": positions, "timeout": 1, "move_timeout": 5},
                },
                "plate": {"remote": plate_addr, "agent_key": plate_key},
                "smu": {"remote": smu_addr, "agent_key": smu_key},
            },
        },
        "workflow": [
            {"kind": "transfer", "to": "plate"},
            {"kind": "synthesize", "device": "plate"},
            {"kind": "transfer", "to": "smu"},
            {"kind": "measure", "device": "smu", "retries": measure_retries, "retry_backoff": 0.5},
            {"kind": "transfer", "to": "storage"},
        ],
    }


@pytest.fixture
def remote_lab(tmp_path, monkeypatch):
    """A lab of drivers: the arm here, the hotplate and the SMU each behind an agent process (one client key)."""
    client = zmq.curve_keypair()
    key_file = tmp_path / "runner.key"
    from labloop.control.agent_process import write_key_file

    write_key_file(key_file, name="runner", role="operator", pair=client, server_public=zmq.curve_keypair()[0])
    monkeypatch.setenv("LABLOOP_KEY", str(key_file))
    with (
        HotplateServer(rate=5000) as plate_sim,
        ScpiSmuServer(read_time=1.0) as smu_sim,
        RobotArmServer(positions=("load_lock", "plate", "smu", "storage"), move_time=0.01) as arm_sim,
    ):
        plate = AgentProcess(
            HOTPLATE, {**plate_sim.connection_kwargs(), **PLATE_CFG}, name="plate", folder=tmp_path, client=client
        )
        smu = AgentProcess(
            "labloop_devices.scpi_smu:ScpiSmu",
            {**smu_sim.connection_kwargs(), "timeout": 3},
            name="smu",
            folder=tmp_path,
            client=client,
        )
        with plate, smu:
            yield plate, smu, arm_sim


def _run(data, tmp_path):
    from labloop.control.remote_lab import remote_device
    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    store = Store(f"sqlite:///{tmp_path / 'labloop.db'}")
    prepared = prepare_text(yaml.safe_dump(data), "remote.yaml", remote=remote_device)
    runner = CampaignRunner.start(prepared, store)
    return store, runner


def test_a_campaign_runs_steps_on_remote_devices(remote_lab, tmp_path):
    plate, smu, arm_sim = remote_lab
    data = _campaign(
        tmp_path, plate.address, plate.agent_public.decode(), smu.address, smu.agent_public.decode(), arm_sim
    )
    store, runner = _run(data, tmp_path)
    runner.run()
    trials = store.trials(runner.campaign.id)
    assert [t.state for t in trials] == ["done", "done"], [t.failure_reason for t in trials]
    steps = store.steps(campaign_id=runner.campaign.id)
    assert {s.device for s in steps if s.kind == "measure"} == {"smu"}
    assert all(s.state == "done" for s in steps)
    assert all(100 < t.values["sheet_resistance"] < 150 for t in trials)  # the SMU's film: 125 ohm/sq


def test_killed_agent_mid_step_fails_the_step_with_the_reason_then_the_retry_succeeds(remote_lab, tmp_path):
    plate, smu, arm_sim = remote_lab
    data = _campaign(
        tmp_path,
        plate.address,
        plate.agent_public.decode(),
        smu.address,
        smu.agent_public.decode(),
        arm_sim,
        measure_retries=4,
    )
    data["stopping"]["max_trials"] = 1
    data["scheduling"] = {"quarantine_after": 6}  # room for the retries while the agent restarts
    data["workflow"][3]["retry_backoff"] = 2.0  # 2, 4, 8, 16 s: the agent is back before the last
    store, runner = _run(data, tmp_path)
    result = {}
    th = threading.Thread(target=lambda: result.setdefault("d", runner.run()), daemon=True)
    th.start()
    cid = runner.campaign.id
    wait_for(
        lambda: any(s.kind == "measure" and s.state == "running" for s in store.steps(campaign_id=cid)),
        timeout=60,
        what="the measurement to start",
    )
    smu.kill()
    failed = wait_for(
        lambda: [s for s in store.steps(campaign_id=cid) if s.kind == "measure" and s.state == "failed"],
        timeout=30,
        what="the measurement to fail",
    )
    assert "lost contact with agent" in failed[0].error or "lost contact" in failed[0].error
    assert smu.address in failed[0].error
    smu.start()
    th.join(120)
    assert not th.is_alive()
    trial = store.trials(cid)[0]
    assert trial.state == "done", trial.failure_reason
    measures = [s for s in store.steps(campaign_id=cid) if s.kind == "measure"]
    assert measures[-1].state == "done" and measures[-1].attempt > 1


def test_validate_names_an_unreachable_agent_and_how_to_start_it(tmp_path):
    from labloop.cli import app

    client = zmq.curve_keypair()
    from labloop.control.agent_process import write_key_file

    key_file = write_key_file(
        tmp_path / "me.key", name="me", role="operator", pair=client, server_public=zmq.curve_keypair()[0]
    )
    with RobotArmServer(positions=("load_lock", "plate", "smu", "storage")) as arm_sim:
        data = _campaign(
            tmp_path,
            "tcp://127.0.0.1:1",
            zmq.curve_keypair()[0].decode(),
            "tcp://127.0.0.1:2",
            zmq.curve_keypair()[0].decode(),
            arm_sim,
        )
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(data))
        result = CliRunner().invoke(app, ["validate", str(path)], env={"LABLOOP_KEY": str(key_file)})
    assert result.exit_code == 2, result.output
    assert "lab.devices.plate" in result.output and "tcp://127.0.0.1:1" in result.output
    assert "labloop agent" in result.output and "Traceback" not in result.output


def test_an_agent_made_with_users_add_is_found_by_name_and_admits_the_daemons_key(tmp_path, monkeypatch):
    """The whole identity path: `labloop users add NAME --role agent` writes the agent's key file (carrying the
    daemon's public key); the campaign names the agent; its key comes from the store; the runner's client key is
    the daemon's own pair (LABLOOP_SERVER_KEYS, what the daemon gives its campaign processes)."""
    from labloop.cli import app
    from labloop.control.remote_lab import remote_device
    from labloop.errors import SpecError
    from labloop.spec import DeviceSpec

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    keys_dir = tmp_path / "daemon-keys"
    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "users",
            "add",
            "plate-pc",
            "--role",
            "agent",
            "--out",
            str(tmp_path / "plate.key"),
            "--store",
            url,
            "--keys",
            str(keys_dir),
        ],
    )
    assert made.exit_code == 0, made.output
    monkeypatch.delenv("LABLOOP_KEY", raising=False)
    monkeypatch.setenv("LABLOOP_SERVER_KEYS", str(keys_dir))
    with HotplateServer(rate=2000) as sim:
        agent = AgentProcess(
            HOTPLATE,
            {**sim.connection_kwargs(), **PLATE_CFG},
            name="plate",
            folder=tmp_path,
            key_file=tmp_path / "plate.key",
        )
        with agent:
            plate = remote_device("plate", DeviceSpec(remote=agent.address, agent="plate-pc"), url)
            assert plate.health().ok and plate.limits["temperature"] == (20.0, 300.0)
            plate.disconnect()
            with pytest.raises(SpecError, match="no agent called 'nobody'"):
                remote_device("plate", DeviceSpec(remote=agent.address, agent="nobody"), url)
            assert runner.invoke(app, ["users", "revoke", "plate-pc", "--store", url]).exit_code == 0
            with pytest.raises(SpecError, match="agent 'plate-pc' was revoked"):
                remote_device("plate", DeviceSpec(remote=agent.address, agent="plate-pc"), url)


def test_a_reply_too_big_or_not_json_is_an_error_for_the_caller_and_the_agent_lives_on():
    """In-process agent (same code as the process): a reading over 1 MiB, and one that is not JSON."""
    import numpy as np
    from ophyd import Component as Cpt
    from ophyd import Device, Signal

    from labloop.control.agent import Agent

    class Camera(Device):
        image = Cpt(Signal, value=0.0, kind="hinted")

    cam = Camera(name="cam")
    client, pair = zmq.curve_keypair(), zmq.curve_keypair()
    agent = Agent(cam, "tcp://127.0.0.1:*", pair, {client[0]}).start()
    dev = connect(agent.address, pair[0], keys=client)
    try:
        cam.image.put(np.zeros(300_000))  # 300k floats: over 1 MiB as JSON
        with pytest.raises(DeviceError, match="over the 1048576 byte limit"):
            dev.read()
        cam.image.put(object())
        with pytest.raises(DeviceError, match="cannot travel to the runner"):
            dev.read()
        cam.image.put(1.5)
        assert dev.read()["cam_image"]["value"] == 1.5
    finally:
        dev.disconnect()
        agent.stop()
