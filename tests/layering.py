"""The package layers of labloop, and a checker that names every import breaking them (used by ``test_layers.py``).

Why package level and not only module cycles: a module-cycle test passes while ``run`` reaches up into ``control``
through an import inside a function, and ``control`` reaches into ``web`` the same way; each such import makes the
lower package impossible to use, test or reason about without the higher one. So every import is counted, at the
top of a module or inside a function, and ``importlib.import_module("labloop...")`` with a literal name too.

The order, top to bottom (a package may import its own layer's modules only if it is the same package, and any
package of a lower layer):

    cli -> web / report / devkit -> control -> data -> run -> strategy / declarative / identity
        -> store / transports -> root modules (spec, errors, states, contract, device_base, logs, ...)

* ``devkit`` is for integrators (conformance kit, pytest plugin, instrument checks): it may use the runtime; the
  runtime never imports it. What the runtime needs from it (the device contract, reading a driver's options file)
  lives in root modules (``contract``, ``device_base``, ``driver_options``), which devkit re-exports.
* ``declarative`` (devices built from YAML) sits on ``transports`` and the root ``device_base``: ``run`` builds a
  lab's devices from it, nothing below ``run`` needs devices.
* ``identity`` (keys, roles, passwords, tokens, sessions) sits on ``store``; ``control``, ``web`` and ``cli`` share it.
* The plugin packages shipped beside labloop (``labloop_devices``, ``labloop_simulators``, ``labloop_experiments``)
  may import labloop's runtime but never ``devkit`` or ``cli``; labloop itself never imports them (it loads them by
  entry point or ``module:Class`` name).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

#: top to bottom; packages in one set are peers and may not import each other
LAYERS: list[frozenset[str]] = [
    frozenset({"cli"}),
    frozenset({"web", "report", "devkit"}),
    frozenset({"control"}),
    frozenset({"data"}),
    frozenset({"run"}),
    frozenset({"strategy", "declarative", "identity"}),
    frozenset({"store", "transports"}),
]
#: the bottom layer: modules directly in ``labloop/`` (and ``labloop/__init__``), which may import each other
ROOT = "<root>"
#: packages that count as root modules: ``spec`` is the campaign file's models, split by concern from what was one
#: root module (``spec.py``); root modules import it and it imports them
ROOT_PACKAGES = frozenset({"spec"})
#: shipped beside labloop, loaded by name; may import the runtime, not these
PLUGIN_PACKAGES = {"labloop_devices", "labloop_simulators", "labloop_experiments"}
PLUGIN_MAY_NOT = {"devkit", "cli"}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the scanned root
    line: int
    importer: str  # dotted module name
    target: str  # dotted module name imported

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} -> {self.target}"


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted name of the module at ``path`` (relative to ``root``) and whether it is a package ``__init__``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def imports_of(path: Path, root: Path, prefixes: tuple[str, ...]) -> list[Import]:
    """Every import in the file at ``path`` of a module whose name starts with one of ``prefixes``: top-level
    ones, those inside functions and classes, and ``import_module("...")`` calls with a literal name."""
    mod, is_pkg = module_name(path, root)
    package = mod.split(".") if is_pkg else mod.split(".")[:-1]
    rel = str(path.relative_to(root))
    found: list[Import] = []

    def add(target: str, line: int) -> None:
        if target.split(".")[0] in prefixes:
            found.append(Import(rel, line, mod, target))

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None or target in prefixes:  # `from . import x`, `from labloop import x`
                for a in node.names:
                    add(f"{target}.{a.name}", node.lineno)
            else:
                add(target, node.lineno)
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if (
                name == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                add(node.args[0].value, node.lineno)
    return found


def scan(
    root: Path,
    packages: tuple[str, ...] = ("labloop",) + tuple(sorted(PLUGIN_PACKAGES)),
    folders: dict[str, str] | None = None,
) -> list[Import]:
    """Every import of a labloop (or plugin) module from the ``.py`` files under ``root/<folder>`` for each
    package; ``folders`` maps an import name to its folder when they differ (``labloop_devices`` is ``devices/``)."""
    folders = folders or {}
    out: list[Import] = []
    for pkg in packages:
        folder = root / folders.get(pkg, pkg)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.py")):
            for imp in imports_of(path, root, ("labloop",) + tuple(sorted(PLUGIN_PACKAGES))):
                name = imp.importer.split(".")
                if folders.get(pkg, pkg) != pkg:  # devices/base.py is labloop_devices.base
                    name[0] = pkg
                out.append(Import(imp.file, imp.line, ".".join(name), imp.target))
    return out


def layer_of(module: str) -> str:
    """The package (``run``, ``control``, ...) a labloop module belongs to, ROOT for a root module, or the plugin
    package's name."""
    parts = module.split(".")
    if parts[0] != "labloop":
        return parts[0]
    if len(parts) == 1 or parts[1] == "__main__":
        return "cli" if len(parts) > 1 else ROOT
    known = {p for layer in LAYERS for p in layer}
    return parts[1] if parts[1] in known else ROOT


def rank(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    return len(LAYERS)  # ROOT


def problem(imp: Import) -> str | None:
    """Why ``imp`` breaks the layers, or None if it is allowed."""
    src, dst = layer_of(imp.importer), layer_of(imp.target)
    if src in PLUGIN_PACKAGES:
        if dst in PLUGIN_MAY_NOT:
            return f"the plugin package {src} may not import labloop.{dst} (the runtime loads plugins without it)"
        return None
    if dst in PLUGIN_PACKAGES:
        return f"labloop.{src} imports the plugin package {dst}: labloop loads plugins by name, never imports them"
    if src == dst:
        return None
    if dst == ROOT:
        return None
    if src == ROOT:
        return f"a root module imports labloop.{dst}: root modules are the bottom layer"
    if rank(src) == rank(dst):
        return f"{src} and {dst} are peers in one layer and may not import each other"
    if rank(src) > rank(dst):
        return f"{src} is below {dst}: a lower layer may not import a higher one"
    return None


def violations(imports: list[Import]) -> list[str]:
    """One line per offending import: ``file:line: importer -> target (why)``."""
    return [f"{imp} ({why})" for imp in imports if (why := problem(imp)) is not None]
