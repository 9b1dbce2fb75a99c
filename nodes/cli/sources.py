"""What to render: files, folders (recursive, image files only, stable order), a URL, or a CSV manifest.

Everything is checked here, before anything is created: a manifest's bad rows are reported with their line numbers
and, unless the user asks to skip them, the job stops with nothing spent. Pixels are loaded later, a window at a time
(plan.py), so memory does not grow with the number of sources.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..core.spec import check_image_url
from ..runflow import errors as E
from ..runflow.contract import MAX_PROMPT_LENGTH
from .args import pose_grid, slug

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
COLUMNS = ("source", "views", "angles", "shots", "prompt", "name")
SOURCE_ALIASES = ("source", "path", "url", "image", "image_url")


@dataclass(frozen=True)
class Entry:
    """One source and the poses it gets. ``name`` is unique in the job: it names the output folder."""

    name: str
    poses: tuple[tuple[str, str, str], ...]
    prompt: str = ""
    path: Path | None = None
    url: str | None = None
    line: int | None = None  # manifest line, for messages


@dataclass(frozen=True)
class BadRow:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ManifestError(E.InputError):
    """A manifest with bad rows (``rows``), refused before anything was created."""

    def __init__(self, path: Path, rows: list[BadRow]):
        shown = "\n".join(f"  {path}:{r}" for r in rows[:50])
        more = f"\n  … and {len(rows) - 50} more" if len(rows) > 50 else ""
        super().__init__(f"{path}: {len(rows)} bad row{'s' if len(rows) != 1 else ''}; nothing was created:\n"
                         f"{shown}{more}\nfix them, or pass --skip-bad-rows to render the good rows only")
        self.rows = rows


def image_files(path: Path) -> list[Path]:
    """A file as given, or a folder's image files, recursively, sorted by relative path (stable across runs)."""
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        if not found:
            raise E.InputError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return sorted(found, key=lambda p: p.relative_to(path).as_posix())
    if not path.exists():
        raise E.InputError(f"{path}: no such file")
    return [path]


def check_image(path: Path) -> None:
    """Readable as an image (header only: cheap), else InputError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - reading the header is the check
    except FileNotFoundError:
        raise E.InputError(f"{path}: no such file") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise E.InputError(f"{path}: not a readable image ({exc})") from None


class Names:
    """Output folder names: the file stem (slugged), made unique with -2, -3 … in job order."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, wanted: str) -> str:
        base = slug(wanted) or "source"
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}-{n}"
        self.used.add(name)
        return name


def from_args(paths: list[Path], url: str | None, poses: list, prompt: str) -> list[Entry]:
    names = Names()
    if url:
        return [Entry(names("url"), tuple(poses), prompt,
                      url=check_image_url("--image-url", url, instead="give the file as the image argument instead"))]
    entries = []
    for given in paths:
        root = given if given.is_dir() else None
        for path in image_files(given):
            check_image(path)
            stem = path.relative_to(root).with_suffix("").as_posix() if root else path.stem
            entries.append(Entry(names(stem), tuple(poses), prompt, path=path))
    return entries


def from_manifest(path: Path, defaults: dict, *, skip_bad: bool, warn) -> list[Entry]:
    """Rows of a CSV manifest; bad rows raise ManifestError (or are reported through ``warn`` and skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise E.InputError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise E.InputError(f"{path}: cannot read the manifest ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    src_col = next((h for h in SOURCE_ALIASES if h in header), None)
    if src_col is None:
        raise E.InputError(f"{path}: line 1 must be a header with a 'source' column (a path or an https URL); "
                           f"optional columns: {', '.join(COLUMNS[1:])}")
    unknown = [h for h in header if h and h not in COLUMNS and h not in SOURCE_ALIASES]
    if unknown:
        raise E.InputError(f"{path}: line 1: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
    names, entries, bad = Names(), [], []
    for raw in reader:
        line = reader.line_num
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        try:
            entries.append(_row(row, src_col, path.parent, defaults, names, line))
        except E.InputError as exc:
            bad.append(BadRow(line, exc.message))
    if bad and not skip_bad:
        raise ManifestError(path, bad)
    for r in bad:
        warn(f"{path}:{r} (skipped)")
    if not entries:
        raise E.InputError(f"{path}: no usable rows; nothing to render")
    return entries


def _row(row: dict, src_col: str, base: Path, defaults: dict, names: Names, line: int) -> Entry:
    source = row.get(src_col, "")
    if not source:
        raise E.InputError(f"empty {src_col}")
    poses = pose_grid(row.get("views") or defaults["views"], row.get("angles") or defaults["angles"],
                      row.get("shots") or defaults["shots"], default_angle=defaults["angle"],
                      default_shot=defaults["shot"])
    prompt = row.get("prompt") or defaults["prompt"]
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise E.InputError(f"prompt is {len(prompt)} characters; keep it under {MAX_PROMPT_LENGTH}")
    if "://" in source or source.lower().startswith(("http:", "https:")):
        url = check_image_url(src_col, source, instead="put the file's path in this column instead")
        stem = row.get("name") or Path(url.split("?")[0]).stem or "url"
        return Entry(names(stem), tuple(poses), prompt, url=url, line=line)
    path = Path(source).expanduser()
    path = path if path.is_absolute() else base / path
    if path.is_dir():
        raise E.InputError(f"{source} is a folder; a manifest row names one image")
    check_image(path)
    return Entry(names(row.get("name") or path.stem), tuple(poses), prompt, path=path, line=line)
