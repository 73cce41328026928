"""``labloop users add | list | revoke | passwd | token`` and ``labloop audit``: who may reach the daemon, and what everyone did.

Run on the store: whoever can write the store administers it, no daemon or socket needed. ``users add`` makes the
person's (or agent's) CURVE key pair, records only the public key, and writes one key file (mode 0600) holding
everything their client needs; the secret key exists nowhere else. The rules live in :mod:`labloop.identity`
(shared with the daemon and the dashboard); these commands parse and print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from labloop.store import DEFAULT_URL

from .common import STORE_HELP, console, err_console, user_errors

StoreOpt = Annotated[str | None, typer.Option(help=STORE_HELP)]

users_app = typer.Typer(
    name="users", help="People and agents who may use the daemon: keys and roles.", no_args_is_help=True
)


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


@users_app.command("add")
@user_errors
def add(
    name: Annotated[str, typer.Argument(help="The person's (or agent's) name, as the audit log will show it.")],
    role: Annotated[str, typer.Option(help="viewer | operator | approver | admin | agent.")],
    out: Annotated[Path, typer.Option(help="Key file to write (mode 0600): give it to them privately.")],
    store: StoreOpt = None,
    keys: Annotated[
        Path | None, typer.Option(help="The daemon's key folder (made if missing); its public key goes into the file.")
    ] = None,
    control: Annotated[str, typer.Option(help="Control address their client connects to.")] = "",
    stream: Annotated[str, typer.Option(help="Stream address their client subscribes to.")] = "",
    force: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Make a key pair for NAME with ROLE, record its public key in the store, and write their key file."""
    from labloop.identity.users import check_name, check_out, enroll
    from labloop.store import Store

    check_name(name, role)  # before the store is opened (and perhaps created)
    check_out(out, force)
    st = Store(store or DEFAULT_URL)
    try:
        key = enroll(st, name, role, out, by=_login(), keys_dir=keys, control=control, stream=stream, force=force)
    finally:
        st.close()
    console.print(f"added {name} ({role}); key file {out} (mode 0600)", soft_wrap=True)
    console.print(
        f"give {out} to {name} privately; they pass it as --key {out.name} (or LABLOOP_KEY). "
        f"Public key: {key.public_key}",
        soft_wrap=True,
    )


@users_app.command("list")
@user_errors
def list_(store: StoreOpt = None) -> None:
    """Show every user: role, public key, who added them and when, and whether they are revoked."""
    from labloop.identity.users import everyone
    from labloop.store import Store

    st = Store(store or DEFAULT_URL, create=False)
    try:
        rows = everyone(st)
    finally:
        st.close()
    if not rows:
        console.print("no users yet: add one with `labloop users add NAME --role ROLE --out FILE`")
        return
    table = Table("name", "role", "public key", "added", "by", "revoked")
    for u in rows:
        table.add_row(
            u.name,
            u.role,
            u.public_key,
            f"{u.created_at:%Y-%m-%d %H:%M}",
            u.created_by,
            f"[red]{u.revoked_at:%Y-%m-%d %H:%M:%S}[/]" if u.revoked_at else "",
        )
    console.print(table)


@users_app.command("revoke")
@user_errors
def revoke(name: Annotated[str, typer.Argument(help="The user to revoke.")], store: StoreOpt = None) -> None:
    """Refuse NAME's key from now on (within a second on running daemons, connections already open included)."""
    from labloop.identity.users import revoke as revoke_user
    from labloop.store import Store

    st = Store(store or DEFAULT_URL, create=False)
    try:
        u = revoke_user(st, name, by=_login())
    finally:
        st.close()
    console.print(f"revoked {u.name} ({u.role}); running daemons refuse their key within a second", soft_wrap=True)


@users_app.command("passwd")
@user_errors
def passwd(
    name: Annotated[str, typer.Argument(help="The user who signs in to the dashboard.")],
    store: StoreOpt = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from standard input (scripts) instead of asking."),
    ] = False,
) -> None:
    """Set NAME's dashboard password (`labloop serve --http`); signs out their open sessions."""
    from labloop.identity import accounts
    from labloop.store import Store

    if password_stdin:
        password = typer.get_text_stream("stdin").readline().rstrip("\n")
    else:
        password = typer.prompt(f"new dashboard password for {name}", hide_input=True, confirmation_prompt=True)
    st = Store(store or DEFAULT_URL, create=False)
    try:
        accounts.set_password(st, name, password, by=_login())
    finally:
        st.close()
    console.print(f"{name} may now sign in to the dashboard; their open sessions were signed out", soft_wrap=True)


@users_app.command("token")
@user_errors
def token(name: Annotated[str, typer.Argument(help="The user a script acts for.")], store: StoreOpt = None) -> None:
    """Make a new API token for NAME's scripts (HTTP `Authorization: Bearer TOKEN`); the old one stops working.
    Printed once: only its hash is kept."""
    from labloop.identity import accounts
    from labloop.store import Store

    st = Store(store or DEFAULT_URL, create=False)
    try:
        value = accounts.issue_token(st, name, by=_login())
    finally:
        st.close()
    typer.echo(value)


def audit(
    store: StoreOpt = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's rows (id, uid or name).")] = None,
    verify: Annotated[
        bool, typer.Option(help="Check the hash chain: exit 1 naming any altered, deleted or reordered row.")
    ] = False,
    last: Annotated[int, typer.Option(help="Show only the last N rows (0: all).")] = 0,
    rows_too: Annotated[
        bool,
        typer.Option(
            "--rows",
            help="With --verify: print the rows too (without it, --verify prints only the verdict and the tip).",
        ),
    ] = False,
) -> None:
    """Print the audit log: who did what, when, from where, with which outcome; --verify checks its hash chain
    and prints only its verdict (add --rows for the rows)."""
    from labloop.store import Store, chain

    st = Store(store or DEFAULT_URL, create=False)
    try:
        cid = st.campaign(campaign).id if campaign is not None else None
        rows, tip = st.audit_chain()
    finally:
        st.close()
    if not verify or rows_too:
        _print_rows([r for r in rows if cid is None or r.campaign_id == cid], cid, last)
    if not verify:
        return
    problems = chain.problems(rows, tip)
    if problems:
        for p in problems:
            err_console.print(f"[bold red]audit chain broken:[/] {p}", soft_wrap=True)
        raise typer.Exit(1)
    end = f"; tip {tip[0]}:{tip[1]}" if tip else ""
    console.print(f"[green]audit chain intact[/]: {len(rows)} rows{end}", soft_wrap=True)


def _print_rows(shown: list, cid: int | None, last: int) -> None:
    from labloop.store import chain

    rows = []
    for r in shown[-last:] if last > 0 else shown:
        who = r.user + (f" ({r.role})" if r.role else "") + (f" @ {r.address}" if r.address else "")
        where = {"campaign": r.campaign_id} if r.campaign_id is not None and cid is None else {}
        detail = json.dumps({**where, **r.detail}, separators=(",", ":"))
        rows.append((str(r.id), chain.iso(r.at)[:19].replace("T", " "), who, r.action, r.outcome or "", detail))
    if not console.is_terminal:  # a file or a pipe: one whole line per row (grep, cut), not an 80-column table
        for row in [("id", "time (UTC)", "who", "action", "outcome", "detail"), *rows]:
            typer.echo("\t".join(row))
        return
    table = Table("id", "time (UTC)", "who", "action", "outcome", "detail")
    for col in table.columns[:5]:
        col.no_wrap = True
    table.columns[5].overflow = "fold"
    for *head, detail in rows:
        table.add_row(*head, detail if len(detail) <= 200 else detail[:199] + "…")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app)
    app.command("audit")(user_errors(audit))
