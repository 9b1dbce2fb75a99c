"""What one billable run asks for, validated locally before anything is sent (bad input never costs money)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..runflow.contract import ANGLES, ASPECT_RATIOS, MAX_PROMPT_LENGTH, MAX_URL_LENGTH, SHOTS, VIEWS
from ..runflow.errors import InputError


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(f"{name} {value!r} is not one of Runflow's values: {', '.join(allowed)}")
    return value


def check_http_url(name: str, value: str, *, https_hint: bool = True) -> str:
    """An absolute http(s) URL of at most 2048 characters, else InputError."""
    value = (value or "").strip()
    if not value:
        raise InputError(f"{name} is empty; give an https:// URL")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InputError(f"{name} must be an http(s) URL that Runflow can fetch, got {value[:60]!r}; "
                         + ("connect an IMAGE instead for local files" if https_hint else "fix the URL"))
    if len(value) > MAX_URL_LENGTH:
        raise InputError(f"{name} is {len(value)} characters; Runflow accepts at most {MAX_URL_LENGTH}")
    return value


def looks_like_local_path(value: str) -> bool:
    """C:\\photos\\a.png, \\\\server\\share, /home/me/a.png, ~/a.png, file:///..., ./a.png"""
    v = value.strip()
    return bool(re.match(r"^([a-zA-Z]:[\\/]|\\\\|/|~[\\/]|\.{1,2}[\\/]|file:)", v))


LOAD_IMAGE_HINT = "load it with a Load Image node and connect that to the image input (and leave image_url empty)"


def check_image_url(name: str, value: str, instead: str = LOAD_IMAGE_HINT) -> str:
    """The source photo's URL: public https only (what the tooltip and README promise), with a way out for files.
    ``instead`` says how to give a local file (the nodes: Load Image; the CLI: the image argument)."""
    value = (value or "").strip()
    shown = value if len(value) <= 60 else value[:57] + "..."
    if value and looks_like_local_path(value):
        raise InputError(f"{name} is a file on this computer ({shown}), which Runflow cannot reach: {instead}")
    parts = urlsplit(value)
    loopback = parts.scheme.lower() == "http" and (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")
    if value and (parts.scheme.lower() != "https" or not parts.netloc) and not loopback:  # loopback: the sandbox
        raise InputError(f"{name} must be a public https:// address of the image, got {shown}; or {instead}")
    return check_http_url(name, value)


def parse_metadata(text: str | dict | None) -> dict | None:
    """The metadata input: empty, or a JSON object."""
    if text is None or isinstance(text, dict):
        return text or None
    text = text.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"metadata is not valid JSON ({exc.msg} at character {exc.pos}); "
                         'write an object like {"project": "shoes"} or leave it empty') from None
    if not isinstance(value, dict):
        raise InputError(f"metadata must be a JSON object like {{\"project\": \"shoes\"}}, got a "
                         f"{type(value).__name__}")
    return value


def parse_views(text: str | list | tuple) -> list[str]:
    """The Turnaround's view selection: comma-separated exact view names (case-insensitive) or "all".

    Returned in the model page's order, without duplicates; unknown names are an error that lists the valid ones.
    """
    items = text if isinstance(text, (list, tuple)) else str(text or "").replace("\n", ",").split(",")
    wanted, unknown = set(), []
    lookup = {v.lower(): v for v in VIEWS}
    for raw in items:
        token = " ".join(str(raw).strip().lower().split())
        if not token:
            continue
        if token == "all":
            wanted.update(VIEWS)
        elif token in lookup:
            wanted.add(lookup[token])
        elif token + " view" in lookup:  # "front" -> "front view"
            wanted.add(lookup[token + " view"])
        else:
            unknown.append(str(raw).strip())
    if unknown:
        raise InputError(f"views: unknown {', '.join(repr(u) for u in unknown)}; use any of {', '.join(VIEWS)} "
                         "(comma-separated) or all")
    if not wanted:
        raise InputError("views is empty; pick at least one view (or write all)")
    return [v for v in VIEWS if v in wanted]


@dataclass(frozen=True)
class JobSpec:
    """One run's inputs. ``seed`` is not sent to Runflow: it only picks a cache slot (change it to re-roll)."""

    view: str
    angle: str = "eye-level shot"
    shot: str = "medium shot"
    prompt: str = ""
    match_input_aspect: bool = True
    aspect_ratio: str = "1:1"
    seed: int = 0
    callback_url: str | None = None
    metadata: dict | None = field(default=None, hash=False, compare=False)
    label: str = ""
    take: int = 0  # re-roll: not sent either; a take > 0 is its own cache slot (take 0 = the original render)

    def __post_init__(self) -> None:
        _choice("view", self.view, VIEWS)
        _choice("angle", self.angle, ANGLES)
        _choice("shot", self.shot, SHOTS)
        _choice("aspect_ratio", self.aspect_ratio, ASPECT_RATIOS)
        if not isinstance(self.prompt, str):
            raise InputError("prompt must be text")
        if len(self.prompt) > MAX_PROMPT_LENGTH:
            raise InputError(f"prompt is {len(self.prompt)} characters; keep it under {MAX_PROMPT_LENGTH} "
                             "(it is a short phrase that nudges the camera pose)")
        if self.callback_url:
            check_http_url("callback_url", self.callback_url, https_hint=False)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InputError("seed must be a whole number")
        if not isinstance(self.take, int) or isinstance(self.take, bool) or self.take < 0:
            raise InputError("take must be a whole number, 0 or more (0 = the original render)")

    @property
    def pose(self) -> str:
        return f"{self.view} · {self.angle} · {self.shot}"

    def api_input(self, image_url: str | None = None) -> dict:
        """The ``input`` object exactly as sent; ``aspect_ratio`` only when match_input_aspect is false."""
        data = {"view": self.view, "angle": self.angle, "shot": self.shot,
                "match_input_aspect": "true" if self.match_input_aspect else "false"}
        prompt = self.prompt.strip()
        if prompt:
            data["prompt"] = prompt
        if not self.match_input_aspect:
            data["aspect_ratio"] = self.aspect_ratio
        if image_url is not None:
            data["image_url"] = image_url
        return data
