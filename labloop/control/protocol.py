"""The control protocol: one JSON message per request and per reply, validated by versioned pydantic models.

Why JSON and pydantic, never pickle: whoever reaches the port must not be able to run code in the daemon, and a
malformed message must become an error reply, never an exception that takes the daemon down. The size limit is
checked on the raw bytes before anything is parsed, so a huge payload costs nothing but its reception.

Request ``{"v": 1, "id": "...", "method": "status", "params": {...}}``; reply ``{"v": 1, "id": "...", "ok": true,
"result": ...}`` or ``{"v": 1, "id": "...", "ok": false, "error": {"code": ..., "problem": ..., "fix": ...}}``.
A message whose envelope cannot be read at all (not JSON, no id) still gets an error reply with ``id`` null: a
client waiting for an answer learns what was wrong instead of timing out.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

VERSION = 1
MAX_BYTES = 1 << 20  # 1 MiB: a campaign file is a few kB; anything near this is a mistake or an attack


#: Largest id or sequence number a request may name: the store's integers are 64-bit (SQLite, PostgreSQL bigint),
#: so a bigger one would fail inside the store instead of being refused here, naming the field.
MAX_ID = 2**62
#: Largest trial number a request may name.
MAX_TRIAL = 2**31 - 1


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


Id = Annotated[int, Field(ge=0, le=MAX_ID)]
CampaignRef = Annotated[str, Field(max_length=200)] | Id | None


class StatusParams(_Params):
    campaign: CampaignRef = None


class ListParams(_Params):
    pass


class ControlParams(_Params):
    """pause, resume, stop: one campaign (default: the running one)."""

    campaign: CampaignRef = None
    wait: float = Field(5.0, ge=0, le=60)


class EstopParams(_Params):
    """Without a campaign: every running campaign of the store, at once."""

    campaign: CampaignRef = None
    wait: float = Field(5.0, ge=0, le=60)


class ApproveParams(_Params):
    campaign: CampaignRef = None
    trials: list[Annotated[int, Field(ge=1, le=MAX_TRIAL)]] = Field(min_length=1, max_length=10_000)
    wait: float = Field(5.0, ge=0, le=60)


class RejectParams(ApproveParams):
    reason: str = Field(min_length=1, max_length=2000)


class ExportParams(_Params):
    campaign: CampaignRef = None
    format: Literal["csv", "json", "jsonl", "parquet", "documents"] = "csv"
    sharing_class: Literal["open", "shared-closed", "closed"] | None = None
    output_name: str | None = Field(
        None,
        max_length=500,
        description="the file the client writes: named in the manifest, which is returned only when this is given",
    )


class SubmitParams(_Params):
    text: str = Field(min_length=1, max_length=MAX_BYTES)
    source: str = Field("<submitted>", max_length=500)
    time_scale: float | None = Field(None, gt=0, le=1e9)


class MissedParams(_Params):
    campaign: Annotated[str, Field(max_length=200)] | Id
    after_seq: int = Field(0, ge=0, le=MAX_ID)
    limit: int = Field(1000, ge=1, le=10_000)


#: method -> its params model. A method not here is refused as unknown.
METHODS: dict[str, type[_Params]] = {
    "status": StatusParams,
    "list": ListParams,
    "pause": ControlParams,
    "resume": ControlParams,
    "stop": ControlParams,
    "estop": EstopParams,
    "approve": ApproveParams,
    "reject": RejectParams,
    "export": ExportParams,
    "submit": SubmitParams,
    "missed": MissedParams,
}


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: int
    id: str = Field(max_length=200)
    method: str = Field(max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class ProtocolError(Exception):
    """A request the daemon cannot carry out: becomes an error reply (code, problem, fix)."""

    def __init__(self, code: str, problem: str, fix: str = "", request_id: str | None = None):
        super().__init__(problem)
        self.code, self.problem, self.fix, self.request_id = code, problem, fix, request_id


def _first_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "message"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse_request(raw: bytes) -> tuple[Request, _Params]:
    """Bytes -> (request, its validated params); raises :class:`ProtocolError` for anything else."""
    if len(raw) > MAX_BYTES:
        raise ProtocolError(
            "too_large",
            f"the request is {len(raw)} bytes; the limit is {MAX_BYTES}",
            "send a smaller campaign file or fewer trial numbers",
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ProtocolError(
            "bad_json",
            "the request is nested too deeply to read",
            "send one flat JSON object per message (params hold strings, numbers and lists)",
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(
            "bad_json",
            "the request is not UTF-8 JSON",
            "send one JSON object per message (see labloop.control.protocol)",
        ) from None
    rid = data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None
    try:
        req = Request.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(
            "bad_request",
            f"malformed request: {_first_error(exc)}",
            'send {"v": 1, "id": str, "method": str, "params": {...}}',
            rid,
        ) from None
    if req.v != VERSION:
        raise ProtocolError(
            "bad_version",
            f"protocol version {req.v} is not spoken here (this daemon: {VERSION})",
            "use a labloop client of the same version as the daemon",
            req.id,
        )
    model = METHODS.get(req.method)
    if model is None:
        raise ProtocolError(
            "unknown_method", f"unknown method '{req.method}'", f"one of: {', '.join(sorted(METHODS))}", req.id
        )
    try:
        params = model.model_validate(req.params)
    except ValidationError as exc:
        raise ProtocolError(
            "bad_params", f"{req.method}: {_first_error(exc)}", _params_fix(req.method), req.id
        ) from None
    return req, params


#: The command each method serves, for the fix of a bad request (``missed`` serves ``labloop watch``).
COMMANDS = {"list": "status", "missed": "watch"}


def _params_fix(method: str) -> str:
    fields = (
        ", ".join(
            f"{name}: " + (f"a name or an id (0 to {MAX_ID})" if name == "campaign" else _describe(f))
            for name, f in METHODS[method].model_fields.items()
        )
        or "none"
    )
    return (
        f"send the params {method} takes ({fields}); `labloop {COMMANDS.get(method, method)} --help` shows the options"
    )


def _describe(f: Any) -> str:
    bounds = []
    for m in f.metadata:
        for key, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("max_length", "length <=")):
            v = getattr(m, key, None)
            if v is not None:
                bounds.append(f"{sym} {v}")
    kind = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def request(rid: str, method: str, params: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"v": VERSION, "id": rid, "method": method, "params": params or {}}).encode()


def ok(rid: str | None, result: Any) -> bytes:
    return json.dumps({"v": VERSION, "id": rid, "ok": True, "result": result}).encode()


def error(rid: str | None, code: str, problem: str, fix: str = "") -> bytes:
    return json.dumps(
        {"v": VERSION, "id": rid, "ok": False, "error": {"code": code, "problem": problem, "fix": fix}}
    ).encode()


def from_protocol_error(exc: ProtocolError) -> bytes:
    return error(exc.request_id, exc.code, exc.problem, exc.fix)


# ------------------------------------------------------------------------------------------------ the stream
def stream_message(campaign: str, campaign_id: int, seq: int, at: str, kind: str, body: Any) -> list[bytes]:
    """One stream message: topic frame (the campaign's name, for SUB filtering) and a JSON body."""
    return [
        campaign.encode(),
        json.dumps(
            {
                "v": VERSION,
                "campaign": campaign,
                "campaign_id": campaign_id,
                "seq": seq,
                "at": at,
                "kind": kind,
                "body": body,
            }
        ).encode(),
    ]
