"""The dashboard: an ASGI app (Starlette) served by the daemon (``labloop serve --http``) or beside a store.

Pages: sign-in, the campaigns, one live page per campaign, the audit log (admins). A JSON API under ``/api`` serves
the same data to scripts (``Authorization: Bearer <token>``) and to the pages (session cookie). Live updates are
server-sent events (``/api/campaigns/{name}/events``): one long response per page, which the browser's EventSource
reconnects by itself with ``Last-Event-ID``; the hub then sends what the page missed from the store. Pages ask with
``?thin=1``: campaign events in batches, monitor readings thinned to what a page draws (:mod:`labloop.web.thin`).

Security, in one place:
- the session cookie is HttpOnly (scripts cannot read it) and SameSite=Strict (other sites cannot send it);
- every state-changing request made with a cookie must carry the session's CSRF token in ``X-CSRF-Token``;
  bearer-token requests carry no cookie, so they cannot be forged cross-site and need none;
- roles are checked on the server for every action (the page merely hides buttons), refusals are audited;
- a Content-Security-Policy allows only labloop's own scripts and styles: nothing comes from a CDN, and an
  injected inline script would not run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labloop.control.protocol import MAX_ID, MAX_TRIAL
from labloop.data.status import snapshot
from labloop.errors import LabloopError
from labloop.identity import accounts
from labloop.identity.accounts import WebUser
from labloop.identity.roles import permitted
from labloop.store import Store
from labloop.store.schema import AuditEntry

from . import actions, pages
from .live import LiveHub, StoreTail
from .snapshot import campaign_list, find_campaign

COOKIE = "labloop_session"
LOGIN_CSRF = "labloop_login"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
MAX_BODY = 64 * 1024
log = logging.getLogger(__name__)


class SecurityHeaders:
    """Adds :data:`HEADERS` to every response (pure ASGI: streamed event responses pass through untouched)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items() if k.lower().encode() not in have]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)


class Dashboard:
    """The app's state: the store, the live hub, how actions reach the runner. ``feed`` False: the daemon
    publishes into :attr:`hub` itself; True: a :class:`StoreTail` reads the events table."""

    def __init__(
        self,
        store_url: str,
        *,
        runner: actions.Runner = actions.store_runner,
        tail: bool = True,
        secure_cookie: bool = False,
        action_wait: float = 5.0,
    ):
        self.store = Store(store_url, create=False)
        self.hub = LiveHub(self.store)
        self.runner = runner
        self.tail = tail
        self.secure_cookie = secure_cookie
        self.action_wait = action_wait
        self._tail: StoreTail | None = None

    # ------------------------------------------------------------------------------------------ identity
    def user(self, request: Request) -> WebUser | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return accounts.token_user(self.store, auth[7:].strip())
        return accounts.session_user(self.store, request.cookies.get(COOKIE))

    @staticmethod
    def address(request: Request) -> str:
        return f"http://{request.client.host}:{request.client.port}" if request.client else "http://?"

    # ------------------------------------------------------------------------------------------ app
    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(app: Starlette):
            self.hub.bind(asyncio.get_running_loop())
            if self.tail:
                self._tail = StoreTail(self.store, self.hub).start()
            try:
                yield
            finally:
                if self._tail is not None:
                    self._tail.stop()

        static = resources.files("labloop.web") / "static"
        routes = [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.index, methods=["GET"]),
            Route("/campaigns/{name}", self.campaign_page, methods=["GET"]),
            Route("/audit", self.audit_page, methods=["GET"]),
            Route("/api/campaigns", self.api_campaigns, methods=["GET"]),
            Route("/api/campaigns/{name}", self.api_campaign, methods=["GET"]),
            Route("/api/campaigns/{name}/events", self.api_events, methods=["GET"]),
            Route("/api/campaigns/{name}/actions/{action}", self.api_action, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(static)), name="static"),
        ]
        app = Starlette(
            routes=routes,
            lifespan=lifespan,
            exception_handlers={HTTPException: self.http_error, Exception: self.internal_error},
            middleware=[Middleware(SecurityHeaders)],
        )
        return app

    # ------------------------------------------------------------------------------------------ pages
    async def login_page(self, request: Request, message: str | None = None, status: int = 200) -> Response:
        if message is None and request.query_params.get("expired"):
            message = "Your session has ended (it expired, you signed out elsewhere, or your access changed). Please sign in again."
        token = secrets.token_urlsafe(24)
        response = HTMLResponse(pages.login(token, message, request.query_params.get("next", "/")), status)
        response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", secure=self.secure_cookie)
        return response

    async def login(self, request: Request) -> Response:
        size = request.headers.get("content-length", "")
        if not size.isdigit() or int(size) > MAX_BODY:
            return await self.login_page(
                request,
                f"That sign-in form was not sent whole or is over {MAX_BODY} bytes."
                " Please type your name and password again.",
                413,
            )
        try:
            form = await request.form()
        except (HTTPException, ValueError, KeyError):  # a malformed form body
            return await self.login_page(request, "That sign-in form could not be read. Please try again.", 400)
        if not secrets.compare_digest(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF, "-")):
            return await self.login_page(request, "Your sign-in form expired. Please try again.", 403)
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        done = await run_in_threadpool(accounts.login, self.store, name, password, self.address(request))
        if done is None:
            return await self.login_page(request, "Wrong name or password.", 401)
        cookie, _user = done
        nxt = str(form.get("next", "/"))
        response = RedirectResponse(nxt if nxt.startswith("/") and not nxt.startswith("//") else "/", 303)
        response.set_cookie(
            COOKIE,
            cookie,
            httponly=True,
            samesite="strict",
            secure=self.secure_cookie,
            max_age=int(accounts.SESSION_HOURS * 3600),
        )
        response.delete_cookie(LOGIN_CSRF)
        return response

    async def logout(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is not None and not self._csrf_ok(request, user, form_token=(await request.form()).get("csrf")):
            return self._error(
                request, 403, "That request lacked its security token.", "Reload the page and try again.", user
            )
        await run_in_threadpool(accounts.logout, self.store, request.cookies.get(COOKIE))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        return response

    async def index(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is None:
            return self._to_login(request)
        rows = await run_in_threadpool(campaign_list, self.store)
        return HTMLResponse(pages.index(user, rows))

    async def campaign_page(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is None:
            return self._to_login(request)
        snap = await run_in_threadpool(self._snapshot, request.path_params["name"])
        if snap is None:
            return self._error(
                request,
                404,
                f"There is no campaign called '{request.path_params['name']}'.",
                "Pick one from the list of campaigns.",
                user,
            )
        can = {a: permitted(user.role, a) for a in actions.ACTIONS}
        return HTMLResponse(pages.campaign(user, snap, can))

    async def audit_page(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is None:
            return self._to_login(request)
        if not permitted(user.role, "audit"):
            return self._error(request, 403, "The audit log is for admins.", "Ask an admin.", user)
        rows: list[AuditEntry] = await run_in_threadpool(self.store.audit_log)
        return HTMLResponse(pages.audit(user, rows[-500:]))

    # ------------------------------------------------------------------------------------------ API
    async def api_campaigns(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is None:
            return self._unauthorized()
        return JSONResponse(await run_in_threadpool(campaign_list, self.store))

    async def api_campaign(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is None:
            return self._unauthorized()
        snap = await run_in_threadpool(self._snapshot, request.path_params["name"])
        if snap is None:
            return self._json_error(
                404, f"no campaign called '{request.path_params['name']}'", "list them at /api/campaigns"
            )
        return JSONResponse(snap)

    async def api_events(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is None:
            return self._unauthorized()
        c = await run_in_threadpool(find_campaign, self.store, request.path_params["name"])
        if c is None:
            return self._json_error(
                404, f"no campaign called '{request.path_params['name']}'", "list them at /api/campaigns"
            )
        raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        try:
            after = max(0, int(raw[:30]))
        except ValueError:
            return self._json_error(
                400, f"'{raw[:40]}' is not an event number", "send the id of the last event you have"
            )
        if after > MAX_ID:
            return self._json_error(
                400, f"after: {after} is out of range (0 to {MAX_ID})", "send the id of the last event you have"
            )
        thin = request.query_params.get("thin") == "1"  # the pages: readings thinned, events batched
        return StreamingResponse(
            self.hub.stream(c.id, after, thin),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def api_action(self, request: Request) -> Response:
        user = await run_in_threadpool(self.user, request)
        if user is None:
            return self._unauthorized()
        if not self._csrf_ok(request, user):
            await run_in_threadpool(self._audit_csrf, user, request)
            return self._json_error(
                403,
                "the request lacks the page's CSRF token",
                "reload the page; scripts use an API token instead of a cookie",
            )
        body = await request.body()
        if len(body) > MAX_BODY:
            return self._json_error(413, f"the request body is over {MAX_BODY} bytes", "send less")
        try:
            args = json.loads(body or b"{}")
            if not isinstance(args, dict):
                raise ValueError("not an object")
            args = _action_args(request.path_params["action"], args)
        except RecursionError:
            return self._json_error(
                400,
                "bad request body: nested too deeply to read",
                'send flat JSON such as {"trials": [3], "reason": "..."}',
            )
        except (ValueError, TypeError) as exc:
            return self._json_error(
                400, f"bad request body: {exc}", 'send JSON such as {"trials": [3], "reason": "..."}'
            )
        c = await run_in_threadpool(find_campaign, self.store, request.path_params["name"])
        if c is None:
            return self._json_error(
                404, f"no campaign called '{request.path_params['name']}'", "list them at /api/campaigns"
            )
        try:
            outcome = await run_in_threadpool(
                actions.act,
                self.store,
                user,
                self.address(request),
                c,
                request.path_params["action"],
                args,
                self.runner,
                self.action_wait,
            )
        except actions.Forbidden as exc:
            return self._json_error(403, exc.problem, exc.fix)
        except LabloopError as exc:
            status = 400 if request.path_params["action"] not in actions.ACTIONS else 409
            return self._json_error(status, exc.problem, exc.fix)
        return JSONResponse({"ok": True, "result": outcome})

    # ------------------------------------------------------------------------------------------ helpers
    def _snapshot(self, name: str) -> dict[str, Any] | None:
        c = find_campaign(self.store, name)
        return None if c is None else snapshot(self.store, c, page=True)

    @staticmethod
    def _csrf_ok(request: Request, user: WebUser, form_token: Any = None) -> bool:
        if user.csrf is None:  # bearer token: no cookie, nothing to forge
            return True
        given = form_token if form_token is not None else request.headers.get("x-csrf-token", "")
        return secrets.compare_digest(str(given), user.csrf)

    def _audit_csrf(self, user: WebUser, request: Request) -> None:
        self.store.audit(
            None,
            f"web.{request.path_params.get('action', '?')}",
            {"why": "no valid CSRF token"},
            user.name,
            role=user.role,
            address=self.address(request),
            outcome="refused",
        )

    def _to_login(self, request: Request) -> Response:
        """Send a visitor to sign in; one whose cookie no longer opens a session is told why."""
        expired = "&expired=1" if request.cookies.get(COOKIE) else ""
        response = RedirectResponse(f"/login?next={quote(request.url.path)}{expired}", 303)
        if expired:
            response.delete_cookie(COOKIE)
        return response

    def _error(self, request: Request, status: int, problem: str, fix: str, user: WebUser | None = None) -> Response:
        return HTMLResponse(pages.error(status, problem, fix, user), status)

    @staticmethod
    def _json_error(status: int, problem: str, fix: str | None) -> Response:
        return JSONResponse({"ok": False, "error": {"code": status, "problem": problem, "fix": fix}}, status)

    def _unauthorized(self) -> Response:
        return self._json_error(
            401, "not signed in, or the session expired", "sign in at /login, or send Authorization: Bearer <token>"
        )

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Every HTTP error Starlette raises (404, 405, a malformed body...): JSON under /api, a page elsewhere
        (with the signed-in user's header, and no "sign in" link for them); never plain text."""
        status = getattr(exc, "status_code", 500)
        path = request.url.path
        problem, fix = {
            404: (f"There is no page at {path}.", "Go to the list of campaigns."),
            405: (
                f"{path} does not take {request.method} requests.",
                "Use the page's buttons; scripts see the methods of each route in the README.",
            ),
        }.get(
            status,
            (f"The request could not be served: {getattr(exc, 'detail', '') or status}.", "Go back and try again."),
        )
        if path.startswith("/api/"):
            return self._json_error(status, problem, "see /api/campaigns" if status == 404 else fix)
        user = await run_in_threadpool(self._user_or_none, request)
        return self._error(request, status, problem, fix, user)

    async def internal_error(self, request: Request, exc: Exception) -> Response:
        """A bug: logged with its traceback under an id that the answer quotes."""
        error_id = uuid.uuid4().hex[:8]
        log.error("internal error %s serving %s %s", error_id, request.method, request.url.path, exc_info=exc)
        problem = f"Internal error {error_id}: this is a labloop bug."
        fix = f"Report error id {error_id}; the daemon's log has its traceback."
        if request.url.path.startswith("/api/"):
            return self._json_error(500, problem, fix)
        return self._error(request, 500, problem, fix)

    def _user_or_none(self, request: Request) -> WebUser | None:
        try:
            return self.user(request)
        except Exception:  # noqa: BLE001 - an error page must not fail on the store
            return None


def _action_args(action: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments an action takes, checked: trial numbers for approve/reject, a reason for reject."""
    if action in ("approve", "reject"):
        trials = args.get("trials")
        if (
            not isinstance(trials, list)
            or not trials
            or len(trials) > 10_000
            or not all(isinstance(t, int) and not isinstance(t, bool) and 0 < t <= MAX_TRIAL for t in trials)
        ):
            raise ValueError(f"'trials' must be a non-empty list of trial numbers (1 to {MAX_TRIAL})")
        out: dict[str, Any] = {"trials": trials}
        if action == "reject":
            reason = args.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError("a rejection needs a 'reason'")
            out["reason"] = reason.strip()[:500]
        return out
    return {}
