"""Operator requests (acknowledged pause/resume/stop/estop/approve/reject) and the runner's process start time.

Schema 4 (commit 24a300f): table ``operator_requests`` with index ``ix_requests_pending`` and column
``campaigns.runner_started`` (Float, nullable; existing campaigns get NULL: their runner's start time is unknown).

Revision ID: 0002_operator_requests
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_operator_requests"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
META = sa.table("labloop_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "operator_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("user", sa.String(80), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("handled_at", TZ, nullable=True),
    )
    op.create_index("ix_requests_pending", "operator_requests", ["campaign_id", "state"])
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("runner_started", sa.Float(), nullable=True))
    op.execute(META.update().where(META.c.key == "schema_version").values(value="4"))


def downgrade() -> None:
    op.execute(META.update().where(META.c.key == "schema_version").values(value="3"))
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("runner_started")
    op.drop_index("ix_requests_pending", table_name="operator_requests")
    op.drop_table("operator_requests")
