"""Shared CLI plumbing: operator-readable errors instead of tracebacks, and the store option."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console

from labloop.errors import LabloopError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

STORE_HELP = "Store URL: sqlite:///path/labloop.db (default: ./labloop.db) or postgresql://user@host/db."
ServerOpt = Annotated[Optional[str], typer.Option(
    help="Ask the daemon at this address (`labloop serve`, e.g. tcp://lab-pc:7510) instead of the store; "
    "env LABLOOP_SERVER.")]
KeyOpt = Annotated[Optional[str], typer.Option(help="Your key file (from `labloop users add`); env LABLOOP_KEY.")]


def user_errors(fn: F) -> F:
    """Print a :class:`LabloopError` as 'error: problem' + 'fix: ...' and exit 2; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LabloopError as exc:
            err_console.print(f"[bold red]error:[/] {exc.problem}", soft_wrap=True)
            if exc.fix:
                err_console.print(f"[bold]fix:[/] {exc.fix}", soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
