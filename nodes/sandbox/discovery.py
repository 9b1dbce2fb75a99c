"""Read-only discovery data: the model catalog entry (inputs with validators, exactly the model page's enums),
its examples, the accepted MIME types; used by GET /v1/models, /v1/models/{id}/examples, /v1/assets/types."""

from __future__ import annotations

from ..runflow.contract import ANGLES, ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, MODEL_ID, SHOTS, VIEWS
from .config import ACCEPTED_MIME, MODEL_UUID, PRICE


def _input(name: str, required: bool, code: str, attrs: dict | None, default=None, description: str = "") -> dict:
    return {"name": name, "is_required": required, "default_value": default, "validator_code": code,
            "validator_attrs": attrs, "description": description}


def model_entry() -> dict:
    """The catalog item of runflow/multi-angles as GET /v1/models lists it."""
    owner, slug = MODEL_ID.split("/")
    return {
        "id": MODEL_UUID, "model_id": MODEL_ID, "owner": owner, "slug": slug, "name": "Multi Angles",
        "price": PRICE, "price_unit": "request", "currency": "USD",
        "inputs": [
            _input("image_url", True, "image", {"mime_types": list(ACCEPTED_MIME)},
                   description="HTTPS URL of the source photo."),
            _input("view", True, "enum", {"choices": list(VIEWS)}),
            _input("angle", False, "enum", {"choices": list(ANGLES)}),
            _input("shot", False, "enum", {"choices": list(SHOTS)}),
            _input("prompt", False, "string", None, ""),
            _input("match_input_aspect", False, "enum", {"choices": ["true", "false"]}, "true"),
            _input("aspect_ratio", False, "enum", {"choices": list(ASPECT_RATIOS)}, DEFAULT_ASPECT_RATIO),
        ],
        "outputs": [{"name": "outputs", "type": "json"}, {"name": "seed", "type": "json"},
                    {"name": "timing", "type": "json"}, {"name": "nsfw_detected", "type": "json"}],
    }


def model_matches(model_id: str) -> bool:
    return model_id in (MODEL_ID, MODEL_UUID)


def examples(run_seconds: float) -> list[dict]:
    """Example runs of the model; ``duration_ms`` is what a run takes here (the sandbox's run time)."""
    base = "https://public.runflow.io/images/models/runflow/product-isolation/examples/1/before.webp"
    poses = [("right side view", "eye-level shot", "medium shot"), ("back view", "high-angle shot", "wide shot")]
    return [{"id": f"example-{i + 1}", "model_id": MODEL_UUID,
             "input": {"image_url": base, "view": v, "angle": a, "shot": s},
             "duration_ms": int(round(run_seconds * 1000))} for i, (v, a, s) in enumerate(poses)]


def asset_types() -> list[dict]:
    return [{"mime_type": t, "asset_type": "image"} for t in ACCEPTED_MIME]
