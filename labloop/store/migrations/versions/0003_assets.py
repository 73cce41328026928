"""Assets: files of large data (spectra, diffraction patterns, images) that runs reference, with their checksums.

Schema 5: table ``assets`` (campaign, trial, run uid, absolute path, sha256, size in bytes, when recorded) with
indexes ``ix_assets_campaign`` (campaign_id, id) and ``ix_assets_run_uid``. Existing stores get an empty table:
their runs referenced no files.

Revision ID: 0003_assets
Revises: 0002_operator_requests
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_assets"
down_revision = "0002_operator_requests"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
META = sa.table("labloop_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id"), nullable=True),
        sa.Column("run_uid", sa.String(36), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_assets_campaign", "assets", ["campaign_id", "id"])
    op.create_index("ix_assets_run_uid", "assets", ["run_uid"])
    op.execute(META.update().where(META.c.key == "schema_version").values(value="5"))


def downgrade() -> None:
    op.execute(META.update().where(META.c.key == "schema_version").values(value="4"))
    op.drop_index("ix_assets_run_uid", table_name="assets")
    op.drop_index("ix_assets_campaign", table_name="assets")
    op.drop_table("assets")
