"""Consumables and inventory: stock levels per campaign and every movement of them.

Schema 9:
- table ``stocks``: one row per consumable of a campaign (``lab.consumables``): level on the shelf, reserved by
  proposed trials, used items waiting for cleaning, the alert threshold;
- table ``stock_movements``: initial amounts, reservations, draws, releases and refills, each with the level after
  it and who made it (a refill is also an audit row).

Revision ID: 0007_inventory
Revises: 0006_web_login
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_inventory"
down_revision = "0006_web_login"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
META = sa.table("labloop_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "stocks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("unit", sa.String(10), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("reserved", sa.Float(), nullable=False),
        sa.Column("used", sa.Float(), nullable=False),
        sa.Column("alert_below", sa.Float(), nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("campaign_id", "name", name="uq_stocks_campaign_name"),
    )
    op.create_table(
        "stock_movements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("stock_id", sa.Integer(), sa.ForeignKey("stocks.id"), nullable=False),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id"), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("level_after", sa.Float(), nullable=False),
        sa.Column("user", sa.String(80), nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_stock_movements_stock", "stock_movements", ["stock_id", "id"])
    op.create_index("ix_stock_movements_trial_id", "stock_movements", ["trial_id"])
    op.execute(META.update().where(META.c.key == "schema_version").values(value="9"))


def downgrade() -> None:
    op.execute(META.update().where(META.c.key == "schema_version").values(value="8"))
    op.drop_index("ix_stock_movements_trial_id", "stock_movements")
    op.drop_index("ix_stock_movements_stock", "stock_movements")
    op.drop_table("stock_movements")
    op.drop_table("stocks")
