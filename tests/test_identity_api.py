"""labloop.identity: the one place the daemon, the dashboard and the CLI get identity from (keys, roles, users,
passwords, tokens, sessions). The CLI's and the daemon's own tests (test_identity, test_web, test_cli) cover the
behaviour end to end; these check the shared API directly."""

from __future__ import annotations

import json
import stat

import pytest

from labloop import identity
from labloop.errors import LabloopError, SpecError
from labloop.identity import accounts, users
from labloop.store import Store


@pytest.fixture
def store(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 'id.db'}")
    yield st
    st.close()


def test_the_package_names_its_api_and_finds_each_name(tmp_path):
    for name in identity.__all__:
        assert getattr(identity, name) is not None
    assert identity.permitted("operator", "pause") and not identity.permitted("viewer", "pause")
    with pytest.raises(AttributeError):
        identity.nothing_here  # noqa: B018


def test_enroll_writes_a_private_key_file_and_records_only_the_public_key(store, tmp_path):
    out = tmp_path / "ana.key"
    key = users.enroll(store, "ana", "operator", out, by="admin", keys_dir=tmp_path / "keys")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["secret_key"] == key.secret_key
    row = store.user("ana")
    assert row.public_key == key.public_key and row.role == "operator" and row.created_by == "admin"
    assert [u.name for u in users.admitted(store)] == ["ana"]
    with pytest.raises(LabloopError, match="already has a user named 'ana'"):
        users.enroll(store, "ana", "viewer", tmp_path / "again.key", by="admin", keys_dir=tmp_path / "keys")
    assert not (tmp_path / "again.key").exists()


@pytest.mark.parametrize(
    "name, role, why", [("-bad", "operator", "cannot be a user name"), ("bob", "boss", "unknown role 'boss'")]
)
def test_enroll_refuses_a_bad_name_or_role_before_writing_anything(store, tmp_path, name, role, why):
    out = tmp_path / "k.key"
    with pytest.raises(LabloopError, match=why):
        users.enroll(store, name, role, out, by="admin", keys_dir=tmp_path / "keys")
    assert not out.exists() and users.everyone(store) == []


def test_revoke_and_agent_key_say_what_is_wrong(store, tmp_path):
    users.enroll(store, "pc1", "agent", tmp_path / "pc1.key", by="admin", keys_dir=tmp_path / "keys")
    users.enroll(store, "ana", "operator", tmp_path / "ana.key", by="admin", keys_dir=tmp_path / "keys")
    assert users.agent_key(store, "pc1") == store.user("pc1").public_key
    with pytest.raises(SpecError, match="is a operator, not an agent"):
        users.agent_key(store, "ana")
    with pytest.raises(SpecError, match="no agent called 'nobody'"):
        users.agent_key(store, "nobody")
    users.revoke(store, "pc1", by="admin")
    with pytest.raises(SpecError, match="agent 'pc1' was revoked"):
        users.agent_key(store, "pc1")
    assert [u.name for u in users.admitted(store)] == ["ana"]
    assert [u.name for u in users.everyone(store)] == ["ana", "pc1"]


def test_passwords_tokens_and_sessions_through_the_store(store, tmp_path):
    users.enroll(store, "ana", "approver", tmp_path / "ana.key", by="admin", keys_dir=tmp_path / "keys")
    accounts.set_password(store, "ana", "correct horse battery", by="admin")
    cookie, user = accounts.login(store, "ana", "correct horse battery")
    assert (user.name, user.role) == ("ana", "approver") and user.csrf
    assert accounts.session_user(store, cookie).name == "ana"
    assert accounts.login(store, "ana", "wrong password!") is None
    token = accounts.issue_token(store, "ana", by="admin")
    assert accounts.token_user(store, token).name == "ana"
    accounts.set_password(store, "ana", "another long one")  # signs every open session out
    assert accounts.session_user(store, cookie) is None
    cookie, _ = accounts.login(store, "ana", "another long one")
    accounts.logout(store, cookie)
    assert accounts.session_user(store, cookie) is None
    audited = [
        (a.action, a.user, a.detail) for a in store.audit_log(None) if a.action in ("users.passwd", "users.token")
    ]
    assert audited == [("users.passwd", "admin", {"name": "ana"}), ("users.token", "admin", {"name": "ana"})]
