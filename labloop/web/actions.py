"""What the dashboard's buttons do: the same acknowledged operator requests the CLI makes, checked and audited.

Who may press what is decided here, once, by the daemon's role table (:func:`labloop.identity.roles.permitted`), so
the browser, the CLI and scripts obey one rule; the page only hides buttons a role may not use. Every accepted and
every refused action is written to the hash-chained audit log with the verified user, role and address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labloop.control.requests import ask_runner
from labloop.errors import LabloopError
from labloop.identity.accounts import WebUser
from labloop.identity.roles import permitted, role_needed
from labloop.store import Store
from labloop.store.schema import Campaign

#: dashboard action -> the daemon method it is (the role table is keyed by method)
ACTIONS = ("pause", "resume", "stop", "estop", "approve", "reject")


class Forbidden(LabloopError):
    """The user's role does not allow the action (HTTP 403)."""


def check(
    store: Store, user: WebUser, address: str, campaign: Campaign | None, action: str, args: dict[str, Any]
) -> None:
    """Raise :class:`Forbidden` (and audit the refusal) unless ``user``'s role may do ``action``."""
    if permitted(user.role, action):
        return
    need = role_needed(action)
    store.audit(
        campaign.id if campaign else None,
        f"web.{action}",
        {"args": args, "why": f"role {user.role} may not {action}; needs {need}"},
        user.name,
        role=user.role,
        address=address,
        outcome="refused",
    )
    raise Forbidden(
        f"{user.name} ({user.role}) may not {action}: that needs the {need} role",
        "ask an admin for that role, or ask someone who has it",
    )


Runner = Callable[[Store, Campaign, str, dict[str, Any], str, float], str]


def store_runner(store: Store, c: Campaign, action: str, args: dict[str, Any], user: str, wait: float) -> str:
    """Carry out ``action`` through the store's acknowledged requests (the campaign's runner answers). Inside the
    daemon the dashboard is given the daemon's own dispatcher instead
    (:func:`labloop.control.dispatch.daemon_dispatcher`, wired by ``labloop serve --http``)."""
    return ask_runner(store, c, action, args, user, wait)


def act(
    store: Store,
    user: WebUser,
    address: str,
    c: Campaign,
    action: str,
    args: dict[str, Any],
    runner: Runner = store_runner,
    wait: float = 5.0,
) -> str:
    """Check, audit, carry out. Returns the runner's answer; raises LabloopError when refused or unanswered."""
    if action not in ACTIONS:
        raise LabloopError(f"'{action}' is not an action", f"use one of: {', '.join(ACTIONS)}")
    check(store, user, address, c, action, args)
    try:
        outcome = runner(store, c, action, args, user.name, wait)
    except LabloopError as exc:
        store.audit(
            c.id,
            f"web.{action}",
            {"args": args, "why": exc.problem},
            user.name,
            role=user.role,
            address=address,
            outcome="failed",
        )
        raise
    store.audit(
        c.id,
        f"web.{action}",
        {"args": args, "answer": outcome},
        user.name,
        role=user.role,
        address=address,
        outcome="done",
    )
    return outcome
