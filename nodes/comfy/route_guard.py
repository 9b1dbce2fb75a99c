"""The pack's route security layer. ComfyUI has no authentication, so every route of the pack goes through this.

Write routes (anything that changes state) are refused unless ALL of these hold:
- ``Content-Type: application/json`` (a cross-origin page cannot send that without a CORS preflight, which the pack
  never answers; ``text/plain`` "simple" requests are refused);
- the Host header is a name this server answers to: a loopback name or IP, the address the connection arrived on,
  an IP literal when ComfyUI listens on a wildcard address, this machine's host name, or a name listed in
  ``RUNFLOW_ALLOWED_HOSTS``. Any other name is a DNS-rebinding attempt (a hostile domain resolved to this machine);
- Origin, when present, is exactly the Host (same host and port); ``Origin: null`` and ``Sec-Fetch-Site:
  cross-site`` are refused;
- the client is local (a loopback peer, not relayed by a proxy: no Forwarded/X-Forwarded-For/X-Real-IP), unless
  ``RUNFLOW_ALLOW_REMOTE_SETTINGS=1`` — "only behind your own auth". Remote clients must send an Origin, and can
  never set SENSITIVE fields (the API URL, where callbacks go, their secret, the spend caps).

Read routes get the Host and Origin checks (so neither a rebinding page nor, with ComfyUI's --enable-cors-header, a
foreign page can read them); remote clients see no paths.
Every route the pack adds goes through ``GuardedRoutes``: GET is guarded as a read, every other method as a write,
unless the route says ``public=True`` (only the signed callback, which authenticates each body itself).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..runflow.urlsafety import ip_of, is_loopback_host

log = logging.getLogger(__name__)

ENV_ALLOW_REMOTE = "RUNFLOW_ALLOW_REMOTE_SETTINGS"
ENV_ALLOWED_HOSTS = "RUNFLOW_ALLOWED_HOSTS"
# never settable by a remote client: where callbacks (with result URLs) go, their secret, the spend caps, and the API
# URL (a remote client aiming it at this machine's loopback ports would make Test connection a port scanner)
SENSITIVE = frozenset({"public_url", "webhook_secret", "callback_hosts", "max_spend_per_day", "max_runs_per_day",
                       "api_url"})
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
WILDCARDS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str


def clean(text: object, limit: int = 100) -> str:
    """Printable ASCII only, truncated: safe to put in a log line (no CR/LF, no terminal escapes)."""
    s = "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text)[:limit])
    return s + ("…" if len(str(text)) > limit else "")


def remote_allowed() -> bool:
    return os.environ.get(ENV_ALLOW_REMOTE, "").strip().lower() in ("1", "true", "yes")


def is_local_client(request) -> bool:
    """A loopback peer that no proxy relayed (a tunnel or reverse proxy on this machine is still remote users)."""
    return is_loopback_host(request.remote or "") and not any(h in request.headers for h in PROXY_HEADERS)


def _split_host(value: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + value)
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def listen_addresses() -> list[str]:
    """ComfyUI's --listen addresses (comma-separated; default 127.0.0.1); [] outside ComfyUI."""
    try:
        from comfy.cli_args import args  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - outside ComfyUI
        return []
    return [a.strip().strip("[]").lower() for a in str(getattr(args, "listen", "") or "").split(",")]


def host_allowed(host: str, request) -> bool:
    """Is ``host`` (from the Host header) a name this server answers to? See the module docstring."""
    if is_loopback_host(host):
        return True
    extra = {h.strip().lower() for h in os.environ.get(ENV_ALLOWED_HOSTS, "").split(",") if h.strip()}
    if host in extra:
        return True
    listen = listen_addresses()
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    local_ip = str(sockname[0]).lower() if isinstance(sockname, tuple) and sockname else ""  # not a unix socket
    ip = ip_of(host)
    if ip is not None:  # an IP literal cannot be rebound: the browser really connected to that address
        return str(ip) in (local_ip, *listen) or any(a in WILDCARDS for a in listen)
    name = socket.gethostname().lower()
    return bool(local_ip) and not is_loopback_host(local_ip) and host in (name, name + ".local")


def _origin_matches(origin: str, host_header: str, secure: bool, proxied: bool) -> bool:
    """Same host and port as the Host header; same scheme too unless a (TLS-terminating) proxy relayed it."""
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if not proxied and (parts.scheme == "https") != secure:
        return False
    default = 443 if parts.scheme == "https" else 80
    got = (parts.hostname.lower(), parts.port or default)
    want = _split_host(host_header)
    if want is None:
        return False
    return got == (want[0], want[1] or default)


def check(request, *, write: bool, fields: frozenset[str] | set[str] = frozenset()) -> Refusal | None:
    """None when ``request`` may proceed; else why not (the answer to send)."""
    host_header = request.headers.get("Host", "")
    split = _split_host(host_header)
    if not host_header or split is None or not host_allowed(split[0], request):
        return Refusal(403, f"refused: this server does not answer to the host name {clean(host_header, 60)!r} "
                            f"(possible DNS rebinding). Open ComfyUI by its IP or localhost, or add the name to "
                            f"{ENV_ALLOWED_HOSTS}.")
    origin = request.headers.get("Origin")
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return Refusal(403, "refused: a cross-site page may not use the Runflow routes")
    if origin is not None and not _origin_matches(origin, host_header, request.secure,
                                                     any(h in request.headers for h in PROXY_HEADERS)):
        # reads too: with ComfyUI's --enable-cors-header a foreign page could otherwise read the status
        return Refusal(403, "refused: the request's Origin is not this ComfyUI; open ComfyUI's own page to change "
                            "Runflow settings")
    if not write:
        return None
    if request.content_type != "application/json":
        return Refusal(415, "refused: send the request as Content-Type: application/json")
    if is_local_client(request):
        return None
    if not remote_allowed():
        return Refusal(403, "refused: Runflow settings can only be changed from this machine (localhost). To allow "
                            f"other machines, put ComfyUI behind your own authentication and set {ENV_ALLOW_REMOTE}=1.")
    if origin is None:
        return Refusal(403, "refused: a remote request must come from ComfyUI's page (no Origin header)")
    sensitive = sorted(set(fields) & SENSITIVE)
    if sensitive:
        return Refusal(403, f"refused: {', '.join(sensitive)} can only be set from this machine (localhost), even "
                            f"with {ENV_ALLOW_REMOTE}=1")
    return None


def log_change(request, what: str, fields: list[str] | tuple[str, ...] = ()) -> None:
    """One WARNING per accepted change: which fields (known names only, never values), who, from which Origin."""
    names = ", ".join(clean(f, 40) for f in fields)
    log.warning("Runflow: %s%s by client %s (Origin %s, Host %s)", what, f" ({names})" if names else "",
                clean(request.remote or "?", 60), clean(request.headers.get("Origin", "none")),
                clean(request.headers.get("Host", "none")))


def _refused(refusal: Refusal):
    from aiohttp import web

    return web.json_response({"error": refusal.error}, status=refusal.status)


def guarded(handler, *, write: bool):
    """``handler`` behind ``check`` (the write check for state-changing routes)."""
    @functools.wraps(handler)
    async def wrapper(request):
        refusal = check(request, write=write)
        if refusal is not None:
            log.info("Runflow: refused %s %s from %s: %s", request.method, clean(request.path, 60),
                     clean(request.remote or "?", 60), refusal.error[:60])
            return _refused(refusal)
        return await handler(request)

    wrapper.runflow_guard = "write" if write else "read"
    return wrapper


class GuardedRoutes:
    """An aiohttp RouteTableDef in front of which every handler gets the guard (see the module docstring)."""

    def __init__(self, table):
        self.table = table

    def _route(self, method: str, path: str, public: bool, **kw):
        def decorate(handler):
            if public:
                handler.runflow_guard = "public"
                wrapped = handler
            else:
                wrapped = guarded(handler, write=method != "GET")
            getattr(self.table, method.lower())(path, **kw)(wrapped)
            return wrapped

        return decorate

    def get(self, path: str, *, public: bool = False, **kw):
        return self._route("GET", path, public, **kw)

    def post(self, path: str, *, public: bool = False, **kw):
        return self._route("POST", path, public, **kw)

    def put(self, path: str, **kw):
        return self._route("PUT", path, False, **kw)

    def patch(self, path: str, **kw):
        return self._route("PATCH", path, False, **kw)

    def delete(self, path: str, **kw):
        return self._route("DELETE", path, False, **kw)


async def read_json_capped(request, limit: int = 16 * 1024):
    """The request's JSON body (None when empty), refused past ``limit`` bytes. Raises ValueError on bad input."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise ValueError(f"the body is over {limit} bytes")
    data = await read_capped(request, limit)
    if data is None:
        raise ValueError(f"the body is over {limit} bytes")
    if not data.strip():
        return None
    import json

    return json.loads(data)


async def read_capped(request, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of the body; None (after reading at most limit+1 bytes) when it is longer."""
    chunks, total = [], 0
    while True:
        chunk = await request.content.read(min(65536, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
