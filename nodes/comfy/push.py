"""The callback route's logic: verify one Runflow callback delivery and wake the node waiting for that run.

Cheap refusals come first: callbacks off (no secret) -> 403 before a byte of the body is read; a declared or actual
body over MAX_CALLBACK_BYTES -> 413 after reading at most that much; a signature that is not 64 hex characters ->
401 (never a 500). Only a terminal status wakes the waiting run (the wait then polls once, as usual).
"""

from __future__ import annotations

import hmac
import json
import logging
import re

from ..core.callbacks import CALLBACK_PATH, signature
from ..core.session import Wakeups
from ..runflow.models import RunStatus
from .route_guard import read_capped

log = logging.getLogger(__name__)

__all__ = ["CALLBACK_PATH", "MAX_CALLBACK_BYTES", "handle", "receive"]

MAX_CALLBACK_BYTES = 64 * 1024  # a run callback is well under 4 KiB
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


async def receive(request, secret: str | None, wakeups: Wakeups) -> tuple[int, dict]:
    """The whole route: refuse early, read a capped body, then ``handle`` it."""
    if not secret:
        return 403, {"error": "callbacks are disabled: no webhook secret is configured"}
    declared = request.content_length
    if declared is not None and declared > MAX_CALLBACK_BYTES:
        return 413, {"error": f"callback body over {MAX_CALLBACK_BYTES} bytes"}
    body = await read_capped(request, MAX_CALLBACK_BYTES)
    if body is None:
        return 413, {"error": f"callback body over {MAX_CALLBACK_BYTES} bytes"}
    return handle(body, request.headers.get("Runflow-Signature"), secret, wakeups)


def handle(body: bytes, sig_header: str | None, secret: str | None, wakeups: Wakeups) -> tuple[int, dict]:
    """Check one callback delivery; return (HTTP status, JSON answer). Wakes the waiting run when valid."""
    if not secret:
        return 403, {"error": "callbacks are disabled: no webhook secret is configured"}
    if not sig_header:
        return 401, {"error": "missing Runflow-Signature"}
    sig = sig_header.strip()
    if not _HEX64.fullmatch(sig):  # non-ASCII or malformed: compare_digest would raise on non-ASCII text
        return 401, {"error": "malformed Runflow-Signature"}
    if not hmac.compare_digest(signature(secret, body), sig.lower()):
        return 401, {"error": "bad Runflow-Signature"}
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, {"error": "body is not JSON"}
    run_id = str(payload.get("run_id") or "") if isinstance(payload, dict) else ""
    if not run_id:
        return 400, {"error": "no run_id"}
    status = str(payload.get("status") or payload.get("status_code") or "")[:40]
    if not RunStatus.parse(status).terminal:  # only a finished run is worth an early poll
        return 200, {"ok": True, "waiting": False, "ignored": "not a terminal status"}
    if wakeups.seen(run_id):
        return 200, {"ok": True, "duplicate": True}
    woken = wakeups.deliver(run_id, status)
    return 200, {"ok": True, "waiting": woken}
