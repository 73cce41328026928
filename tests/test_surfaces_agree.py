"""Every surface tells the operator the same truth (issue 20, item 2): a differential chaos test.

Two campaigns run through a real daemon (``labloop serve --http``, each campaign in its own child process; one lab
with injected probe faults, so stations fail, are taken out of service and are brought back; the other measures
every trial also on an instrument served by a ``labloop agent`` process). A seeded schedule of pauses and resumes, a
``kill -9`` of a campaign process (then ``resume`` through the daemon), of the daemon (then a new daemon on the same
store) and of the agent (then the agent again) runs, and at random moments every surface is compared with a fresh read
of the store (:func:`labloop.data.view.campaign_view`, by :func:`labloop.data.view.digest`: the campaign's state,
each trial's state, where every sample in flight is, the best, the actions offered, stations out of service):

* ``labloop status --json`` through the daemon;
* the view a stream follower keeps (:class:`labloop.control.stream.LiveView`: read once, then events applied);
* the dashboard's ``/api/campaigns/NAME``;
* the page in headless Chromium, read back from its DOM: trial rows, the sample line, the best, the visible buttons.

A surface may lag: it agrees when it shows a state the store held at most :data:`LAG_S` (2 s,
``LABLOOP_CHAOS_LAG_S``) before it was read; the store's states are sampled all the while by a thread of the test. It
must agree within :data:`SETTLE_S` of polling (nothing is timed: the test polls until agreement or the bound). Seeded: ``LABLOOP_CHAOS_SEED`` (default 20). ``LABLOOP_CHAOS_LIE=page-best``
makes the page ignore ``best`` events: the test must then fail (``test_the_comparison_catches_a_page_that_lies``
proves that without the switch).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from daemon_helpers import wait_until
from running import two_chamber
from test_dashboard_browser import Lab, browser, shoot, sign_in, wait_for  # noqa: F401 - browser is a fixture
from typer.testing import CliRunner

from labloop.control.stream import LiveView
from labloop.data.view import campaign_view, digest
from labloop.identity import accounts
from labloop.identity.keys import write_private
from labloop.run.liveness import liveness

SEED = int(os.environ.get("LABLOOP_CHAOS_SEED", "20"))
LIE = os.environ.get("LABLOOP_CHAOS_LIE", "")
#: a surface may show what the store held this long before it was read (the pipeline's own lag is tens of
#: milliseconds; this leaves room for a machine loaded many times over, as CI and shared machines are)
LAG_S = float(os.environ.get("LABLOOP_CHAOS_LAG_S", "2.0"))
#: ... and must have agreed within this long of polling
SETTLE_S = 20.0
CONTROLS = ("pause", "resume", "stop", "estop")
#: the page's lie for LABLOOP_CHAOS_LIE=page-best: its best stays what it was when the lie began (best events are
#: dropped, and every view it reads again is given the old best)
PAGE_LIES_ABOUT_BEST = """
const real = window.LabloopView.apply, realFetch = window.fetch, frozen = window.labloopLive.view.best;
window.LabloopView.apply = (view, e) => e.kind === "best" ? real(view, {seq: e.seq, kind: "noted"}) : real(view, e);
window.fetch = async (...args) => {
  const r = await realFetch(...args), url = String(args[0]);
  if (!url.startsWith("/api/campaigns/") || url.includes("/actions/") || !r.ok) return r;
  const view = await r.json();
  view.best = frozen;
  return new Response(JSON.stringify(view), {status: r.status, headers: {"Content-Type": "application/json"}});
};
"""


class Surfaces:
    """Every surface an operator reads, for the campaigns ``names``; the page shows ``names[0]``."""

    def __init__(self, lab: Lab, driver, names: list[str], tmp: Path):
        self.lab, self.driver, self.names = lab, driver, names
        self.key_file = tmp / "operator.key"
        if not self.key_file.exists():
            write_private(self.key_file, lab.keys["operator"].model_dump_json())
        self.token = accounts.issue_token(lab.store, "operator")
        self.views: dict[str, LiveView] = {}
        self.client = None

    def connect(self) -> None:
        """(Re)open every surface on the daemon now running (a restarted daemon listens on new ports)."""
        self.close()
        d = self.lab.daemon
        self.client = d.client(self.lab.keys["operator"])
        self.views = {n: LiveView(self.client, d.stream, n) for n in self.names}
        sign_in(self.driver, d.http, "operator", f"/campaigns/{self.names[0]}")
        wait_for(
            lambda: self.driver.execute_script("return !!(window.labloopLive && window.labloopLive.rendered)"),
            what="the live page",
        )
        if LIE == "page-best":
            self.driver.execute_script(PAGE_LIES_ABOUT_BEST)

    def read(self, kind: str, name: str) -> dict:
        if kind == "status":
            r = CliRunner().invoke(
                _app(),
                [
                    "status",
                    "--server",
                    self.lab.daemon.control,
                    "--key",
                    str(self.key_file),
                    "--campaign",
                    name,
                    "--json",
                ],
            )
            assert r.exit_code == 0, r.output
            return digest(json.loads(r.output))
        if kind == "stream":
            return digest(self.views[name].view)
        if kind == "api":
            r = httpx.get(
                f"{self.lab.daemon.http}/api/campaigns/{name}",
                timeout=30,
                headers={"Authorization": f"Bearer {self.token}"},
            )
            assert r.status_code == 200, r.text
            return digest(r.json())
        got = self.driver.execute_script("return window.labloopLive.rendered()")
        got.pop("lastSeq", None)
        return got

    def pump(self) -> None:
        for v in self.views.values():
            v.poll(0)

    def close(self) -> None:
        for v in self.views.values():
            v.close()
        self.views = {}
        if self.client is not None:
            self.client.close()
            self.client = None


def _app():
    from labloop.cli import app

    return app


def as_page(d: dict) -> dict:
    """A store digest as the page shows it: the control buttons the operator's role and the state allow."""
    out = {k: v for k, v in d.items() if k != "actions"}
    out["buttons"] = sorted(a for a in d["actions"] if a in CONTROLS)
    return out


def agree(surfaces: Surfaces, kinds=("status", "stream", "api", "page"), settle: float = SETTLE_S) -> int:
    """Poll every surface until each has shown what the store held at most LAG_S before; fail naming the surface and
    the difference when one has not within ``settle`` seconds. Returns how many reads it took."""
    store = surfaces.lab.store
    history: dict[str, collections.deque] = {n: collections.deque() for n in surfaces.names}
    lock = threading.Lock()

    sampled = [0.0]  # when the last round of samples began

    def sample() -> None:
        began = time.monotonic()
        for n in surfaces.names:
            d = digest(campaign_view(store, n))
            with lock:  # (first seen, digest): each state held until the next one was first seen
                if not history[n] or history[n][-1][1] != d:
                    history[n].append((began, d))
                while len(history[n]) > 1 and history[n][1][0] < began - LAG_S - 60:
                    history[n].popleft()
        sampled[0] = began

    stop = threading.Event()

    def sampler() -> None:  # the store's states, all the while: a surface read slowly is compared fairly
        while not stop.is_set():
            sample()
            stop.wait(0.02)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        return _agree(surfaces, kinds, settle, history, lock, sampled)
    finally:
        stop.set()
        thread.join(10)


def _agree(surfaces, kinds, settle, history, lock, sampled) -> int:
    pending = {(k, n) for k in kinds for n in surfaces.names if k != "page" or n == surfaces.names[0]}
    last: dict = {}
    reads = 0
    deadline = time.monotonic() + settle
    while pending:
        for kind, name in sorted(pending):
            surfaces.pump()
            asked = time.monotonic()
            got = surfaces.read(kind, name)
            reads += 1
            done = time.monotonic()
            while sampled[0] < done:  # the store as it was up to the end of the read
                time.sleep(0.01)
            with lock:  # a state held until at least asked - LAG_S: (start, digest) entries, each held until the next
                entries = list(history[name])
            held = [
                d for i, (t, d) in enumerate(entries) if i + 1 == len(entries) or entries[i + 1][0] >= asked - LAG_S
            ]
            if kind == "page":
                held = [as_page(d) for d in held]
            if got in held:
                pending.discard((kind, name))
            else:
                last[(kind, name)] = (
                    got,
                    held[-1],
                    done - asked,
                    next(
                        (
                            i
                            for i, (_, d) in enumerate(reversed(entries))
                            if (as_page(d) if kind == "page" else d) == got
                        ),
                        None,
                    ),
                )
        if pending and time.monotonic() > deadline:
            lines = []
            for key in sorted(pending):
                got, want, took, back = last[key]
                diff = {k: (got.get(k), want.get(k)) for k in want if got.get(k) != want.get(k)}
                when = "a state the store never had" if back is None else f"the store's state {back} changes ago"
                lines.append(
                    f"{key[0]} of {key[1]} disagrees with the store after {settle:g} s (its last read took "
                    f"{took:.2f} s and showed {when}): {diff}"
                )
            raise AssertionError("\n".join(lines))
        time.sleep(0.05)
    return reads


def _campaign_pid(lab: Lab, name: str) -> int | None:
    life = liveness(lab.store.campaign(name))
    return life.pid if life.alive else None


def _live_runner(lab: Lab, names: list[str], first: str) -> tuple[str, int]:
    """A campaign whose runner is alive (``first`` if it is), and its pid."""
    order = [first] + [n for n in names if n != first]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for n in order:
            pid = _campaign_pid(lab, n)
            if pid:
                return n, pid
        time.sleep(0.1)
    raise AssertionError(
        "no campaign runner is alive: "
        + "; ".join(f"{n}: {lab.store.campaign(n).state}, {liveness(lab.store.campaign(n)).describe()}" for n in names)
    )


def _kill_daemon(lab: Lab) -> None:
    d = lab.daemon
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d.log.close()
    d.start(http="127.0.0.1:0")
    lab.url = d.http


def _resume(lab: Lab, name: str) -> None:
    client = lab.daemon.client(lab.keys["operator"], timeout=60)
    try:
        wait_until(lambda: client.call("resume", campaign=name, wait=10.0, timeout=60), 90)
    finally:
        client.close()


def _ask(lab: Lab, action: str, name: str) -> None:
    client = lab.daemon.client(lab.keys["operator"], timeout=60)
    try:
        client.call(action, campaign=name, wait=10.0, timeout=60)
    except Exception:  # noqa: BLE001 - refused (already paused, ending): the surfaces must say so all the same
        pass
    finally:
        client.close()


@pytest.fixture
def chaos_lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


class Agent:
    """``labloop agent`` serving a source-measure unit (its simulated SCPI endpoint runs here) to the daemon's
    campaign processes: it trusts the daemon's key. ``kill()`` is a ``kill -9``; ``start()`` brings it back where it
    was. The instrument measures a reference sample this test loads into it (the robot does not reach it)."""

    def __init__(self, lab: Lab):
        from labloop_simulators.endpoints.scpi_smu_server import ScpiSmuServer

        from labloop.control.agent_process import AgentProcess

        self.sim = ScpiSmuServer(read_time=0.01).__enter__()
        keys = lab.daemon.server_keys
        self.pair = (keys.public, keys.secret)
        self.proc = AgentProcess(
            "labloop_devices.scpi_smu:ScpiSmu",
            {**self.sim.connection_kwargs(), "timeout": 2},
            name="smu",
            client=self.pair,
            folder=lab.tmp,
        )
        self.start()

    def start(self) -> None:
        from labloop.control import remote

        self.proc.start()
        ref = remote.connect(self.proc.address, self.proc.agent_public, name="smu", keys=self.pair)
        ref.sample.put("reference")
        ref.disconnect()

    def kill(self) -> None:
        self.proc.kill()

    def close(self) -> None:
        self.proc.close()
        self.sim.__exit__(None, None, None)


def _submit(lab: Lab, name: str, data: dict) -> None:
    data["name"] = name
    data["lab"]["time_scale"] = 1800.0
    client = lab.daemon.client(lab.keys["operator"], timeout=300)
    try:
        client.call("submit", timeout=300, text=yaml.safe_dump(data), source=f"{name}.yaml")
    finally:
        client.close()


def _start(lab: Lab, names: list[str], agent: Agent | None = None) -> None:
    # campaign a: a flaky probe (taken out of service after 2 failures in a row, brought back by a resume)
    lab.run(
        names[0],
        max_trials=40,
        options={"probe_fault_rate": 0.3},
        scheduling={"quarantine_after": 2, "pause_after_same_failures": 0},
    )
    if agent is None:
        lab.run(names[1], max_trials=40)
    else:  # campaign b: every trial also measured on the agent's instrument
        data = two_chamber(max_trials=40)
        data["lab"]["devices"] = {"smu": {"remote": agent.proc.address, "agent_key": agent.proc.agent_public.decode()}}
        data["workflow"].insert(4, {"kind": "measure", "device": "smu"})
        _submit(lab, names[1], data)
    for n in names:
        wait_until(lambda n=n: lab.store.trials(lab.store.campaign(n).id), 120)


def test_every_surface_agrees_with_the_store_through_chaos(browser, chaos_lab, tmp_path):  # noqa: F811 - a fixture imported above
    rng = random.Random(SEED)
    lab, names = chaos_lab, ["chaos-a", "chaos-b"]
    agent = Agent(lab)
    _start(lab, names, agent)
    surfaces = Surfaces(lab, browser, names, tmp_path)
    surfaces.connect()
    plan = ["pause", "resume", "kill-campaign", "kill-daemon", "kill-agent", "pause", "resume", "check"]
    rng.shuffle(plan)
    done = []
    try:
        agree(surfaces)
        for step in plan:
            victim = rng.choice(names)
            time.sleep(rng.uniform(0.0, 1.5))  # a random moment (not a speed assertion: nothing waits on it)
            if step in ("pause", "resume"):
                _ask(lab, step, victim)
            elif step == "kill-campaign":
                victim, pid = _live_runner(lab, names, victim)
                os.kill(pid, signal.SIGKILL)
                agree(surfaces)  # a dead runner: every surface still says what the store says
                _resume(lab, victim)
            elif step == "kill-daemon":
                _kill_daemon(lab)
                surfaces.connect()
            elif step == "kill-agent":
                agent.kill()
                agree(surfaces)  # the instrument's computer is gone: its steps fail, every surface says so
                agent.start()
            done.append((step, victim))
            try:
                agree(surfaces)
            except AssertionError as exc:
                raise AssertionError(f"after {done}: {exc}") from None
        for n in names:  # bring every station back, then end both campaigns: nothing may be offered any more
            if lab.store.campaign(n).state == "paused":
                _ask(lab, "resume", n)
        agree(surfaces)
        for n in names:
            _ask(lab, "stop", n)
        wait_until(lambda: all(lab.store.campaign(n).state in ("stopped", "finished") for n in names), 120)
        agree(surfaces)
        final = [digest(campaign_view(lab.store, n)) for n in names]
        assert all(d["actions"] == [] for d in final)
        assert surfaces.read("page", names[0])["buttons"] == []
        assert {"kill-daemon", "kill-campaign", "kill-agent"} <= {s for s, _ in done}
        # the agent served campaign b: its instrument's readings are in the store
        assert any(
            s.device == "smu" and s.state == "done"
            for s in lab.store.steps(campaign_id=lab.store.campaign(names[1]).id)
        )
        # the faults happened: the flaky lab's trials failed, and the surfaces agreed on that too
        assert any(t.state == "failed" for t in lab.store.trials(lab.store.campaign(names[0]).id))
    finally:
        surfaces.close()
        agent.close()


def test_the_comparison_catches_a_page_that_lies(browser, chaos_lab, tmp_path):  # noqa: F811 - a fixture imported above
    """The differential check can fail: a page that drops ``best`` events (the lie is injected into the page's own
    apply) is caught once the store's best moves on."""
    lab, names = chaos_lab, ["liar"]
    lab.run(names[0], max_trials=30)
    surfaces = Surfaces(lab, browser, names, tmp_path)
    surfaces.connect()
    try:
        agree(surfaces, kinds=("page",))
        # the live events name the trial, what happened and its value ("674 best", "673 measurement" said nothing)
        lines = wait_for(
            lambda: [
                li.text
                for li in browser.find_elements("css selector", "#events li")
                if " measured: sheet_resistance=" in li.text
            ],
            120,
            "a measurement listed",
        )
        assert all(" trial " in f" {line}" for line in lines)
        browser.execute_script("document.getElementById('events').scrollIntoView()")
        shoot(browser, tmp_path, "dashboard-events")
        before = digest(campaign_view(lab.store, names[0]))["best"]
        browser.execute_script(PAGE_LIES_ABOUT_BEST)
        wait_until(lambda: digest(campaign_view(lab.store, names[0]))["best"] != before, 120)
        with pytest.raises(AssertionError, match=r"page of liar disagrees with the store.*'best'"):
            agree(surfaces, kinds=("page",), settle=3.0)
        # the other surfaces are not fooled
        agree(surfaces, kinds=("stream", "api"))
    finally:
        surfaces.close()
