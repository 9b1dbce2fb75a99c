"""The callback route's logic: verify one Runflow callback delivery and wake the node waiting for that run."""

from __future__ import annotations

import hmac
import json
import logging

from ..core.callbacks import CALLBACK_PATH, signature
from ..core.session import Wakeups

log = logging.getLogger(__name__)

__all__ = ["CALLBACK_PATH", "handle"]


def handle(body: bytes, sig_header: str | None, secret: str | None, wakeups: Wakeups) -> tuple[int, dict]:
    """Check one callback delivery; return (HTTP status, JSON answer). Wakes the waiting run when valid."""
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
    if wakeups.seen(run_id):
        return 200, {"ok": True, "duplicate": True}
    woken = wakeups.deliver(run_id, str(payload.get("status")))
    return 200, {"ok": True, "waiting": woken}
