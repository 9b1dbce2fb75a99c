"""The one execute path of the Runflow nodes: sources -> runs (with status, progress, Cancel) -> outputs + preview."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

from ..core import postprocess, receipts
from ..core.callbacks import callback_host
from ..core.config import load_settings
from ..core.runner import ItemResult, Runner
from ..core.session import process_session
from ..core.sources import Source
from ..core.spec import JobSpec
from ..core.spend import cost_line
from ..runflow import errors as E
from . import adapter
from .status import Status

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Outcome:
    """What a node returns: the batch, per-item results, URLs, run info, and the ComfyUI ``ui`` dict."""

    batch: object
    results: list[ItemResult]
    urls: str
    info: str
    ui: dict


def jobs_for(sources: list[Source], specs: list[JobSpec]) -> list[tuple[Source, JobSpec]]:
    """Every spec for every source; labels get '#n ' when there are several sources."""
    many = len(sources) > 1
    return [(src, dataclasses.replace(spec, label=f"#{i + 1} {spec.label or spec.view}" if many
                                      else spec.label or spec.view))
            for i, src in enumerate(sources) for spec in specs]


async def execute(jobs: list[tuple[Source, JobSpec]], *, title: str, max_concurrent: int,
                  notes: list[str] | None = None, extra: dict[str, dict] | None = None,
                  show_preview: bool = True, began: float | None = None) -> Outcome:
    """Run jobs with status text, progress and Cancel; raise one clear error naming what failed.

    ``notes``: more status notes (e.g. which pose a connected pose snapped to); ``extra``: run_info fields per
    pose (``JobSpec.pose``); ``show_preview``: write the node previews (ComfyUI's ``ui.images``) or not;
    ``began``: when the node started (time.monotonic()), for the phase timings it reports (``timing_ms`` in its ui
    output, and the log)."""
    prepared = time.monotonic()
    began = prepared if began is None else began
    session = process_session()
    status = Status(len(jobs), title, session.totals)
    status.notes = list(dict.fromkeys([*(n for src, _ in jobs for n in src.notes), *(notes or [])]))
    settings = load_settings()
    status.notes.extend(callback_notes(jobs, settings))
    preview = adapter.preview_writer() if show_preview else None  # not shown = not written
    filler = postprocess.BatchFiller(len(jobs))  # the IMAGE batch, filled as each result comes in
    kinds = [result_kind(src, spec) for src, spec in jobs]
    guess = session.result_shapes.guess(kinds)
    runner = Runner(settings, max_concurrent=max_concurrent, on_event=status.event,
                    validate=postprocess.decoder(preview), prompt_id=adapter.context()[0], session=session,
                    require_prompt=adapter.inside_comfyui(), place=filler.put)
    ticker = asyncio.ensure_future(status.ticker())
    if guess is not None:  # its memory made ready while the runs are in flight (a Future, not a task: not awaited)
        asyncio.get_running_loop().run_in_executor(None, _warm, filler, guess)
    try:
        results = await adapter.until_interrupted(runner.run(jobs))
    except E.Interrupted:
        notice = status.cancelled()
        if not status.sent():
            adapter.raise_comfy_interrupt()  # nothing at Runflow: ComfyUI's quiet "interrupted"
        # Runs may still bill: say so where the user looks (the error toast / dialog), not only on the node.
        adapter.clear_interrupt()
        raise E.Interrupted(notice) from None
    except E.RunflowError as exc:
        status.show(("failed", exc.message))
        raise
    finally:
        ticker.cancel()
        filler.stop()
        await asyncio.wait([ticker])  # gone before we return: no task left behind, even on a path that never yields
    results_in = time.monotonic()
    for kind, r in zip(kinds, results, strict=True):
        if r.decoded is not None:
            session.result_shapes.record(kind[0], r.decoded.pixels.shape)
    status.receipt = _receipt(results, runner)
    _raise_failures(results, status, runner)
    out = await postprocess.assemble([r.decoded for r in results], preview, filler=filler)
    if out.note:
        status.notes.append(out.note)
        status.show()
    timing = {"prepare": (prepared - began) * 1000, "runs": (results_in - prepared) * 1000,
              "finish": (time.monotonic() - results_in) * 1000}
    log.info("Runflow: %d images; prepare %.0f ms, runs %.0f ms, finish %.0f ms; post-processing %.0f ms per image",
             len(results), timing["prepare"], timing["runs"], timing["finish"], out.ms_per_image)
    urls = "\n".join(r.url or "" for r in results)
    extra = extra or {}
    info = json.dumps([{"label": r.spec.label, "pose": r.spec.pose, **({"take": r.spec.take} if r.spec.take else {}),
                        **extra.get(r.spec.pose, {}), **r.info} for r in results], indent=1)
    ui = _ui(out, results, session.totals.spent_usd)
    ui["runflow"][0].update(receipt=status.receipt, notes=status.notes,
                            timing_ms={k: round(v, 1) for k, v in timing.items()}, batch_ahead=filler.ahead)
    return Outcome(out.tensor, results, urls, info, ui)


def result_kind(src: Source, spec: JobSpec) -> tuple[tuple, tuple[int, int, int] | None]:
    """What a result's size depends on (source size, aspect settings), and the size to guess when nothing is known
    yet: the source's own when the output keeps its aspect (``prefault.ShapeMemory.guess``)."""
    kind = (src.size or src.identity, spec.match_input_aspect, None if spec.match_input_aspect else spec.aspect_ratio)
    return kind, ((*src.size, 3) if src.size and spec.match_input_aspect else None)


def _warm(filler: postprocess.BatchFiller, shape: tuple[int, ...]) -> None:
    try:
        filler.warm(shape)
    except Exception as exc:  # noqa: BLE001 - only a head start: without it the batch is allocated when results come
        log.warning("Runflow: could not allocate the %s batch ahead (%s); it is allocated when the results come",
                    "x".join(map(str, (filler.count, *shape))), exc)


def _receipt(results: list[ItemResult], runner: Runner) -> str:
    try:
        today = receipts.today(runner.ledger)
    except OSError:  # an unreadable ledger must not lose the result the user paid for
        today = None
    return receipts.run_receipt(results, today)


def callback_notes(jobs: list[tuple[Source, JobSpec]], settings) -> list[str]:
    """'callbacks → host' for every host a run's callback goes to (shown on the node whenever one is used)."""
    hosts = dict.fromkeys(h for _, spec in jobs
                          if (h := callback_host(spec.callback_url, settings.public_url, settings.webhook_secret)))
    return [f"callbacks → {h}" for h in hosts]


def _raise_failures(results: list[ItemResult], status: Status, runner: Runner) -> None:
    failed = [r for r in results if r.error is not None]
    if not failed:
        status.done(runner.stats.spent_usd, runner.stats.cache_hits, len(results))
        return
    if len(results) == 1:
        status.failed(1, 1, runner.stats.spent_usd, failed[0].error.message)
        raise failed[0].error
    status.failed(len(failed), len(results), runner.stats.spent_usd, "")
    names = "; ".join(f"{r.spec.label}: {r.error.message}" for r in failed[:4])
    more = f" (+{len(failed) - 4} more)" if len(failed) > 4 else ""
    raise E.PartialFailure(f"{len(failed)} of {len(results)} Runflow runs failed — {names}{more}. The "
                           f"{len(results) - len(failed)} that succeeded are cached: re-queue to re-run only "
                           "the failed ones.", failures={r.spec.label: r.error for r in failed})


def _ui(out: postprocess.Batch, results: list[ItemResult], session_total: float) -> dict:
    spent = sum(float(r.info.get("cost") or 0) for r in results if not r.from_cache)
    hits = sum(r.from_cache for r in results)
    return {"images": out.previews,
            "runflow": [{"labels": [r.spec.label for r in results], "from_cache": hits,
                         "spent_usd": round(spent, 2), "session_total_usd": round(session_total, 2),
                         "cost_line": cost_line(len(results) - hits, hits), "note": out.note,
                         "postprocess_ms_per_image": round(out.ms_per_image, 1)}]}
