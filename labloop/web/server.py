"""Run the dashboard with uvicorn on a background thread (the daemon's ``--http``), and stop it cleanly.

Why a thread and not a process: the dashboard must see the daemon's live stream the moment it passes (the hub is fed
in-process), and share its store connection pool; uvicorn's asyncio loop on its own thread never blocks the
daemon's control loop, and the daemon's loop never blocks the pages.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from labloop.errors import LabloopError

from .actions import Runner
from .app import Dashboard


def parse_http(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (e.g. ``127.0.0.1:8080``) -> (host, port), or a LabloopError saying what is wrong."""
    host, _, port = addr.rpartition(":")
    try:
        p = int(port)
        if not host or not 0 <= p < 65536:
            raise ValueError
    except ValueError:
        raise LabloopError(f"'{addr}' is not HOST:PORT", "give e.g. --http 127.0.0.1:8080") from None
    return host.strip("[]"), p


class HttpServer:
    """uvicorn serving a :class:`Dashboard` on its own thread."""

    def __init__(self, dashboard: Dashboard, host: str, port: int):
        import uvicorn

        self.dashboard = dashboard
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise LabloopError(
                f"cannot serve the dashboard on {host}:{port}: {exc.strerror}",
                "pick a free port with --http HOST:PORT, or stop what uses it",
            ) from None
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(dashboard.app(), log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="labloop-http", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> HttpServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LabloopError(f"the dashboard did not start on {self.url}", "see the messages above")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


def start_dashboard(
    store_url: str, http: str, dispatch: Runner, feed: Callable[[Callable[..., Any]], None]
) -> HttpServer:
    """The daemon's dashboard (``labloop serve --http``): acts through the daemon's dispatcher ``dispatch`` and is fed
    its live stream by ``feed(publish)``. The CLI hands this to :func:`labloop.control.server.serve`."""
    dash = Dashboard(store_url, runner=dispatch, tail=False)
    feed(dash.hub.publish)
    return HttpServer(dash, *parse_http(http)).start()
