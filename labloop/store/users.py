"""The people and agents a daemon admits: their CURVE public keys and roles, kept in the store.

Whoever can write the store administers it: ``labloop users add`` / ``revoke`` write here directly, and every
daemon's ZAP handler re-reads the table within half a second. Adding and revoking are audited in the same
transaction as the change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from labloop.errors import StoreError

from . import chain
from .schema import User, utcnow


class UsersMixin:
    """Store methods for ``users`` (mixed into :class:`labloop.store.Store`)."""

    session: Any
    _display_url: Any

    def add_user(self, name: str, role: str, public_key: str, created_by: str) -> User:
        """Record a user (or agent) with its Z85 public key. A taken name or key is refused, nothing written."""
        if self.user(name) is not None:
            raise StoreError(
                f"the store {self._display_url()} already has a user named '{name}'",
                f"choose another name, or `labloop users revoke {name}` first if it is to be replaced "
                "(a revoked name stays taken: the audit log keeps naming it)",
            )
        try:
            with self.session() as s:
                row = User(name=name, role=role, public_key=public_key, created_by=created_by, created_at=utcnow())
                s.add(row)
                s.flush()
                chain.append(
                    s,
                    campaign_id=None,
                    user=created_by,
                    action="users.add",
                    outcome="done",
                    detail={"name": name, "role": role, "public_key": public_key},
                )
                return row
        except IntegrityError:  # another process added the same name (or, impossibly, key) meanwhile
            raise StoreError(
                f"the store {self._display_url()} already has a user named '{name}' or that key", "choose another name"
            ) from None

    def users(self, include_revoked: bool = True) -> list[User]:
        """Users by name; with ``include_revoked=False`` only those whose keys are admitted."""
        with self.session() as s:
            q = select(User).order_by(User.name)
            if not include_revoked:
                q = q.where(User.revoked_at.is_(None))
            return list(s.scalars(q))

    def user(self, name: str) -> User | None:
        with self.session() as s:
            return s.scalars(select(User).where(User.name == name)).first()

    def user_by_key(self, public_key: str) -> User | None:
        """The non-revoked user whose Z85 public key this is."""
        with self.session() as s:
            return s.scalars(select(User).where(User.public_key == public_key, User.revoked_at.is_(None))).first()

    def revoke_user(self, name: str, by: str) -> User:
        """Revoke a user's key from now on (the row stays for the audit log). Unknown or already revoked: refused."""
        with self.session() as s:
            row = s.scalars(select(User).where(User.name == name)).first()
            if row is None:
                raise StoreError(
                    f"the store {self._display_url()} has no user named '{name}'",
                    "see `labloop users list` for the names it has",
                )
            if row.revoked_at is not None:
                raise StoreError(
                    f"'{name}' was already revoked at {row.revoked_at:%Y-%m-%d %H:%M:%S}",
                    "nothing to do; `labloop users add` makes a new key under another name",
                )
            now = utcnow()
            s.execute(update(User).where(User.id == row.id, User.revoked_at.is_(None)).values(revoked_at=now))
            chain.append(
                s,
                campaign_id=None,
                user=by,
                action="users.revoke",
                outcome="done",
                detail={"name": name, "role": row.role, "public_key": row.public_key},
            )
            row.revoked_at = now
            return row
