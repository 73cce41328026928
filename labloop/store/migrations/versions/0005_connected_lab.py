"""The connected lab: verified users and agents, a hash-chained audit log, campaign leases and the live stream's log.

Schema 7:
- table ``users``: one row per person or agent with the CURVE public key (Z85) the daemon's ZAP handler checks,
  their role, who added them, and ``revoked_at`` (a revoked key is refused from then on; the row stays so the audit
  log keeps naming them);
- ``audit`` gains ``role``, ``address``, ``outcome`` and the chain columns ``prev_hash`` / ``hash`` (sha256 of the
  previous row's hash and this row's canonical content), so that an altered or deleted row breaks the chain;
- table ``leases``: which runner holds a campaign until when (one runner at a time across daemons sharing a store);
  ``token`` grows with every new holder, so a runner that lost its lease can tell;
- table ``events``: every message of a campaign's live stream (event-model documents by reference and campaign
  events) with a per-campaign sequence number, so a subscriber that missed some asks for them and loses nothing.

Existing stores get empty users, leases and events tables; their audit rows are sealed here, chained in id order
(``labloop.store.chain``), and the chain's tip recorded in ``labloop_meta``.

Revision ID: 0005_connected_lab
Revises: 0004_calibrations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_connected_lab"
down_revision = "0004_calibrations"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
META = sa.table("labloop_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("public_key", sa.String(40), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
    )
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=True))
        batch.add_column(sa.Column("address", sa.String(200), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(20), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    op.create_table(
        "leases",
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("acquired_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.UniqueConstraint("campaign_id", "seq", name="uq_events_campaign_seq"),
    )
    from labloop.store import chain  # the hash of a row is defined once, there

    chain.seal(op.get_bind())
    op.execute(META.update().where(META.c.key == "schema_version").values(value="7"))


def downgrade() -> None:
    op.execute(META.update().where(META.c.key == "schema_version").values(value="6"))
    op.execute(META.delete().where(META.c.key == "audit_tip"))
    op.drop_table("events")
    op.drop_table("leases")
    with op.batch_alter_table("audit") as batch:
        for col in ("hash", "prev_hash", "outcome", "address", "role"):
            batch.drop_column(col)
    op.drop_table("users")
