"""The HTTP layer: a stdlib ThreadingHTTPServer and its handler (body limits, faults before/after handling,
dropped connections, the request log); routing itself is the Sandbox's ``_dispatch`` (api.py)."""

from __future__ import annotations

import logging
import re
import socket
import struct
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..runflow.contract import MAX_UPLOAD_BYTES
from .config import MAX_API_BODY
from .faults import PRE_KINDS, Fault, fault_response
from .responses import Request, Response, error, s3_error

log = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client hanging up is routine here, not a traceback
        log.debug("sandbox: error serving %s", client_address, exc_info=True)


class Server6(Server):
    address_family = socket.AF_INET6


def route_key(path: str) -> str:
    path = re.sub(r"^/v1/runs/(?!statuses$)[^/]+$", "/v1/runs/{id}", path)
    path = re.sub(r"^/v1/asset-uploads/[^/]+/", "/v1/asset-uploads/{id}/", path)
    path = re.sub(r"^/v1/assets/(?!types$)[^/]+$", "/v1/assets/{id}", path)
    return re.sub(r"^/_storage/(put|get)/[^/]+$", r"/_storage/\1/{token}", path)



class _BodyError(Exception):
    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


class Handler(BaseHTTPRequestHandler):
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
        too_big = (s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
                   if storage else error(413, "PAYLOAD_TOO_LARGE", "Request body is too large"))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            if storage:
                raise _BodyError(s3_error(411, "MissingContentLength", "You must provide the Content-Length "
                                          "HTTP header."))
            parts, total = [], 0
            while True:
                try:
                    size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise _BodyError(error(400, "BAD_REQUEST", "Malformed chunked body")) from None
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
            raise _BodyError(error(400, "BAD_REQUEST", "Invalid Content-Length")) from None
        if length > limit or length < 0:
            raise _BodyError(too_big)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        sb = self.server.sandbox
        self._t0 = time.monotonic()
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
        req = Request(method, path, parse_qs(split.query), headers, body, str(uuid.uuid4()))
        fault = None if path.startswith("/_sandbox/") else sb.faults.take(method, path, PRE_KINDS)
        kind = fault.kind if fault else None
        resp = None
        if kind == "delay" and fault.params.get("before"):
            time.sleep(float(fault.params.get("seconds", 1.0)))
        if kind in ("status", "malformed_json", "huge_json", "expire_output"):
            resp = fault_response(fault, path, sb.variants.retry_after)
        elif kind != "drop_before":
            try:
                resp = sb._dispatch(req)
            except Exception:
                log.exception("sandbox: %s %s failed", method, path)
                resp = error(500, "INTERNAL_ERROR", "The sandbox hit a bug handling this request (see its log)")
        if kind in ("drop_before", "drop_after"):
            self._record(sb, path, split.query, headers, body, None)
            return self._drop(fault)
        if kind == "delay" and not fault.params.get("before"):
            time.sleep(float(fault.params.get("seconds", 1.0)))
        if path.startswith("/v1/"):
            resp.headers.setdefault("Runflow-Request-Id", req.request_id)
            if sb.variants.rate_limit_headers == "on":
                for k, v in sb._rate_headers().items():
                    resp.headers.setdefault(k, v)
        self._record(sb, path, split.query, headers, body, resp.status)  # before the answer leaves: no races
        self._send(resp)

    def _record(self, sb, path: str, query: str, headers: dict, body: bytes, status: int | None) -> None:
        with sb._lock:
            sb.request_log.append((self.command, path, status, headers))
            sb.request_times.append((getattr(self, "_t0", 0.0), time.monotonic(), self.command, path, status))
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


