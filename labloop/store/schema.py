"""Tables of the store (SQLAlchemy 2 ORM). The same schema runs on embedded SQLite and on PostgreSQL.

The store is the truth: a campaign can be rebuilt from it alone (the campaign file is kept verbatim with its hash),
every trial is a row whose ``state`` is a persisted state machine, every bluesky document of every run is kept
unchanged, and process streams are also flattened into ``process_points`` for plots and exports. Large data
(spectra, diffraction patterns, images) live in files beside the store, referenced by the runs' ``stream_resource``
(or ``resource``) documents; ``assets`` keeps each file's sha256 so ``labloop verify`` can tell a missing or altered
file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


SCHEMA_VERSION = 9


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
    runner_started: Mapped[float | None] = mapped_column(
        Float,
        default=None,
        doc="Start time (epoch seconds, from psutil) of the process in `runner`: a reused pid has another one.",
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
    role: Mapped[str | None] = mapped_column(String(20), default=None, doc="The verified role, for daemon requests.")
    address: Mapped[str | None] = mapped_column(String(200), default=None, doc="The client's address.")
    outcome: Mapped[str | None] = mapped_column(String(20), default=None, doc="accepted | refused | done | failed")
    prev_hash: Mapped[str | None] = mapped_column(String(64), default=None, doc="The previous row's hash.")
    hash: Mapped[str | None] = mapped_column(
        String(64), default=None, doc="sha256 of prev_hash and this row's canonical content: the chain."
    )


class OperatorRequest(Base):
    """An operator's request to a running campaign (pause, resume, stop, estop, approve, reject), acknowledged.

    Why a row and not a flag: the CLI (or, later, the daemon) must learn whether the request was carried out or
    refused and why; the runner answers by moving ``state`` from ``pending`` to ``done`` or ``refused`` with an
    ``outcome`` line. A pending request is found by an indexed query, so polling it costs no trial reload."""

    __tablename__ = "operator_requests"
    __table_args__ = (Index("ix_requests_pending", "campaign_id", "state"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    action: Mapped[str] = mapped_column(String(20), doc="pause | resume | stop | estop | approve | reject")
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="e.g. {'trials': [3, 4], 'reason': ...}")
    user: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(20), default="pending", doc="pending | done | refused")
    outcome: Mapped[str | None] = mapped_column(Text, default=None, doc="What the runner did, or why it refused.")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Asset(Base):
    """A file of large data (HDF5 spectra, patterns, images) that a run's documents reference, with its checksum
    taken when the run ended: ``labloop verify`` reports a file that is missing or no longer has this sha256."""

    __tablename__ = "assets"
    __table_args__ = (Index("ix_assets_campaign", "campaign_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"), default=None)
    run_uid: Mapped[str] = mapped_column(String(36), index=True)
    path: Mapped[str] = mapped_column(Text, doc="Absolute path of the file, as the run's documents name it.")
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, doc="Bytes.")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Calibration(Base):
    """A device calibration against a reference (``labloop calibrate`` or a campaign's calibration step): what was
    measured, the fitted result, whether it was accepted (``ok``) and who made it. A malformed result is refused
    before anything is written, so every row here was put in force."""

    __tablename__ = "calibrations"
    __table_args__ = (Index("ix_calibrations_device", "device", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), default=None)
    device: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="The reference measured.")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="The fitted result, e.g. {'gain': ...}.")
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    user: Mapped[str] = mapped_column(String(80))
    calibration_id: Mapped[str | None] = mapped_column(String(80), default=None, doc="The device's id for it.")
    run_uid: Mapped[str | None] = mapped_column(String(36), default=None, doc="The bluesky run that measured it.")


class User(Base):
    """A person or an agent the daemon knows: its CURVE public key (Z85), checked by the ZAP handler on every
    connection, and its role. Revoking sets ``revoked_at``; the row stays so the audit log keeps naming them."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(20), doc="viewer | operator | approver | admin | agent")
    public_key: Mapped[str] = mapped_column(String(40), unique=True, doc="CURVE public key, Z85 (40 characters).")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    password_hash: Mapped[str | None] = mapped_column(
        String(200), default=None, doc="scrypt$n$r$p$salt$hash for the dashboard's login; None: cannot sign in."
    )
    token_hash: Mapped[str | None] = mapped_column(
        String(64), default=None, doc="sha256 of the user's API token (scripts); None: no token issued."
    )


class Lease(Base):
    """Which runner holds a campaign, until when. A runner renews it with its heartbeat; another may take the
    campaign only after ``expires_at``; ``token`` grows with every new holder (a fencing token)."""

    __tablename__ = "leases"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """One message of a campaign's live stream, with its per-campaign sequence number: a subscriber that joined
    late or lost its connection asks for ``seq > n`` and loses nothing."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("campaign_id", "seq", name="uq_events_campaign_seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WebSession(Base):
    """A signed-in browser. Keyed by the sha256 of its cookie; a row (not a signed cookie) so that signing out,
    expiry and revoking the user act at once."""

    __tablename__ = "web_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    address: Mapped[str | None] = mapped_column(String(200), default=None)


class Stock(Base):
    """A consumable of a campaign (``lab.consumables``): what is on the shelf (``level``; for counted items, the
    clean ones), what proposed trials have reserved and not drawn yet, and (items) how many are used, waiting for
    cleaning. Changed only together with a :class:`StockMovement` row, in one transaction."""

    __tablename__ = "stocks"
    __table_args__ = (UniqueConstraint("campaign_id", "name", name="uq_stocks_campaign_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    name: Mapped[str] = mapped_column(String(80))
    unit: Mapped[str] = mapped_column(String(10))
    level: Mapped[float] = mapped_column(Float, doc="On the shelf now (never below 0).")
    reserved: Mapped[float] = mapped_column(Float, default=0.0, doc="Held for proposed trials, not drawn yet.")
    used: Mapped[float] = mapped_column(Float, default=0.0, doc="Counted items used, waiting for cleaning.")
    alert_below: Mapped[float | None] = mapped_column(Float, default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StockMovement(Base):
    """One change of a stock: ``initial``, ``reserve`` (a trial proposed), ``draw`` (it started: dispensed),
    ``release`` (it ended before starting), ``refill`` (an operator; for items: cleaned ones back)."""

    __tablename__ = "stock_movements"
    __table_args__ = (Index("ix_stock_movements_stock", "stock_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    stock_id: Mapped[int] = mapped_column(ForeignKey("stocks.id"))
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"), default=None, index=True)
    kind: Mapped[str] = mapped_column(String(20), doc="initial | reserve | draw | release | refill")
    amount: Mapped[float] = mapped_column(Float)
    level_after: Mapped[float] = mapped_column(Float, doc="The stock's level after this movement.")
    user: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
