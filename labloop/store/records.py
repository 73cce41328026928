"""The store's records of what happened in the lab: documents and process-stream points, asset files, sample
locations, calibrations and the hash-chained audit log (a mixin of :class:`~labloop.store.repository.Store`).

Split from repository.py, which keeps opening the store, campaigns, operator requests, trials and steps: these are
the append-mostly records written beside them. ``to_jsonable`` (strict JSON for every stored value) lives here and
is re-exported by repository.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from . import chain
from .schema import Asset, AuditEntry, Calibration, Document, ProcessPoint, Sample, utcnow


def to_jsonable(obj: Any) -> Any:
    """Make ``obj`` strict JSON: numpy scalars/arrays to Python, NaN/inf to None (PostgreSQL rejects NaN)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist())
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


class Records:
    """Documents, assets, samples, calibrations and the audit log (mixed into the Store, which provides
    ``session``)."""

    session: Any

    # ----------------------------------------------------------------------------------------- documents
    def add_documents(
        self,
        campaign_id: int,
        trial_id: int | None,
        run_uid: str,
        docs: Iterable[tuple[str, dict[str, Any]]],
        points: Iterable[tuple[str, float, float]] = (),
    ) -> None:
        """Store one run's documents unchanged, plus its process-stream points ``(signal, t, value)``, in one
        transaction (the writer calls this every few hundred documents)."""
        with self.session() as s:
            self._add_documents(s, campaign_id, trial_id, run_uid, list(docs), list(points))

    @staticmethod
    def _add_documents(
        s: Session,
        campaign_id: int,
        trial_id: int | None,
        run_uid: str,
        docs: list[tuple[str, dict[str, Any]]],
        points: list[tuple[str, float, float]],
    ) -> None:
        # one executemany per table (Core insert): ORM objects cost ~10x more per row, and a deposition's process
        # streams are hundreds of rows
        if docs:
            s.execute(
                insert(Document),
                [
                    {
                        "campaign_id": campaign_id,
                        "trial_id": trial_id,
                        "run_uid": run_uid,
                        "name": name,
                        "doc": to_jsonable(doc),
                    }
                    for name, doc in docs
                ],
            )
        if points:
            s.execute(
                insert(ProcessPoint),
                [{"trial_id": trial_id, "run_uid": run_uid, "signal": sig, "t": t, "value": v} for sig, t, v in points],
            )

    def add_assets(
        self, campaign_id: int, trial_id: int | None, run_uid: str, assets: Iterable[tuple[str, str, int]]
    ) -> None:
        """Record files a run's documents reference: ``(absolute path, sha256 hex, size in bytes)``."""
        with self.session() as s:
            self._add_assets(s, campaign_id, trial_id, run_uid, list(assets))

    @staticmethod
    def _add_assets(
        s: Session, campaign_id: int, trial_id: int | None, run_uid: str, assets: list[tuple[str, str, int]]
    ) -> None:
        if assets:
            s.execute(
                insert(Asset),
                [
                    {
                        "campaign_id": campaign_id,
                        "trial_id": trial_id,
                        "run_uid": run_uid,
                        "path": path,
                        "sha256": digest,
                        "size": int(size),
                        "created_at": utcnow(),
                    }
                    for path, digest, size in assets
                ],
            )

    def assets(self, campaign_id: int | None = None, trial_id: int | None = None) -> list[Asset]:
        """Recorded asset files, oldest first (of a campaign, of a trial, or all)."""
        with self.session() as s:
            q = select(Asset).order_by(Asset.id)
            if campaign_id is not None:
                q = q.where(Asset.campaign_id == campaign_id)
            if trial_id is not None:
                q = q.where(Asset.trial_id == trial_id)
            return list(s.scalars(q))

    def documents(self, trial_id: int | None = None, run_uid: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        with self.session() as s:
            q = select(Document.name, Document.doc).order_by(Document.id)
            if trial_id is not None:
                q = q.where(Document.trial_id == trial_id)
            if run_uid is not None:
                q = q.where(Document.run_uid == run_uid)
            return [(name, doc) for name, doc in s.execute(q)]

    def process_points(self, trial_id: int, signal: str | None = None) -> list[ProcessPoint]:
        with self.session() as s:
            q = select(ProcessPoint).where(ProcessPoint.trial_id == trial_id).order_by(ProcessPoint.t)
            if signal:
                q = q.where(ProcessPoint.signal == signal)
            return list(s.scalars(q))

    # ----------------------------------------------------------------------------------------- samples, audit
    def locate_sample(self, campaign_id: int, sample_id: str, location: str, trial_id: int | None = None) -> None:
        with self.session() as s:
            self._locate(s, campaign_id, sample_id, location, trial_id)

    @staticmethod
    def _locate(s: Session, campaign_id: int, sample_id: str, location: str, trial_id: int | None) -> None:
        row = s.scalars(select(Sample).where(Sample.sample_id == sample_id)).first()
        if row is None:
            s.add(Sample(campaign_id=campaign_id, sample_id=sample_id, trial_id=trial_id, location=location))
        else:
            row.location = location
            row.updated_at = utcnow()

    def samples(self, campaign_id: int) -> list[Sample]:
        with self.session() as s:
            return list(s.scalars(select(Sample).where(Sample.campaign_id == campaign_id).order_by(Sample.id)))

    # ----------------------------------------------------------------------------------------- calibrations
    def add_calibration(
        self,
        campaign_id: int | None,
        device: str,
        reference: dict[str, Any],
        result: dict[str, Any],
        *,
        at: datetime | None = None,
        ok: bool = True,
        user: str | None = None,
        calibration_id: str | None = None,
        run_uid: str | None = None,
    ) -> Calibration:
        """Record a calibration and audit it (``calibration.recorded``) in one transaction."""
        who = user or _user()
        with self.session() as s:
            row = Calibration(
                campaign_id=campaign_id,
                device=device,
                at=at or utcnow(),
                reference=to_jsonable(reference),
                result=to_jsonable(result),
                ok=ok,
                user=who,
                calibration_id=calibration_id,
                run_uid=run_uid,
            )
            s.add(row)
            chain.append(
                s,
                campaign_id=campaign_id,
                user=who,
                action="calibration.recorded",
                detail=to_jsonable(
                    {"device": device, "calibration_id": calibration_id, "result": result, "ok": ok, "run_uid": run_uid}
                ),
            )
            s.flush()
            s.refresh(row)
            s.expunge(row)
            return row

    def calibrations(self, device: str | None = None, campaign_id: int | None = None) -> list[Calibration]:
        with self.session() as s:
            q = select(Calibration).order_by(Calibration.id)
            if device is not None:
                q = q.where(Calibration.device == device)
            if campaign_id is not None:
                q = q.where(Calibration.campaign_id == campaign_id)
            return list(s.scalars(q))

    def audit(
        self,
        campaign_id: int | None,
        action: str,
        detail: dict[str, Any] | None = None,
        user: str | None = None,
        *,
        role: str | None = None,
        address: str | None = None,
        outcome: str | None = None,
    ) -> None:
        """Append one row to the hash-chained audit log (see :mod:`labloop.store.chain`)."""
        with self.session() as s:
            self._audit_row(s, campaign_id, action, detail, user, role=role, address=address, outcome=outcome)

    @staticmethod
    def _audit_row(
        s: Session,
        campaign_id: int | None,
        action: str,
        detail: dict[str, Any] | None = None,
        user: str | None = None,
        *,
        role: str | None = None,
        address: str | None = None,
        outcome: str | None = None,
    ) -> None:
        chain.append(
            s,
            campaign_id=campaign_id,
            user=user or _user(),
            action=action,
            detail=to_jsonable(detail or {}),
            role=role,
            address=address,
            outcome=outcome,
        )

    def audit_log(self, campaign_id: int | None = None) -> list[AuditEntry]:
        with self.session() as s:
            q = select(AuditEntry).order_by(AuditEntry.id)
            if campaign_id is not None:
                q = q.where(AuditEntry.campaign_id == campaign_id)
            return list(s.scalars(q))

    def audit_chain(self) -> tuple[list[AuditEntry], tuple[int, str] | None]:
        """Every audit row in id order and the recorded tip, read in one transaction (for verification)."""
        with self.session() as s:
            return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id))), chain.tip(s)
