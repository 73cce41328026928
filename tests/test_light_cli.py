"""Operator commands stay light: none of them imports the optimizer, the RunEngine or plotting code.

An emergency stop that first spends seconds importing torch and bluesky is a safety defect. Each command runs
in a fresh interpreter (what an operator's shell does) against a real daemon with a running campaign, and the
interpreter reports, at exit, which heavy packages it imported: none may appear.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from daemon_helpers import DaemonProcess, add_user, key_file, wait_until
from running import two_chamber

HEAVY = ("torch", "botorch", "gpytorch", "bluesky", "matplotlib", "ophyd")

#: Runs the CLI like the `labloop` script does, then writes the heavy packages it imported to a file.
PROBE = """
import atexit, json, sys
out = sys.argv.pop(1)
def report():
    heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
    with open(out, 'w') as f:
        json.dump(heavy, f)
atexit.register(report)
sys.argv[0] = 'labloop'
from labloop.cli import main
main()
""" % (HEAVY,)  # noqa: UP031 - the text of a program: an f-string would double its braces


def heavy_imports(tmp_path, *args: str, stdin: str | None = None) -> tuple[list[str], subprocess.CompletedProcess]:
    out = tmp_path / "modules.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    return json.loads(out.read_text()), proc


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("light")
    d = DaemonProcess(tmp)
    d.keys = {"olga": add_user(d.store_url, "olga", "operator", d.server_keys)}
    d.start()
    d.files = {n: key_file(tmp, k) for n, k in d.keys.items()}
    d.tmp = tmp
    data = two_chamber(max_trials=40, options={"probe_minutes": 6})
    data["name"] = "long"
    d.campaign_file = tmp / "long.yaml"
    d.campaign_file.write_text(yaml.safe_dump(data))
    yield d
    d.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["status", "--help"],
        ["estop", "--help"],
        ["pause", "--help"],
        ["watch", "--help"],
        ["submit", "--help"],
        ["audit", "--help"],
    ],
)
def test_help_imports_nothing_heavy(tmp_path, args):
    heavy, proc = heavy_imports(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert heavy == [], f"labloop {' '.join(args)} imported {heavy}"


def test_operator_commands_import_nothing_heavy(lab, tmp_path):
    """Every command that does not run a campaign, through the daemon and on the store, with a campaign running."""
    srv = ["--server", lab.control, "--key", lab.files["olga"]]
    store = ["--store", lab.store_url]
    ran: dict[str, tuple[list[str], subprocess.CompletedProcess]] = {}

    def check(label, *args, ok=(0,), stdin=None):
        heavy, proc = heavy_imports(tmp_path, *args, stdin=stdin)
        ran[label] = (heavy, proc)
        assert proc.returncode in ok, (label, proc.stdout, proc.stderr)
        assert heavy == [], f"labloop {label} imported {heavy}"
        return proc

    r = check("submit", "submit", str(lab.campaign_file), "--time-scale", "1800", *srv)
    cid = r.stdout.split("(id ")[1].split(")")[0]
    camp = ["--campaign", cid]
    wait_until(lambda: lab.client(lab.keys["olga"]).call("status", campaign=cid)["counts"], 120)
    check("status --server", "status", *camp, *srv)
    check("status --store", "status", *camp, *store)
    check("pause --server", "pause", *camp, *srv)
    check("resume --server", "resume", *camp, *srv)
    check("pause --store", "pause", *camp, *store)
    check("approve --server", "approve", "1", *camp, *srv, ok=(0, 2))  # no approval in this campaign: refused
    check("reject --server", "reject", "1", "--reason", "no", *camp, *srv, ok=(0, 2))
    check("export --server", "export", *camp, *srv)
    check("export --store", "export", *camp, *store)
    check("show trial", "show", "trial", "1", *camp, *store, ok=(0, 2))
    check("verify", "verify", *camp, *store, ok=(0, 1))
    check("db current", "db", "current", *store)
    check("users list", "users", "list", *store)
    check("users token", "users", "token", "olga", *store)
    check("users passwd", "users", "passwd", "olga", "--password-stdin", *store, stdin="correct horse battery\n")
    check("audit", "audit", "--verify", *store)
    check("estop --server", "estop", *camp, *srv)
    check("stop --server", "stop", *camp, *srv, ok=(0, 2))
    check("estop --store", "estop", *store, ok=(0, 2))
    check("watch --server", "watch", *camp, "--until-end", *srv)
    assert all(h == [] for h, _ in ran.values())
