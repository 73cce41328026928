"""The docs' daemon block (docs/operate/daemon.md, once README's), run as written (only the host name, the ports, the
campaign file and its name are this machine's): serve, users add, submit, watch, status, and the dashboard's
`users passwd` / `users token` (docs/operate/dashboard.md) on the store the daemon serves."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml
from running import two_chamber

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operate"


def block_after(page: str, heading: str) -> list[str]:
    """The commands of the first code block after `heading` in `page`: continued lines joined, comments dropped."""
    text = (DOCS / page).read_text()
    body = text[text.index(heading) :]
    code = body[body.index("```") + 3 :]
    code = code[code.index("\n") + 1 : code.index("```")]
    lines, cur = [], ""
    for raw in code.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        line = raw.split("   #")[0].rstrip() if "   #" in raw else raw.rstrip()
        cur += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def labloop(tmp, line: str, **kw) -> subprocess.CompletedProcess:
    words = shlex.split(line)
    assert words[0] == "labloop", line
    return subprocess.run(
        [sys.executable, "-m", "labloop", *words[1:]],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 400),
        **kw,
    )


def test_the_docs_daemon_block_runs_as_written(tmp_path):
    control, stream = free_port(), free_port()
    data = two_chamber(max_trials=3)
    data["name"] = "thinfilm-nb-tio2"
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(data))

    def here(line: str) -> str:
        return (
            line.replace("0.0.0.0:7510", f"127.0.0.1:{control}")
            .replace("0.0.0.0:7511", f"127.0.0.1:{stream}")
            .replace("lab-pc:7510", f"127.0.0.1:{control}")
            .replace("lab-pc:7511", f"127.0.0.1:{stream}")
        )

    lines = [here(x) for x in block_after("daemon.md", "# The daemon and several machines")]
    serve, add, submit, watch, each = lines
    assert serve.startswith("labloop serve --store sqlite:///lab.db") and "users add alice" in add
    words = shlex.split(serve)
    log = open(tmp_path / "serve.out", "w")  # noqa: SIM115 - the daemon writes it until the finally below
    daemon = subprocess.Popen(
        [sys.executable, "-m", "labloop", *words[1:]], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while "control " not in (tmp_path / "serve.out").read_text():
            assert daemon.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.out").read_text()
            time.sleep(0.1)
        r = labloop(tmp_path, add)
        assert r.returncode == 0, r.stderr
        r = labloop(tmp_path, submit)
        assert r.returncode == 0 and "runs on the daemon" in r.stdout, r.stderr
        proc = subprocess.Popen(
            [sys.executable, "-m", "labloop", *shlex.split(watch)[1:]],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert "thinfilm-nb-tio2 #" in proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        commands = re.search(r"labloop (\S+) ", each).group(1).split("|")
        assert commands[:2] == ["status", "pause"]
        r = labloop(tmp_path, each.replace("|".join(commands), "status"))
        assert r.returncode == 0 and "thinfilm-nb-tio2" in r.stdout, r.stderr

        web = block_after("dashboard.md", "# The dashboard")
        passwd = next(x for x in web if "users passwd" in x)
        token = next(x for x in web if "users token" in x)
        r = labloop(tmp_path, passwd, input="correct horse battery\ncorrect horse battery\n")
        assert r.returncode == 0 and "may now sign in" in r.stdout, r.stderr
        r = labloop(tmp_path, token)
        assert r.returncode == 0 and len(r.stdout.strip()) >= 20, r.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        log.close()
        for p in psutil.process_iter(["pid", "cmdline", "cwd"]):  # campaign processes outlive their daemon
            if "labloop.control.child" in (p.info.get("cmdline") or []) and p.info.get("cwd") == str(tmp_path):
                p.kill()
