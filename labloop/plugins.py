"""Find plugins by entry point name or by ``module:attr`` path.

Third parties add drivers, objectives, simulators and strategies without editing labloop: they either register an
entry point in their own package (``labloop.objectives``, ``labloop.devices``, ``labloop.simulators``,
``labloop.strategies``) or the campaign file names the object as ``package.module:attribute``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .errors import PluginError

GROUPS = ("labloop.objectives", "labloop.devices", "labloop.simulators", "labloop.strategies")


def available(group: str) -> dict[str, str]:
    """Installed plugins of ``group`` as ``{name: "module:attr"}``."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def _import_fix(module_name: str) -> str:
    """Why a module of one's own beside the campaign file does not import: labloop's command is not started from
    that folder's Python path (a researcher's first plugin hits this)."""
    from pathlib import Path

    top = module_name.split(".")[0]
    if Path(top).is_dir() or Path(f"{top}.py").is_file():
        return (
            f"'{top}' is in this folder, but Python does not look here: install its package (`pip install -e .` "
            f"with a pyproject.toml) or run with PYTHONPATH=. (e.g. `PYTHONPATH=. labloop run FILE`)"
        )
    return (
        "check the spelling, and that the package is installed in this environment (your own module: "
        "`pip install -e` its package, or put its folder on PYTHONPATH)"
    )


def load(ref: str, group: str) -> Any:
    """Resolve ``ref`` (an entry point name in ``group`` or a ``module:attr`` path) to the object it names."""
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(
                f"cannot import module '{module_name}' named by '{ref}': {exc}", _import_fix(module_name)
            ) from exc
        obj: Any = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise PluginError(
                    f"module '{module_name}' has no attribute '{attr}' (from '{ref}')",
                    "name an object that exists, as package.module:attribute",
                )
            obj = getattr(obj, part)
        return obj
    matches = [ep for ep in entry_points(group=group) if ep.name == ref]
    if not matches:
        names = ", ".join(sorted(available(group))) or "none installed"
        raise PluginError(
            f"no plugin called '{ref}' in entry point group '{group}' (installed: {names})",
            "use one of the installed names, or a 'package.module:attribute' path",
        )
    try:
        return matches[0].load()
    except Exception as exc:  # a broken third-party plugin must not look like a labloop bug
        raise PluginError(f"plugin '{ref}' ({matches[0].value}) failed to load: {exc}", "fix or reinstall it") from exc
