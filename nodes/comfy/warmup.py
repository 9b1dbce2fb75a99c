"""Warm up, in a background thread while ComfyUI starts, what the first run would otherwise pay for on the clock."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def start() -> threading.Thread | None:
    """Inside ComfyUI (a no-op elsewhere): build the TLS context and load Pillow's codec plugins off the clock (each
    costs 20-200 ms on first use)."""
    try:
        from server import PromptServer  # type: ignore[import-not-found]
    except ImportError:
        return None
    if getattr(PromptServer, "instance", None) is None:
        return None
    thread = threading.Thread(target=_warm, name="runflow-warmup", daemon=True)
    thread.start()
    return thread


def _warm() -> None:
    try:
        from PIL import Image

        from ..core import prefault
        from ..runflow.transport import ssl_context

        Image.init()
        ssl_context()
        prefault.populate(0, 0)  # resolves madvise once
    except Exception as exc:  # noqa: BLE001 - warming is optional; the first run then pays for it itself
        log.debug("Runflow: warm-up skipped (%s)", exc)
