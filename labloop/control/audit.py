"""Recording and checking the audit trail of daemon commands: who (verified name and role), from where, what
(command and arguments), and with which outcome, as a row of the store's hash-chained audit log.

Every accepted and every refused command goes through :func:`record`, so refusals are traceable as well; values
that come from the wire are cut to the columns' sizes here, so a hostile 1 MiB method name cannot make the
recording itself fail.
"""

from __future__ import annotations

import json
from typing import Any

from labloop.store import chain

#: Largest arguments kept verbatim (characters of their JSON); longer ones are kept cut, with their full size.
MAX_ARGS_CHARS = 4000


def _cut(value: Any, n: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def record(
    store: Any,
    *,
    user: str,
    role: str | None,
    address: str | None,
    command: str,
    args: Any,
    outcome: str,
    campaign_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one chained audit row for a command (``outcome``: accepted | refused | done | failed)."""
    store.audit(
        **entry(
            user=user,
            role=role,
            address=address,
            command=command,
            args=args,
            outcome=outcome,
            campaign_id=campaign_id,
            detail=detail,
        )
    )


def entry(
    *,
    user: str,
    role: str | None,
    address: str | None,
    command: str,
    args: Any,
    outcome: str,
    campaign_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``Store.audit`` for a command's row: what :func:`record` writes, or what a
    ``Store.request`` writes in the request's own transaction (one commit instead of two)."""
    body: dict[str, Any] = dict(detail or {})
    try:
        text = json.dumps(args, default=repr)
    except (TypeError, ValueError):  # circular, or not JSON at all
        text = repr(args)
    if len(text) > MAX_ARGS_CHARS:
        body["args_truncated"] = {"chars": len(text), "start": text[:MAX_ARGS_CHARS]}
    else:
        body["args"] = args
    if len(command) > 40:
        body["command"] = _cut(command, MAX_ARGS_CHARS)
    return {
        "campaign_id": campaign_id,
        "action": _cut(command, 40),
        "detail": body,
        "user": _cut(user, 80),
        "role": _cut(role, 20) if role else None,
        "address": _cut(address, 200) if address else None,
        "outcome": _cut(outcome, 20),
    }


def verify(store: Any) -> list[str]:
    """Human-readable problems with the chain (altered, deleted, reordered or unsealed rows); [] when intact."""
    rows, last = store.audit_chain()
    return chain.problems(rows, last)
