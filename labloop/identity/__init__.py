"""Identity, in one place: who someone is and what they may do, for the daemon, the dashboard and the CLI alike.

* :mod:`.roles`: the role table (``permitted``, ``role_needed``, ``refusal``, ``ROLES``, ``AGENT``, ``Identity``).
* :mod:`.keys`: CURVE key pairs and key files (``ServerKeys``, ``ClientKey``, ``load_client_key``,
  ``write_private``, ``apply_client``/``apply_server``, the daemon's default addresses).
* :mod:`.users`: enrolling, listing and revoking people and agents (``enroll``, ``everyone``, ``admitted``,
  ``revoke``, ``agent_key``); the rows are the store's ``users`` table.
* :mod:`.accounts`: the dashboard's passwords, API tokens and sessions (``set_password``, ``issue_token``, ``login``,
  ``session_user``, ``token_user``, ``logout``, ``WebUser``), through the store's ORM.

The ZAP handler that admits keys on the daemon's sockets is transport, not identity: :mod:`labloop.control.auth`.
The package sits just above ``store`` in the layers; names are looked up lazily so that importing the role table
(the operator CLI) loads neither pyzmq nor SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    **dict.fromkeys(
        ("ROLES", "AGENT", "ALL_ROLES", "Identity", "permitted", "role_needed", "refusal", "a_role"), "roles"
    ),
    **dict.fromkeys(
        (
            "ServerKeys",
            "ClientKey",
            "load_client_key",
            "write_private",
            "check_private",
            "apply_client",
            "apply_server",
            "DEFAULT_KEYS_DIR",
            "DEFAULT_CONTROL",
            "DEFAULT_STREAM",
        ),
        "keys",
    ),
    **dict.fromkeys(("enroll", "everyone", "admitted", "revoke", "agent_key"), "users"),
    **dict.fromkeys(
        (
            "WebUser",
            "set_password",
            "issue_token",
            "login",
            "logout",
            "session_user",
            "token_user",
            "expire_session",
            "SESSION_HOURS",
            "MIN_PASSWORD",
        ),
        "accounts",
    ),
}

__all__ = sorted(_WHERE)  # noqa: PLE0605 - the lazily loaded names, listed once in _WHERE


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'labloop.identity' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
