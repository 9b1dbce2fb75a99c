"""The /_sandbox control routes (no auth: loopback only) and the write-route rules that guard them.

Rules, as a secure local server applies them to its write routes: the Host header must name a loopback address
(or the sandbox's own public host; any host with ``allow_remote``), which defeats DNS rebinding; a write (POST, PUT,
PATCH, DELETE) carrying an ``Origin`` that does not match Host is refused (cross-site requests from a browser); a
POST/PUT/PATCH must say ``Content-Type: application/json``, so a browser page cannot send one without a preflight.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .responses import Request, Response, error, json_response, parse_body
from .storage import is_loopback

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def control_refusal(req: Request, allowed_hosts: tuple[str, ...], allow_remote: bool) -> Response | None:
    """The 403/415 answer a control request gets under the write-route rules, or None when it may proceed."""
    host = req.headers.get("host", "").strip().lower()
    hostname = urlsplit(f"//{host}").hostname or ""
    if not allow_remote and not (is_loopback(hostname) or hostname in allowed_hosts):
        return error(403, "FORBIDDEN_HOST", f"Host {host or '(none)'!r} is not a loopback address: the sandbox's "
                     "control routes answer only to 127.0.0.1 / localhost / [::1]")
    if req.method not in WRITES:
        return None
    origin = req.headers.get("origin")
    if origin is not None and urlsplit(origin.strip().lower()).netloc != host:
        return error(403, "CROSS_ORIGIN", f"Cross-origin write refused (Origin {origin!r} is not this server): "
                     "drive the sandbox's control routes from a test or a script, not from a web page")
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if req.method != "DELETE" and ctype != "application/json":
        return error(415, "UNSUPPORTED_MEDIA_TYPE", f"Control writes need 'Content-Type: application/json' "
                     f"(got {ctype or 'none'!r}); send the settings as a JSON object")
    return None


class ControlMixin:
    """Sandbox methods answering /_sandbox requests (state lives on the Sandbox)."""

    def _control(self, req: Request) -> Response:
        p, m = req.path, req.method
        allowed = tuple(h for h in (urlsplit(self.public_url or "").hostname,) if h)
        refused = control_refusal(req, allowed, self.allow_remote)
        if refused is not None:
            return refused
        body, bad = parse_body(req.body or b"{}")
        if bad:
            return bad
        try:
            if p == "/_sandbox/faults" and m == "POST":
                kind = body.pop("kind", None)
                self.faults.add(kind, **body)
                return json_response(201, {"faults": self.faults.list()})
            if p == "/_sandbox/faults/random" and m == "POST":
                self.faults.random(**body)
                return json_response(201, {"random": True})
            if p == "/_sandbox/faults" and m == "DELETE":
                self.faults.clear()
                return json_response(200, {"faults": []})
            if p == "/_sandbox/faults" and m == "GET":
                return json_response(200, {"faults": self.faults.list()})
            if p == "/_sandbox/next_runs" and m == "POST":
                self.next_runs(**body)
                return json_response(201, {"scripted": len(self._scripts)})
            if p == "/_sandbox/config" and m == "POST":
                return json_response(200, self.config(**body))
            if p == "/_sandbox/config" and m == "GET":
                return json_response(200, self.config())
            if p == "/_sandbox/stats" and m == "GET":
                return json_response(200, self.stats())
            if p == "/_sandbox/billing" and m == "GET":
                return json_response(200, {"runs": self.billing_record(),
                                           "billed_per_client_ref": _keyed(self.billed_per_client_ref())})
            if p == "/_sandbox/reset" and m == "POST":
                self.reset()
                return json_response(200, {"reset": True})
        except (TypeError, ValueError) as exc:
            return error(400, "BAD_REQUEST", str(exc))
        return error(404, "NOT_FOUND", f"no sandbox control {m} {p}")


def _keyed(counts: dict) -> dict:
    """JSON object keys must be strings: runs without a client_ref are counted under "null"."""
    return {("null" if k is None else k): v for k, v in counts.items()}
