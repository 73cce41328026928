"""Shared by the dashboard tests: users with passwords and tokens in a real store, a dashboard served by uvicorn."""

from __future__ import annotations

import zmq

from labloop.identity import accounts
from labloop.store import Store

PASSWORD = "correct horse battery"


def add_user(store: Store, name: str, role: str, password: str = PASSWORD) -> str:
    """A user the daemon would know (CURVE public key in the store), with a dashboard password; returns their
    API token."""
    public, _secret = zmq.curve_keypair()
    store.add_user(name, role, public.decode(), created_by="test")
    accounts.set_password(store, name, password)
    return accounts.issue_token(store, name)
