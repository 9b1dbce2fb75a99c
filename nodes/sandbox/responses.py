"""HTTP answers as data: the Response the handler sends, and the JSON / S3-style error bodies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    request_id: str


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    chunks: Callable[[], Iterable[bytes]] | None = None  # a lazily streamed body of ``length`` bytes
    length: int = 0


def json_response(status: int, obj, headers: dict | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), headers=dict(headers or {}))


def error(status: int, code: str, message: str, errors: list | None = None) -> Response:
    return json_response(status, {"code": code, "message": message, "errors": errors})


def s3_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"</Error>").encode()
    return Response(status, body, "application/xml")


def field_errors(errors: list[tuple[str, str]]) -> list[dict]:
    return [{"field": f, "message": m} for f, m in errors]


def streamed(status: int, content_type: str, length: int, chunks: Callable[[], Iterable[bytes]]) -> Response:
    return Response(status, b"", content_type, chunks=chunks, length=length)


def filler(total: int, head: bytes = b"", tail: bytes = b"", fill: bytes = b"a") -> Callable[[], Iterable[bytes]]:
    """A body of exactly ``total`` bytes: head, filler, tail; produced lazily 1 MiB at a time."""

    def gen():
        yield head
        left, block = total - len(head) - len(tail), fill * (1 << 20)
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)
        yield tail

    return gen



def parse_body(raw: bytes) -> tuple[dict, Response | None]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {}, error(400, "BAD_REQUEST", "Request body must be valid JSON")
    if not isinstance(body, dict):
        return {}, error(400, "BAD_REQUEST", "Request body must be a JSON object")
    return body, None
