"""Who may use the dashboard: passwords, API tokens and server-side sessions, for the users the daemon knows.

Part of :mod:`labloop.identity` (the CLI sets passwords and tokens, the dashboard checks them; neither imports the
other). Everything goes through the store's ORM session: rows are loaded, changed or deleted as objects.

The dashboard signs in the same people as the daemon's CURVE sockets (the ``users`` table, one role each). A browser
cannot hold a CURVE key, so each user may also have a password (``labloop users passwd``) and an API token for
scripts (``labloop users token``). Why these choices:

- Passwords are hashed with scrypt (Python's ``hashlib``; memory-hard, no extra dependency), with a per-user salt and
  the parameters stored beside the hash so they can be raised later without breaking old hashes.
- A token is 32 random bytes: guessing is hopeless, so its sha256 is enough to store, and checking a scripted request
  costs microseconds instead of scrypt's tens of milliseconds.
- A session is a row keyed by the sha256 of its cookie, not a signed cookie: signing out, expiry and revoking a user
  act at once on every open page, and a copy of the database holds no live cookie. Each session has its own CSRF
  token, which every state-changing request must echo in a header (a cross-site form cannot read it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import select

from labloop.errors import LabloopError
from labloop.store import Store
from labloop.store.schema import User, WebSession, utcnow
from labloop.store.times import utc

#: scrypt cost: n=2**14, r=8, p=1 takes ~30-60 ms and 16 MiB here, the common interactive-login setting.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_HOURS = 12.0
#: how stale a session's ``last_seen`` may get before a request refreshes it
LAST_SEEN_EVERY = timedelta(minutes=1)
#: a password shorter than this is refused when it is set
MIN_PASSWORD = 10


@dataclass(frozen=True)
class WebUser:
    """A signed-in person as the dashboard sees them: their name and role, and the session's CSRF token (None for
    API-token requests, which carry no cookie and so need no CSRF check)."""

    name: str
    role: str
    csrf: str | None = None


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _active_user(store: Store, name: str) -> User:
    with store.session() as s:
        u = s.scalar(select(User).where(User.name == name))
        if u is None:
            raise LabloopError(
                f"no user named '{name}' in the store", "add them with `labloop users add NAME --role ROLE`"
            )
        if u.revoked_at is not None:
            raise LabloopError(f"user '{name}' was revoked", "add a new user; a revoked name stays in the audit log")
        s.expunge(u)
        return u


def _sessions_of(s: Any, user_id: int) -> list[WebSession]:
    return list(s.scalars(select(WebSession).where(WebSession.user_id == user_id)))


def set_password(store: Store, name: str, password: str, by: str | None = None) -> None:
    """Give ``name`` a dashboard password (replacing any earlier one, and signing out their open sessions).
    ``by``: who set it, audited as ``users.passwd`` (the CLI's ``users passwd``)."""
    if len(password) < MIN_PASSWORD:
        raise LabloopError(
            f"the password is too short ({len(password)} characters)",
            f"choose one of at least {MIN_PASSWORD} characters",
        )
    u = _active_user(store, name)
    with store.session() as s:
        # _active_user found the row, and users are never deleted (only disabled)
        cast(User, s.get(User, u.id)).password_hash = hash_password(password)
        for row in _sessions_of(s, u.id):
            s.delete(row)
    if by is not None:
        store.audit(None, "users.passwd", {"name": name}, by)


def issue_token(store: Store, name: str, by: str | None = None) -> str:
    """Make a new API token for ``name`` (the old one stops working) and return it; only its hash is kept.
    ``by``: who made it, audited as ``users.token``."""
    u = _active_user(store, name)
    token = f"llt_{secrets.token_urlsafe(32)}"
    with store.session() as s:
        cast(User, s.get(User, u.id)).token_hash = _sha(token)  # found above; users are never deleted
    if by is not None:
        store.audit(None, "users.token", {"name": name}, by)
    return token


def login(store: Store, name: str, password: str, address: str | None = None) -> tuple[str, WebUser] | None:
    """Check a name and password; on success open a session and return (cookie value, user). None on any
    failure, the same for an unknown name as for a wrong password (no hint which it was)."""
    with store.session() as s:
        u = s.scalar(select(User).where(User.name == name))
        stored = u.password_hash if u is not None and u.revoked_at is None else None
    if not check_password(password, stored) or u is None:
        if stored is None:  # spend the same time as a real check, so timing does not tell names apart
            check_password(password, hash_password("x", salt=b"0" * 16))
        return None
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    with store.session() as s:
        s.add(
            WebSession(
                id_hash=_sha(cookie),
                user_id=u.id,
                csrf=csrf,
                created_at=now,
                last_seen=now,
                expires_at=now + timedelta(hours=SESSION_HOURS),
                address=address,
            )
        )
    return cookie, WebUser(u.name, u.role, csrf)


def session_user(store: Store, cookie: str | None) -> WebUser | None:
    """The user of a live session, or None (unknown, expired, signed out or revoked). Refreshes last use at most
    once a minute."""
    if not cookie:
        return None
    now = utcnow()
    with store.session() as s:
        row = s.get(WebSession, _sha(cookie))
        if row is None:
            return None
        if utc(row.expires_at) <= now:
            s.delete(row)
            return None
        u = s.get(User, row.user_id)
        if u is None or u.revoked_at is not None:
            s.delete(row)
            return None
        if now - utc(row.last_seen) > LAST_SEEN_EVERY:  # a write per request would put an fsync on every GET
            row.last_seen = now
        return WebUser(u.name, u.role, row.csrf)


def token_user(store: Store, token: str | None) -> WebUser | None:
    """The user an ``Authorization: Bearer`` token belongs to, or None."""
    if not token or not token.startswith("llt_"):
        return None
    with store.session() as s:
        u = s.scalar(select(User).where(User.token_hash == _sha(token)))
        if u is None or u.revoked_at is not None:
            return None
        return WebUser(u.name, u.role, None)


def logout(store: Store, cookie: str | None) -> None:
    if cookie:
        with store.session() as s:
            row = s.get(WebSession, _sha(cookie))
            if row is not None:
                s.delete(row)


def expire_session(store: Store, cookie: str) -> None:
    """Make a session expired now (tests of the expired-session page; an admin tool later)."""
    with store.session() as s:
        row = s.get(WebSession, _sha(cookie))
        if row is not None:
            row.expires_at = utcnow() - timedelta(seconds=1)
