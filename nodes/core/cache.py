"""Persistent result cache ("never pay twice"): result image bytes on disk, keyed by everything that was sent.

Output URLs expire, so the image itself is stored: one file per entry, ``root/ab/<key>.bin`` = one line of JSON
(meta, plus the sha256 and size of the image) + ``\n`` + the image bytes. One file, because then one atomic
``os.replace`` publishes an entry and a reader always sees one whole version of it: several processes (ComfyUI and
the CLI) can share a cache without locks. A read re-checks the sha256; a damaged file is a miss (and is deleted),
never a crash or a wrong image. LRU: a file's mtime is its last access (``os.utime`` on every hit).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "RUNFLOW_CACHE_DIR"
ENV_CACHE_MAX_MB = "RUNFLOW_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048
KEY_VERSION = 1  # bump to orphan every old entry if the meaning of a key ever changes

_KEY = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_TMP_PREFIX = ".tmp-"
_STALE_SECONDS = 3600  # a temp file this old is a crashed writer's leftover


def pixels_sha256(item: np.ndarray) -> str:
    """sha256 of a pixel array's dtype, shape and bytes: names the user's image independently of its encoding."""
    a = np.ascontiguousarray(item)
    h = hashlib.sha256(f"{a.dtype.str}:{'x'.join(map(str, a.shape))}\n".encode())
    h.update(a.tobytes() if a.size == 0 else a.data)  # a.data: no copy of a big image
    return h.hexdigest()


def cache_key(*, image_sha256: str | None, image_url: str | None, model: str, api_input: dict, seed: int,
              take: int = 0) -> str:
    """The cache key: sha256 of canonical JSON of model, image content (or URL), the API input, the seed and the
    re-roll take (only when > 0, so every key made before takes existed still names the same result).

    ``api_input`` is the exact ``input`` object sent to the API; its ``image_url`` is left out because it names
    one upload of the image, while ``image_sha256`` names its content. Nothing else enters the key.
    """
    if not image_sha256 and not image_url:
        raise ValueError("cache_key needs image_sha256 or image_url")
    doc = {
        "v": KEY_VERSION,
        "model": model,
        "image": image_sha256 or "url:" + image_url,
        "input": {k: v for k, v in api_input.items() if k != "image_url"},
        "seed": int(seed),
    }
    if take:
        doc["take"] = int(take)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    """$RUNFLOW_CACHE_DIR, else <pack user dir>/cache (ComfyUI's user dir, or $RUNFLOW_USER_DIR), else ~/.cache."""
    from .config import FALLBACK_USER_DIR, user_dir

    override = os.environ.get(ENV_CACHE_DIR)
    if override:
        return Path(override).expanduser()
    base = user_dir()  # never inside the pack folder, which updates replace
    return Path.home() / ".cache" / "runflow-multi-angles" if base == FALLBACK_USER_DIR else base / "cache"


def default_max_bytes() -> int:
    """Size cap from $RUNFLOW_CACHE_MAX_MB (MiB, default 2048; 0 stores nothing)."""
    raw = os.environ.get(ENV_CACHE_MAX_MB, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
        if mb < 0 or mb != mb:
            raise ValueError(raw)
    except ValueError:
        log.warning("%s=%r is not a size in MB; using %d", ENV_CACHE_MAX_MB, raw, DEFAULT_MAX_MB)
        mb = DEFAULT_MAX_MB
    return int(mb * 2**20)


@dataclass(frozen=True)
class CachedResult:
    """A cache hit: the stored image bytes and the meta saved with them."""

    data: bytes
    meta: dict


class ResultCache:
    """LRU disk cache of result image bytes with a size cap; safe to share between processes."""

    def __init__(self, root: Path | str | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.max_bytes = default_max_bytes() if max_bytes is None else int(max_bytes)

    def __repr__(self) -> str:
        return f"ResultCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.fullmatch(key):  # also keeps every path inside root
            raise ValueError(f"not a cache key: {key!r}")
        return self.root / key[:2] / f"{key}.bin"

    def __contains__(self, key: object) -> bool:
        try:
            return self._path(key).is_file()  # type: ignore[arg-type]
        except ValueError:
            return False

    def get(self, key: str) -> CachedResult | None:
        """The stored result for key (and mark it recently used), or None; a damaged entry is a miss."""
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                inode = os.fstat(f.fileno()).st_ino
                raw = f.read()
        except OSError:  # absent, evicted meanwhile, or unreadable
            return None
        hit = _parse(raw)
        if hit is None:
            log.warning("result cache: dropping damaged entry %s\u2026", key[:12])
            try:  # only the damaged version: another process may have replaced it with a good one meanwhile
                if os.stat(path).st_ino == inode:
                    _unlink(path)
            except OSError:
                pass
            return None
        self._touch(path)
        return hit

    def put(self, key: str, data: bytes, meta: dict) -> bool:
        """Store data under key with JSON-serialisable meta, then evict to the cap; False if it was not stored."""
        path = self._path(key)
        data = bytes(data)
        header = {"v": KEY_VERSION, "key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                  "meta": meta}
        # ensure_ascii: the header line can never contain a raw newline; TypeError here, before touching the disk
        line = json.dumps(header, ensure_ascii=True).encode("ascii") + b"\n"
        if len(line) + len(data) > self.max_bytes:
            log.info("result cache: %d bytes is over the %d-byte cap; not stored", len(data), self.max_bytes)
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, line + data)
            self._touch(path)
        except OSError as e:  # disk full, read-only, Windows sharing violation: the caller still has the result
            log.warning("result cache: could not store %s\u2026 (%s)", key[:12], e)
            return False
        self.evict()
        return True

    def evict(self) -> int:
        """Delete least-recently-used entries until the cache is under max_bytes; returns how many went."""
        entries = self._scan()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, key in sorted(entries):
            if total <= self.max_bytes:
                break
            self._remove(key)
            total -= size
            removed += 1
        return removed

    def clear(self) -> int:
        """Delete every entry; returns how many were removed. Other folders under root are left alone."""
        keys = {key for _, _, key in self._scan()}
        for key in keys:
            self._remove(key)
        for shard in self._shards():
            try:
                shard.rmdir()  # only if empty
            except OSError:
                pass
        return len(keys)

    def stats(self) -> dict:
        """entries, bytes on disk, max_bytes and root, for status lines and the settings panel."""
        entries = self._scan()
        return {"entries": len(entries), "bytes": sum(size for _, size, _ in entries),
                "max_bytes": self.max_bytes, "root": str(self.root)}

    # ---- internals ---------------------------------------------------------------------------------------------

    def _shards(self) -> list[Path]:
        try:
            return [Path(e.path) for e in os.scandir(self.root) if e.is_dir() and _SHARD.fullmatch(e.name)]
        except OSError:
            return []

    def _scan(self) -> list[tuple[int, int, str]]:
        """(last access ns, bytes, key) per entry; sweeps crashed writers' temp files on the way."""
        out, now = [], time.time()
        for shard in self._shards():
            try:
                names = [e.name for e in os.scandir(shard)]
            except OSError:
                continue
            for name in names:
                try:
                    st = os.stat(shard / name)
                except OSError:  # removed by another process since the listing
                    continue
                if name.startswith(_TMP_PREFIX):
                    if now - st.st_mtime > _STALE_SECONDS:
                        _unlink(shard / name)
                elif name.endswith(".bin") and _KEY.fullmatch(name[:-4]):
                    out.append((st.st_mtime_ns, st.st_size, name[:-4]))
        return out

    @staticmethod
    def _touch(path: Path) -> None:
        try:  # time_ns, not the filesystem's coarse clock: two quick accesses must still be ordered
            now = time.time_ns()
            os.utime(path, ns=(now, now))
        except OSError:
            pass  # read-only cache: LRU order is a nicety

    def _remove(self, key: str) -> None:
        _unlink(self._path(key))


def _parse(raw: bytes) -> CachedResult | None:
    """The entry in a file's bytes, or None if anything does not add up."""
    end = raw.find(b"\n", 0, 1 << 20)
    if end < 0:
        return None
    try:
        header = json.loads(raw[:end])
    except ValueError:
        return None
    data = raw[end + 1:]
    if (isinstance(header, dict) and isinstance(header.get("meta"), dict) and header.get("size") == len(data)
            and header.get("sha256") == hashlib.sha256(data).hexdigest()):
        return CachedResult(data, header["meta"])
    return None


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # in use on Windows, or gone: either way not ours to worry about now
        pass


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        for attempt in range(5):
            try:
                os.replace(tmp, path)
                return
            except PermissionError:  # Windows: a reader has the target open for a moment
                if attempt == 4:
                    raise
                time.sleep(0.02 * (attempt + 1))
    finally:
        _unlink(Path(tmp))  # no-op after a successful replace
