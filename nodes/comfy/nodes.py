"""The ComfyUI nodes (classic V1 definitions with an async FUNCTION, so independent nodes run concurrently).

Node ids, input names and combo strings are a public API: saved workflows store them. Never rename.
"""

from __future__ import annotations

import time

from ..core import batch, codec, sources
from ..core.reroll import REROLL_TOOLTIP, TAKE_TOOLTIP, reroll_note, reroll_specs
from ..core.session import process_session
from ..core.spec import JobSpec, parse_metadata, parse_views
from ..runflow.contract import (
    ANGLES,
    ASPECT_RATIOS,
    DEFAULT_ANGLE,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_SHOT,
    DEFAULT_VIEW,
    SHOTS,
    TOOLTIPS,
    VIEWS,
)
from . import pose_nodes
from .execute import execute, jobs_for
from .pose_nodes import CAMERA_TOOLTIP, POSE_TOOLTIP, POSES_TOOLTIP, node_pose, pose_info, turnaround_poses

CATEGORY = "Runflow"
SEED_MAX = 2**31 - 1
SEED_TOOLTIP = ("Not sent to Runflow: it picks a slot in the result cache. Same inputs + same seed = the cached result "
                "for $0.00; change it to pay for a fresh render.")
FORMAT_TOOLTIP = ("How the image is encoded for upload. auto = high-quality JPEG (about 5x smaller and faster than "
                  "PNG, visually lossless); png = lossless.")


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


PREVIEW_TOOLTIP = ("Also show the result(s) on this node. Off by default: connect a Preview Image or Save Image node "
                   "to see them there (a second copy here makes the node very tall).")


def _source_inputs() -> dict:
    # "advanced": folded away on a new node (the frontend's Show Advanced); older frontends only get it through the
    # pack's web extension, which sets it on the widgets too.
    return {
        "image": ("IMAGE", {"tooltip": TOOLTIPS["image"]}),
        "image_url": ("STRING", {"default": "", "tooltip": TOOLTIPS["image_url"]}),
        "upload_format": (list(codec.UPLOAD_FORMATS), {"default": codec.UPLOAD_FORMATS[0], "tooltip": FORMAT_TOOLTIP,
                                                       "advanced": True}),
    }


def _preview_input() -> dict:
    # Always the LAST input: a saved workflow stores widget values by position, so a new input goes at the end.
    return {"show_preview": ("BOOLEAN", {"default": False, "tooltip": PREVIEW_TOOLTIP, "advanced": True})}


def _result(out, show_preview: bool, result: tuple) -> dict:
    ui = dict(out.ui)
    if not show_preview:
        ui.pop("images", None)
    return {"ui": ui, "result": result}


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
                         "callback_url": ("STRING", {"default": "", "tooltip": TOOLTIPS["callback_url"],
                                                     "advanced": True}),
                         "metadata": ("STRING", {"default": "", "multiline": True, "tooltip": TOOLTIPS["metadata"],
                                                 "advanced": True}),
                         "pose": ("STRING", {"forceInput": True, "tooltip": POSE_TOOLTIP}),
                         "camera_info": ("LOAD3D_CAMERA", {"tooltip": CAMERA_TOOLTIP}),
                         **_preview_input()},
        }

    async def execute(self, view, angle, shot, prompt, match_input_aspect, aspect_ratio, seed, image=None,
                      image_url="", upload_format=None, callback_url="", metadata="", pose=None, camera_info=None,
                      show_preview=False):
        began = time.monotonic()
        reading = node_pose(view, angle, shot, pose, camera_info)  # before any upload: bad input costs nothing
        p = reading.pose
        spec = JobSpec(view=p.view, angle=p.angle, shot=p.shot, prompt=prompt or "",
                       match_input_aspect=bool(match_input_aspect), aspect_ratio=aspect_ratio, seed=int(seed),
                       callback_url=(callback_url or "").strip() or None, metadata=parse_metadata(metadata),
                       label=p.view)
        srcs = await sources.from_inputs(image, image_url, upload_format or codec.UPLOAD_FORMATS[0],
                                         memo=process_session().sources)
        notes, extra = pose_info([reading])
        out = await execute(jobs_for(srcs, [spec]), title="Runflow", max_concurrent=4, notes=notes, extra=extra,
                            show_preview=bool(show_preview), began=began)
        return _result(out, show_preview, (out.batch, out.urls, out.info))


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
            "required": {"views": ("STRING", {"default": "all", "multiline": False,
                                              "tooltip": "Views to render, comma-separated exact names (or all). "
                                                         "Each view is one $0.20 run."}),
                         **_pose_inputs(),
                         "max_concurrent": ("INT", {"default": 8, "min": 1, "max": 16, "advanced": True,
                                                    "tooltip": "How many runs go out at once."})},
            "optional": {**_source_inputs(),
                         "pose": ("STRING", {"forceInput": True, "tooltip": POSES_TOOLTIP}),
                         "reroll": ("STRING", {"default": "", "tooltip": REROLL_TOOLTIP, "advanced": True}),
                         "take": ("INT", {"default": 0, "min": 0, "max": 999, "tooltip": TAKE_TOOLTIP,
                                          "advanced": True}),
                         **_preview_input()},
        }

    async def execute(self, views, angle, shot, prompt, match_input_aspect, aspect_ratio, seed, max_concurrent=8,
                      image=None, image_url="", upload_format=None, pose=None, reroll="", take=0,
                      show_preview=False):
        began = time.monotonic()
        readings = turnaround_poses(parse_views(views), angle, shot, pose)  # a connected pose list replaces views
        base = dict(prompt=prompt or "", match_input_aspect=bool(match_input_aspect), aspect_ratio=aspect_ratio,
                    seed=int(seed))
        specs = reroll_specs([r.pose for r in readings], base, reroll, take)
        srcs = await sources.from_inputs(image, image_url, upload_format or codec.UPLOAD_FORMATS[0],
                                         memo=process_session().sources)
        notes, extra = pose_info(readings)
        notes += [n for n in (reroll_note(specs),) if n]
        out = await execute(jobs_for(srcs, specs), title="Runflow turnaround", max_concurrent=max_concurrent,
                            notes=notes, extra=extra, show_preview=bool(show_preview), began=began)
        labels = [r.spec.label for r in out.results]
        singles = [out.batch[i:i + 1] for i in range(out.batch.shape[0])]
        return _result(out, show_preview, (out.batch, labels, out.urls, out.info, singles))


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
                         "columns": ("INT", {"default": 4, "min": 1, "max": 16,
                                             "tooltip": "Images per row (8 views with 4 columns = 2 rows)."}),
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
        return (batch.to_tensor([grid]),)


NODE_CLASS_MAPPINGS = {
    "RunflowMultiAngles": RunflowMultiAngles,
    "RunflowMultiAnglesTurnaround": RunflowMultiAnglesTurnaround,
    "RunflowContactSheet": RunflowContactSheet,
    **pose_nodes.NODE_CLASS_MAPPINGS,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    # The price is in the title: visible in every renderer, also where the pack's picker (with its cost line) is not
    # drawn (Vue nodes on frontend 1.27).
    "RunflowMultiAngles": "Runflow Multi Angles ($0.20/run)",
    "RunflowMultiAnglesTurnaround": "Runflow Multi Angles Turnaround ($0.20/view)",
    "RunflowContactSheet": "Runflow Contact Sheet",
    **pose_nodes.NODE_DISPLAY_NAME_MAPPINGS,
}
