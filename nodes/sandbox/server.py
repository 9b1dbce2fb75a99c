"""A local emulator of Runflow's public API for the Multi Angles model ("sandbox"): free, offline, scriptable.

It is a real HTTP server (stdlib ``ThreadingHTTPServer`` on loopback) that speaks the contract in
``runflow-api.md``: Bearer auth, the 3-step asset upload with presigned storage URLs, strict input validation,
runs that move queued -> dispatching -> running -> succeeded on the clock, signed result URLs that expire and are
re-signed on every GET, ``Idempotency-Key`` replays, run search by ``client_ref``, and fault injection that fails
the way real networks do (dropped sockets, 5xx pages, slow answers, bad bodies). The "model" is a cheap,
deterministic stand-in (``sandbox_render.py``): a warped, hue-rotated copy of the input marked SANDBOX.

Standalone::

    python -m nodes.sandbox --port 8787 --key rf_sandbox_key --run-seconds 3
    # then point the pack at it: RUNFLOW_API_URL=http://127.0.0.1:8787 RUNFLOW_API_KEY=rf_sandbox_key

In Python (tests)::

    with Sandbox(run_seconds=0.2) as sb:
        sb.faults.add("drop_after", path="create")      # the run is created and billed, the answer is lost
        sb.next_runs(status="failed", failure_code="INPUT_VALIDATION_FAILED", failure_message="...")

Magic prompts, for trying failure paths by hand in ComfyUI (put them in the node's ``prompt``):

- ``[sandbox:fail]``   -> the run fails with failure_code ``SANDBOX_FORCED_FAILURE``;
- ``[sandbox:slow=N]`` -> the run takes N seconds.

Out-of-process control (no auth; only ever served on loopback unless ``--allow-remote``):
``POST /_sandbox/faults`` ``{"kind": ..., "path": ..., "times": ..., ...}``, ``POST /_sandbox/faults/random``,
``DELETE /_sandbox/faults``, ``POST /_sandbox/next_runs``, ``POST /_sandbox/config``, ``GET /_sandbox/stats``,
``POST /_sandbox/reset``.

Callbacks: with ``callback_secret`` (or None: unsigned), a run's ``callback_url`` is POSTed once the run is terminal,
signed ``Runflow-Signature`` = HMAC-SHA256(secret, body), 3 attempts (1 s, 2 s), retried on 5xx/network errors only;
``sandbox.callbacks`` records each attempt. Not emulated: batches, cancel, logs, billing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import concurrent.futures
import copy
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from ..runflow.contract import (
    ANGLES,
    ASPECT_RATIOS,
    MAX_CLIENT_REF_LENGTH,
    MAX_UPLOAD_BYTES,
    MAX_URL_LENGTH,
    MODEL_ID,
    SHOTS,
    TERMINAL_FAILED,
    TERMINAL_OK,
    VIEWS,
)
from .render import LONG_SIDE, POSE_FIELDS, InputImageError, bomb_png, render_pose

log = logging.getLogger(__name__)

ACCEPTED_MIME = ("image/png", "image/jpeg", "image/webp")
STATUSES = ("queued", "dispatching", "running", "succeeded", "failed", "canceled", "partial_succeeded")
TERMINAL = TERMINAL_OK | TERMINAL_FAILED
OUTPUT_SHAPES = ("outputs", "image_urls", "image", "url", "output_url", "workflow")
RUN_FIELDS = ("input", "callback_url", "metadata", "client_ref")
ENUM_FIELDS = {"view": VIEWS, "angle": ANGLES, "shot": SHOTS, "match_input_aspect": ("true", "false"),
               "aspect_ratio": ASPECT_RATIOS}
INPUT_FIELDS = ("image_url", "view", "angle", "shot", "prompt", "match_input_aspect", "aspect_ratio")
PRICE = "0.20"
RENDER_CACHE = 64  # rendered results kept (deterministic: same input + pose = same bytes)
MODEL_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://api.runflow.io/v1/models/runflow/multi-angles"))
ORG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://api.runflow.io/sandbox/org"))
USER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://api.runflow.io/sandbox/user"))
MAX_API_BODY = 96 * 1024 * 1024  # room for a 50 MiB image as a base64 data URI
MAX_FETCH_BYTES = MAX_UPLOAD_BYTES + 1
FORCE_FAIL = re.compile(r"\[sandbox:fail\]", re.I)
FORCE_SLOW = re.compile(r"\[sandbox:slow=(\d+(?:\.\d+)?)\]", re.I)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


# -- responses ---------------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    chunks: Callable[[], Iterable[bytes]] | None = None  # a lazily streamed body of ``length`` bytes
    length: int = 0


def _json(status: int, obj, headers: dict | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), headers=dict(headers or {}))


def _error(status: int, code: str, message: str, errors: list | None = None) -> Response:
    return _json(status, {"code": code, "message": message, "errors": errors})


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"</Error>").encode()
    return Response(status, body, "application/xml")


def _field_errors(errors: list[tuple[str, str]]) -> list[dict]:
    return [{"field": f, "message": m} for f, m in errors]


def _streamed(status: int, content_type: str, length: int, chunks: Callable[[], Iterable[bytes]]) -> Response:
    return Response(status, b"", content_type, chunks=chunks, length=length)


def _filler(total: int, head: bytes = b"", tail: bytes = b"", fill: bytes = b"a") -> Callable[[], Iterable[bytes]]:
    """A body of exactly ``total`` bytes: head, filler, tail; produced lazily 1 MiB at a time."""

    def gen():
        yield head
        left, block = total - len(head) - len(tail), fill * (1 << 20)
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)
        yield tail

    return gen


# -- fault injection ---------------------------------------------------------------------------------------------

FAULT_KINDS = ("status", "drop_after", "drop_before", "delay", "malformed_json", "expire_output", "corrupt_output",
               "huge_json")
CORRUPT_MODES = ("truncated", "not_image", "bomb", "huge")
STATUS_CODES = {400: "BAD_REQUEST", 408: "REQUEST_TIMEOUT", 429: "RATE_LIMITED", 500: "INTERNAL_ERROR",
                502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}
REASONS = {408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


def route_name(method: str, path: str) -> str | None:
    """The fault-path name of a request: create, get_run, upload_create, upload_put, upload_confirm, download..."""
    method = "GET" if method == "HEAD" else method
    if method == "POST" and path.startswith("/v1/models/") and path.endswith("/runs"):
        return "create"
    if method == "GET" and re.fullmatch(r"/v1/runs/[^/]+", path) and path != "/v1/runs/statuses":
        return "get_run"
    if method == "GET" and path == "/v1/runs":
        return "list_runs"
    if method == "POST" and path == "/v1/asset-uploads":
        return "upload_create"
    if method == "POST" and re.fullmatch(r"/v1/asset-uploads/[^/]+/confirmations", path):
        return "upload_confirm"
    if method == "PUT" and path.startswith("/_storage/put/"):
        return "upload_put"
    if method == "GET" and path.startswith("/_storage/get/"):
        return "download"
    return None


def _path_matches(spec: str | None, method: str, path: str) -> bool:
    if spec is None:
        return True
    if spec.startswith("/"):
        return path.startswith(spec)
    return route_name(method, path) == spec


@dataclass
class Fault:
    kind: str
    path: str | None = None
    method: str | None = None
    times: int | None = 1  # None: forever
    params: dict = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method and not (self.method.upper() == "GET" and method == "HEAD"):
            return False
        return _path_matches(self.path, method, path)


class Faults:
    """Injected faults, matched in the order they were added; each fires ``times`` times (None: forever).

    ``path`` is a URL-path prefix ("/v1/auth/me") or a route name (create, get_run, list_runs, upload_create,
    upload_put, upload_confirm, download); None matches every request but the /_sandbox controls. Kinds:

    - ``status``: answer ``status`` instead of handling (no side effects); ``retry_after`` (seconds or an HTTP
      date), ``html=True`` (a gateway page), ``body`` (sent as-is), ``headers``;
    - ``drop_before``: close the connection without handling; ``drop_after``: handle fully (a run IS created and
      billed), then close without answering; ``reset=True`` sends a TCP RST instead of a FIN;
    - ``delay``: ``seconds`` of silence after handling (``before=True``: before handling), then the answer;
    - ``malformed_json``: 200 ``{"id": ``; ``huge_json``: a streamed 200 JSON body of ``size_mb`` (50) MiB;
    - ``expire_output``: 403 "Request has expired" from storage (default path: download);
    - ``corrupt_output``: the next rendered result served from storage is ``mode`` = truncated | not_image |
      bomb (a small PNG declaring 30000x30000 px) | huge (``size_mb``=300 MiB, streamed).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random: tuple[float, list[dict], random.Random] | None = None

    def add(self, kind: str, *, path: str | None = None, method: str | None = None, times: int | None = 1,
            **params) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of: {', '.join(FAULT_KINDS)}")
        if kind == "status" and not (isinstance(params.get("status"), int) and 400 <= params["status"] <= 599):
            raise ValueError("a 'status' fault needs status=<400..599>")
        if kind == "corrupt_output" and params.setdefault("mode", "truncated") not in CORRUPT_MODES:
            raise ValueError(f"corrupt_output mode must be one of: {', '.join(CORRUPT_MODES)}")
        if kind == "delay":
            params["seconds"] = float(params.get("seconds", 1.0))
        if times is not None and int(times) < 1:
            raise ValueError("times must be >= 1, or None for forever")
        if path is None and kind in ("expire_output", "corrupt_output"):
            path = "download"
        fault = Fault(kind, path, method, None if times is None else int(times), params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def random(self, rate: float = 0.2, kinds: Iterable = ("status", "drop_before"), seed: int = 1234) -> None:
        """Random faults on ``rate`` of requests. ``kinds``: names, or dicts like add()'s kwargs; a dict with a
        ``path`` (e.g. "download", "upload_put") applies to the requests it matches, storage included; one without
        applies to API (/v1/...) requests."""
        specs = [dict(k) if isinstance(k, dict) else {"kind": k} for k in kinds]
        for spec in specs:
            if spec.get("kind") not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {spec.get('kind')!r}")
        with self._lock:
            self._random = (float(rate), specs, random.Random(seed))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random = None

    def __len__(self) -> int:
        return len(self._faults)

    def list(self) -> list[dict]:
        with self._lock:
            return [{"kind": f.kind, "path": f.path, "method": f.method, "times": f.times, "hits": f.hits,
                     **f.params} for f in self._faults]

    def take(self, method: str, path: str, kinds: Iterable[str]) -> Fault | None:
        """The first armed fault of one of ``kinds`` matching the request, consumed once."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, path):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
            if self._random and path != "/v1/health":
                rate, specs, rng = self._random
                # a spec with a "path" applies where it matches (storage too); one without, to every API request
                specs = [sp for sp in specs if (_path_matches(sp["path"], method, path) if sp.get("path")
                                                else path.startswith("/v1/"))]
                specs = [sp for sp in specs if sp["kind"] in kinds]
                if specs and rng.random() < rate:
                    spec = dict(rng.choice(specs))
                    spec.pop("path", None)
                    kind = spec.pop("kind")
                    if kind == "status" and "status" not in spec:
                        spec["status"] = rng.choice((500, 502, 503, 504, 429))
                    return Fault(kind, times=None, params=spec, hits=1)
        return None


def _fault_response(fault: Fault, path: str) -> Response:
    p = fault.params
    if fault.kind == "malformed_json":
        return Response(200, b'{"id": ')
    if fault.kind == "huge_json":
        total = int(float(p.get("size_mb", 50)) * 1024 * 1024)
        return _streamed(200, "application/json", total,
                         _filler(total, b'{"status_code": "running", "padding": "', b'"}'))
    if fault.kind == "expire_output":
        return _s3_error(403, "AccessDenied", "Request has expired")
    status = int(p["status"])
    reason = REASONS.get(status, "Error")
    headers = dict(p.get("headers") or {})
    if p.get("retry_after") is not None:
        headers["Retry-After"] = str(p["retry_after"])
    if p.get("html"):
        page = (f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1>"
                f"<hr><center>cloudflare</center></body></html>")
        return Response(status, page.encode(), "text/html", headers)
    if "body" in p:
        body = p["body"]
        if isinstance(body, dict | list):
            body = json.dumps(body)
        body = bytes(body) if isinstance(body, bytes | bytearray) else str(body).encode()
        try:
            json.loads(body)
            ctype = "application/json"
        except ValueError:
            ctype = "text/plain"
        return Response(status, body, p.get("content_type", ctype), headers)
    if path.startswith("/_storage/"):
        resp = _s3_error(status, "InternalError" if status >= 500 else "SlowDown", reason)
    else:
        resp = _error(status, STATUS_CODES.get(status, "ERROR"), f"{reason} (sandbox fault)")
    resp.headers.update(headers)
    return resp


# -- state -------------------------------------------------------------------------------------------------------


@dataclass
class _Asset:
    id: str
    name: str
    mime_type: str
    declared_size: int
    source_type: str
    put_token: str
    get_token: str
    put_expires: int = 0
    data: bytes | None = None
    confirmed: bool = False
    is_output: bool = False
    r2_key: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class _RunState:
    id: str
    t0: float
    plan: list  # [(status, seconds | None)]; the last entry lasts forever
    fields: dict
    output_shape: str
    epoch: int
    failure_code: str | None = None
    failure_message: str | None = None
    future: concurrent.futures.Future | None = None
    result: tuple | None = None  # ("ok", asset_id, width, height, seed, ms) | ("fail", code, message)
    done_at: float | None = None
    frozen: bool = False

    @property
    def final(self) -> str:
        return self.plan[-1][0]


def _plan(final: str, run_seconds: float, queue_seconds: float) -> list:
    dispatch = min(0.05, 0.05 * run_seconds)
    return [("queued", queue_seconds), ("dispatching", dispatch), ("running", max(0.0, run_seconds - dispatch)),
            (final, None)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client hanging up is routine here, not a traceback
        log.debug("sandbox: error serving %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class Sandbox:
    """The emulator. ``start()`` serves on ``url``; every attribute below is safe to read from tests."""

    def __init__(self, api_key: str = "rf_sandbox_key", run_seconds: float = 3.0, queue_seconds: float = 0.0,
                 port: int = 0, host: str = "127.0.0.1", output_shape: str = "outputs", upload_url_ttl: float = 600,
                 get_url_ttl: float = 3600, public_url: str | None = None, callback_secret: str | None = None):
        self.api_key = api_key
        # run callbacks: POSTed to callback_url when a run is terminal, signed (Runflow-Signature) with this secret
        self.callback_secret = callback_secret
        self.callbacks: list[dict] = []  # one entry per delivery attempt: run_id, url, signed, http_status
        self.run_seconds = float(run_seconds)
        self.output_side = LONG_SIDE  # long side of rendered results (the benchmark's memory figure uses 2048)
        self._rendered: dict = {}  # (input sha256, pose fields, side) -> RenderResult, oldest first
        self.queue_seconds = float(queue_seconds)
        self.host, self.port = host, int(port)
        self.output_shape = output_shape
        self.upload_url_ttl, self.get_url_ttl = upload_url_ttl, get_url_ttl
        self.public_url = public_url.rstrip("/") if public_url else None
        self.url: str | None = None
        self.faults = Faults()
        self.created_runs = 0
        self.uploads = 0
        self.request_log: list[tuple[str, str, int | None, dict]] = []
        self.storage_requests: list[dict] = []
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(32)
        self._runs: dict[str, dict] = {}
        self._state: dict[str, _RunState] = {}
        self._assets: dict[str, _Asset] = {}
        self._tokens: dict[str, str] = {}  # storage token -> asset id
        self._idempotency: dict[str, tuple[str, Response]] = {}
        self._scripts: collections.deque = collections.deque()
        self._epoch = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending_callbacks: dict[str, str] = {}  # run id -> callback_url, until the run is terminal
        self._callback_thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        cls = _Server6 if ":" in self.host else _Server
        self._server = cls((self.host, self.port), _Handler)
        self._server.sandbox = self
        self.port = self._server.server_address[1]
        self.url = f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-render")
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="runflow-sandbox", daemon=True)
        self._thread.start()
        log.info("Runflow sandbox on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Sandbox {self.url or 'stopped'} runs={len(self._runs)}>"

    @property
    def output_shape(self) -> str:
        return self._output_shape

    @output_shape.setter
    def output_shape(self, value: str) -> None:
        if value not in OUTPUT_SHAPES:
            raise ValueError(f"output_shape must be one of: {', '.join(OUTPUT_SHAPES)}")
        self._output_shape = value

    # -- test controls -------------------------------------------------------------------------------------------
    @property
    def runs(self) -> dict[str, dict]:
        """Run id -> run record (brought up to date with the clock)."""
        with self._lock:
            now = time.time()
            for rs in self._state.values():
                self._refresh(rs, now)
            return self._runs

    def billable_runs(self) -> int:
        """Runs created since the last reset that reached, or will reach, a billed status."""
        with self._lock:
            cands = [rs for rs in self._state.values() if rs.epoch == self._epoch and rs.final in TERMINAL_OK]
            pending = [rs.future for rs in cands if rs.future is not None and rs.result is None]
        concurrent.futures.wait(pending, timeout=30)
        with self._lock:
            return sum(1 for rs in cands if not (rs.result and rs.result[0] == "fail"))

    def count(self, method: str | None, path_prefix: str = "/") -> int:
        """Requests handled with ``method`` (None: any) whose path starts with ``path_prefix`` (or a route name)."""
        with self._lock:
            return sum(1 for m, p, _s, _h in self.request_log
                       if (method is None or m == method.upper()) and _path_matches(path_prefix, m, p))

    def reset_stats(self) -> None:
        with self._lock:
            self.created_runs = self.uploads = 0
            self.request_log.clear()
            self.storage_requests.clear()
            self._epoch += 1

    def reset(self) -> None:
        """reset_stats(), and forget faults and scripted runs (runs and assets stay)."""
        self.reset_stats()
        self.faults.clear()
        with self._lock:
            self._scripts.clear()

    def next_runs(self, status: str = "failed", failure_code: str | None = "INPUT_VALIDATION_FAILED",
                  failure_message: str | None = None, times: int = 1, status_sequence: Iterable | None = None,
                  run_seconds: float | None = None) -> None:
        """Script the outcome of the next ``times`` created runs.

        ``status``: a terminal status (reached after the usual queued/dispatching/running) or any other string,
        which then never ends. ``status_sequence``: explicit [(status, seconds), ..., (last, None)] instead.
        """
        seq = [(str(s), None if d is None else float(d)) for s, d in status_sequence] if status_sequence else None
        if seq is not None and not seq:
            raise ValueError("status_sequence must not be empty")
        final = seq[-1][0] if seq else status
        if final in TERMINAL_OK:
            failure_code = failure_message = None
        elif final in TERMINAL and failure_message is None:
            failure_message = f"run {final} (scripted by the sandbox)"
        script = {"status": status, "sequence": seq, "run_seconds": run_seconds,
                  "failure_code": failure_code if final in TERMINAL else None,
                  "failure_message": failure_message if final in TERMINAL else None}
        with self._lock:
            self._scripts.extend(dict(script) for _ in range(int(times)))

    def stats(self) -> dict:
        with self._lock:
            requests: dict[str, int] = collections.Counter(f"{m} {_route_key(p)}" for m, p, _s, _h in self.request_log)
            out = {"created_runs": self.created_runs, "uploads": self.uploads, "runs": len(self._runs),
                   "faults": self.faults.list(), "requests": dict(requests)}
        out["billable_runs"] = self.billable_runs()
        return out

    # -- signing -------------------------------------------------------------------------------------------------
    def _base(self) -> str:
        return self.public_url or self.url or ""

    def _sig(self, *parts) -> str:
        return hmac.new(self._secret, "\n".join(map(str, parts)).encode(), hashlib.sha256).hexdigest()

    def _get_url(self, asset: _Asset) -> str:
        token, expires = asset.get_token, int(time.time() + self.get_url_ttl)
        return f"{self._base()}/_storage/get/{token}?expires={expires}&sig={self._sig('GET', token, expires)}"

    def _check_get(self, token: str, query: dict) -> tuple[_Asset | None, Response | None]:
        """The asset a signed GET URL names, or the S3-style error the storage answers."""
        expires, sig = (query.get("expires") or [""])[0], (query.get("sig") or [""])[0]
        with self._lock:
            asset = self._assets.get(self._tokens.get(token, ""))
        if asset is None or asset.data is None:
            return None, _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if not hmac.compare_digest(sig, self._sig("GET", token, expires)):
            return None, _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                                   "match the signature you provided.")
        if not expires.isdigit() or time.time() >= int(expires):
            return None, _s3_error(403, "AccessDenied", "Request has expired")
        return asset, None

    def _asset_json(self, a: _Asset) -> dict:
        return {"id": a.id, "org_id": ORG_ID, "folder_id": None, "name": a.name, "r2_key": a.r2_key,
                "url": self._get_url(a), "thumbnail_url": None, "mime_type": a.mime_type,
                "size_bytes": len(a.data or b""), "asset_type": "image", "source_type": a.source_type,
                "source_id": None, "created_by": USER_ID, "created_at": _iso(a.created_at),
                "updated_at": _iso(a.updated_at)}

    def _new_asset(self, name: str, mime: str, size: int, source_type: str) -> _Asset:
        aid = str(uuid.uuid4())
        a = _Asset(aid, name, mime, size, source_type, secrets.token_urlsafe(18), secrets.token_urlsafe(18),
                   r2_key=f"{ORG_ID}/{'runs' if source_type == 'run_output' else 'uploads'}/{aid}/{name}")
        self._assets[aid] = a
        self._tokens[a.get_token] = aid
        self._tokens[a.put_token] = aid
        return a

    # -- request handling (called by _Handler) -------------------------------------------------------------------
    def _dispatch(self, req: _Request) -> Response:
        p, m = req.path, req.method
        if p.startswith("/_sandbox/"):
            return self._control(req)
        if p.startswith("/_storage/"):
            return self._storage(req)
        if p in ("/v1/health", "/v1/readiness"):
            return _json(200, {"status": "ok"}) if m == "GET" else _error(405, "METHOD_NOT_ALLOWED", "use GET")
        if not p.startswith("/v1/"):
            return _error(404, "NOT_FOUND", f"no route for {p}")
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _error(401, "UNAUTHORIZED", "Missing bearer token: send 'Authorization: Bearer <key>'")
        if not hmac.compare_digest(auth[7:].strip().encode(), self.api_key.encode()):
            return _error(401, "UNAUTHORIZED", "Invalid API key")
        key = req.headers.get("idempotency-key", "").strip()
        if m == "POST" and key:
            return self._idempotent(key, req)
        return self._api(req)

    def _idempotent(self, key: str, req: _Request) -> Response:
        try:
            canon = json.dumps(json.loads(req.body or b"{}"), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            canon = req.body
        digest = hashlib.sha256(req.path.encode() + b"\n" + canon).hexdigest()
        with self._lock:
            seen = self._idempotency.get(key)
            if seen is not None:
                if seen[0] != digest:
                    return _error(409, "CONFLICT", "Idempotency-Key reused with a different request body")
                replay = copy.copy(seen[1])
                replay.headers = {**replay.headers, "Idempotent-Replayed": "true"}
                return replay
            resp = self._api(req)
            if 200 <= resp.status < 300:
                self._idempotency[key] = (digest, resp)
            return resp

    def _api(self, req: _Request) -> Response:
        p, m = req.path, req.method
        if p == "/v1/auth/me":
            return _json(200, {"id": USER_ID, "email": "sandbox@runflow.local", "org_id": ORG_ID, "sandbox": True,
                               "scopes": ["runs:create", "runs:read", "assets:create", "assets:read"]})
        if p == "/v1/asset-uploads" and m == "POST":
            return self._upload_create(req)
        if (mt := re.fullmatch(r"/v1/asset-uploads/([^/]+)/confirmations", p)) and m == "POST":
            return self._upload_confirm(unquote(mt.group(1)), req)
        if p == "/v1/assets/types" and m == "GET":
            return _json(200, {"items": [{"mime_type": t, "asset_type": "image"} for t in ACCEPTED_MIME]})
        if (mt := re.fullmatch(r"/v1/assets/([^/]+)", p)) and m == "GET":
            with self._lock:
                a = self._assets.get(unquote(mt.group(1)))
                if a is None or not a.confirmed:
                    return _error(404, "ASSET_NOT_FOUND", "Asset not found")
                return _json(200, self._asset_json(a))
        if mt := re.fullmatch(r"/v1/models/(.+)/runs", p):
            segments = [unquote(s) for s in mt.group(1).split("/")]
            if len(segments) < 2:
                return _error(405, "METHOD_NOT_ALLOWED", "Model id must be owner/slug, e.g. runflow/multi-angles")
            if "/".join(segments) != MODEL_ID:
                return _error(404, "MODEL_NOT_FOUND", f"Model {'/'.join(segments)!r} not found")
            return self._create_run(req) if m == "POST" else _error(405, "METHOD_NOT_ALLOWED", "use POST")
        if p == f"/v1/models/{MODEL_ID}/examples" and m == "GET":
            return _json(200, self._examples())
        if p == "/v1/runs/statuses" and m == "GET":
            return _json(200, {"items": [{"code": s, "is_terminal": s in TERMINAL} for s in STATUSES]})
        if p == "/v1/runs" and m == "GET":
            return self._list_runs(req)
        if (mt := re.fullmatch(r"/v1/runs/([^/]+)", p)) and m == "GET":
            with self._lock:
                rs = self._state.get(unquote(mt.group(1)))
                if rs is None:
                    return _error(404, "RUN_NOT_FOUND", "Run not found")
                self._refresh(rs, time.time())
                return _json(200, copy.deepcopy(self._runs[rs.id]))
        return _error(404, "NOT_FOUND", f"no route for {m} {p}")

    # -- uploads -------------------------------------------------------------------------------------------------
    def _upload_create(self, req: _Request) -> Response:
        body, bad = _parse_body(req.body)
        if bad:
            return bad
        errors = []
        name, mime, size = body.get("filename"), body.get("mime_type"), body.get("size_bytes")
        if not isinstance(name, str) or not 1 <= len(name) <= 500:
            errors.append(("filename", "must be a string of 1-500 characters"))
        if not isinstance(mime, str) or not 1 <= len(mime) <= 255:
            errors.append(("mime_type", "must be a string of 1-255 characters"))
        elif mime.lower() not in ACCEPTED_MIME:
            errors.append(("mime_type", f"unsupported mime type {mime!r}; accepted: {', '.join(ACCEPTED_MIME)}"))
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_UPLOAD_BYTES:
            errors.append(("size_bytes", f"must be an integer between 1 and {MAX_UPLOAD_BYTES}"))
        if errors:
            return _error(422, "VALIDATION_ERROR", "Input validation failed", _field_errors(errors))
        with self._lock:
            a = self._new_asset(name, mime.lower(), size, "upload")
            a.put_expires = int(time.time() + self.upload_url_ttl)
            sig = self._sig("PUT", a.put_token, a.put_expires, a.mime_type)
            url = f"{self._base()}/_storage/put/{a.put_token}?X-Expires={a.put_expires}&X-Sig={sig}"
            return _json(201, {"asset_id": a.id, "upload_url": url})

    def _upload_confirm(self, asset_id: str, req: _Request) -> Response:
        if req.body.strip():
            _body, bad = _parse_body(req.body)
            if bad:
                return bad
        with self._lock:
            a = self._assets.get(asset_id)
            if a is None or a.is_output:
                return _error(404, "ASSET_NOT_FOUND", "Upload session not found")
            if a.data is None:
                return _error(409, "CONFLICT", "Nothing was uploaded yet: PUT the file to upload_url, then confirm")
            if not a.confirmed:
                a.confirmed, a.updated_at = True, time.time()
                self.uploads += 1
            return _json(201, self._asset_json(a))

    def _storage(self, req: _Request) -> Response:
        m, p = req.method, req.path
        if "authorization" in req.headers:
            return _s3_error(400, "InvalidArgument", "Credentials must not be sent to presigned URLs: "
                             "remove the Authorization header (the signature is in the URL)")
        if (mt := re.fullmatch(r"/_storage/put/([^/]+)", p)) and m == "PUT":
            return self._storage_put(mt.group(1), req)
        if (mt := re.fullmatch(r"/_storage/get/([^/]+)", p)) and m == "GET":
            asset, err = self._check_get(mt.group(1), req.query)
            if err:
                return err
            fault = self.faults.take(m, p, ("corrupt_output",)) if asset.is_output else None
            if fault is not None:
                return _corrupt(fault.params, asset)
            return Response(200, asset.data, asset.mime_type,
                            {"ETag": f'"{hashlib.md5(asset.data).hexdigest()}"', "Cache-Control": "private"})
        return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    def _storage_put(self, token: str, req: _Request) -> Response:
        expires, sig = (req.query.get("X-Expires") or [""])[0], (req.query.get("X-Sig") or [""])[0]
        with self._lock:
            a = self._assets.get(self._tokens.get(token, ""))
            if a is None or token != a.put_token or not hmac.compare_digest(
                    sig, self._sig("PUT", token, expires, a.mime_type)):
                return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                                 "match the signature you provided.")
            if time.time() >= a.put_expires:
                return _s3_error(403, "AccessDenied", "Request has expired")
            ctype = req.headers.get("content-type", "").strip().lower()
            if ctype != a.mime_type:
                return _s3_error(403, "SignatureDoesNotMatch", f"The request signature we calculated does not match "
                                 f"the signature you provided: Content-Type {ctype or '(none)'!r} is not the "
                                 f"signed {a.mime_type!r}.")
            if len(req.body) != a.declared_size:
                log.info("sandbox: upload %s is %d bytes, declared %d", a.id, len(req.body), a.declared_size)
            a.data, a.updated_at = req.body, time.time()
            return Response(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})

    # -- runs ----------------------------------------------------------------------------------------------------
    def _create_run(self, req: _Request) -> Response:
        body, bad = _parse_body(req.body)
        if bad:
            return bad
        unknown = [k for k in body if k not in RUN_FIELDS]
        if unknown:
            return _error(400, "BAD_REQUEST", f"Unknown field(s): {', '.join(unknown)}",
                          _field_errors([(k, "unknown field") for k in unknown]))
        errors = _validate_run(body)
        if errors:
            return _error(422, "VALIDATION_ERROR", "Input validation failed", _field_errors(errors))
        fields = body["input"]
        now = time.time()
        with self._lock:
            script = self._scripts.popleft() if self._scripts else None
            failure_code = failure_message = None
            run_seconds = self.run_seconds
            prompt = fields.get("prompt") or ""
            if script is None and (slow := FORCE_SLOW.search(prompt)):
                run_seconds = min(3600.0, float(slow.group(1)))
            if script is not None:
                if script["run_seconds"] is not None:
                    run_seconds = float(script["run_seconds"])
                status = script["status"]
                plan = script["sequence"] or (_plan(status, run_seconds, self.queue_seconds) if status in TERMINAL
                                              else [(status, None)])
                failure_code, failure_message = script["failure_code"], script["failure_message"]
            elif FORCE_FAIL.search(prompt):
                plan = _plan("failed", run_seconds, self.queue_seconds)
                failure_code = "SANDBOX_FORCED_FAILURE"
                failure_message = "The prompt contains [sandbox:fail], so the sandbox failed this run on purpose."
            else:
                plan = _plan("succeeded", run_seconds, self.queue_seconds)
            rs = _RunState(str(uuid.uuid4()), now, plan, copy.deepcopy(fields), self._output_shape, self._epoch,
                           failure_code, failure_message)
            record = {
                "id": rs.id, "status_code": plan[0][0], "model_id": MODEL_UUID, "model": MODEL_ID,
                "target_type": "model", "source_code": "api", "org_id": ORG_ID, "input": copy.deepcopy(fields),
                "output": {}, "client_ref": body.get("client_ref"), "metadata": body.get("metadata"),
                "callback_url": body.get("callback_url"), "request_id": req.request_id,
                "created_at": _iso(now), "started_at": None, "completed_at": None, "cost": None,
                "cost_breakdown": None, "duration_ms": None, "failure_code": None, "failure_message": None,
                "failure_stage_code": None, "batch_id": None, "has_logs": False, "has_node_runs": False,
            }
            self._state[rs.id], self._runs[rs.id] = rs, record
            self.created_runs += 1
            if body.get("callback_url"):
                self._schedule_callback(rs.id, body["callback_url"])
            if rs.final in TERMINAL_OK and self._executor is not None:
                rs.future = self._executor.submit(self._process, rs)
            return _json(201, copy.deepcopy(record))

    def _process(self, rs: _RunState) -> None:
        """Preprocess (fetch + check the input) and render; runs on the executor, off the lock."""
        started = time.perf_counter()
        try:
            data = self._fetch_input(rs.fields["image_url"])
            result = self.render(data, rs.fields)
            ms = int((time.perf_counter() - started) * 1000)
            with self._lock:
                a = self._new_asset("output.webp", result.mime_type, len(result.data), "run_output")
                a.data, a.confirmed, a.is_output = result.data, True, True
                a.r2_key = f"{ORG_ID}/runs/{rs.id}/output.webp"
                outcome = ("ok", a.id, result.width, result.height, result.seed, ms)
        except InputImageError as exc:
            outcome = ("fail", exc.code, exc.message)
        except Exception:
            log.exception("sandbox: rendering run %s failed", rs.id)
            outcome = ("fail", "SANDBOX_INTERNAL_ERROR", "The sandbox failed to render this run (see its log).")
        with self._lock:
            rs.done_at, rs.result = time.time(), outcome

    def render(self, data: bytes, fields: dict):
        """The stand-in result for (input bytes, pose fields); rendering is deterministic, so it is kept (up to
        RENDER_CACHE results) and ``prerender`` can do it ahead: then a run takes exactly its run time however busy
        the machine is (the benchmark's "fixed run time")."""
        key = (hashlib.sha256(data).hexdigest(), json.dumps({k: fields.get(k) for k in POSE_FIELDS}, sort_keys=True),
               self.output_side)
        with self._lock:
            hit = self._rendered.get(key)
        if hit is not None:
            return hit
        result = render_pose(data, fields, self.output_side)
        with self._lock:
            self._rendered[key] = result
            while len(self._rendered) > RENDER_CACHE:
                self._rendered.pop(next(iter(self._rendered)))
        return result

    def prerender(self, data: bytes, fields: dict) -> None:
        """Render what a run with this input would return, before it is created (see ``render``)."""
        self.render(data, fields)

    def _fetch_input(self, url: str) -> bytes:
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            try:
                return base64.b64decode(payload, validate=True) if head.endswith(";base64") else unquote(
                    payload).encode("latin-1")
            except (binascii.Error, ValueError) as exc:
                raise InputImageError("INPUT_FETCH_FAILED", "image_url is not a valid data URI") from exc
        parts = urlsplit(url)
        if mt := re.fullmatch(r"/_storage/get/([^/]+)", parts.path):
            with self._lock:
                ours = mt.group(1) in self._tokens
            if ours or parts.netloc == urlsplit(self._base()).netloc:
                asset, err = self._check_get(mt.group(1), parse_qs(parts.query))
                if err is not None:
                    reason = re.search(rb"<Message>(.*?)</Message>", err.body)
                    raise InputImageError("INPUT_FETCH_FAILED", f"could not fetch image_url: HTTP {err.status} "
                                          f"({reason.group(1).decode() if reason else 'error'})")
                return asset.data
        handlers = []
        if parts.hostname in ("localhost",) or _is_loopback(parts.hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(urllib.request.Request(url, headers={"User-Agent": "runflow-sandbox/1"}),
                             timeout=5) as resp:
                data = resp.read(MAX_FETCH_BYTES)
        except urllib.error.HTTPError as exc:
            raise InputImageError("INPUT_FETCH_FAILED", f"could not fetch image_url: HTTP {exc.code}") from exc
        except Exception as exc:
            raise InputImageError("INPUT_FETCH_FAILED", f"could not fetch image_url: {exc}") from exc
        if len(data) >= MAX_FETCH_BYTES:
            raise InputImageError("INPUT_VALIDATION_FAILED", "input image is larger than 50 MiB")
        return data

    # -- callbacks (as Runflow sends them: once per terminal run, 3 attempts, retried on 5xx/network only) --------
    def _schedule_callback(self, run_id: str, url: str) -> None:
        """Call with the lock held."""
        self._pending_callbacks[run_id] = url
        if self._callback_thread is None or not self._callback_thread.is_alive():
            self._callback_thread = threading.Thread(target=self._callback_loop, name="sandbox-callbacks",
                                                     daemon=True)
            self._callback_thread.start()

    def _callback_loop(self) -> None:
        while self._server is not None:
            time.sleep(0.02)
            due = []
            with self._lock:
                now = time.time()
                for run_id, url in list(self._pending_callbacks.items()):
                    self._refresh(self._state[run_id], now)
                    record = self._runs[run_id]
                    if record["status_code"] in TERMINAL:
                        due.append((url, copy.deepcopy(record)))
                        del self._pending_callbacks[run_id]
            for url, record in due:
                threading.Thread(target=self._deliver_callback, args=(url, record), daemon=True).start()

    def _deliver_callback(self, url: str, record: dict) -> None:
        status = record["status_code"]
        event = {"succeeded": "run.completed", "partial_succeeded": "run.partial_succeeded",
                 "canceled": "run.cancelled", "cancelled": "run.cancelled"}.get(status, "run.failed")
        payload = {"event": event, "run_id": record["id"], "status": status,
                   "output": record["output"] if status in TERMINAL_OK else None,
                   "duration_ms": record.get("duration_ms"), "created_at": record.get("created_at"),
                   "completed_at": record.get("completed_at"), "metadata": record.get("metadata")}
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Runflow-Request-Id": str(uuid.uuid4())}
        if self.callback_secret:
            headers["Runflow-Signature"] = hmac.new(self.callback_secret.encode(), body, hashlib.sha256).hexdigest()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for wait in (0.0, 1.0, 2.0):
            time.sleep(wait)
            try:
                with opener.open(urllib.request.Request(url, data=body, headers=headers, method="POST"),
                                 timeout=5) as resp:
                    code: int | None = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except Exception:  # noqa: BLE001 - a network failure is retried like Runflow does
                code = None
            with self._lock:
                self.callbacks.append({"run_id": record["id"], "url": url, "signed": bool(self.callback_secret),
                                       "http_status": code, "at": time.time(), "body": body})
            if code is not None and code < 500:
                return

    def _refresh(self, rs: _RunState, now: float) -> None:
        """Bring the public record of a run up to date with the clock (call with the lock held)."""
        rec = self._runs[rs.id]
        if not rs.frozen:
            elapsed, offset, started = now - rs.t0, 0.0, None
            status = rs.plan[-1][0]
            for i, (st, dur) in enumerate(rs.plan):
                if started is None and st != "queued":
                    started = offset
                if i == len(rs.plan) - 1 or dur is None or elapsed < offset + dur:
                    status = st
                    break
                offset += dur
            bad_input = rs.result is not None and rs.result[0] == "fail"
            # input problems surface when the run would start running (failure_stage_code "preprocess")
            fail_at = max(sum(d or 0.0 for st, d in rs.plan if st in ("queued", "dispatching")),
                          (rs.done_at or rs.t0) - rs.t0)
            if bad_input and elapsed >= fail_at:
                self._freeze(rs, rec, "failed", rs.t0 + fail_at, started, rs.result[1], rs.result[2])
            elif status in TERMINAL_OK and rs.result is None:
                rec["status_code"] = "running"  # the render is late: keep running until it lands
                rec["started_at"] = rec["started_at"] or _iso(rs.t0 + (started or 0.0))
            elif status in TERMINAL and not bad_input:
                end = max(offset, (rs.done_at or rs.t0) - rs.t0)
                self._freeze(rs, rec, status, rs.t0 + end, started, rs.failure_code, rs.failure_message)
            else:
                rec["status_code"] = status
                if started is not None and elapsed >= started:
                    rec["started_at"] = _iso(rs.t0 + started)
        if rs.frozen and rs.result and rs.result[0] == "ok" and rec["status_code"] in TERMINAL_OK:
            rec["output"] = self._output(rs)

    def _freeze(self, rs, rec, status, completed, started_offset, code, message) -> None:
        started = rs.t0 + started_offset if started_offset is not None else completed
        started = min(started, completed)
        ok = status in TERMINAL_OK
        rec.update(status_code=status, started_at=_iso(started), completed_at=_iso(completed),
                   duration_ms=int(round((completed - started) * 1000)), cost=PRICE if ok else "0.00",
                   failure_code=None if ok else code, failure_message=None if ok else message,
                   failure_stage_code=None if ok else (
                       "preprocess" if (code or "").startswith("INPUT_") else "inference"))
        rs.frozen = True

    def _output(self, rs: _RunState) -> dict:
        _, asset_id, w, h, seed, ms = rs.result
        url = self._get_url(self._assets[asset_id])
        shape = rs.output_shape
        if shape == "image_urls":
            return {"image_urls": [url]}
        if shape == "image":
            return {"image": {"url": url}}
        if shape == "url":
            return {"url": url}
        if shape == "output_url":
            return {"output_url": url}
        if shape == "workflow":
            return {"image": [url]}
        return {"outputs": [{"url": url, "type": "image", "mime_type": "image/webp", "width": w, "height": h}],
                "seed": seed, "timing": {"inference_ms": ms}, "nsfw_detected": False}

    def _examples(self) -> dict:
        """The model's examples (runflow-api.md §9: with ``duration_ms``): three, each taking this sandbox's run time,
        as the model page's examples take the real model's."""
        ms = int(round(self.run_seconds * 1000))
        return {"items": [{"id": f"ex_{i}", "input": {"view": view}, "duration_ms": ms}
                          for i, view in enumerate(("right side view", "back view", "front view"), 1)]}

    def _list_runs(self, req: _Request) -> Response:
        q = req.query
        try:
            preds = _parse_q((q.get("q") or [""])[0])
            limit = int((q.get("limit") or ["50"])[0])
            offset = int((q.get("pq") or ["0"])[0])
            if not 1 <= limit <= 500 or offset < 0:
                raise ValueError("limit must be 1-500")
        except ValueError as exc:
            return _error(422, "VALIDATION_ERROR", "Invalid query", _field_errors([("q", str(exc))]))
        sort_by = (q.get("sort_by") or ["created_at:desc"])[0]
        if sort_by not in ("created_at:desc", "created_at:asc"):
            return _error(422, "VALIDATION_ERROR", "Invalid query",
                          _field_errors([("sort_by", "must be created_at:desc or created_at:asc")]))
        with self._lock:
            now = time.time()
            items = []
            for rs in self._state.values():
                self._refresh(rs, now)
                if all(_match(self._runs[rs.id], f, op, v) for f, op, v in preds):
                    items.append((rs.t0, self._runs[rs.id]))
            items.sort(key=lambda t: t[0], reverse=sort_by.endswith("desc"))
            page = [copy.deepcopy(r) for _, r in items[offset: offset + limit]]
        return _json(200, {"items": page,
                           "next_pq": str(offset + limit) if offset + limit < len(items) else None,
                           "prev_pq": str(max(0, offset - limit)) if offset > 0 else None})

    # -- /_sandbox control -----------------------------------------------------------------------------------------
    def _control(self, req: _Request) -> Response:
        p, m = req.path, req.method
        body, bad = _parse_body(req.body or b"{}")
        if bad:
            return bad
        try:
            if p == "/_sandbox/faults" and m == "POST":
                kind = body.pop("kind", None)
                self.faults.add(kind, **body)
                return _json(201, {"faults": self.faults.list()})
            if p == "/_sandbox/faults/random" and m == "POST":
                self.faults.random(**body)
                return _json(201, {"random": True})
            if p == "/_sandbox/faults" and m == "DELETE":
                self.faults.clear()
                return _json(200, {"faults": []})
            if p == "/_sandbox/faults" and m == "GET":
                return _json(200, {"faults": self.faults.list()})
            if p == "/_sandbox/next_runs" and m == "POST":
                self.next_runs(**body)
                return _json(201, {"scripted": len(self._scripts)})
            if p == "/_sandbox/config" and m == "POST":
                for k in ("run_seconds", "queue_seconds", "upload_url_ttl", "get_url_ttl"):
                    if k in body:
                        setattr(self, k, float(body.pop(k)))
                if "output_shape" in body:
                    self.output_shape = body.pop("output_shape")
                if body:
                    raise ValueError(f"unknown setting(s): {', '.join(body)}")
                return _json(200, {"run_seconds": self.run_seconds, "queue_seconds": self.queue_seconds,
                                   "output_shape": self.output_shape})
            if p == "/_sandbox/stats" and m == "GET":
                return _json(200, self.stats())
            if p == "/_sandbox/reset" and m == "POST":
                self.reset()
                return _json(200, {"reset": True})
        except (TypeError, ValueError) as exc:
            return _error(400, "BAD_REQUEST", str(exc))
        return _error(404, "NOT_FOUND", f"no sandbox control {m} {p}")


# -- helpers -----------------------------------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    request_id: str


def _parse_body(raw: bytes) -> tuple[dict, Response | None]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {}, _error(400, "BAD_REQUEST", "Request body must be valid JSON")
    if not isinstance(body, dict):
        return {}, _error(400, "BAD_REQUEST", "Request body must be a JSON object")
    return body, None


def _validate_run(body: dict) -> list[tuple[str, str]]:
    errors = []
    inp = body.get("input")
    if "input" not in body:
        return [("input", "field required")]
    if not isinstance(inp, dict):
        return [("input", "must be an object")]
    for k in inp:
        if k not in INPUT_FIELDS:
            errors.append((f"input.{k}", "unknown field"))
    url = inp.get("image_url")
    if "image_url" not in inp:
        errors.append(("input.image_url", "field required"))
    elif not isinstance(url, str):
        errors.append(("input.image_url", "must be a string"))
    else:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "data"):
            errors.append(("input.image_url", f"media URL must use HTTP(S) or data URI, got '{scheme}'"))
        elif scheme != "data" and not urlsplit(url).hostname:
            errors.append(("input.image_url", "media URL has no host"))
    if "view" not in inp:
        errors.append(("input.view", "field required"))
    for name, allowed in ENUM_FIELDS.items():
        if name in inp and not (isinstance(inp[name], str) and inp[name] in allowed):
            kind = type(inp[name]).__name__.replace("bool", "boolean").replace("NoneType", "null")
            got = "" if isinstance(inp[name], str) else f" (got a JSON {kind}; the API takes strings)"
            errors.append((f"input.{name}", f"must be one of: {', '.join(allowed)}{got}"))
    if "prompt" in inp and not isinstance(inp["prompt"], str):
        errors.append(("input.prompt", "must be a string"))
    cb = body.get("callback_url")
    if cb is not None and (not isinstance(cb, str) or urlsplit(cb).scheme not in ("http", "https")
                           or not urlsplit(cb).hostname or len(cb) > MAX_URL_LENGTH):
        errors.append(("callback_url", f"must be an http(s) URL of at most {MAX_URL_LENGTH} characters"))
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        errors.append(("metadata", "must be an object or null"))
    ref = body.get("client_ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_CLIENT_REF_LENGTH):
        errors.append(("client_ref", f"must be a string of at most {MAX_CLIENT_REF_LENGTH} characters"))
    return errors


_Q_FIELDS = ("client_ref", "status_code", "id", "model_id", "request_id", "batch_id", "created_at", "completed_at")


def _parse_q(q: str) -> list[tuple[str, str, str]]:
    if re.search(r"(^|\s)(OR|NOT)\s|[()]", q):
        raise ValueError("the sandbox supports only field:value terms joined by AND (no OR, NOT or parentheses)")
    preds = []
    for term in (t for t in re.split(r"\s+AND\s+", q.strip()) if t):
        mt = re.fullmatch(r"(\w+)\s*(>=|<=|:|=|>|<)\s*(.*)", term.strip())
        if not mt or mt.group(1) not in _Q_FIELDS:
            raise ValueError(f"unsupported filter {term!r}: the sandbox takes field:value terms joined by AND "
                             f"on {', '.join(_Q_FIELDS)}")
        preds.append((mt.group(1), mt.group(2), mt.group(3).strip().strip("\"'")))
    return preds


def _match(rec: dict, fld: str, op: str, value: str) -> bool:
    have = rec.get(fld)
    if op in (":", "="):
        return str(have) == value if have is not None else value in ("", "null")
    if have is None:
        return False

    def ts(s: str) -> datetime:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
        return d if d.tzinfo else d.replace(tzinfo=timezone.utc)

    a, b = ts(have), ts(value)
    return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]


def _corrupt(params: dict, asset: _Asset) -> Response:
    mode = params.get("mode", "truncated")
    if mode == "truncated":
        return Response(200, asset.data[: len(asset.data) // 2], asset.mime_type)
    if mode == "not_image":
        page = b"<html><body><h1>Service temporarily unavailable</h1><p>Please try again.</p></body></html>"
        return Response(200, page, params.get("content_type", "text/html"))
    if mode == "bomb":
        return Response(200, bomb_png(int(params.get("width", 30000)), int(params.get("height", 30000))), "image/png")
    total = int(float(params.get("size_mb", 300)) * 1024 * 1024)
    return _streamed(200, asset.mime_type, total, _filler(total, asset.data[:64], fill=b"\0"))


def _route_key(path: str) -> str:
    path = re.sub(r"^/v1/runs/(?!statuses$)[^/]+$", "/v1/runs/{id}", path)
    path = re.sub(r"^/v1/asset-uploads/[^/]+/", "/v1/asset-uploads/{id}/", path)
    path = re.sub(r"^/v1/assets/(?!types$)[^/]+$", "/v1/assets/{id}", path)
    return re.sub(r"^/_storage/(put|get)/[^/]+$", r"/_storage/\1/{token}", path)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BodyError(Exception):
    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RunflowSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        log.debug("sandbox %s - " + format, self.address_string(), *args)

    def do_GET(self):
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _read_body(self, storage: bool) -> bytes:
        limit = MAX_UPLOAD_BYTES + (1 << 20) if storage else MAX_API_BODY
        too_big = (_s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
                   if storage else _error(413, "PAYLOAD_TOO_LARGE", "Request body is too large"))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            if storage:
                raise _BodyError(_s3_error(411, "MissingContentLength", "You must provide the Content-Length "
                                           "HTTP header."))
            parts, total = [], 0
            while True:
                try:
                    size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise _BodyError(_error(400, "BAD_REQUEST", "Malformed chunked body")) from None
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass
                    return b"".join(parts)
                total += size
                if total > limit:
                    raise _BodyError(too_big)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _BodyError(_error(400, "BAD_REQUEST", "Invalid Content-Length")) from None
        if length > limit or length < 0:
            raise _BodyError(too_big)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        sb: Sandbox = self.server.sandbox
        split = urlsplit(self.path)
        path, method = split.path, ("GET" if self.command == "HEAD" else self.command)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = self._read_body(path.startswith("/_storage/"))
        except _BodyError as exc:
            self.close_connection = True
            self._record(sb, path, split.query, headers, b"", exc.response.status)
            self._send(exc.response)
            return
        req = _Request(method, path, parse_qs(split.query), headers, body, str(uuid.uuid4()))
        fault = None if path.startswith("/_sandbox/") else sb.faults.take(method, path, _PRE_KINDS)
        kind = fault.kind if fault else None
        resp = None
        if kind == "delay" and fault.params.get("before"):
            time.sleep(float(fault.params.get("seconds", 1.0)))
        if kind in ("status", "malformed_json", "huge_json", "expire_output"):
            resp = _fault_response(fault, path)
        elif kind != "drop_before":
            try:
                resp = sb._dispatch(req)
            except Exception:
                log.exception("sandbox: %s %s failed", method, path)
                resp = _error(500, "INTERNAL_ERROR", "The sandbox hit a bug handling this request (see its log)")
        if kind in ("drop_before", "drop_after"):
            self._record(sb, path, split.query, headers, body, None)
            return self._drop(fault)
        if kind == "delay" and not fault.params.get("before"):
            time.sleep(float(fault.params.get("seconds", 1.0)))
        if path.startswith("/v1/"):
            resp.headers.setdefault("Runflow-Request-Id", req.request_id)
        self._record(sb, path, split.query, headers, body, resp.status)  # before the answer leaves: no races
        self._send(resp)

    def _record(self, sb: Sandbox, path: str, query: str, headers: dict, body: bytes, status: int | None) -> None:
        with sb._lock:
            sb.request_log.append((self.command, path, status, headers))
            if path.startswith("/_storage/"):
                sb.storage_requests.append({"method": self.command, "path": path, "query": query,
                                            "headers": headers, "status": status, "size": len(body)})

    def _drop(self, fault: Fault) -> None:
        """Close the connection without a response (RST instead of FIN with ``reset=True``)."""
        self.close_connection = True
        if fault.params.get("reset"):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _send(self, resp: Response) -> None:
        length = resp.length if resp.chunks else len(resp.body)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(length))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if resp.chunks:
                for chunk in resp.chunks():
                    self.wfile.write(chunk)
            else:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


_PRE_KINDS = ("status", "drop_after", "drop_before", "delay", "malformed_json", "huge_json", "expire_output")


# -- standalone --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nodes.sandbox", description="Run the Runflow API emulator "
                                 "(free, offline; results are marked SANDBOX).")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)")
    ap.add_argument("--key", default="rf_sandbox_key", help="the API key clients must send (default rf_sandbox_key)")
    ap.add_argument("--run-seconds", type=float, default=3.0, help="how long each run takes (default 3)")
    ap.add_argument("--queue-seconds", type=float, default=0.0, help="how long each run sits queued (default 0)")
    ap.add_argument("--output-shape", choices=OUTPUT_SHAPES, default="outputs", help="shape of a run's output")
    ap.add_argument("--public-url", help="base URL to put in signed storage URLs (default: the listen address)")
    ap.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (no TLS, test keys only)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    if not _is_loopback(args.host) and not args.allow_remote:
        ap.error(f"refusing to listen on non-loopback host {args.host!r}: the sandbox has no TLS and unauthenticated "
                 "control endpoints; pass --allow-remote if you really mean it")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    sb = Sandbox(api_key=args.key, run_seconds=args.run_seconds, queue_seconds=args.queue_seconds, port=args.port,
                 host=args.host, output_shape=args.output_shape, public_url=args.public_url)
    try:
        sb.start()
    except OSError as exc:
        sys.stderr.write(f"cannot listen on {args.host}:{args.port}: {exc}\n")
        return 2
    sys.stdout.write(f"Runflow sandbox on {sb.url} (key: {sb.api_key})\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
