"""People and agents: enrolling one (their key pair, their key file, their row), listing, revoking, and finding an
agent's public key.

Why here and not in the CLI: ``labloop users add`` and any admin tool must make the same checks (a usable name, a
known role, a key file nobody else may read, no key file left behind for a user the store refused); the daemon's
campaign child looks agents up by name with the same rules. The rows themselves are written by the store
(:mod:`labloop.store.users`, audited in the same transaction).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from labloop.errors import LabloopError, SpecError

from .keys import DEFAULT_CONTROL, DEFAULT_KEYS_DIR, DEFAULT_STREAM, ClientKey, ServerKeys, write_private
from .roles import AGENT, ALL_ROLES

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,79}$")


def check_name(name: str, role: str) -> None:
    """Refuse a name the audit log could not show plainly, or an unknown role."""
    if not NAME.match(name):
        raise LabloopError(
            f"'{name}' cannot be a user name",
            "use 1-80 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
        )
    if role not in ALL_ROLES:
        raise LabloopError(f"unknown role '{role}'", f"choose one of: {', '.join(ALL_ROLES)}")


def check_out(out: Path, force: bool) -> None:
    """Refuse a key-file path that is a folder, exists (unless ``force``) or cannot be written."""
    if out.is_dir():
        raise LabloopError(f"{out} is a folder", "give --out a file name, e.g. --out ana.key")
    if out.exists() and not force:
        raise LabloopError(f"{out} already exists", "choose another --out file, or pass --force to replace it")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise LabloopError(
            f"cannot write {out}: the folder {folder} does not exist or is not writable",
            "choose a file in a folder you may write",
        )


def enroll(
    store: Any,
    name: str,
    role: str,
    out: Path,
    *,
    by: str,
    keys_dir: Path | None = None,
    control: str = "",
    stream: str = "",
    force: bool = False,
) -> ClientKey:
    """Make NAME's key pair, write their key file ``out`` (mode 0600, with the daemon's public key from
    ``keys_dir`` and the addresses to reach it) and record their public key with ``role``. The secret key exists
    only in ``out``; if the store refuses the user, ``out`` is removed again."""
    import zmq

    check_name(name, role)
    check_out(out, force)
    if store.user(name) is not None:
        raise LabloopError(
            f"the store already has a user named '{name}'",
            "choose another name (`labloop users list` shows them); a revoked name stays taken",
        )
    server = ServerKeys.load_or_create(keys_dir or DEFAULT_KEYS_DIR)
    public, secret = zmq.curve_keypair()
    key = ClientKey(
        name=name,
        role=role,
        public_key=public.decode(),
        secret_key=secret.decode(),
        server_public_key=server.public_z85(),
        control=control or DEFAULT_CONTROL,
        stream=stream or DEFAULT_STREAM,
    )
    write_private(out, json.dumps(key.model_dump(), indent=2) + "\n", force=force)
    try:
        store.add_user(name, role, key.public_key, created_by=by)
    except BaseException:
        out.unlink(missing_ok=True)  # nothing changed: no key file for a user the store does not know
        raise
    return key


def everyone(store: Any) -> list[Any]:
    """Every user row by name, revoked ones too (the audit log names them)."""
    return list(store.users())


def admitted(store: Any) -> list[Any]:
    """The users whose keys are admitted now (not revoked): what the daemon's key table holds."""
    return list(store.users(include_revoked=False))


def revoke(store: Any, name: str, by: str) -> Any:
    """Refuse NAME's key from now on (the row stays for the audit log); audited."""
    return store.revoke_user(name, by=by)


def agent_key(store: Any, agent: str) -> str:
    """The Z85 public key of the agent called ``agent``: it must exist, have the agent role and not be revoked."""
    row = store.user(agent)
    if row is None:
        raise SpecError(
            f"the store has no agent called '{agent}'",
            f"on the store run `labloop users add {agent} --role agent --out {agent}.key` and start the "
            "agent with that key file",
        )
    if row.role != AGENT:
        raise SpecError(
            f"'{agent}' in the store is a {row.role}, not an agent", "name the agent's own entry (role agent)"
        )
    if row.revoked_at is not None:
        raise SpecError(f"agent '{agent}' was revoked", f"add it again: `labloop users add {agent} --role agent`")
    return str(row.public_key)
