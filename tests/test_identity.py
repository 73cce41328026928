"""Verified identities over real CURVE sockets: a ROUTER made with ``apply_server`` in a context whose ZAP handler is
a ``StoreAuthenticator`` on a real store, DEALERs made with ``apply_client``. A known key is admitted and its
messages carry the user's name as User-Id; an unknown or revoked key gets nothing through; revoking a connected
user makes ``identify`` refuse them; garbage from strangers never stops the handler; key files are checked."""

from __future__ import annotations

import json
import os
import time

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labloop.control.auth import StoreAuthenticator
from labloop.errors import LabloopError
from labloop.identity.keys import ClientKey, ServerKeys, apply_client, apply_server, load_client_key
from labloop.identity.roles import AGENT, ROLES, Identity, permitted, refusal, role_needed
from labloop.store import Store


def _key(store: Store, server: ServerKeys, name: str, role: str = "operator") -> ClientKey:
    public, secret = zmq.curve_keypair()
    store.add_user(name, role, public.decode(), created_by="test")
    return ClientKey(
        name=name,
        role=role,
        public_key=public.decode(),
        secret_key=secret.decode(),
        server_public_key=server.public_z85(),
    )


def _stranger(server: ServerKeys) -> ClientKey:
    public, secret = zmq.curve_keypair()
    return ClientKey(
        name="mallory",
        role="admin",
        public_key=public.decode(),
        secret_key=secret.decode(),
        server_public_key=server.public_z85(),
    )


class Lab:
    """A CURVE ROUTER on a random loopback port, its StoreAuthenticator, and clients to it."""

    def __init__(self, store: Store, keys_dir):
        self.store = store
        self.ctx = zmq.Context()
        self.keys = ServerKeys.load_or_create(keys_dir)
        self.auth = StoreAuthenticator(self.ctx, store)
        self.auth.start()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        apply_server(self.router, self.keys)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.addr = f"tcp://127.0.0.1:{port}"
        self.clients: list[zmq.Socket] = []

    def client(self, key: ClientKey, server_public: bytes | None = None) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        apply_client(sock, key, server_public)
        sock.connect(self.addr)
        self.clients.append(sock)
        return sock

    def receive(self, timeout_ms: int) -> tuple[list[bytes], str] | None:
        """One message and its verified User-Id, or None if nothing arrives in time."""
        if not self.router.poll(timeout_ms):
            return None
        frames = self.router.recv_multipart(copy=False)
        return [f.bytes for f in frames], frames[-1].get("User-Id")

    def close(self) -> None:
        for s in self.clients:
            s.close(linger=0)
        self.router.close()
        self.auth.stop()
        self.ctx.term()


@pytest.fixture
def lab(store_url, tmp_path):
    store = Store(store_url)
    lab = Lab(store, tmp_path / "keys")
    yield lab
    lab.close()
    store.close()


def test_a_known_key_is_admitted_and_named_by_the_user_id(lab):
    ana = _key(lab.store, lab.keys, "ana", "viewer")
    lab.client(ana).send(b'{"method": "status"}')
    got = lab.receive(10_000)
    assert got is not None
    frames, user_id = got
    assert frames[-1] == b'{"method": "status"}' and user_id == "ana"
    assert lab.auth.identify(user_id) == Identity("ana", "viewer")


def test_unknown_key_wrong_server_key_and_revoked_key_get_nothing_through(lab):
    ana = _key(lab.store, lab.keys, "ana")
    bob = _key(lab.store, lab.keys, "bob")
    lab.store.revoke_user("bob", by="test")
    lab.client(_stranger(lab.keys)).send(b"stranger")
    lab.client(bob).send(b"revoked")
    lab.client(ana, server_public=ServerKeys.generate().public).send(b"wrong server")
    ok = lab.client(ana)
    ok.send(b"ana")  # sent last: once it is in, the others had their handshakes refused (or never finish one)
    got = lab.receive(10_000)
    assert got is not None and got[0][-1] == b"ana"
    assert lab.receive(300) is None
    assert lab.auth.identify("bob") is None and lab.auth.identify("mallory") is None


def test_revoking_a_connected_user_stops_identify_within_a_second(lab):
    ana = _key(lab.store, lab.keys, "ana", "admin")
    sock = lab.client(ana)
    sock.send(b"hello")
    got = lab.receive(10_000)
    assert got is not None and lab.auth.identify(got[1]) == Identity("ana", "admin")
    lab.store.revoke_user("ana", by="test")
    deadline = time.monotonic() + 10
    while lab.auth.identify("ana") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab.auth.identify("ana") is None
    sock.send(b"after revoke")  # the open connection still delivers: the daemon must refuse it by identify()
    got = lab.receive(10_000)
    assert got is not None and got[1] == "ana" and lab.auth.identify(got[1]) is None


def test_extra_keys_are_admitted_without_a_users_row(store_url, tmp_path):
    store = Store(store_url)
    ctx = zmq.Context()
    keys = ServerKeys.load_or_create(tmp_path / "k")
    child = ServerKeys.generate()
    auth = StoreAuthenticator(ctx, store, extra={child.public: Identity("daemon", "admin")})
    auth.start()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        apply_server(router, keys)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        apply_client(
            dealer,
            ClientKey(
                name="daemon",
                role="admin",
                public_key=child.public_z85(),
                secret_key=child.secret.decode(),
                server_public_key=keys.public_z85(),
            ),
        )
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"x")
        assert router.poll(10_000)
        frames = router.recv_multipart(copy=False)
        assert frames[-1].get("User-Id") == "daemon" and auth.identify("daemon") == Identity("daemon", "admin")
    finally:
        router.close(0)
        dealer.close(0)
        auth.stop()
        ctx.term()
        store.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.booleans())
def test_garbage_from_strangers_never_stops_the_authenticator(sqlite_url, tmp_path, frames, raw_tcp):
    """Random bytes, truncated and multi-frame messages, from a plain TCP socket (a broken handshake) or a CURVE
    client with an unknown key: none arrives, and a known user is still admitted afterwards."""
    import socket

    store = Store(sqlite_url)
    lab = Lab(store, tmp_path / "keys")
    try:
        ana = _key(lab.store, lab.keys, f"ana{time.monotonic_ns()}")
        if raw_tcp:
            host, port = lab.addr[len("tcp://") :].split(":")
            with socket.create_connection((host, int(port)), timeout=2) as s:
                for f in frames:
                    try:
                        s.sendall(f)
                    except OSError:  # the router hung up on the garbage: that is a fine answer
                        break
        else:
            plain = lab.ctx.socket(zmq.DEALER)  # no CURVE at all against a CURVE server
            plain.connect(lab.addr)
            lab.clients.append(plain)
            for sock in (lab.client(_stranger(lab.keys)), plain):
                sock.sndtimeo = 500  # a refused handshake leaves a DEALER no peer: its send would wait forever
                try:
                    sock.send_multipart(frames)
                except zmq.Again:
                    pass
        lab.client(ana).send(b"still here")
        got = lab.receive(10_000)
        assert got is not None and got[0][-1] == b"still here" and got[1] == ana.name
        assert lab.auth.is_alive()
    finally:
        lab.close()
        store.close()


def test_permissions_per_role():
    assert ROLES == ("viewer", "operator", "approver", "admin") and AGENT == "agent"
    table = {
        "viewer": {"status", "watch", "missed", "export", "show", "list"},
        "operator": {
            "status",
            "watch",
            "missed",
            "export",
            "show",
            "list",
            "submit",
            "pause",
            "resume",
            "stop",
            "estop",
        },
        "approver": {"status", "watch", "missed", "export", "show", "list", "approve", "reject"},
    }
    methods = set().union(*table.values()) | {"users.add", "users.revoke", "agents.list", "agent.hello"}
    for role, allowed in table.items():
        for m in methods:
            assert permitted(role, m) == (m in allowed), (role, m)
    assert all(permitted("admin", m) for m in methods - {"agent.hello"})
    assert not permitted("admin", "agent.hello") and permitted(AGENT, "agent.hello")
    assert not any(permitted(AGENT, m) for m in methods - {"agent.hello"})
    assert not permitted("nobody", "status")
    assert [role_needed(m) for m in ("status", "pause", "approve", "users.add", "agent.hello", "frobnicate")] == [
        "viewer",
        "operator",
        "approver",
        "admin",
        "agent",
        "admin",
    ]


def test_a_viewers_pause_is_refused_naming_the_role_needed():
    err = refusal("ana", "viewer", "pause")
    assert isinstance(err, LabloopError)
    assert "ana is a viewer and may not pause" in err.problem and "operator role" in err.problem
    assert "--role operator" in err.fix


def test_server_keys_are_kept_private_and_reused(tmp_path):
    a = ServerKeys.load_or_create(tmp_path / "keys")
    path = tmp_path / "keys" / "server.key"
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(tmp_path / "keys").st_mode & 0o777 == 0o700
    assert ServerKeys.load_or_create(tmp_path / "keys") == a and zmq.curve_public(a.secret) == a.public
    os.chmod(path, 0o644)
    with pytest.raises(LabloopError, match="may be read by other users"):
        ServerKeys.load_or_create(tmp_path / "keys")
    os.chmod(path, 0o600)
    path.write_text("{not json")
    with pytest.raises(LabloopError, match="malformed"):
        ServerKeys.load_or_create(tmp_path / "keys")


def test_client_key_files_are_checked(tmp_path, monkeypatch):
    public, secret = zmq.curve_keypair()
    server = ServerKeys.generate()
    good = {
        "name": "ana",
        "role": "viewer",
        "public_key": public.decode(),
        "secret_key": secret.decode(),
        "server_public_key": server.public_z85(),
        "control": "tcp://127.0.0.1:7510",
        "stream": None,
    }
    path = tmp_path / "ana.key"
    path.write_text(json.dumps(good))
    os.chmod(path, 0o600)
    assert load_client_key(path).name == "ana"
    monkeypatch.setenv("LABLOOP_KEY", str(path))
    assert load_client_key().public_key == public.decode()
    monkeypatch.delenv("LABLOOP_KEY")
    with pytest.raises(LabloopError, match="no key file given"):
        load_client_key()
    with pytest.raises(LabloopError, match="no key file at"):
        load_client_key(tmp_path / "missing.key")
    os.chmod(path, 0o640)
    with pytest.raises(LabloopError, match="may be read by other users"):
        load_client_key(path)
    os.chmod(path, 0o600)
    for bad in (
        {**good, "secret_key": "short"},
        {k: v for k, v in good.items() if k != "name"},
        {**good, "public_key": zmq.curve_keypair()[0].decode()},
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(LabloopError, match="malformed|does not belong"):
            load_client_key(path)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(LabloopError, match="malformed"):
        load_client_key(path)


def _invoke(*args: str):
    from typer.testing import CliRunner

    from labloop.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_users_commands_add_list_revoke_and_refuse_bad_input_changing_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'labloop.db'}"
    keys = tmp_path / "keys"
    r = _invoke(
        "users",
        "add",
        "ana",
        "--role",
        "approver",
        "--out",
        "ana.key",
        "--store",
        url,
        "--keys",
        str(keys),
        "--control",
        "tcp://lab.example:7510",
    )
    assert r.exit_code == 0, r.output
    key = load_client_key(tmp_path / "ana.key")
    assert os.stat(tmp_path / "ana.key").st_mode & 0o777 == 0o600
    assert (key.name, key.role, key.control, key.stream) == (
        "ana",
        "approver",
        "tcp://lab.example:7510",
        "tcp://127.0.0.1:7511",
    )
    assert key.server_public_key == ServerKeys.load_or_create(keys).public_z85()
    store = Store(url)
    assert [(u.name, u.role, u.public_key) for u in store.users()] == [("ana", "approver", key.public_key)]
    assert key.secret_key not in (tmp_path / "labloop.db").read_bytes().decode("latin-1")
    rows_before = len(store.audit_log())

    bad = [
        (("ana", "--role", "viewer", "--out", "other.key"), "already has a user named 'ana'"),
        (("bob", "--role", "boss", "--out", "bob.key"), "unknown role 'boss'"),
        (("bob", "--role", "viewer", "--out", "ana.key"), "ana.key already exists"),
        (("bob", "--role", "viewer", "--out", str(tmp_path / "nope" / "bob.key")), "does not exist or is not"),
        (("b o b", "--role", "viewer", "--out", "bob.key"), "cannot be a user name"),
    ]
    for args, message in bad:
        r = _invoke("users", "add", *args, "--store", url, "--keys", str(keys))
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (args, r.output)
    assert [u.name for u in store.users()] == ["ana"] and len(store.audit_log()) == rows_before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("labloop.db")) == ["ana.key", "keys"]

    r = _invoke(
        "users", "add", "bob", "--role", "agent", "--out", "ana.key", "--force", "--store", url, "--keys", str(keys)
    )
    assert r.exit_code == 0 and load_client_key(tmp_path / "ana.key").name == "bob"
    r = _invoke("users", "list", "--store", url)
    assert r.exit_code == 0 and "ana" in r.output and "agent" in r.output
    r = _invoke("users", "revoke", "ana", "--store", url)
    assert r.exit_code == 0 and store.user("ana").revoked_at is not None and store.user_by_key(key.public_key) is None
    for args, message in ((("ana",), "already revoked"), (("zed",), "no user named 'zed'")):
        r = _invoke("users", "revoke", *args, "--store", url)
        assert r.exit_code == 2 and message in r.output
    assert [a.action for a in store.audit_log()][-3:] == ["users.add", "users.add", "users.revoke"]
    store.close()


def test_an_unreadable_store_admits_nobody_but_the_extra_keys_once_the_table_expires(sqlite_url):
    """The key table is kept fresh by a background thread; when the store cannot be read it is not trusted for
    long (fail closed), and the thread survives the errors and recovers when the store is back."""

    class Flaky:
        def __init__(self, store):
            self.store, self.broken = store, False

        def users(self, include_revoked=True):
            if self.broken:
                raise RuntimeError("database server gone")
            return self.store.users(include_revoked=include_revoked)

    store = Store(sqlite_url)
    store.add_user("ana", "viewer", zmq.curve_keypair()[0].decode(), created_by="test")
    flaky = Flaky(store)
    daemon_key = ServerKeys.generate().public
    ctx = zmq.Context()
    auth = StoreAuthenticator(ctx, flaky, extra={daemon_key: Identity("daemon", "admin")})
    auth.start()
    try:
        assert auth.identify("ana") == Identity("ana", "viewer")
        flaky.broken = True
        deadline = time.monotonic() + 10
        while auth.identify("ana") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert auth.identify("ana") is None and auth.identify("daemon") == Identity("daemon", "admin")
        assert auth.identity_of_key(daemon_key) == Identity("daemon", "admin")
        flaky.broken = False
        deadline = time.monotonic() + 10
        while auth.identify("ana") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert auth.identify("ana") == Identity("ana", "viewer")
    finally:
        auth.stop()
        ctx.term()
        store.close()


def test_server_keys_made_by_several_at_once_are_one_pair(tmp_path):
    """A daemon and `labloop users add` starting together: nobody reads a half-written file, all get one pair."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        pairs = list(pool.map(lambda _: ServerKeys.load_or_create(tmp_path / "keys"), range(16)))
    assert len(set(pairs)) == 1 and pairs[0] == ServerKeys.load_or_create(tmp_path / "keys")
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["server.key"]


def test_keys_load_in_a_process_that_imported_nothing_else(tmp_path):
    """A fresh client process (no zmq.auth imported) reads the daemon's keys: the Z85 check needs no help."""
    import subprocess
    import sys

    ServerKeys.load_or_create(tmp_path / "keys")
    code = (
        "import sys; from pathlib import Path; from labloop.identity.keys import ServerKeys; "
        "print(ServerKeys.load_or_create(Path(sys.argv[1])).public_z85())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "keys")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ServerKeys.load_or_create(tmp_path / "keys").public_z85()
