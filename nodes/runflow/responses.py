"""Map what Runflow (or a gateway in front of it) answered to the error tree, with one actionable line each."""

from __future__ import annotations

import json
import re

import httpx

from . import errors as E
from .retry import parse_retry_after


def parse_error_body(response: httpx.Response) -> tuple[str | None, str, list]:
    """(code, message, errors) from a flat or nested JSON envelope, or a readable excerpt of a non-JSON body."""
    text = response.text if len(response.content) < 65536 else response.content[:65536].decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        code = inner.get("code")
        message = inner.get("message") or inner.get("detail") or body.get("detail")
        errs = inner.get("errors") or body.get("errors") or []
        if isinstance(message, list):  # FastAPI-style detail list
            errs, message = message, None
        return (_printable(str(code))[:80] if code else None, _printable(str(message or ""))[:500],
                errs if isinstance(errs, list) else [])
    plain = re.sub(r"<[^>]+>", " ", text)
    return None, _printable(plain)[:160], []


def _printable(text: str) -> str:
    """One line of printable text: what a server said, safe to put in messages and logs (no CR/LF, no escapes)."""
    return re.sub(r"\s+", " ", "".join(c if c.isprintable() else " " for c in text)).strip()


def _field_messages(errs: list) -> str:
    parts = []
    for item in errs[:6]:
        if isinstance(item, dict):
            where = item.get("field") or item.get("loc") or item.get("path") or ""
            if isinstance(where, list):
                where = ".".join(str(p) for p in where)
            msg = item.get("message") or item.get("msg") or ""
            parts.append(f"{where}: {msg}" if where else str(msg))
        else:
            parts.append(str(item))
    return "; ".join(p for p in parts if p)


def error_from_response(response: httpx.Response, *, api_key: str | None = None, attempts: int = 1) -> E.ApiError:
    """Map an HTTP error response to the error tree, with a one-line message that says what to do."""
    status = response.status_code
    code, message, errs = parse_error_body(response)
    detail = message or response.reason_phrase or "no details"
    kw = dict(status=status, code=code, errors=errs, request_id=response.headers.get("x-request-id")
              or response.headers.get("runflow-request-id"),
              retry_after=parse_retry_after(response.headers.get("retry-after")))
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if status == 401:
        return E.AuthError(f"Runflow rejected the API key {E.mask_key(api_key)} ({detail}): {E.KEY_HELP}.", **kw)
    if status == 402:
        return E.CreditError(f"Runflow says the account is out of credit ({detail}): top up at "
                             "app.runflow.io/settings/billing, then re-queue.", **kw)
    if status == 403:
        return E.PermissionError_(f"Runflow refused the request ({code or 'forbidden'}: {detail}): check that the "
                                  "key has inference scope (rf_live_…) and the account email is verified.", **kw)
    if status in (404, 405):
        return E.NotFoundError(f"Runflow: not found ({code or status}: {detail}); check RUNFLOW_API_URL "
                               "points at https://api.runflow.io.", **kw)
    if status == 409:
        return E.ConflictError(f"Runflow reported a conflict ({detail}); re-queue to try again.", **kw)
    if status in (400, 413, 422):
        fields = _field_messages(errs)
        return E.ValidationError(f"Runflow refused the input: {fields or detail}. Fix the node's inputs.", **kw)
    if status == 429:
        return E.RateLimitError(f"Runflow is rate-limiting this account{tried}; wait a minute, or lower "
                                "max_concurrent, then re-queue.", **kw)
    if status >= 500:
        return E.ServerError(f"Runflow's server failed (HTTP {status}{tried}: {detail}); try again in a few "
                             "minutes.", **kw)
    return E.ApiError(f"Runflow answered HTTP {status} ({detail}).", **kw)


def transport_error(exc: httpx.TransportError, where: str, attempts: int) -> E.TransportError:
    """A network failure as an error that names the host and says what to check."""
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return E.ConnectError(f"Cannot reach Runflow at {where}{tried} ({type(exc).__name__}): check the network, "
                              "HTTPS_PROXY, or RUNFLOW_API_URL.")
    if isinstance(exc, httpx.TimeoutException):
        return E.TimeoutError_(f"Runflow at {where} did not answer in time{tried}; try again in a minute.")
    return E.TransportError(f"The connection to Runflow at {where} broke{tried} ({type(exc).__name__}); "
                            "try again in a minute.")


def parse_json(raw: bytes, method: str, path: str) -> object:
    """A 2xx body as JSON; a garbled one is a ServerError (a broken gateway, transient like a 5xx)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        excerpt = re.sub(r"\s+", " ", raw[:80].decode("utf-8", "replace"))
        raise E.ServerError(f"Runflow sent a response that is not valid JSON for {method} {path} "
                            f"(starts {excerpt!r}); try again in a minute.") from None
