"""Bad input on the control socket: random bytes, truncated and multi-frame messages, wrong versions, unknown
methods, wrong types, oversized payloads, unknown keys. The daemon answers with an error (or drops the message) and
answers the next good request every time."""

from __future__ import annotations

import json
import time

import pytest
import zmq
from daemon_helpers import DaemonProcess, add_user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labloop.control import protocol
from labloop.errors import LabloopError
from labloop.identity.keys import ClientKey, apply_client

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "v": st.integers(-2, 3) | json_values,
        "id": st.text(max_size=20) | json_values,
        "method": st.sampled_from(sorted(protocol.METHODS) + ["nope", ""]) | json_values,
        "params": st.dictionaries(
            st.sampled_from(["campaign", "wait", "trials", "reason", "text", "after_seq", "x"]), json_values, max_size=4
        )
        | json_values,
    },
)
messages = (
    st.binary(max_size=300).map(lambda b: [b])
    | requests.map(lambda d: [json.dumps(d).encode()])
    | requests.map(lambda d: [json.dumps(d).encode()[: max(1, len(json.dumps(d)) // 2)]])  # truncated
    | st.lists(st.binary(max_size=40), min_size=2, max_size=4)
)  # multi-frame


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    d = DaemonProcess(tmp)
    d.key = add_user(d.store_url, "fuzzer", "operator", d.server_keys)
    d.start()
    yield d
    d.stop()


def dealer(d, key: ClientKey):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    apply_client(sock, key)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(d.control)
    return sock


def answer(sock, timeout_ms=10_000):
    assert sock.poll(timeout_ms), "the daemon did not answer"
    return json.loads(sock.recv_multipart()[-1])  # a REQ-style envelope gets its delimiter frame back


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=messages)
def test_the_daemon_answers_a_good_request_after_every_bad_one(daemon, frames):
    sock = dealer(daemon, daemon.key)
    try:
        sock.send_multipart(frames)
        if sock.poll(3000):  # an error reply, or nothing (a message it cannot even frame)
            reply = json.loads(sock.recv_multipart()[-1])
            assert set(reply) >= {"v", "id", "ok"}
            if not reply["ok"]:
                assert reply["error"]["problem"] and reply["error"]["code"]
        sock.send(protocol.request("good", "list"))
        reply = answer(sock)
        while reply.get("id") != "good":
            reply = answer(sock)
        assert reply["ok"] is True
    finally:
        sock.close(0)


def test_each_kind_of_bad_request_gets_its_error(daemon):
    sock = dealer(daemon, daemon.key)
    try:
        cases = {
            b"\xff\xfe garbage": "bad_json",
            json.dumps({"v": 2, "id": "a", "method": "status"}).encode(): "bad_version",
            json.dumps({"v": 1, "id": "a", "method": "reboot"}).encode(): "unknown_method",
            json.dumps({"v": 1, "id": "a", "method": "approve", "params": {"trials": "all"}}).encode(): "bad_params",
            json.dumps({"v": 1, "id": "a", "method": "status", "x": 1}).encode(): "bad_request",
            b"{" + b" " * (protocol.MAX_BYTES + 10) + b"}": "too_large",
        }
        for raw, code in cases.items():
            sock.send(raw)
            reply = answer(sock)
            assert reply["ok"] is False and reply["error"]["code"] == code, reply
        sock.send_multipart([b"a", b"b"])
        assert answer(sock)["error"]["code"] == "bad_frames"
    finally:
        sock.close(0)


def test_an_unknown_key_gets_no_service(daemon):
    public, secret = zmq.curve_keypair()
    stranger = ClientKey(
        name="x",
        role="admin",
        public_key=public.decode(),
        secret_key=secret.decode(),
        server_public_key=daemon.server_keys.public.decode(),
    )
    with pytest.raises(LabloopError, match="no daemon answers"):
        daemon.client(stranger, timeout=2).call("list")
    assert daemon.client(daemon.key).call("list") == []  # and the daemon is fine


@given(raw=st.binary(max_size=2000))
@settings(max_examples=300)
def test_parse_request_never_raises_anything_but_a_protocol_error(raw):
    try:
        protocol.parse_request(raw)
    except protocol.ProtocolError as exc:
        assert exc.problem and exc.code


def test_a_revoked_user_is_refused_on_the_connection_already_open_and_audited(daemon):
    from labloop.store import Store

    key = add_user(daemon.store_url, "rita", "operator", daemon.server_keys)
    client = daemon.client(key)
    assert client.call("list") == []
    st = Store(daemon.store_url)
    try:
        st.revoke_user("rita", by="test")
        with pytest.raises(LabloopError, match="not a user of this lab, or was revoked"):
            for _ in range(100):  # the key table is re-read within a second
                client.call("list")
                time.sleep(0.05)
        daemon.stop(campaigns=False)  # refusals of a key are audited per minute, and when the daemon closes
        daemon.start()
        rows = [a for a in st.audit_log() if a.user == "rita" and a.outcome == "refused"]
    finally:
        st.close()
    assert rows
