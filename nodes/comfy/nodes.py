"""The ComfyUI nodes (classic V1 definitions with an async FUNCTION, so independent nodes run concurrently).

Node ids, input names and combo strings are a public API: saved workflows store them. Never rename.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

from ..core import codec

from . import adapter as comfy
from ..runflow import errors as E
from ..core.cache import pixels_sha256
from ..core.config import load_settings
from ..runflow.contract import (ANGLES, ASPECT_RATIOS, DEFAULT_ANGLE, DEFAULT_ASPECT_RATIO, DEFAULT_SHOT, DEFAULT_VIEW,
                       SHOTS, TOOLTIPS, VIEWS)
from ..core.runner import SESSION, ItemResult, Runner, Source, cost_line
from ..core.spec import JobSpec, check_http_url, parse_metadata, parse_views

CATEGORY = "Runflow"
SEED_MAX = 2**31 - 1
SEED_TOOLTIP = ("Not sent to Runflow: it picks a slot in the result cache. Same inputs + same seed = the cached result "
                "for $0.00; change it to pay for a fresh render.")
FORMAT_TOOLTIP = ("How the image is encoded for upload. auto = high-quality JPEG (about 5x smaller and faster than PNG, "
                  "visually lossless); png = lossless.")


def _pose_inputs() -> dict:
    return {
        "angle": (list(ANGLES), {"default": DEFAULT_ANGLE, "tooltip": TOOLTIPS["angle"]}),
        "shot": (list(SHOTS), {"default": DEFAULT_SHOT, "tooltip": TOOLTIPS["shot"]}),
        "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": TOOLTIPS["prompt"]}),
        "match_input_aspect": ("BOOLEAN", {"default": True, "tooltip": TOOLTIPS["match_input_aspect"]}),
        "aspect_ratio": (list(ASPECT_RATIOS), {"default": DEFAULT_ASPECT_RATIO, "tooltip": TOOLTIPS["aspect_ratio"]}),
        "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": "fixed",
                         "tooltip": SEED_TOOLTIP}),
    }


def _source_inputs() -> dict:
    return {
        "image": ("IMAGE", {"tooltip": TOOLTIPS["image"]}),
        "image_url": ("STRING", {"default": "", "tooltip": TOOLTIPS["image_url"]}),
        "upload_format": (list(codec.UPLOAD_FORMATS), {"default": codec.UPLOAD_FORMATS[0], "tooltip": FORMAT_TOOLTIP}),
    }


async def _sources(image, image_url: str, upload_format: str) -> list[Source]:
    """One Source per batch item (encoded off the event loop), or one URL source. Exactly one of the two."""
    url = (image_url or "").strip()
    if image is not None and url:
        raise E.InputError("connect an image OR fill image_url, not both (which one should Runflow use?)")
    if image is None and not url:
        raise E.InputError("no source: connect an IMAGE to the image input, or fill image_url with an https:// URL")
    if url:
        return [Source(url=check_http_url("image_url", url))]
    if upload_format not in codec.UPLOAD_FORMATS:
        raise E.InputError(f"upload_format {upload_format!r} is not one of {', '.join(codec.UPLOAD_FORMATS)}")
    notes: list[str] = []
    items = codec.image_items(image, notes)

    async def one(pixels) -> Source:
        enc = await codec.encode_async(pixels, fmt=upload_format)
        return Source(data=enc.data, mime=enc.mime, pixel_sha256=pixels_sha256(pixels), upload_sha256=enc.sha256,
                      notes=[*notes, *enc.notes])

    return list(await asyncio.gather(*(one(item) for item in items)))


class _Status:
    """Status text on the node: plan, per-item progress, elapsed, cost; and ComfyUI's progress bar."""

    STEPS = 100  # progress units per item

    def __init__(self, total: int, title: str):
        self.total, self.title = total, title
        self.start = time.monotonic()
        self.states: dict[int, str] = {}
        self.progress: dict[int, float] = {}
        self.estimate: float | None = None
        self.plan_line = ""
        self.final: str | None = None  # the last word (done / error / cancelled), kept when notes are added
        self.notes: list[str] = []  # input handling worth knowing (downscaled, alpha composited): always shown
        self.node_id = comfy.context()[1]
        self.bar = comfy.ProgressBar(total * self.STEPS, self.node_id)

    def event(self, event: dict) -> None:
        if event["kind"] == "plan":
            self.plan_line = "about to spend " + event["line"]
            self.estimate = event.get("estimate_s")
        elif event["kind"] == "item":
            i, state = event["index"], event["status"]
            self.states[i] = state
            if state in ("done", "from cache"):
                self.progress[i] = 1.0
            elif self.estimate and "elapsed" in event:  # time-based, never "done" before the result is in
                self.progress[i] = max(self.progress.get(i, 0.0), min(0.95, event["elapsed"] / self.estimate))
            else:
                self.progress[i] = max(self.progress.get(i, 0.0), 0.05)
            self.bar.update(sum(self.progress.values()) * self.STEPS)
        self.show()

    def show(self, final: str | None = None) -> None:
        self.final = final = final or self.final
        elapsed = time.monotonic() - self.start
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        states = ", ".join(f"{n} {s}" for s, n in counts.items()) or "starting"
        lines = [f"{self.title}: {final or states} · {elapsed:.0f}s"]
        if self.plan_line and not final:
            lines.append(self.plan_line)
        lines.append(f"session total ${SESSION['spent_usd']:.2f} ({SESSION['runs']} runs)")
        lines += [f"note: {n}" for n in self.notes]
        comfy.status_text("\n".join(lines), self.node_id)

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.estimate:  # polls can be seconds apart: move the bar with the clock in between
                guess = min(0.95, (time.monotonic() - self.start) / self.estimate)
                for i, state in self.states.items():
                    if state not in ("done", "from cache"):
                        self.progress[i] = max(self.progress.get(i, 0.0), guess)
                self.bar.update(sum(self.progress.values()) * self.STEPS)
            self.show()


async def _execute(jobs: list[tuple[Source, JobSpec]], *, title: str, max_concurrent: int
                   ) -> tuple[list[ItemResult], _Status]:
    """Run jobs with status text, progress and Cancel; raise one clear error naming what failed."""
    status = _Status(len(jobs), title)
    status.notes = list(dict.fromkeys(n for src, _ in jobs for n in src.notes))
    prompt_id = comfy.context()[0]
    runner = Runner(load_settings(), max_concurrent=max_concurrent, on_event=status.event, validate=codec.decode,
                    prompt_id=prompt_id)
    ticker = asyncio.ensure_future(status.ticker())
    try:
        results = await comfy.until_interrupted(runner.run(jobs))
    except E.Interrupted:
        status.show("cancelled; a run already sent may still finish and bill — re-queue to collect it")
        raise
    except E.RunflowError as exc:
        status.show(f"error: {exc.message}")
        raise
    finally:
        ticker.cancel()
    failed = [r for r in results if r.error is not None]
    spent = runner.stats["spent_usd"]
    hits = runner.stats["cache_hits"]
    summary = f"done · spent ${spent:.2f}" + (f" · {hits} from cache — $0.00" if hits else "")
    if hits == len(results):
        summary = "from cache — $0.00"
    if failed:
        status.show(f"{len(failed)} of {len(results)} failed · " + summary)
        if len(results) == 1:
            raise failed[0].error
        names = "; ".join(f"{r.spec.label}: {r.error.message}" for r in failed[:4])
        more = f" (+{len(failed) - 4} more)" if len(failed) > 4 else ""
        raise E.PartialFailure(f"{len(failed)} of {len(results)} Runflow runs failed — {names}{more}. The "
                               f"{len(results) - len(failed)} that succeeded are cached: re-queue to re-run only "
                               "the failed ones.", failures={r.spec.label: r.error for r in failed})
    status.show(summary)
    return results, status


async def _outputs(results: list[ItemResult]) -> tuple:
    async def pixels(r: ItemResult):
        return r.decoded if r.decoded is not None else await codec.decode_async(r.data)  # off the event loop

    arrays = await asyncio.gather(*(pixels(r) for r in results))
    batch, note = await asyncio.to_thread(codec.fit_batch, list(arrays))
    urls = "\n".join(r.url or "" for r in results)
    info = json.dumps([{"label": r.spec.label, "pose": r.spec.pose, **r.info} for r in results], indent=1)
    return batch, urls, info, note


async def _ui(batch, results: list[ItemResult], note: str | None) -> dict:
    spent = sum(float(r.info.get("cost") or 0) for r in results if not r.from_cache)
    return {"images": await asyncio.to_thread(comfy.preview_images, batch),
            "runflow": [{"labels": [r.spec.label for r in results], "from_cache": sum(r.from_cache for r in results),
                         "spent_usd": round(spent, 2), "session_total_usd": round(SESSION["spent_usd"], 2),
                         "cost_line": cost_line(len(results) - sum(r.from_cache for r in results),
                                                sum(r.from_cache for r in results)),
                         "note": note}]}


class RunflowMultiAngles:
    """Re-render the subject from another camera pose with Runflow's Multi Angles model ($0.20 per image)."""

    DESCRIPTION = ("Re-renders the subject of an image from another camera pose (8 views × 4 angles × 3 shots) with "
                   "Runflow's Multi Angles model. $0.20 per run; each batch item is one run. Results are cached on "
                   "disk: re-queueing the same inputs costs $0.00.")
    CATEGORY = CATEGORY
    FUNCTION = "execute"
    RETURN_TYPES = ("IMAGE", "STRING", "STRING")
    RETURN_NAMES = ("image", "urls", "run_info")
    OUTPUT_TOOLTIPS = ("The re-rendered image(s), one per input batch item, in order.",
                       "Result URL(s), one per line (they expire; the images are cached locally).",
                       "Run info as JSON, one object per item: run_id, seed, timing, nsfw_detected, duration_ms, cost.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"view": (list(VIEWS), {"default": DEFAULT_VIEW, "tooltip": TOOLTIPS["view"]}),
                         **_pose_inputs()},
            "optional": {**_source_inputs(),
                         "callback_url": ("STRING", {"default": "", "tooltip": TOOLTIPS["callback_url"]}),
                         "metadata": ("STRING", {"default": "", "multiline": True, "tooltip": TOOLTIPS["metadata"]})},
        }

    async def execute(self, view, angle, shot, prompt, match_input_aspect, aspect_ratio, seed, image=None,
                      image_url="", upload_format=None, callback_url="", metadata=""):
        spec = JobSpec(view=view, angle=angle, shot=shot, prompt=prompt or "", match_input_aspect=bool(match_input_aspect),
                       aspect_ratio=aspect_ratio, seed=int(seed), callback_url=(callback_url or "").strip() or None,
                       metadata=parse_metadata(metadata), label=view)
        sources = await _sources(image, image_url, upload_format or codec.UPLOAD_FORMATS[0])
        many = len(sources) > 1
        jobs = [(src, dataclasses.replace(spec, label=f"#{i + 1} {view}" if many else view))
                for i, src in enumerate(sources)]
        results, status = await _execute(jobs, title="Runflow", max_concurrent=4)
        batch, urls, info, note = await _outputs(results)
        if note:
            status.notes.append(note)
            status.show()
        return {"ui": await _ui(batch, results, note), "result": (batch, urls, info)}


class RunflowMultiAnglesTurnaround:
    """Many views of one subject at once: one upload, concurrent runs, cached results."""

    DESCRIPTION = ("Renders several views of the same subject at once (default: all 8, in the model page's order) "
                   "with Runflow's Multi Angles model: one upload, runs in parallel, $0.20 per view, cached views cost "
                   "$0.00. Outputs the views as a batch plus one label per view.")
    CATEGORY = CATEGORY
    FUNCTION = "execute"
    RETURN_TYPES = ("IMAGE", "STRING", "STRING", "STRING", "IMAGE")
    RETURN_NAMES = ("images", "labels", "urls", "run_info", "image_list")
    OUTPUT_IS_LIST = (False, True, False, False, True)
    OUTPUT_TOOLTIPS = ("All views as one batch, in the order of the views input (model-page order).",
                       "One label per view (the view name), as a list: use it for captions or file names.",
                       "Result URLs, one per line.", "Run info as JSON, one object per view.",
                       "The same views as a list of single images (pair it with labels, e.g. SaveImage per view).")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"views": ("STRING", {"default": ", ".join(VIEWS), "multiline": False,
                                              "tooltip": "Views to render, comma-separated exact names (or all). "
                                                         "Each view is one $0.20 run."}),
                         **_pose_inputs(),
                         "max_concurrent": ("INT", {"default": 8, "min": 1, "max": 16,
                                                    "tooltip": "How many runs go out at once."})},
            "optional": _source_inputs(),
        }

    async def execute(self, views, angle, shot, prompt, match_input_aspect, aspect_ratio, seed, max_concurrent=8,
                      image=None, image_url="", upload_format=None):
        chosen = parse_views(views)
        base = dict(angle=angle, shot=shot, prompt=prompt or "", match_input_aspect=bool(match_input_aspect),
                    aspect_ratio=aspect_ratio, seed=int(seed))
        specs = [JobSpec(view=v, label=v, **base) for v in chosen]
        sources = await _sources(image, image_url, upload_format or codec.UPLOAD_FORMATS[0])
        many = len(sources) > 1
        jobs = [(src, dataclasses.replace(spec, label=f"#{i + 1} {spec.view}" if many else spec.view))
                for i, src in enumerate(sources) for spec in specs]
        results, status = await _execute(jobs, title="Runflow turnaround", max_concurrent=max_concurrent)
        batch, urls, info, note = await _outputs(results)
        if note:
            status.notes.append(note)
            status.show()
        labels = [r.spec.label for r in results]
        singles = [batch[i:i + 1] for i in range(batch.shape[0])]
        return {"ui": await _ui(batch, results, note), "result": (batch, labels, urls, info, singles)}


class RunflowContactSheet:
    """A labelled grid of a batch of images (e.g. a turnaround's views). Local and free: no Runflow call."""

    DESCRIPTION = "Lays a batch of images out as one labelled grid, e.g. the views of a turnaround. Free, local."
    CATEGORY = CATEGORY
    FUNCTION = "execute"
    INPUT_IS_LIST = True  # labels arrive as the Turnaround's list output, one per image
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("sheet",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"images": ("IMAGE", {"tooltip": "Images to lay out (a batch, or a list of batches)."}),
                         "columns": ("INT", {"default": 4, "min": 1, "max": 16}),
                         "cell_size": ("INT", {"default": 384, "min": 64, "max": 2048, "step": 32,
                                               "tooltip": "Each image is fitted into a square of this many px."})},
            "optional": {"labels": ("STRING", {"forceInput": True,
                                               "tooltip": "One caption per image (connect the Turnaround's labels)."})},
        }

    def execute(self, images, columns, cell_size, labels=None):
        from ..core.sheet import contact_sheet

        arrays = [a for batch in images for a in codec.image_items(batch)]
        flat = [str(x) for x in (labels or [])]
        if len(flat) == 1 and len(arrays) > 1 and "\n" in flat[0]:  # a newline-joined string works too
            flat = flat[0].splitlines()
        grid = contact_sheet(arrays, flat, columns=int(columns[0]), cell=int(cell_size[0]))
        return (codec.to_tensor([grid]),)


NODE_CLASS_MAPPINGS = {
    "RunflowMultiAngles": RunflowMultiAngles,
    "RunflowMultiAnglesTurnaround": RunflowMultiAnglesTurnaround,
    "RunflowContactSheet": RunflowContactSheet,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RunflowMultiAngles": "Runflow Multi Angles",
    "RunflowMultiAnglesTurnaround": "Runflow Multi Angles Turnaround",
    "RunflowContactSheet": "Runflow Contact Sheet",
}
