"""Web login: a password and an API token per user, and the dashboard's server-side sessions.

Schema 8:
- ``users`` gains ``password_hash`` (scrypt, with its salt and parameters) and ``token_hash`` (sha256 of the user's
  API token: a token is 32 random bytes, so a fast hash is enough and lets a request be checked in microseconds);
- table ``web_sessions``: one row per signed-in browser, keyed by the sha256 of the session cookie (a stolen
  database does not give live cookies), with its CSRF token, expiry and last use. A row, not a signed cookie, so
  that signing out, expiry and revoking a user take effect at once on every open page.

Revision ID: 0006_web_login
Revises: 0005_connected_lab
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_web_login"
down_revision = "0005_connected_lab"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
META = sa.table("labloop_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(200), nullable=True))
        batch.add_column(sa.Column("token_hash", sa.String(64), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("address", sa.String(200), nullable=True),
    )
    op.execute(META.update().where(META.c.key == "schema_version").values(value="8"))


def downgrade() -> None:
    op.execute(META.update().where(META.c.key == "schema_version").values(value="7"))
    op.drop_table("web_sessions")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_hash")
        batch.drop_column("password_hash")
