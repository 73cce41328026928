"""Baseline: the store as labloop wrote it before migrations existed (schema_version 3, commit 305b6a2).

Stores of that release have these tables but no ``alembic_version``; ``labloop db upgrade`` records them as this
revision and goes on from here. Written by hand to match that release's models exactly (types, nullability,
unnamed unique and foreign-key constraints, index names), so a migrated store and a created one are alike.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    meta = op.create_table(
        "labloop_meta",
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("labloop_version", sa.String(40), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("control", sa.String(20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column("runner", sa.String(200), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("sample_id", sa.String(80), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("proposed_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.UniqueConstraint("campaign_id", "number"),
    )
    op.create_index("ix_trials_campaign_id", "trials", ["campaign_id"])
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id"), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("device", sa.String(80), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("run_uid", sa.String(36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.create_index("ix_steps_trial_id", "steps", ["trial_id"])
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id"), nullable=True),
        sa.Column("run_uid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
    )
    op.create_index("ix_documents_trial", "documents", ["trial_id", "id"])
    op.create_index("ix_documents_campaign_id", "documents", ["campaign_id"])
    op.create_index("ix_documents_run_uid", "documents", ["run_uid"])
    op.create_table(
        "process_points",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id"), nullable=True),
        sa.Column("run_uid", sa.String(36), nullable=False),
        sa.Column("signal", sa.String(120), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_process_points_trial_id", "process_points", ["trial_id"])
    op.create_table(
        "samples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("sample_id", sa.String(80), nullable=False, unique=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id"), nullable=True),
        sa.Column("location", sa.String(80), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_samples_campaign_id", "samples", ["campaign_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("user", sa.String(80), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_campaign_id", "audit", ["campaign_id"])
    op.bulk_insert(meta, [{"key": "schema_version", "value": "3"}])


def downgrade() -> None:
    for table in ("audit", "samples", "process_points", "documents", "steps", "trials", "campaigns", "labloop_meta"):
        op.drop_table(table)
