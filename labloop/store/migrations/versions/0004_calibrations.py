"""Calibrations: each device calibration against a reference, with its fitted result and who made it.

Schema 6: table ``calibrations`` (campaign (nullable: a calibration outside any campaign), device, when, reference
JSON, result JSON, ok, user, the device's calibration id, the run that measured it) with index
``ix_calibrations_device`` (device, id). Existing stores get an empty table: nothing was calibrated through labloop.

Revision ID: 0004_calibrations
Revises: 0003_assets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_calibrations"
down_revision = "0003_assets"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
META = sa.table("labloop_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=True),
        sa.Column("device", sa.String(80), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("user", sa.String(80), nullable=False),
        sa.Column("calibration_id", sa.String(80), nullable=True),
        sa.Column("run_uid", sa.String(36), nullable=True),
    )
    op.create_index("ix_calibrations_device", "calibrations", ["device", "id"])
    op.execute(META.update().where(META.c.key == "schema_version").values(value="6"))


def downgrade() -> None:
    op.execute(META.update().where(META.c.key == "schema_version").values(value="5"))
    op.drop_index("ix_calibrations_device", table_name="calibrations")
    op.drop_table("calibrations")
