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


def check_workflow_callback(url: str, allowed_hosts: tuple[str, ...] | list[str], public_url: str | None) -> str:
    """The host of a ``callback_url`` a workflow filled in, if the user allowed it; else InputError (before anything
    is sent). A shared workflow must not be able to route every result URL of the user's runs to its author."""
    from urllib.parse import urlsplit

    from ..runflow.errors import InputError

    host = (urlsplit(url).hostname or "").lower()
    allowed = {h.lower() for h in allowed_hosts}
    if public_url:
        allowed.add((urlsplit(public_url).hostname or "").lower())
    if host and host in allowed:
        return host
    shown = "".join(c for c in host[:80] if c.isprintable()) or "(no host)"
    raise InputError(f"callback_url sends every result URL of these runs to {shown}, which you have not allowed; "
                     "nothing was sent. Clear the callback_url widget, or if you trust that host add it to "
                     "RUNFLOW_CALLBACK_HOSTS (comma-separated) in ComfyUI's environment.")


def callback_host(spec_url: str | None, public_url: str | None, secret: str | None) -> str | None:
    """The host a run's callback goes to (the workflow's URL, else the pack's own), or None when there is none."""
    from urllib.parse import urlsplit

    url = spec_url or callback_url(public_url, secret)
    return (urlsplit(url).hostname or None) if url else None
