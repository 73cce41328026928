"""Packages depend downwards only (the order is in ``tests/layering.py``), checked on every import, inside
functions too. A failure names each offending import as ``file:line: importer -> target (why)``."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

from layering import LAYERS, ROOT_PACKAGES, Import, layer_of, scan, violations

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"labloop_devices": "devices", "labloop_simulators": "simulators", "labloop_experiments": "experiments"}


def test_labloop_packages_depend_downwards_only():
    imports = scan(REPO, folders=FOLDERS)
    assert len(imports) > 300  # the scan saw the tree (not an empty folder)
    seen = {layer_of(i.importer) for i in imports}
    assert {"cli", "web", "control", "run", "store", "labloop_devices", "labloop_simulators"} <= seen
    bad = violations(imports)
    assert not bad, "imports against the layers (move the code down, or pass it in from above):\n" + "\n".join(bad)


def test_every_labloop_package_has_a_layer():
    """A new package must be placed in LAYERS, or its imports would count as a root module's."""
    packages = {p.name for p in (REPO / "labloop").iterdir() if (p / "__init__.py").is_file()}
    placed = {p for layer in LAYERS for p in layer} | ROOT_PACKAGES
    assert packages <= placed, f"put these packages into tests/layering.py LAYERS: {sorted(packages - placed)}"
    # and into the installed packages (pyproject lists them by hand because of its folder mapping)
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert {f"labloop.{p}" for p in packages} <= listed, "add them to [tool.setuptools] packages in pyproject.toml"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_checker_names_each_upward_import_with_file_and_line(tmp_path):
    root = _tree(
        tmp_path,
        {
            "labloop/__init__.py": "",
            "labloop/errors.py": "",
            "labloop/run/__init__.py": "",
            "labloop/run/lab.py": """\
            from labloop.errors import X
            from . import plans

            def build():
                from labloop.control.remote_lab import remote_device
                return remote_device
            """,
            "labloop/run/plans.py": "import importlib\nm = importlib.import_module('labloop.web.app')\n",
            "labloop/store/__init__.py": "from ..strategy import space\n",
            "labloop/strategy/__init__.py": "from labloop.declarative import builder\n",
            "labloop/control/__init__.py": "from labloop.run import lab\nfrom labloop.devkit import conformance\n",
            "labloop/declarative/b.py": "from labloop_devices.base import Station\n",
            "labloop/cli/x.py": "from labloop.web import app\nfrom labloop.devkit import options\n",
            "devices/base.py": "from labloop.devkit import protocols\nfrom labloop.contract import Health\n",
        },
    )
    imports = scan(root, folders=FOLDERS)
    assert Import("labloop/run/lab.py", 5, "labloop.run.lab", "labloop.control.remote_lab") in imports
    bad = violations(imports)
    text = "\n".join(bad)
    assert "labloop/run/lab.py:5: labloop.run.lab -> labloop.control.remote_lab (run is below control" in text
    assert "labloop/run/plans.py:2: labloop.run.plans -> labloop.web.app" in text  # import_module("...")
    # a relative import (from ..strategy import space), resolved to the package it names
    assert "labloop/store/__init__.py:1: labloop.store -> labloop.strategy (store is below strategy" in text
    assert (
        "labloop/strategy/__init__.py:1: labloop.strategy -> labloop.declarative (strategy and declarative are peers"
    ) in text
    assert "labloop/control/__init__.py:2: labloop.control -> labloop.devkit (control is below devkit" in text
    assert "labloop/declarative/b.py:1: labloop.declarative.b -> labloop_devices.base" in text
    assert "devices/base.py:1: labloop_devices.base -> labloop.devkit (the plugin package" in text
    # downward imports, a package's own modules and root modules are fine
    assert len(bad) == 7, text
    assert not any(
        s in text
        for s in (
            "-> labloop.errors",
            "-> labloop.run.plans",
            "labloop.cli.x",
            "-> labloop.run.lab ",
            "-> labloop.contract",
        )
    )


def test_the_checker_sees_peers_and_root_modules_reaching_up(tmp_path):
    root = _tree(
        tmp_path,
        {
            "labloop/errors.py": "def f():\n    import labloop.store.schema\n",
            "labloop/web/app.py": "from labloop.report import page\n",
            "labloop/report/page.py": "from labloop.control import client\n",
        },
    )
    bad = violations(scan(root, folders=FOLDERS))
    text = "\n".join(bad)
    assert "labloop/errors.py:2: labloop.errors -> labloop.store.schema (a root module imports labloop.store" in text
    assert "labloop/web/app.py:1: labloop.web.app -> labloop.report (web and report are peers" in text
    assert len(bad) == 2, text


def test_identity_comes_from_one_package_that_cli_web_and_daemon_share():
    """Keys, roles, passwords, tokens and sessions live in labloop.identity: the CLI sets passwords without the
    dashboard's code, the dashboard checks roles without the daemon's, the daemon's ZAP handler reads users through
    it, and the old homes of that code are gone."""
    imports = scan(REPO, packages=("labloop",))
    by_file: dict[str, set[str]] = {}
    for i in imports:
        by_file.setdefault(i.file, set()).add(i.target)
    assert not any(t.startswith("labloop.web") for t in by_file["labloop/cli/users.py"])
    assert any(t.startswith("labloop.identity") for t in by_file["labloop/cli/users.py"])
    for f in ("labloop/web/app.py", "labloop/web/actions.py", "labloop/control/auth.py", "labloop/control/server.py"):
        assert any(t.startswith("labloop.identity") for t in by_file[f]), f
    web = {t for f, ts in by_file.items() if f.startswith("labloop/web/") for t in ts}
    assert not {t for t in web if t.startswith(("labloop.control.auth", "labloop.control.keys"))}
    for gone in ("labloop/web/accounts.py", "labloop/control/keys.py"):
        assert not (REPO / gone).exists(), gone


def test_no_module_over_500_lines_without_a_stated_reason():
    """Small modules keep the architecture easy to see; one that must be longer says why in its docstring."""
    import ast

    long_ = []
    for path in sorted((REPO / "labloop").rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 500:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Over 500 lines, on purpose:" not in doc:
                long_.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not long_, f"split these, or say in the module docstring 'Over 500 lines, on purpose: WHY': {long_}"
