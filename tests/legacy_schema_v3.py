"""The store's models as labloop released them before migrations (schema_version 3): a verbatim copy of
labloop/store/schema.py at commit 305b6a2, for tests/test_migrations.py to build stores as that release wrote them.
Do not edit: it stands for stores that exist in labs.
"""

# --- verbatim from 305b6a2:labloop/store/schema.py below (its docstring kept as a comment) ---
# """Tables of the store (SQLAlchemy 2 ORM). The same schema runs on embedded SQLite and on PostgreSQL.
#
# The store is the truth: a campaign can be rebuilt from it alone (the campaign file is kept verbatim with its hash),
# every trial is a row whose ``state`` is a persisted state machine, every bluesky document of every run is kept
# unchanged, and process streams are also flattened into ``process_points`` for plots and exports.
# """

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


SCHEMA_VERSION = 3


class Meta(Base):
    """Key/value facts about the store itself (its schema version)."""

    __tablename__ = "labloop_meta"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    spec_text: Mapped[str] = mapped_column(Text, doc="The campaign file, verbatim.")
    spec_hash: Mapped[str] = mapped_column(String(64), doc="sha256 of spec_text.")
    labloop_version: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(
        String(20), default="running", doc="running | paused | finished | stopped | estopped"
    )
    stop_reason: Mapped[str | None] = mapped_column(Text, default=None)
    control: Mapped[str] = mapped_column(
        String(20), default="run", doc="What operators asked for: run | pause | stop | estop (read by the runner)."
    )
    note: Mapped[str | None] = mapped_column(Text, default=None, doc="Why the campaign waits (pause, no station).")
    heartbeat_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None, doc="Last sign of life of the process running it."
    )
    runner: Mapped[str | None] = mapped_column(
        String(200), default=None, doc="host:pid of the process running it (to tell a live one from a killed one)."
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("campaign_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    number: Mapped[int] = mapped_column(Integer, doc="1-based position within the campaign.")
    state: Mapped[str] = mapped_column(
        String(20), doc="proposed | approved | running | measured | done | failed | interrupted | rejected | cancelled"
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="Objective name -> value.")
    source: Mapped[str] = mapped_column(String(40), doc="Where the proposal came from: seed, sobol, model, ...")
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="Strategy evidence at proposal time.")
    sample_id: Mapped[str] = mapped_column(String(80))
    current_step: Mapped[int] = mapped_column(Integer, default=0, doc="Index of the step running or next to run.")
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    proposed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Step(Base):
    __tablename__ = "steps"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), doc="running | done | failed | interrupted")
    device: Mapped[str | None] = mapped_column(String(80), default=None, doc="The device that did the step.")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    run_uid: Mapped[str | None] = mapped_column(String(36), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Document(Base):
    """One event-model document, unchanged. The primary key keeps emission order."""

    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_trial", "trial_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"), default=None)
    run_uid: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(40))
    doc: Mapped[dict[str, Any]] = mapped_column(JSON)


class ProcessPoint(Base):
    """A monitored process-stream reading (chamber pressure, substrate temperature) flattened for plots/exports."""

    __tablename__ = "process_points"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"), index=True, default=None)
    run_uid: Mapped[str] = mapped_column(String(36))
    signal: Mapped[str] = mapped_column(String(120))
    t: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)


class Sample(Base):
    """Where each physical sample is now (updated after every transfer)."""

    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    sample_id: Mapped[str] = mapped_column(String(80), unique=True)
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"), default=None)
    location: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    """Who did what when: operator actions and campaign lifecycle events."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True, default=None)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
