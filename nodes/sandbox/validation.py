"""Request validation for run creation, and the run-search query language (q=field:value AND ...)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import urlsplit

from ..runflow.contract import MAX_CLIENT_REF_LENGTH, MAX_URL_LENGTH
from .config import ENUM_FIELDS, INPUT_FIELDS


def validate_run(body: dict) -> list[tuple[str, str]]:
    errors = []
    inp = body.get("input")
    if "input" not in body:
        return [("input", "field required")]
    if not isinstance(inp, dict):
        return [("input", "must be an object")]
    for k in inp:
        if k not in INPUT_FIELDS:
            errors.append((f"input.{k}", "unknown field"))
    url = inp.get("image_url")
    if "image_url" not in inp:
        errors.append(("input.image_url", "field required"))
    elif not isinstance(url, str):
        errors.append(("input.image_url", "must be a string"))
    else:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "data"):
            errors.append(("input.image_url", f"media URL must use HTTP(S) or data URI, got '{scheme}'"))
        elif scheme != "data" and not urlsplit(url).hostname:
            errors.append(("input.image_url", "media URL has no host"))
    if "view" not in inp:
        errors.append(("input.view", "field required"))
    for name, allowed in ENUM_FIELDS.items():
        if name in inp and not (isinstance(inp[name], str) and inp[name] in allowed):
            kind = type(inp[name]).__name__.replace("bool", "boolean").replace("NoneType", "null")
            got = "" if isinstance(inp[name], str) else f" (got a JSON {kind}; the API takes strings)"
            errors.append((f"input.{name}", f"must be one of: {', '.join(allowed)}{got}"))
    if "prompt" in inp and not isinstance(inp["prompt"], str):
        errors.append(("input.prompt", "must be a string"))
    cb = body.get("callback_url")
    if cb is not None and (not isinstance(cb, str) or urlsplit(cb).scheme not in ("http", "https")
                           or not urlsplit(cb).hostname or len(cb) > MAX_URL_LENGTH):
        errors.append(("callback_url", f"must be an http(s) URL of at most {MAX_URL_LENGTH} characters"))
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        errors.append(("metadata", "must be an object or null"))
    ref = body.get("client_ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_CLIENT_REF_LENGTH):
        errors.append(("client_ref", f"must be a string of at most {MAX_CLIENT_REF_LENGTH} characters"))
    return errors


Q_FIELDS = ("client_ref", "status_code", "id", "model_id", "request_id", "batch_id", "created_at", "completed_at")


def parse_q(q: str) -> list[tuple[str, str, str]]:
    if re.search(r"(^|\s)(OR|NOT)\s|[()]", q):
        raise ValueError("the sandbox supports only field:value terms joined by AND (no OR, NOT or parentheses)")
    preds = []
    for term in (t for t in re.split(r"\s+AND\s+", q.strip()) if t):
        mt = re.fullmatch(r"(\w+)\s*(>=|<=|:|=|>|<)\s*(.*)", term.strip())
        if not mt or mt.group(1) not in Q_FIELDS:
            raise ValueError(f"unsupported filter {term!r}: the sandbox takes field:value terms joined by AND "
                             f"on {', '.join(Q_FIELDS)}")
        preds.append((mt.group(1), mt.group(2), mt.group(3).strip().strip("\"'")))
    return preds


def match(rec: dict, fld: str, op: str, value: str) -> bool:
    have = rec.get(fld)
    if op in (":", "="):
        return str(have) == value if have is not None else value in ("", "null")
    if have is None:
        return False

    def ts(s: str) -> datetime:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
        return d if d.tzinfo else d.replace(tzinfo=timezone.utc)

    a, b = ts(have), ts(value)
    return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]

