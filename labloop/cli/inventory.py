"""``labloop inventory CAMPAIGN``: a campaign's consumables (level, reserved, left, low); ``labloop inventory refill
CAMPAIGN NAME AMOUNT --by USER``: record what an operator put back on the shelf (or cleaned).

Store-direct, like ``labloop calibrate``: a refill is one transaction of the store (a movement, the new level and
an ``inventory.refill`` audit row), which the running campaign's next ask reads; it needs no runner to carry it
out, so it does not go through the daemon's request queue.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from labloop.errors import LabloopError

from .common import STORE_HELP, console, open_store, pick_campaign, user_errors


def stock_lines(levels: list[dict[str, Any]]) -> list[str]:
    """One line per stock, as ``status`` and ``inventory`` print them."""
    out = []
    for s in levels:
        line = f"  {s['name']}: {s['left']:g} {s['unit']} left (on the shelf {s['level']:g}, reserved {s['reserved']:g}"
        if s.get("used"):
            line += f", used {s['used']:g} to clean"
        line += ")"
        if s.get("low"):
            line += f" LOW: below {s['alert_below']:g}" + (f"; {s['cleaning']}" if s.get("cleaning") else "")
        out.append(line)
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def inventory(
        args: Annotated[
            list[str],
            typer.Argument(
                help="CAMPAIGN (id or name) to show its stocks, or: refill CAMPAIGN NAME AMOUNT.", show_default=False
            ),
        ],
        by: Annotated[str | None, typer.Option("--by", help="Who refilled (recorded in the audit log).")] = None,
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
    ) -> None:
        """Show a campaign's consumables, or record a refill: `labloop inventory refill CAMPAIGN NAME AMOUNT --by
        USER` (for counted items such as crucibles: how many were cleaned or added). A refill is audited and
        closes the low-stock alert when the stock is above its threshold again."""
        if args and args[0] == "refill":
            if len(args) != 4:
                raise LabloopError(
                    "refill takes CAMPAIGN NAME AMOUNT",
                    "e.g. `labloop inventory refill solid-state Li2CO3 50 --by ana`",
                )
            if not by:
                raise LabloopError("a refill names who made it", "add --by YOUR_NAME")
            try:
                amount = float(args[3])
            except ValueError:
                raise LabloopError(f"'{args[3]}' is not an amount", "give a number, e.g. 50") from None
            st = open_store(store)
            try:
                c = pick_campaign(st, args[1])
                done = st.refill(c.id, args[2], amount, by)
            finally:
                st.close()
            console.print(
                f"{c.name}: {args[2]} refilled by {amount:g} {done['unit']}: {done['left']:g} left (recorded by {by})",
                soft_wrap=True,
            )
            return
        if len(args) != 1:
            raise LabloopError(
                "give one campaign (or: refill CAMPAIGN NAME AMOUNT --by USER)", "e.g. `labloop inventory solid-state`"
            )
        st = open_store(store)
        try:
            c = pick_campaign(st, args[0])
            levels = st.stock_levels(c.id)
        finally:
            st.close()
        if not levels:
            console.print(f"{c.name}: no consumables (the campaign file has no lab.consumables)", soft_wrap=True)
            return
        console.print(f"{c.name}: consumables", soft_wrap=True)
        for line in stock_lines(levels):
            console.print(line, soft_wrap=True, highlight=False)
