"""Typed views of what Runflow sends back: run records (with a typed status), assets, and result URLs."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class RunStatus(str, enum.Enum):
    """A run's ``status_code``, with every spelling the docs use folded into one member (runflow-api.md §3, §10.7).

    Unknown statuses are ``OTHER``: not terminal, so the wait goes on until the overall deadline.
    """

    QUEUED = "queued"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL_SUCCEEDED = "partial_succeeded"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELED = "canceled"
    OTHER = "other"

    @classmethod
    def parse(cls, value: object) -> RunStatus:
        text = str(value or "").strip().lower()
        if text == "cancelled":
            return cls.CANCELED
        try:
            return cls(text)
        except ValueError:
            return cls.OTHER

    @property
    def succeeded(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.PARTIAL_SUCCEEDED)

    @property
    def failed(self) -> bool:
        return self in (RunStatus.FAILED, RunStatus.ERRORED, RunStatus.CANCELED)

    @property
    def terminal(self) -> bool:
        return self.succeeded or self.failed


@dataclass(frozen=True)
class Asset:
    id: str
    url: str


@dataclass
class Run:
    """A run record; ``raw`` keeps every field Runflow sent."""

    raw: dict = field(repr=False)
    received: float = field(default_factory=time.monotonic, compare=False, repr=False)  # when this record came in

    @property
    def id(self) -> str:
        return str(self.raw.get("id") or "")

    @property
    def status(self) -> str:
        """The status as Runflow spelled it (lower case); ``state`` is the typed reading."""
        return str(self.raw.get("status_code") or self.raw.get("status") or "unknown").lower()

    @property
    def state(self) -> RunStatus:
        return RunStatus.parse(self.status)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @property
    def succeeded(self) -> bool:
        return self.state.succeeded

    @property
    def started(self) -> bool:
        """Runflow says compute started (``started_at`` set, or a running/terminal status): queue time is over."""
        return bool(self.raw.get("started_at")) or self.state in (RunStatus.RUNNING,) or self.terminal

    @property
    def queue_seconds(self) -> float | None:
        """Seconds from creation to the start of compute by Runflow's own clock; None until ``started_at`` is set."""
        created, started = _timestamp(self.raw.get("created_at")), _timestamp(self.raw.get("started_at"))
        if created is None or started is None:
            return None
        return max(0.0, started - created)

    @property
    def output(self) -> dict:
        out = self.raw.get("output")
        return out if isinstance(out, dict) else {}

    @property
    def output_urls(self) -> list[str]:
        return extract_output_urls(self.raw.get("output"))

    @property
    def cost(self) -> float | None:
        try:
            return float(self.raw["cost"]) if self.raw.get("cost") is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def failure(self) -> tuple[str | None, str | None]:
        err = self.raw.get("error") if isinstance(self.raw.get("error"), dict) else {}
        code = self.raw.get("failure_code") or err.get("code")
        message = self.raw.get("failure_message") or err.get("message")
        out = self.output.get("error") if isinstance(self.output.get("error"), dict) else {}
        return code or out.get("code"), message or out.get("message")

    @property
    def server_duration(self) -> float | None:
        """Seconds from creation to completion as Runflow measured it."""
        ms = self.raw.get("duration_ms")
        if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
            return ms / 1000.0
        return None

    def info(self) -> dict:
        """The per-item run info the nodes output (output schema fields + billing)."""
        out = self.output
        return {
            "run_id": self.id,
            "status": self.status,
            "seed": out.get("seed"),
            "timing": out.get("timing"),
            "nsfw_detected": out.get("nsfw_detected"),
            "duration_ms": self.raw.get("duration_ms"),
            "cost": self.raw.get("cost"),
            "client_ref": self.raw.get("client_ref"),
        }


def _timestamp(value: Any) -> float | None:
    """An ISO 8601 time (``+00:00`` or ``Z``) as epoch seconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def example_durations(answer: Any) -> list[float]:
    """Every positive ``duration_ms`` in the answer of GET /v1/models/{id}/examples, in seconds (its shape is not
    documented beyond "with duration_ms timings": look for the field at any depth)."""
    found: list[float] = []

    def walk(value: Any, depth: int) -> None:
        if depth > 6:
            return
        if isinstance(value, dict):
            ms = value.get("duration_ms")
            if isinstance(ms, (int, float)) and not isinstance(ms, bool) and 0 < ms < 3_600_000:
                found.append(ms / 1000.0)
            for v in value.values():
                if isinstance(v, (dict, list)):
                    walk(v, depth + 1)
        elif isinstance(value, list):
            for v in value[:200]:
                walk(v, depth + 1)

    walk(answer, 0)
    return found


def extract_output_urls(output: Any) -> list[str]:
    """Result URLs from every output shape Runflow is known to use (runflow-api.md §3), in order."""
    urls: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            if value not in urls:
                urls.append(value)
        elif isinstance(value, dict):
            add(value.get("url"))
        elif isinstance(value, list):
            for item in value:
                add(item)

    if not isinstance(output, dict):
        add(output)
        return urls
    for name in ("outputs", "image_urls", "image", "images", "url", "output_url"):
        add(output.get(name))
    if not urls:  # ComfyUI-deployed workflows key outputs by their output id
        for value in output.values():
            add(value)
    return urls
