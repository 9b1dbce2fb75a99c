"""What a person reviews: OUT/<source>/<view>_<angle>_<shot>.<ext> written as each result arrives, a contact sheet
and a turntable per source once its poses are in, an index.html overview and a summary (JSON and CSV).

Results are streamed: each image is written and dropped; its summary row goes to a log on disk, read back once at the
end, so nothing grows in memory with the number of renders.
Sheets and turntables are built on a worker thread so the event loop keeps polling.
"""

from __future__ import annotations

import concurrent.futures
import csv
import html
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.runner import ItemResult
from ..runflow import errors as E
from ..runflow.contract import ANGLES, SHOTS, VIEWS
from .args import slug
from .sources import Entry

log = logging.getLogger(__name__)
SHEET, TURNTABLE = "contact_sheet.png", "turntable.webp"  # turntable: core.turntable.NAME
ROWS_LOG = ".rows.jsonl"
CELL = 256  # px per image in sheets and turntables
FIELDS = ("source", "input", "pose", "view", "angle", "shot", "file", "run_id", "cost_usd", "status", "error")


@dataclass
class Row:
    source: str
    input: str
    pose: str
    view: str
    angle: str
    shot: str
    file: str = ""
    run_id: str = ""
    cost_usd: float = 0.0
    status: str = ""  # done | from cache | failed | not created
    error: str = ""


def extension(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def error_text(error: E.RunflowError | None) -> str:
    """What a tile and the summary say: Runflow's failure code and message for a failed run, else our message."""
    if isinstance(error, E.RunFailed) and (error.failure_code or error.failure_message):
        return f"{error.failure_code or 'failed'}: {error.failure_message or 'no message'}"
    return error.message if error is not None else "no result"


def pose_stem(view: str, angle: str, shot: str) -> str:
    return f"{slug(view)}_{slug(angle)}_{slug(shot)}"


def status_of(res: ItemResult) -> str:
    if res.error is None:
        return "from cache" if res.from_cache else "done"
    return "not created" if isinstance(res.error, E.SpendLimitError) else "failed"


class Review:
    """Collects results as they arrive (``add``), then writes the overview (``finish``)."""

    def __init__(self, out: Path, echo=None):
        self.out = out
        self.echo = echo or (lambda path: None)
        self._log = None  # OUT/.rows.jsonl: one line per render, read back once at the end (not kept in memory)
        self._open: dict[str, list[Row]] = {}  # rows of sources whose poses are not all in yet
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="review")
        self._pending: list[concurrent.futures.Future] = []
        self.sources: dict[str, str] = {}  # name -> input, in job order

    def expect(self, entries: list[Entry]) -> None:
        """The job's sources, in job order (the overview and summary follow it, not the order results arrive in)."""
        self.sources = {e.name: str(e.path or e.url) for e in entries}

    def add(self, entry: Entry, pose: tuple[str, str, str], res: ItemResult) -> Row:
        view, angle, shot = pose
        row = Row(entry.name, str(entry.path or entry.url), f"{view} · {angle} · {shot}", view, angle, shot,
                  run_id=str(res.info.get("run_id") or getattr(res.error, "run_id", None) or ""), status=status_of(res))
        if res.data is not None:
            folder = self.out / entry.name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{pose_stem(*pose)}.{extension(res.data)}"
            path.write_bytes(res.data)
            row.file = path.relative_to(self.out).as_posix()
            row.cost_usd = 0.0 if res.from_cache else float(res.info.get("cost") or 0.0) or _price()
            self.echo(path)
        else:
            row.error = error_text(res.error)
        if self._log is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log = (self.out / ROWS_LOG).open("w", encoding="utf-8")
        self._log.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
        self.sources.setdefault(entry.name, row.input)
        rows = self._open.setdefault(entry.name, [])
        rows.append(row)
        if len(rows) == len(entry.poses):
            del self._open[entry.name]
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._pool.submit(self._per_source, entry.name, rows))
        return row

    def _per_source(self, name: str, rows: list[Row]) -> None:
        try:
            write_source_review(self.out, name, rows)
        except Exception:  # noqa: BLE001 - a sheet that cannot be drawn must not lose the renders
            log.exception("review: could not draw the sheet/turntable of %s", name)

    def rows(self) -> list[Row]:
        """Every render's row, in job order (read back from the rows log: during the job they live on disk)."""
        if self._log is None:
            return []
        self._log.close()
        with (self.out / ROWS_LOG).open(encoding="utf-8") as fh:
            rows = [Row(**json.loads(line)) for line in fh if line.strip()]
        order = {name: i for i, name in enumerate(self.sources)}
        rows.sort(key=lambda r: (order[r.source], VIEWS.index(r.view), ANGLES.index(r.angle), SHOTS.index(r.shot)))
        return rows

    def finish(self, rows: list[Row], totals: dict) -> Path:
        for fut in self._pending:
            fut.result()
        self._pool.shutdown(wait=True)
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / "summary.json").open("w", encoding="utf-8") as fh:
            json.dump({"totals": totals, "renders": [asdict(r) for r in rows]}, fh, indent=1, ensure_ascii=False)
        with (self.out / "summary.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(asdict(r) for r in rows)
        index = self.out / "index.html"
        index.write_text(render_index(rows, self.sources, totals, self.out), encoding="utf-8")
        (self.out / ROWS_LOG).unlink(missing_ok=True)
        return index


def _price() -> float:
    from ..runflow.contract import PRICE_PER_RUN_USD

    return PRICE_PER_RUN_USD


def write_source_review(out: Path, name: str, rows: list[Row]) -> None:
    """The source's contact sheet (every pose it got, in view order) and turntable (core.turntable: the same frames in
    orbit order, one orbit per angle/shot), both from box-reduced copies of the files just written."""
    import numpy as np
    from PIL import Image

    from ..core import turntable
    from ..core.sheet import contact_sheet

    done = sorted((r for r in rows if r.file),
                  key=lambda r: (VIEWS.index(r.view), ANGLES.index(r.angle), SHOTS.index(r.shot)))
    if not done:
        return
    images = []
    for r in done:
        with Image.open(out / r.file) as im:
            im = im.convert("RGB")
            factor = max(1, min(im.size) // CELL)
            images.append(np.asarray(im.reduce(factor) if factor > 1 else im))  # box-reduce first: cheap
    labels = [r.view if len({(x.angle, x.shot) for x in done}) == 1 else f"{r.view}, {r.angle}, {r.shot}"
              for r in done]
    Image.fromarray(contact_sheet(images, labels, cell=CELL)).save(out / name / SHEET)
    if len({r.view for r in done}) > 1:
        order = turntable.orbit_order([(r.view, r.angle, r.shot) for r in done])
        turntable.write_turntable([images[i] for i in order], out / name / TURNTABLE)


CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}.totals{color:#555;margin-bottom:20px}
section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin-bottom:16px}
section h2{font-size:16px;margin:0 0 8px;display:flex;gap:12px;align-items:baseline}
section h2 small{font-weight:normal;color:#777}section h2 a{font-size:13px;font-weight:normal}
.grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:120px}
figure img{width:120px;height:120px;object-fit:contain;background:#eee;border-radius:4px;display:block}
figcaption{font-size:11px;color:#555;margin-top:2px;overflow-wrap:anywhere}
.fail{width:120px;height:120px;background:#fdecea;border:1px solid #e0a39b;border-radius:4px;color:#a12a1c;
font-size:10px;padding:5px;box-sizing:border-box;overflow:auto;overflow-wrap:anywhere}
.fail b{display:block;margin-bottom:3px;font-size:11px}
.turntable img{outline:2px solid #3b6fd8;outline-offset:-2px}.turntable figcaption{color:#3b6fd8;font-weight:bold}
.bad{color:#a12a1c;font-weight:bold}"""


def _short(view: str) -> str:
    return view.removesuffix(" view")


def render_index(rows: list[Row], sources: dict[str, str], totals: dict, out: Path) -> str:
    e = html.escape
    by_source: dict[str, list[Row]] = {name: [] for name in sources}
    for r in rows:
        by_source[r.source].append(r)
    failed = sum(1 for r in rows if not r.file)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Runflow catalog: {len(sources)} sources"
             f"</title><style>{CSS}</style></head><body><h1>Runflow Multi Angles catalog</h1>",
             f"<div class='totals'>{len(sources)} sources · {len(rows)} renders · "
             f"{totals.get('created', 0)} runs created · {totals.get('from_cache', 0)} from cache · spent "
             f"${totals.get('spent_usd', 0):.2f}" + (f" · <span class='bad'>{failed} failed</span>" if failed else "")
             + " · <a href='summary.csv'>summary.csv</a> · <a href='summary.json'>summary.json</a></div>"]
    for name, items in by_source.items():
        bad = sum(1 for r in items if not r.file)
        links = [f"<a href='{e(name)}/{f}'>{label}</a>" for f, label in ((SHEET, "contact sheet"),
                 (TURNTABLE, "turntable")) if (out / name / f).exists()]
        parts.append(f"<section><h2>{e(name)} <small>{e(sources[name])}</small>"
                     + (f"<span class='bad'>{bad} failed</span>" if bad else "") + " ".join(links) + "</h2>"
                     "<div class='grid'>")
        if (out / name / TURNTABLE).exists():
            parts.append(f"<figure class='turntable'><img src='{e(name)}/{TURNTABLE}' alt='turntable'>"
                         "<figcaption>turntable ⟳</figcaption></figure>")
        varied = len({(r.angle, r.shot) for r in items}) > 1
        for r in items:
            caption = e(_short(r.view) + (f", {r.angle}, {r.shot}" if varied else ""))
            tip = e(r.pose + (f" · run {r.run_id}" if r.run_id else "") + (f" · {r.error}" if r.error else ""))
            if r.file:
                parts.append(f"<figure title='{tip}'><a href='{e(r.file)}'><img loading='lazy' src='{e(r.file)}' "
                             f"alt='{e(r.pose)}'></a><figcaption>{caption}</figcaption></figure>")
            else:
                parts.append(f"<figure title='{tip}'><div class='fail'><b>✗ {e(r.status)}</b>{e(r.error)}</div>"
                             f"<figcaption>{caption}</figcaption></figure>")
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)
