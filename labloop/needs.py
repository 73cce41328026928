"""Which extra installs a missing package, and the operator error that says so.

Why: the base install is what an instrument's computer needs to run ``labloop agent`` (pyproject.toml); the
optimizer, the store, the daemon, the dashboard and the reports come with ``labloop[lab]``, each transport's library
with its own extra. A command that needs one of those on a light install must say which extra to install, not end
in a ``ModuleNotFoundError`` traceback. Rather than guard each of the many import sites, the CLI's command boundary
(:func:`labloop.cli.common.user_errors`, ``labloop devices check``) turns a missing package it knows into a
:class:`~labloop.errors.LabloopError` here; :func:`require` checks up front where that is clearer.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from labloop.errors import LabloopError

#: the extra (pyproject.toml [project.optional-dependencies]) that installs each top-level module
EXTRA_OF: dict[str, str] = {
    **dict.fromkeys(
        (
            "torch",
            "botorch",
            "gpytorch",
            "linear_operator",
            "scipy",
            "sqlalchemy",
            "alembic",
            "psutil",
            "matplotlib",
            "h5py",
            "pyarrow",
            "starlette",
            "uvicorn",
            "multipart",
            "python_multipart",
        ),
        "lab",
    ),
    "pymodbus": "modbus",
    "pyvisa": "visa",
    "pyvisa_py": "visa",
    "pyvisa_sim": "visa",
    "serial": "serial",
    "asyncua": "opcua",
    "caproto": "epics",
    "sila2": "sila",
    "psycopg": "postgres",
    "rdkit": "chem",
}

#: what each extra is for, in the operator's words
PURPOSE = {
    "lab": "a campaign host's optimizer, store, daemon, dashboard and reports; an instrument PC's light "
    "install runs `labloop agent` without them",
    "postgres": "the PostgreSQL driver",
    "chem": "RDKit",
}


def install_hint(extra: str) -> str:
    return f"pip install 'labloop[{extra}]'"


def missing(exc: BaseException) -> LabloopError | None:
    """The operator error for ``exc`` when it is a package one of labloop's extras installs; None otherwise (a
    missing module labloop does not know is a bug or a broken install, shown as it is)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    what = PURPOSE.get(extra, f"the {extra} transport's library")
    return LabloopError(
        f"this command needs the Python package '{top}', which is not installed here: it comes with "
        f"labloop's '{extra}' extra ({what})",
        install_hint(extra),
    )


@contextlib.contextmanager
def extras_named() -> Iterator[None]:
    """Inside: a missing package that an extra installs raises the :func:`missing` LabloopError instead."""
    try:
        yield
    except ModuleNotFoundError as exc:
        err = missing(exc)
        if err is None:
            raise
        raise err from None


def installed(name: str) -> bool:
    """Whether the top-level module ``name`` can be imported, without importing it (fast: no torch import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a None left in sys.modules
        return False


def require(*modules: str) -> None:
    """Fail now, naming the extra, when one of ``modules`` (top-level names in :data:`EXTRA_OF`) is not installed.
    For work that would otherwise import them later on another thread, where the error would not reach the CLI."""
    for name in modules:
        if not installed(name):
            err = missing(ModuleNotFoundError(f"No module named '{name}'", name=name))
            raise (
                err
                if err is not None
                else LabloopError(f"the Python package '{name}' is not installed", f"pip install {name}")
            )
