"""A light instrument PC (issue 22, item 6): `labloop agent` runs without the campaign host's packages.

The base install (pyproject.toml ``dependencies``) is what an instrument's computer needs to serve a device; the
optimizer, store, daemon, dashboard and reports come with ``labloop[lab]``, each protocol library with its own
extra. Proven here three ways: a real ``labloop agent`` process serving a declarative Modbus instrument while every
package of the ``lab`` extra is made unimportable in it, and which never even tries to import one; the metadata;
and a campaign host's command on such an install saying which extra to install instead of a traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import zmq
from instrument_helpers import example, simulated, wait_for, wait_status

from labloop import needs
from labloop.control.agent_process import write_key_file
from labloop.control.remote import connect
from labloop.errors import LabloopError
from labloop.transports import KINDS, LIBRARY

ROOT = Path(__file__).resolve().parent.parent
#: the lab extra's packages, by their top-level modules: none may be imported by an instrument PC's agent
LAB = sorted(m for m, extra in needs.EXTRA_OF.items() if extra == "lab")
#: distributions that must not be in the base install (the issue's list, plus the store and the rest of the lab)
HEAVY_DISTS = {
    "torch",
    "botorch",
    "gpytorch",
    "matplotlib",
    "starlette",
    "uvicorn",
    "python-multipart",
    "pyarrow",
    "h5py",
    "scipy",
    "sqlalchemy",
    "alembic",
    "psutil",
}

#: Runs the `labloop` CLI with the given top-level modules unimportable (as on an install without them): a meta
#: path finder refuses them and records every attempt; at exit it writes the attempts and the loaded modules.
BLOCKED_CLI = """
import atexit, importlib.abc, json, sys
out, blocked = sys.argv.pop(1), set(sys.argv.pop(1).split(","))
tried = []
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Missing())
def report():
    with open(out, "w") as f:
        json.dump({"tried": sorted(set(tried)), "modules": sorted({m.split(".")[0] for m in sys.modules})}, f)
atexit.register(report)
sys.argv[0] = "labloop"
from labloop.cli import main
main()
"""


def blocked_cli(tmp_path: Path, blocked: list[str], *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, str(tmp_path / "modules.json"), ",".join(blocked), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "300"},
        **kw,
    )


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


# -- (a) the agent on a light install --------------------------------------------------------------------------------
def test_labloop_agent_serves_a_modbus_instrument_without_ever_importing_the_lab_packages(tmp_path):
    """`labloop agent labloop.declarative:device` serves the furnace over Modbus TCP through its proxy (set, read,
    a failed step and the next one) while torch, botorch, gpytorch, matplotlib, starlette, uvicorn, pyarrow, h5py,
    scipy, SQLAlchemy, alembic and psutil are missing; the process never tries to import any of them."""
    client, pair = zmq.curve_keypair(), zmq.curve_keypair()
    key = write_key_file(tmp_path / "furnace.key", name="furnace", role="agent", pair=pair, server_public=client[0])
    with simulated("furnace_modbus.yaml") as sim:
        cfg = tmp_path / "agent.json"
        cfg.write_text(json.dumps({"file": str(example("furnace_modbus.yaml")), "address": sim.address}))
        cmd = [
            sys.executable,
            "-c",
            BLOCKED_CLI,
            str(tmp_path / "modules.json"),
            ",".join(LAB),
            "agent",
            "labloop.declarative:device",
            "--config",
            str(cfg),
            "--bind",
            "tcp://127.0.0.1:*",
            "--name",
            "furnace",
            "--key",
            str(key),
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"},
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout), daemon=True).start()
        try:
            wait_for(lambda: any("CURVE" in line for line in lines) or proc.poll() is not None, 60, "the agent")
            served = [m.group(1) for line in lines if (m := re.search(r"on (tcp://\S+) \(CURVE", line))]
            assert served, lines
            proxy = connect(served[0], pair[0], name="furnace", keys=client)
            try:
                proxy.sample.put("s1")
                assert wait_status(proxy.set({"temperature": 60})) is None
                assert abs(proxy.read()["furnace_temperature"]["value"] - 60) <= 2.0
                sim.inject("exception", code=4)
                exc = wait_status(proxy.set({"temperature": 65}))
                assert exc is not None and "exception code 4" in str(exc)
                assert wait_status(proxy.set({"temperature": 65})) is None
            finally:
                proxy.disconnect()
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the agent stops cleanly, so the exit report is written
            proc.wait(30)
    report = json.loads((tmp_path / "modules.json").read_text())
    assert report["tried"] == [], f"the agent tried to import {report['tried']}"
    assert "pymodbus" in report["modules"] and "ophyd" in report["modules"]  # it did serve through the library
    assert not set(report["modules"]) & set(LAB)


# -- (b) the metadata ------------------------------------------------------------------------------------------------
def test_the_base_install_is_light_and_the_test_extra_is_the_full_lab():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not base & HEAVY_DISTS, f"the instrument PC's install would pull {sorted(base & HEAVY_DISTS)}"
    assert {"ophyd", "pyzmq", "pydantic", "typer"} <= base  # what the agent and a declarative device run on
    assert HEAVY_DISTS <= {_name(r) for r in extras["lab"]}
    # a package added to the lab extra must be known to labloop.needs, so a light install names the extra for it
    assert {_name(r).replace("-", "_") for r in extras["lab"]} <= set(LAB)
    for kind in KINDS:  # one extra per transport, and labloop.needs names that extra for its library
        assert kind in extras and needs.EXTRA_OF[LIBRARY[kind]] == KINDS[kind][2] == kind
    assert set(needs.EXTRA_OF.values()) <= set(extras)
    refs = {e for r in extras["test"] if _name(r) == "labloop" for e in r.split("[")[1].rstrip("]").split(",")}
    assert {"lab", "postgres", "chem", "docs", "transports"} <= refs
    assert {e for r in extras["transports"] for e in r.split("[")[1].rstrip("]").split(",")} == set(KINDS)


def test_the_readme_install_stays_the_full_one():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("pip install -q torch==2.13.0 && pip install -q -e '.[test]'") == 2
    assert (
        "pip install -q torch==2.13.0 && pip install -q -e '.[test]' && python -m pytest -q"
        in (ROOT / ".ci" / "run").read_text()
    )


# -- (c) a campaign host's command on a light install ----------------------------------------------------------------
@pytest.mark.parametrize(
    "blocked,args,extra",
    [
        (LAB, ["demo", "--dir", "demo"], "lab"),
        (["torch", "botorch", "gpytorch"], ["demo", "--dir", "demo"], "lab"),
        (LAB, ["status", "--store", "sqlite:///x.db"], "lab"),
        (LAB, ["users", "list", "--store", "sqlite:///x.db"], "lab"),
        (["starlette", "uvicorn"], ["serve", "--http", "127.0.0.1:0", "--store", "sqlite:///x.db"], "lab"),
        (["pymodbus"], ["devices", "check", str(example("mfc_modbus.yaml")), "--simulated"], "modbus"),
    ],
    ids=["demo", "demo-no-torch", "status", "users", "serve-http", "devices-check-modbus"],
)
def test_a_command_needing_a_missing_extra_names_it_instead_of_a_traceback(tmp_path, blocked, args, extra):
    proc = blocked_cli(tmp_path, blocked, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "ModuleNotFoundError" not in out
    assert f"pip install 'labloop[{extra}]'" in out and "is not installed" in out
    assert not (tmp_path / "x.db").exists()  # told before anything is created


def test_help_and_the_agent_command_work_without_the_lab_extra(tmp_path):
    for args in (["--help"], ["agent", "--help"], ["devices", "--help"]):
        proc = blocked_cli(tmp_path, LAB, *args)
        assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr
        assert json.loads((tmp_path / "modules.json").read_text())["tried"] == []


def test_a_missing_module_labloop_does_not_know_stays_a_bug(monkeypatch):
    assert needs.missing(ModuleNotFoundError("No module named 'nonesuch'", name="nonesuch")) is None
    with pytest.raises(ModuleNotFoundError):
        with needs.extras_named():
            import nonesuch_labloop_module  # noqa: F401
    err = needs.missing(ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn"))
    assert err is not None and err.fix == "pip install 'labloop[lab]'" and "'torch'" in err.problem
    needs.require("json", "yaml")  # installed: nothing to say
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
    with pytest.raises(LabloopError, match=r"'h5py'") as info:
        needs.require("json", "h5py")
    assert info.value.fix == "pip install 'labloop[lab]'"
