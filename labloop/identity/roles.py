"""Roles: who may call which daemon method, the one table the daemon, the dashboard and the CLI obey.

Why one table: the daemon checks each control request against it, the dashboard checks each button against it and
hides what a role may not use, ``labloop users add`` checks the role it is given; a rule written twice drifts.
"""

from __future__ import annotations

from typing import NamedTuple

from labloop.errors import LabloopError

ROLES = ("viewer", "operator", "approver", "admin")
AGENT = "agent"
ALL_ROLES = ROLES + (AGENT,)

#: What a viewer may do: read, watch, export.
VIEWER_METHODS = frozenset({"status", "watch", "missed", "export", "show", "list"})
#: An operator also steers campaigns.
OPERATOR_METHODS = VIEWER_METHODS | {"submit", "pause", "resume", "stop", "estop"}
#: An approver decides on proposals (and reads like a viewer); steering is not theirs.
APPROVER_METHODS = VIEWER_METHODS | {"approve", "reject"}
#: Prefixes only an admin may use (user and agent management).
ADMIN_PREFIXES = ("users.", "agents.")
#: Agent traffic (registration, heartbeats, device replies) is its own namespace; only agents send it.
AGENT_PREFIX = "agent."

_ROLE_METHODS = {"viewer": VIEWER_METHODS, "operator": OPERATOR_METHODS, "approver": APPROVER_METHODS}


def role_needed(method: str) -> str:
    """The least role that may call ``method`` (``admin`` for anything not granted to another role)."""
    if method.startswith(AGENT_PREFIX):
        return AGENT
    for role in ("viewer", "operator", "approver"):
        if method in _ROLE_METHODS[role]:
            return role
    return "admin"


def permitted(role: str, method: str) -> bool:
    """May someone with ``role`` call ``method``? Agents only send agent traffic; people never do."""
    if method.startswith(AGENT_PREFIX) or role == AGENT:
        return role == AGENT and method.startswith(AGENT_PREFIX)
    if role == "admin":
        return True
    return method in _ROLE_METHODS.get(role, ())


def a_role(role: str) -> str:
    """'an admin', 'an operator', 'an approver', 'a viewer': the role with its article, for messages."""
    return f"{'an' if role[:1].lower() in 'aeiou' else 'a'} {role}"


def refusal(name: str, role: str, method: str) -> LabloopError:
    """The error a refused request gets: who asked, in which role, and the role that ``method`` needs."""
    needed = role_needed(method)
    if needed == AGENT:
        return LabloopError(
            f"{name} ({role}) may not send '{method}': only agents send agent traffic",
            "this message is for the agent connection, not for people's clients",
        )
    also = "" if needed == "admin" else " or admin"
    return LabloopError(
        f"{name} is {a_role(role)} and may not {method}: that needs the {needed} role{also}",
        f"ask someone with the {needed} role, or ask an admin for a key with it "
        f"(`labloop users add NAME --role {needed} --out FILE`)",
    )


class Identity(NamedTuple):
    """Who an admitted key (or a connection's User-Id) belongs to."""

    name: str
    role: str
