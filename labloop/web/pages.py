"""The dashboard's HTML: small server-rendered shells; the campaign page is drawn by ``static/app.js`` from a JSON
snapshot embedded in the page and kept live by server-sent events.

Every value from the store or the user goes through :func:`esc` (HTML) or :func:`json_block` (JSON inside a
``<script type="application/json">``, with ``<`` escaped so a value cannot close the tag). No inline script runs:
the Content-Security-Policy forbids it.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from labloop.identity.accounts import WebUser


def esc(v: Any) -> str:
    return escape("" if v is None else str(v), quote=True)


def json_block(element_id: str, data: Any) -> str:
    text = (
        json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def _page(title: str, body: str, user: WebUser | None = None, scripts: tuple[str, ...] = ()) -> str:
    nav = ""
    if user is not None:
        admin = ' <a href="/audit">audit log</a>' if user.role == "admin" else ""
        nav = (
            f'<nav><a href="/">campaigns</a>{admin}<span class="who" id="who">{esc(user.name)} '
            f'<span class="role" id="role">{esc(user.role)}</span></span>'
            f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" '
            f'value="{esc(user.csrf or "")}"><button type="submit" id="logout">sign out</button></form></nav>'
        )
    tags = "".join(f'<script src="/static/{esc(s)}" defer></script>' for s in scripts)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · labloop</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="/static/style.css">{tags}</head>'
        f'<body><header><span class="brand">labloop</span>{nav}</header><main>{body}</main></body></html>'
    )


def login(csrf: str, message: str | None, next_path: str) -> str:
    msg = f'<p class="error" id="login-error">{esc(message)}</p>' if message else ""
    body = (
        f'<section class="login"><h1>Sign in</h1>{msg}<form method="post" action="/login">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}"><input type="hidden" name="next" value="{esc(next_path)}">'
        f'<label>Name <input name="name" id="name" autocomplete="username" required></label>'
        f'<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>'
        f'<button type="submit" id="signin">Sign in</button></form>'
        f'<p class="hint">No password yet? An admin sets one with <code>labloop users passwd NAME</code>.</p></section>'
    )
    return _page("Sign in", body)


def index(user: WebUser, rows: list[dict[str, Any]]) -> str:
    if not rows:
        table = '<p id="empty">No campaigns yet. Start one with <code>labloop submit FILE</code> or <code>labloop run FILE</code>.</p>'
    else:
        trs = "".join(
            f'<tr><td><a href="/campaigns/{esc(r["name"])}">{esc(r["name"])}</a></td><td>{r["id"]}</td>'
            f'<td><span class="state s-{esc(r["state"])}">{esc(r["state"])}</span></td><td>{esc(r["liveness"])}</td>'
            f"<td>{esc(r['created'])}</td><td>{esc(r['stop_reason'])}</td></tr>"
            for r in reversed(rows)
        )
        table = (
            '<table id="campaigns"><thead><tr><th>campaign</th><th>id</th><th>state</th><th>runner</th>'
            f"<th>created (UTC)</th><th>stop reason</th></tr></thead><tbody>{trs}</tbody></table>"
        )
    return _page("Campaigns", f"<h1>Campaigns</h1>{table}", user)


def campaign(user: WebUser, snap: dict[str, Any], can: dict[str, bool]) -> str:
    """``snap``: the campaign view (:func:`labloop.data.view.campaign_view` with the running steps' points);
    ``can``: what the user's role allows. A control button exists if the role allows it and is shown while the
    campaign's state allows it too (``static/app.js`` shows and hides them as the state changes)."""
    c = snap["campaign"]
    allowed = set(snap.get("actions") or ())  # the campaign's state decides what is shown; the role what exists
    controls = "".join(
        f'<button data-action="{a}" id="btn-{a}" class="act {a}"{"" if a in allowed else " hidden"}>{a}</button>'
        for a in ("pause", "resume", "stop", "estop")
        if can.get(a)
    )
    body = (
        f'<h1><span id="cname">{esc(c["name"])}</span> <span id="state" class="state s-{esc(c["state"])}">'
        f"{esc(c['state'])}</span></h1>"
        f'<p id="liveness"></p><p id="note"></p><p id="stop-reason"></p><p id="best"></p>'
        f'<div id="controls">{controls}</div><p id="action-result" role="status"></p>'
        '<div class="grid">'
        '<section><h2>Convergence</h2><div id="convergence"></div></section>'
        '<section id="pareto-section" hidden><h2>Pareto front</h2><div id="pareto"></div></section>'
        '<section><h2>The lab</h2><div id="lab"></div></section>'
        '<section><h2>Process streams (running steps)</h2><div id="streams"></div></section>'
        "</div>"
        '<section id="approvals-section"><h2>Awaiting approval</h2><div id="approvals"></div></section>'
        '<section><h2>Trials</h2><label>state <select id="state-filter"><option value="">all</option></select></label>'
        '<div id="trials"></div></section>'
        '<section><h2>Live events</h2><ol id="events" reversed></ol></section>'
        + json_block("snapshot", snap)
        + json_block("page", {"can": can, "csrf": user.csrf, "user": user.name, "role": user.role})
    )
    return _page(c["name"], body, user, scripts=("plot.js", "view.js", "app.js"))


def audit(user: WebUser, rows: list[Any]) -> str:
    trs = "".join(
        f"<tr><td>{r.id}</td><td>{esc(r.at.isoformat() if r.at else '')}</td><td>{esc(r.user)}</td><td>{esc(r.role)}</td>"
        f"<td>{esc(r.address)}</td><td>{esc(r.action)}</td><td>{esc(r.outcome)}</td>"
        f"<td><code>{esc(json.dumps(r.detail)[:300])}</code></td></tr>"
        for r in reversed(rows)
    )
    body = (
        "<h1>Audit log</h1><p>Newest first. <code>labloop audit --verify</code> checks the hash chain.</p>"
        '<table id="audit"><thead><tr><th>#</th><th>at (UTC)</th><th>user</th><th>role</th><th>from</th>'
        f"<th>action</th><th>outcome</th><th>detail</th></tr></thead><tbody>{trs}</tbody></table>"
    )
    return _page("Audit log", body, user)


def error(status: int, problem: str, fix: str, user: WebUser | None = None) -> str:
    sign_in = "" if user is not None else ' · <a href="/login">sign in</a>'  # a signed-in user is not asked again
    body = (
        f'<section class="error-page"><h1 id="error-status">{status}</h1><p id="error-problem">{esc(problem)}</p>'
        f'<p>{esc(fix)}</p><p><a href="/">campaigns</a>{sign_in}</p></section>'
    )
    return _page(f"{status}", body, user)
