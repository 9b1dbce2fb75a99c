"""Push instead of poll: verify Runflow's signed run callbacks and wake the node waiting for that run.

Polling always continues as the fallback, so a lost or rejected callback never loses a result.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections import OrderedDict

log = logging.getLogger(__name__)

CALLBACK_PATH = "/runflow/callback"
_WAITERS: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
_SEEN: OrderedDict[str, str] = OrderedDict()  # run_id -> status, to answer redeliveries idempotently
_SEEN_MAX = 2048


def signature(secret: str, body: bytes) -> str:
    """Runflow-Signature: lowercase hex HMAC-SHA256 of the raw body with the callback secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def callback_url(public_url: str | None, secret: str | None) -> str | None:
    """The callback URL to send with runs, only when ComfyUI is publicly reachable AND callbacks can be verified."""
    if public_url and secret:
        return public_url.rstrip("/") + CALLBACK_PATH
    return None


def waiter(run_id: str) -> asyncio.Event:
    """An event set when a verified callback for ``run_id`` arrives."""
    event = asyncio.Event()
    _WAITERS[run_id] = (asyncio.get_running_loop(), event)
    return event


def forget(run_id: str) -> None:
    _WAITERS.pop(run_id, None)


def handle(body: bytes, sig_header: str | None, secret: str | None) -> tuple[int, dict]:
    """Check one callback delivery; return (HTTP status, JSON answer). Wakes the waiting node when valid."""
    if not secret:
        return 403, {"error": "callbacks are disabled: no webhook secret is configured"}
    if not sig_header:
        return 401, {"error": "missing Runflow-Signature"}
    if not hmac.compare_digest(signature(secret, body), sig_header.strip().lower()):
        return 401, {"error": "bad Runflow-Signature"}
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, {"error": "body is not JSON"}
    run_id = str(payload.get("run_id") or "") if isinstance(payload, dict) else ""
    if not run_id:
        return 400, {"error": "no run_id"}
    if run_id in _SEEN:
        return 200, {"ok": True, "duplicate": True}
    _SEEN[run_id] = str(payload.get("status"))
    while len(_SEEN) > _SEEN_MAX:
        _SEEN.popitem(last=False)
    entry = _WAITERS.get(run_id)
    if entry is None:  # late or unknown: fine, the result is collected by polling or from the cache
        return 200, {"ok": True, "waiting": False}
    loop, event = entry
    loop.call_soon_threadsafe(event.set)
    return 200, {"ok": True, "waiting": True}
