"""Consumables in the store: stock levels and their movements (a mixin of :class:`~labloop.store.repository.Store`).

Why here and not in the scheduler: the store is the truth, and a stock changes in the very transaction that
changes the trial using it, so no crash can leave a trial started without its draw or a draw without its trial:

* a trial's use is **reserved** when the trial row is added (proposed): two trials in flight at once cannot both
  count on the same last grams. The reservation is a compare-and-set (``level - reserved >= use``): the level
  never goes below zero whatever runs in parallel; the optimizer is asked only for what fits
  (labloop/run/inventory.py), so a refusal here is the last line, not the rule;
* it is **drawn** (taken off the shelf; a counted item becomes used) when the trial first becomes running: the
  material is dispensed at the trial's first physical step;
* it is **released** when the trial ends without having started (rejected, cancelled);
* an operator's **refill** (for items: cleaning) is a movement and an audit row, and closes the low-stock alert.

Each trial's use comes from the campaign file stored with the campaign (``lab.consumables``), read once per
campaign per process.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, case, select, update
from sqlalchemy.orm import Session

from labloop.errors import StoreError

from . import chain
from .schema import Campaign, Stock, StockMovement, Trial, utcnow

#: tolerance of the compare-and-set, for amounts that are sums of floats
EPS = 1e-9


def consumables_of(spec_text: str) -> Any:
    """The campaign file's ``lab.consumables`` (None without one, or for a text that is no campaign file)."""
    from labloop.errors import SpecError
    from labloop.spec import spec_from_text

    try:
        spec = spec_from_text(spec_text, "<stored campaign>")
    except SpecError:
        return None
    return spec.lab.consumables if spec.lab is not None else None


class Inventory:
    """Stocks and movements; the hooks ``_reserve``/``_settle`` are called by ``add_trial``, ``update_trial`` and
    ``transition`` inside their own transactions."""

    session: Any

    def _consumables(self, s: Session, campaign_id: int) -> Any:
        cache: dict[int, Any] = self.__dict__.setdefault("_consumables_cache", {})
        if campaign_id not in cache:
            text = s.scalar(select(Campaign.spec_text).where(Campaign.id == campaign_id))
            cache[campaign_id] = consumables_of(text) if text else None
        return cache[campaign_id]

    # ------------------------------------------------------------------------------------------ levels
    def open_stocks(self, campaign_id: int, user: str = "labloop") -> None:
        """Put the campaign file's stocks on the shelf (idempotent: stocks already there are kept)."""
        with self.session() as s:
            self._stocks(s, campaign_id, user)

    def _stocks(self, s: Session, campaign_id: int, user: str = "labloop") -> dict[str, Stock]:
        cons = self._consumables(s, campaign_id)
        rows = {r.name: r for r in s.scalars(select(Stock).where(Stock.campaign_id == campaign_id))}
        if cons is None:
            return rows
        for name, st in cons.stocks.items():
            if name in rows:
                continue
            row = Stock(
                campaign_id=campaign_id,
                name=name,
                unit=st.unit,
                level=float(st.initial),
                reserved=0.0,
                used=0.0,
                alert_below=st.alert_below,
            )
            s.add(row)
            s.flush()
            s.add(
                StockMovement(
                    campaign_id=campaign_id,
                    stock_id=row.id,
                    kind="initial",
                    amount=float(st.initial),
                    level_after=row.level,
                    user=user,
                )
            )
            rows[name] = row
            self._alert_if_low(s, row, None)
        return rows

    def stock_levels(self, campaign_id: int) -> list[dict[str, Any]]:
        """Every stock of the campaign as plain data (what status, the view and the page show)."""
        with self.session() as s:
            cons = self._consumables(s, campaign_id)
            rows = s.scalars(select(Stock).where(Stock.campaign_id == campaign_id).order_by(Stock.id))
            out = []
            for r in rows:
                spec = cons.stocks.get(r.name) if cons is not None else None
                left = r.level - r.reserved
                out.append(
                    {
                        "name": r.name,
                        "unit": r.unit,
                        "level": r.level,
                        "reserved": r.reserved,
                        "left": left,
                        "used": r.used if r.unit == "count" else None,
                        "alert_below": r.alert_below,
                        "low": r.alert_below is not None and left < r.alert_below,
                        "cleaning": getattr(spec, "cleaning", None),
                    }
                )
            return out

    def stock_movements(self, campaign_id: int, trial_id: int | None = None) -> list[tuple[str, StockMovement]]:
        """``(stock name, movement)``, oldest first."""
        with self.session() as s:
            q = (
                select(Stock.name, StockMovement)
                .join(Stock, Stock.id == StockMovement.stock_id)
                .where(StockMovement.campaign_id == campaign_id)
                .order_by(StockMovement.id)
            )
            if trial_id is not None:
                q = q.where(StockMovement.trial_id == trial_id)
            return [(n, m) for n, m in s.execute(q)]

    def refill(self, campaign_id: int, name: str, amount: float, user: str) -> dict[str, Any]:
        """An operator put ``amount`` back on the shelf (counted items: cleaned ``amount`` used ones, or added new
        ones beyond those). Audited as ``inventory.refill``; the low-stock alert closes if it is above again."""
        if not amount > 0 or amount != amount or amount == float("inf"):
            raise StoreError(f"a refill of {amount} is not an amount", "give a positive number (what you added)")
        with self.session() as s:
            rows = self._stocks(s, campaign_id)
            row = rows.get(name)
            if row is None:
                have = ", ".join(rows) or "(none: the campaign file has no lab.consumables)"
                raise StoreError(f"the campaign has no stock '{name}'", f"name one of: {have}")
            amount = float(amount)
            count = row.unit == "count"
            # one UPDATE with the arithmetic in it: a draw committed meanwhile by a trial's thread is never lost
            s.execute(
                update(Stock)
                .where(Stock.id == row.id)
                .values(
                    level=Stock.level + amount,
                    updated_at=utcnow(),
                    used=case((Stock.used > amount, Stock.used - amount), else_=0.0) if count else Stock.used,
                )
                .execution_options(synchronize_session=False)
            )
            old_used = row.used
            s.refresh(row)
            cleaned = 0.0 if not count else max(0.0, old_used - row.used)
            before = row.level - row.reserved - amount
            s.add(
                StockMovement(
                    campaign_id=campaign_id,
                    stock_id=row.id,
                    kind="refill",
                    amount=float(amount),
                    level_after=row.level,
                    user=user,
                )
            )
            detail = {
                "stock": name,
                "amount": float(amount),
                "unit": row.unit,
                "level": row.level,
                "left": row.level - row.reserved,
                "message": f"{name} refilled by {amount:g} {row.unit}",
            }
            if row.unit == "count":
                detail["cleaned"] = cleaned
            chain.append(s, campaign_id=campaign_id, user=user, action="inventory.refill", detail=detail)
            self._alert_if_low(s, row, None if before >= (row.alert_below or 0) else -1.0)
            return detail

    def _alert_if_low(self, s: Session, row: Stock, before: float | None) -> None:
        """An ``inventory.low`` audit row (an alert the view shows) when what is left crosses below the threshold
        (``before`` None: always, if below; -1: after a refill that left it below)."""
        if row.alert_below is None:
            return
        left = row.level - row.reserved
        if left >= row.alert_below or (before is not None and before >= 0 and before < row.alert_below):
            return
        cons = self._consumables(s, row.campaign_id)
        spec = cons.stocks.get(row.name) if cons is not None else None
        task = getattr(spec, "cleaning", None)
        fix = f"{task}, then record it" if task and row.used else "refill it and record it"
        msg = (
            f"stock {row.name}: {left:g} {row.unit} left, below {row.alert_below:g}; {fix} with `labloop "
            f"inventory refill CAMPAIGN {row.name} AMOUNT --by YOU`"
        )
        chain.append(
            s,
            campaign_id=row.campaign_id,
            user="labloop",
            action="inventory.low",
            detail={"stock": row.name, "left": left, "alert_below": row.alert_below, "message": msg},
        )

    # ------------------------------------------------------------------------------------------ trial hooks
    def _reserve(self, s: Session, trial: Trial) -> None:
        """Hold the trial's use of every stock, or refuse (nothing changed) when one has not enough left."""
        cons = self._consumables(s, trial.campaign_id)
        if cons is None or not cons.use:
            return
        from labloop.spec import UseError

        try:
            uses = cons.uses(trial.params or {})
        except UseError as exc:
            raise StoreError(f"trial {trial.number}: {exc}", "fix lab.consumables in the campaign file") from None
        rows = self._stocks(s, trial.campaign_id)
        for name, amount in uses.items():
            row = rows[name]
            s.refresh(row)
            before = row.level - row.reserved
            res = cast(
                "CursorResult[Any]",  # an UPDATE's result: it has a rowcount
                s.execute(
                    update(Stock)
                    .where(Stock.id == row.id, Stock.level - Stock.reserved >= amount - EPS)
                    .values(reserved=Stock.reserved + amount, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                ),
            )
            if not res.rowcount:
                raise StoreError(
                    f"trial {trial.number} needs {amount:g} {row.unit} of {name}; {before:g} left "
                    f"(not reserved by other trials)",
                    f"refill it (`labloop inventory refill CAMPAIGN {name} AMOUNT --by YOU`)",
                )
            s.refresh(row)
            s.add(
                StockMovement(
                    campaign_id=trial.campaign_id,
                    stock_id=row.id,
                    trial_id=trial.id,
                    kind="reserve",
                    amount=amount,
                    level_after=row.level,
                    user="labloop",
                )
            )
            self._alert_if_low(s, row, row.level - row.reserved + amount)

    def _open_reservations(self, s: Session, trial: Trial) -> list[tuple[Stock, float]]:
        """The trial's reservations not drawn nor released yet."""
        moves = list(
            s.scalars(select(StockMovement).where(StockMovement.trial_id == trial.id).order_by(StockMovement.id))
        )
        held: dict[int, float] = {}
        for m in moves:
            if m.kind == "reserve":
                held[m.stock_id] = held.get(m.stock_id, 0.0) + m.amount
            elif m.kind in ("draw", "release"):
                held.pop(m.stock_id, None)
        # a movement's stock exists (a foreign key, and stocks are never deleted)
        return [(cast(Stock, s.get(Stock, sid)), a) for sid, a in held.items()]

    def _settle(self, s: Session, trial: Trial, new: str) -> None:
        """On a trial's transition: draw its reservations when it starts running, release them when it ends
        without having started, re-reserve when a queued trial's parameters are replaced (``new`` = 'params')."""
        if self._consumables(s, trial.campaign_id) is None:
            return
        if new not in ("running", "rejected", "cancelled", "failed", "params"):
            return
        open_ = self._open_reservations(s, trial)
        kind = "draw" if new == "running" else "release"
        for row, amount in open_:
            values: dict[str, Any] = {"reserved": Stock.reserved - amount, "updated_at": utcnow()}
            if kind == "draw":  # the reservation guaranteed level >= amount
                values["level"] = Stock.level - amount
                if row.unit == "count":
                    values["used"] = Stock.used + amount
            s.execute(
                update(Stock).where(Stock.id == row.id).values(**values).execution_options(synchronize_session=False)
            )
            s.refresh(row)
            if row.reserved != 0 and abs(row.reserved) < EPS:  # 0.1 + 0.2 - 0.1 - 0.2 leaves 2.8e-17 reserved
                row.reserved = 0.0  # the row is locked by this transaction's update: nobody reserved in between
            s.add(
                StockMovement(
                    campaign_id=trial.campaign_id,
                    stock_id=row.id,
                    trial_id=trial.id,
                    kind=kind,
                    amount=amount,
                    level_after=row.level,
                    user="labloop",
                )
            )
        s.flush()
        if new == "params" and trial.state in ("proposed", "approved"):
            self._reserve(s, trial)
