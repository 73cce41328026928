"""Store maintenance: ``labloop db upgrade`` migrates a store to this labloop's schema; ``labloop db current``
shows which schema revision a store is at."""

from __future__ import annotations

from typing import Annotated

import typer

from labloop.store import DEFAULT_URL

from .common import STORE_HELP, console, user_errors

StoreOpt = Annotated[str | None, typer.Option(help=STORE_HELP)]

db_app = typer.Typer(name="db", help="Store maintenance: schema upgrade and revision.", no_args_is_help=True)


@db_app.command()
@user_errors
def upgrade(store: StoreOpt = None) -> None:
    """Migrate the store to this labloop's schema (back it up first). Running it again changes nothing."""
    from labloop.store.connection import display_url
    from labloop.store.migrate import upgrade_store

    before, after = upgrade_store(store or DEFAULT_URL)
    url = display_url(store or DEFAULT_URL)
    if before == after:
        console.print(
            f"the store {url} is already at revision {after.label} (up to date); nothing to do", soft_wrap=True
        )
    else:
        console.print(f"upgraded the store {url} from revision {before.label} to {after.label}", soft_wrap=True)


@db_app.command()
@user_errors
def current(store: StoreOpt = None) -> None:
    """Show the store's schema revision and whether this labloop can use it."""
    from labloop.store.connection import display_url
    from labloop.store.migrate import HEAD, refusal, store_revision

    found = store_revision(store or DEFAULT_URL)
    url = display_url(store or DEFAULT_URL)
    if found.at_head:
        console.print(f"{found.label} (head: up to date)", soft_wrap=True)
        return
    problem = refusal(found, url)
    console.print(f"{found.label} (this labloop needs {HEAD})", soft_wrap=True)
    if problem is not None and problem.fix:
        console.print(f"fix: {problem.fix}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app)
