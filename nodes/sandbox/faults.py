"""Fault injection: faults armed by tests (or at random) that fail the way real networks and gateways do."""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from .responses import Response, error, filler, s3_error, streamed

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


def path_matches(spec: str | None, method: str, path: str) -> bool:
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
        return path_matches(self.path, method, path)


class Faults:
    """Injected faults, matched in the order they were added; each fires ``times`` times (None: forever).

    ``path`` is a URL-path prefix ("/v1/auth/me") or a route name (create, get_run, list_runs, upload_create,
    upload_put, upload_confirm, download); None matches every request but the /_sandbox controls. Kinds:

    - ``status``: answer ``status`` instead of handling (no side effects); ``retry_after`` (seconds or an HTTP
      date), ``html=True`` (a gateway page), ``body`` (sent as-is), ``headers``;
    - ``drop_before``: close the connection without handling; ``drop_after``: handle fully (a run IS created and
      billed), then close without answering; ``reset=True`` sends a TCP RST instead of a FIN;
    - ``delay``: ``seconds`` of silence after handling (``before=True``: before handling), then the answer;
    - ``malformed_json``: 200 ``{"id": `` (``json=[...]``: that valid JSON of the wrong shape); ``huge_json``: a
      streamed 200 JSON body of ``size_mb`` (50) MiB;
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
                specs = [sp for sp in specs if (path_matches(sp["path"], method, path) if sp.get("path")
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


def fault_response(fault: Fault, path: str, retry_after: str = "fault") -> Response:
    """The answer a pre-handling fault gives; ``retry_after`` is the variant of that name (for 429s)."""
    p = fault.params
    if fault.kind == "malformed_json":  # ``json=<value>``: valid JSON of the wrong shape instead (e.g. a list)
        return Response(200, json.dumps(p["json"]).encode() if "json" in p else b'{"id": ')
    if fault.kind == "huge_json":
        total = int(float(p.get("size_mb", 50)) * 1024 * 1024)
        return streamed(200, "application/json", total,
                        filler(total, b'{"status_code": "running", "padding": "', b'"}'))
    if fault.kind == "expire_output":
        return s3_error(403, "AccessDenied", "Request has expired")
    status = int(p["status"])
    reason = REASONS.get(status, "Error")
    headers = dict(p.get("headers") or {})
    if p.get("retry_after") is not None and not (status == 429 and retry_after == "without"):
        headers["Retry-After"] = str(p["retry_after"])
    elif status == 429 and retry_after == "with":
        headers["Retry-After"] = "1"
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
        resp = s3_error(status, "InternalError" if status >= 500 else "SlowDown", reason)
    else:
        resp = error(status, STATUS_CODES.get(status, "ERROR"), f"{reason} (sandbox fault)")
    resp.headers.update(headers)
    return resp



PRE_KINDS = ("status", "drop_after", "drop_before", "delay", "malformed_json", "huge_json", "expire_output")
