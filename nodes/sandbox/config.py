"""Constants of the emulated API, and the contract VARIANTS: one switch per behaviour Runflow's docs leave open.

Each variant picks one documented (or plausible) behaviour; the defaults are what the sandbox always did.
See ``Variants`` for names and values, and server.py's docstring for how to set them.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass

from ..runflow.contract import (
    ANGLES,
    ASPECT_RATIOS,
    MAX_UPLOAD_BYTES,
    SHOTS,
    TERMINAL_FAILED,
    TERMINAL_OK,
    VIEWS,
)

ACCEPTED_MIME = ("image/png", "image/jpeg", "image/webp")
STATUSES = ("queued", "dispatching", "running", "succeeded", "failed", "canceled", "partial_succeeded")
TERMINAL = TERMINAL_OK | TERMINAL_FAILED
OUTPUT_SHAPES = ("outputs", "image_urls", "image", "url", "output_url", "workflow")
RUN_FIELDS = ("input", "callback_url", "metadata", "client_ref")
ENUM_FIELDS = {"view": VIEWS, "angle": ANGLES, "shot": SHOTS, "match_input_aspect": ("true", "false"),
               "aspect_ratio": ASPECT_RATIOS}
INPUT_FIELDS = ("image_url", "view", "angle", "shot", "prompt", "match_input_aspect", "aspect_ratio")
PRICE = "0.20"
MODEL_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://api.runflow.io/v1/models/runflow/multi-angles"))
ORG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://api.runflow.io/sandbox/org"))
USER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://api.runflow.io/sandbox/user"))
MAX_API_BODY = 96 * 1024 * 1024  # room for a 50 MiB image as a base64 data URI
MAX_FETCH_BYTES = MAX_UPLOAD_BYTES + 1
FORCE_FAIL = re.compile(r"\[sandbox:fail\]", re.I)
FORCE_SLOW = re.compile(r"\[sandbox:slow=(\d+(?:\.\d+)?)\]", re.I)
RATE_LIMIT = 600  # requests per minute announced by the X-RateLimit-* headers (variant rate_limit_headers=on)

# variant name -> allowed values; the first value is the default
VARIANT_CHOICES: dict[str, tuple] = {
    "idempotency": ("honoured", "ignored"),
    "client_ref_search": ("filters", "refused", "ignored"),
    "second_confirm": ("ok", "conflict"),
    "retry_after": ("fault", "with", "without"),
    "create_status": (201, 200, 202),
    "output_shape": OUTPUT_SHAPES,
    "cancel_spelling": ("as_scripted", "canceled", "cancelled"),
    "failure_fields": ("failure_star", "error_object"),
    "rate_limit_headers": ("off", "on"),
}


@dataclass
class Variants:
    """How the sandbox answers where Runflow's docs leave the behaviour open (runflow-api.md §6, §10).

    - ``idempotency`` (singleton run route, ``Idempotency-Key``): ``honoured`` = same key + same body replays the
      first answer (header ``Idempotent-Replayed: true``), same key + other body -> 409 CONFLICT, same key while
      the first request is still being handled -> 409 CONFLICT "in progress"; ``ignored`` = every POST creates
      (and bills) a new run.
    - ``client_ref_search`` (``GET /v1/runs?q=client_ref:...``): ``filters`` | ``refused`` (422 on a client_ref
      term) | ``ignored`` (the whole ``q`` is ignored: the org's newest runs, unfiltered).
    - ``second_confirm`` (confirming an asset upload again): ``ok`` (201 with the asset again) | ``conflict`` (409).
    - ``retry_after`` (on 429 answers): ``fault`` (only when the fault sets ``retry_after``) | ``with`` (always;
      the fault's value or 1 s) | ``without`` (never).
    - ``create_status``: HTTP status of a successful create: 201 | 200 | 202.
    - ``output_shape``: outputs (``outputs[].url``) | image_urls | image (``{"image": {"url"}}``) | url |
      output_url | workflow (ComfyUI-style ``{"image": [url]}``).
    - ``cancel_spelling``: as_scripted | canceled | cancelled (both spellings of a run's status become this one).
    - ``failure_fields``: ``failure_star`` (failure_code / failure_message / failure_stage_code) |
      ``error_object`` (``error: {code, message, stage}`` instead; null on success).
    - ``rate_limit_headers``: off | on (every /v1 answer carries X-RateLimit-Limit / -Remaining / -Reset).
    """

    idempotency: str = "honoured"
    client_ref_search: str = "filters"
    second_confirm: str = "ok"
    retry_after: str = "fault"
    create_status: int = 201
    output_shape: str = "outputs"
    cancel_spelling: str = "as_scripted"
    failure_fields: str = "failure_star"
    rate_limit_headers: str = "off"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_variant(f.name, getattr(self, f.name)))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def updated(self, **changes) -> Variants:
        """A copy with ``changes`` applied (each checked); unknown names raise ValueError."""
        unknown = [k for k in changes if k not in VARIANT_CHOICES]
        if unknown:
            raise ValueError(f"unknown variant(s): {', '.join(unknown)}; known: {', '.join(VARIANT_CHOICES)}")
        return dataclasses.replace(self, **changes)


def check_variant(name: str, value) -> str | int:
    """``value`` as the variant ``name`` stores it (strings from a CLI or JSON accepted), or ValueError."""
    if name not in VARIANT_CHOICES:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANT_CHOICES)}")
    choices = VARIANT_CHOICES[name]
    if isinstance(choices[0], int) and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value not in choices:
        raise ValueError(f"variant {name} must be one of: {', '.join(map(str, choices))} (got {value!r})")
    return value


def parse_variant(text: str) -> tuple[str, str | int]:
    """'name=value' (the CLI's --variant) -> (name, checked value)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--variant takes name=value, got {text!r}")
    name = name.strip()
    return name, check_variant(name, value.strip())
