"""Run callbacks (push instead of poll): the URL sent with runs and the signature that proves a delivery is Runflow's.

Polling always continues as the fallback, so a lost or rejected callback never loses a result.
"""

from __future__ import annotations

import hashlib
import hmac

CALLBACK_PATH = "/runflow/callback"


def signature(secret: str, body: bytes) -> str:
    """Runflow-Signature: lowercase hex HMAC-SHA256 of the raw body with the callback secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def callback_url(public_url: str | None, secret: str | None) -> str | None:
    """The callback URL to send with runs, only when ComfyUI is publicly reachable AND callbacks can be verified."""
    if public_url and secret:
        return public_url.rstrip("/") + CALLBACK_PATH
    return None
