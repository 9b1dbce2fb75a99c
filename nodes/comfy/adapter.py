"""The pack's only contact with ComfyUI at execution time: status text, progress bar, interrupt.

Every function imports ComfyUI lazily and is a no-op (or a plain fallback) outside ComfyUI, so the nodes run in
tests and the CLI unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import TypeVar

from ..core.config import ENV_USER_DIR
from ..runflow.errors import Interrupted

log = logging.getLogger(__name__)
T = TypeVar("T")
INTERRUPT_POLL = 0.1  # seconds between interrupt checks; Cancel must stop waiting within 1 s


def bind_user_dir() -> None:
    """Inside ComfyUI, the pack keeps its config, cache and ledger in ComfyUI's user directory (which honours
    --user-directory): tell core through $RUNFLOW_USER_DIR, unless the user set it. A no-op outside ComfyUI."""
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return
    os.environ.setdefault(ENV_USER_DIR, folder_paths.get_user_directory())


def context() -> tuple[str | None, str | None]:
    """(prompt_id, node_id) of the node being executed, or (None, None)."""
    try:
        from comfy_execution.utils import get_executing_context  # type: ignore[import-not-found]

        ctx = get_executing_context()
        return (ctx.prompt_id, ctx.node_id) if ctx else (None, None)
    except Exception:  # noqa: BLE001 - outside ComfyUI, or an older ComfyUI
        return None, None


def inside_comfyui() -> bool:
    """True when running inside a ComfyUI server (its PromptServer exists)."""
    try:
        from server import PromptServer  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001
        return False
    return getattr(PromptServer, "instance", None) is not None


def status_text(text: str, node_id: str | None = None) -> None:
    """Show ``text`` on the node (ComfyUI's progress_text message); log it outside ComfyUI."""
    node_id = node_id or context()[1]
    try:
        from server import PromptServer  # type: ignore[import-not-found]

        if node_id is not None and PromptServer.instance is not None:
            PromptServer.instance.send_progress_text(text, node_id)
            return
    except Exception:  # noqa: BLE001
        pass
    log.debug("status: %s", text)


class ProgressBar:
    """ComfyUI's progress bar for one node; silent outside ComfyUI."""

    def __init__(self, total: int, node_id: str | None = None):
        self.total = max(1, total)
        self._bar = None
        try:
            import comfy.utils  # type: ignore[import-not-found]

            self._bar = comfy.utils.ProgressBar(self.total, node_id=node_id or context()[1])
        except Exception:  # noqa: BLE001
            self._bar = None

    def update(self, value: float) -> None:
        if self._bar is not None:
            try:
                self._bar.update_absolute(min(self.total, value), self.total)
            except Exception:  # noqa: BLE001 - a progress hook failure must never fail the run
                pass


def interrupted() -> bool:
    """Has the user pressed Cancel? (Does not clear the flag: ComfyUI's executor handles it.)"""
    try:
        import comfy.model_management  # type: ignore[import-not-found]

        return bool(comfy.model_management.processing_interrupted())
    except Exception:  # noqa: BLE001
        return False


def raise_comfy_interrupt() -> None:
    """Raise ComfyUI's own interrupt exception (shown as "interrupted", not as an error; it clears the flag), else
    ours. For a cancel that left nothing at Runflow."""
    try:
        import comfy.model_management  # type: ignore[import-not-found]

        comfy.model_management.throw_exception_if_processing_interrupted()
    except ImportError:
        pass
    raise Interrupted("Cancelled before anything was sent to Runflow: nothing was billed.")


def clear_interrupt() -> None:
    """Reset ComfyUI's Cancel flag. Needed when the pack reports a cancel as its own error (with the may-still-bill
    notice) instead of ComfyUI's interrupt: otherwise the flag would cancel the next node at once."""
    try:
        import comfy.model_management  # type: ignore[import-not-found]

        comfy.model_management.interrupt_current_processing(False)
    except Exception:  # noqa: BLE001 - outside ComfyUI
        pass


async def until_interrupted(work: Awaitable[T]) -> T:
    """Await ``work``; if the user cancels, cancel it within INTERRUPT_POLL seconds and raise our Interrupted (the
    caller decides what the user is told: a run already sent may still bill)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=INTERRUPT_POLL)
            if done:
                return task.result()
            if interrupted():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)  # let it close its connections
                raise Interrupted("Cancelled.")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


PREVIEW_SIDE = 1024  # px, long side of a node preview (the canvas shows it small; SaveImage keeps full size)
PREVIEW_QUALITY = 85  # JPEG: ~7 ms for 1 MP where a PNG preview took ~90 ms (bench/comfy_bench.py)


def preview_writer():
    """A function that writes one uint8 HxWx3 image as a temp JPEG for the node's preview (ComfyUI's ``ui.images``
    entry; both frontends show any image file the /view route serves), or None outside ComfyUI. Thread-safe."""
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    import uuid

    from PIL import Image

    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)

    def write(pixels) -> dict:
        im = Image.fromarray(pixels)
        if max(im.size) > PREVIEW_SIDE:
            im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        name = f"runflow_{uuid.uuid4().hex[:16]}.jpg"
        im.save(os.path.join(folder, name), "JPEG", quality=PREVIEW_QUALITY)
        return {"filename": name, "subfolder": "", "type": "temp"}

    return write
