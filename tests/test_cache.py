"""nodes/cache.py: the persistent result cache."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nodes.core.cache import (
    CachedResult,
    ResultCache,
    cache_key,
    default_cache_dir,
    default_max_bytes,
    pixels_sha256,
)

ROOT = Path(__file__).resolve().parents[1]
SHA = "a" * 64
API_INPUT = {
    "image_url": "https://uploads.example/abc.jpg",
    "view": "right side view",
    "angle": "eye-level shot",
    "shot": "medium shot",
    "prompt": "",
    "aspect_ratio": "1:1",
}


def key(**over) -> str:
    args = {"image_sha256": SHA, "image_url": None, "model": "runflow/multi-angles", "api_input": API_INPUT, "seed": 0}
    args.update(over)
    return cache_key(**args)


# ---- keys --------------------------------------------------------------------------------------------------------


def test_key_is_hex_sha256_and_stable():
    assert key() == key() and len(key()) == 64 and int(key(), 16) >= 0


@pytest.mark.parametrize("field,value", [("view", "back view"), ("angle", "high-angle shot"), ("shot", "close-up"),
                                         ("prompt", "keep the lighting"), ("aspect_ratio", "16:9"),
                                         ("new_field", 1)])
def test_every_api_input_field_changes_the_key(field, value):
    assert key(api_input={**API_INPUT, field: value}) != key()


def test_absent_aspect_ratio_differs_from_present():
    without = {k: v for k, v in API_INPUT.items() if k != "aspect_ratio"}
    assert key(api_input=without) != key()


def test_seed_model_and_image_change_the_key():
    base = key()
    assert key(seed=1) != base
    assert key(model="runflow/multi-angles@http://127.0.0.1:9") != base
    assert key(image_sha256="b" * 64) != base
    assert key(image_sha256=None, image_url="https://x/a.png") != base
    assert key(image_sha256=None, image_url="https://x/a.png") != key(image_sha256=None, image_url="https://x/b.png")


def test_dict_order_and_upload_url_do_not_change_the_key():
    reordered = dict(reversed(list(API_INPUT.items())))
    assert key(api_input=reordered) == key()
    assert key(api_input={**API_INPUT, "image_url": "https://uploads.example/other.png"}) == key()
    assert key(api_input={k: v for k, v in API_INPUT.items() if k != "image_url"}) == key()


def test_nothing_else_is_part_of_the_signature():
    params = inspect.signature(cache_key).parameters
    assert set(params) == {"image_sha256", "image_url", "model", "api_input", "seed", "take"}
    with pytest.raises(TypeError):
        cache_key(image_sha256=SHA, image_url=None, model="m", api_input={}, seed=0, callback_url="https://hook")


def test_key_needs_an_image():
    with pytest.raises(ValueError):
        key(image_sha256=None, image_url=None)


def test_pixels_sha256():
    a = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert pixels_sha256(a) == pixels_sha256(a.copy())
    assert pixels_sha256(np.asfortranarray(a)) == pixels_sha256(a)  # memory layout is not content
    assert pixels_sha256(a[:, ::-1][:, ::-1]) == pixels_sha256(a)
    assert pixels_sha256(a.reshape(8, 6, 3)) != pixels_sha256(a)  # same bytes, other shape
    b = a.copy()
    b[5, 7, 2] ^= 1
    assert pixels_sha256(b) != pixels_sha256(a)


# ---- storage -----------------------------------------------------------------------------------------------------


def k(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def test_round_trip_across_instances(tmp_path):
    data = os.urandom(5000)
    meta = {"run_id": "run_1", "url": "https://cdn/x.png", "seed": 3, "cost": 0.2, "created_at": 1.5, "view": "v"}
    first = ResultCache(tmp_path, max_bytes=10**6)
    assert first.get(k(1)) is None and k(1) not in first
    assert first.put(k(1), data, meta) is True
    second = ResultCache(tmp_path, max_bytes=10**6)  # a restart, or the CLI next to ComfyUI
    hit = second.get(k(1))
    assert isinstance(hit, CachedResult) and hit.data == data and hit.meta == meta
    assert k(1) in second and k(2) not in second
    stored = (tmp_path / k(1)[:2] / f"{k(1)}.bin").read_bytes()  # one line of JSON, then the image bytes
    assert stored.endswith(b"\n" + data) and json.loads(stored.split(b"\n", 1)[0])["meta"] == meta
    st = second.stats()
    assert st["entries"] == 1 and st["bytes"] > 5000 and st["max_bytes"] == 10**6 and st["root"] == str(tmp_path)


def test_put_overwrites(tmp_path):
    c = ResultCache(tmp_path, max_bytes=10**6)
    c.put(k(1), b"old", {"n": 1})
    c.put(k(1), b"new!", {"n": 2})
    assert c.get(k(1)) == CachedResult(b"new!", {"n": 2})
    assert c.stats()["entries"] == 1


def test_bad_keys(tmp_path):
    c = ResultCache(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63, "", 5):
        assert bad not in c
    with pytest.raises(ValueError):
        c.get("../x")
    with pytest.raises(ValueError):
        c.put("../x", b"x", {})


def test_meta_must_be_json(tmp_path):
    c = ResultCache(tmp_path)
    with pytest.raises(TypeError):
        c.put(k(1), b"x", {"when": object()})
    assert k(1) not in c and not list(tmp_path.rglob("*"))


def test_lru_eviction_order(tmp_path):
    c = ResultCache(tmp_path, max_bytes=10**6)
    for i in range(3):
        c.put(k(i), bytes([i]) * 1000, {"i": i})
        time.sleep(0.02)
    per_entry = c.stats()["bytes"] / 3
    c.max_bytes = int(per_entry * 3.5)  # room for three entries, not four
    assert c.get(k(0)) is not None  # 0 is now the most recently used; 1 is the least
    time.sleep(0.02)
    c.put(k(3), b"\x03" * 1000, {"i": 3})
    assert k(1) not in c
    assert all(k(i) in c for i in (0, 2, 3))
    time.sleep(0.02)
    c.max_bytes = int(per_entry * 1.5)
    assert c.evict() == 2  # 2 and 0 go (oldest accesses first), 3 stays
    assert [i for i in range(4) if k(i) in c] == [3]
    assert c.stats()["bytes"] <= c.max_bytes


def test_entry_over_the_cap_is_not_stored(tmp_path):
    c = ResultCache(tmp_path, max_bytes=1000)
    assert c.put(k(1), b"x" * 2000, {}) is False
    assert k(1) not in c


def test_clear_counts_and_keeps_other_folders(tmp_path):
    c = ResultCache(tmp_path, max_bytes=10**6)
    for i in range(5):
        c.put(k(i), b"data", {})
    (tmp_path / "pending").mkdir()
    (tmp_path / "pending" / "job.json").write_text("{}")
    assert c.clear() == 5
    assert c.stats()["entries"] == 0 and c.clear() == 0
    assert (tmp_path / "pending" / "job.json").exists()


@pytest.mark.parametrize("damage", ["flip_data", "truncate_data", "bad_header", "wrong_header", "empty", "no_newline"])
def test_damaged_entry_is_a_miss_and_removed(tmp_path, damage):
    c = ResultCache(tmp_path, max_bytes=10**6)
    c.put(k(1), b"payload" * 100, {"a": 1})
    path = tmp_path / k(1)[:2] / f"{k(1)}.bin"
    raw = path.read_bytes()
    header, data = raw.split(b"\n", 1)
    damaged = {
        "flip_data": header + b"\n" + data[:-1] + bytes([data[-1] ^ 0xFF]),
        "truncate_data": raw[: len(raw) - 50],
        "bad_header": b'{"v": 1, "sha2' + b"\n" + data,
        "wrong_header": json.dumps([1, 2, 3]).encode() + b"\n" + data,
        "empty": b"",
        "no_newline": b"x" * 2000,
    }[damage]
    path.write_bytes(damaged)
    assert k(1) in c  # present on disk...
    assert c.get(k(1)) is None  # ...but a miss
    assert not path.exists()
    c.put(k(1), b"fresh", {})
    assert c.get(k(1)).data == b"fresh"


def test_leftovers_are_swept_and_strangers_ignored(tmp_path):
    c = ResultCache(tmp_path, max_bytes=10**6)
    c.put(k(1), b"x", {})
    shard = tmp_path / k(1)[:2]
    tmp, fresh_tmp, stranger = shard / ".tmp-crashed.part", shard / ".tmp-writing.part", shard / "notes.txt"
    for f in (tmp, fresh_tmp, stranger):
        f.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    assert c.stats()["entries"] == 1
    assert not tmp.exists()  # a crashed writer's leftover
    assert fresh_tmp.exists() and stranger.exists()  # maybe being written right now; not ours


def test_concurrent_threads_same_key(tmp_path):
    c = ResultCache(tmp_path, max_bytes=10**8)
    payloads = {w: bytes([w]) * 200_000 + os.urandom(64) for w in range(6)}
    errors: list[BaseException] = []
    seen: list[CachedResult] = []
    stop = threading.Event()

    def writer(w):
        try:
            for n in range(15):
                c.put(k(7), payloads[w], {"writer": w, "n": n})
        except BaseException as e:  # noqa: BLE001 - collected for the assert
            errors.append(e)

    def reader():
        try:
            while not stop.is_set():
                hit = ResultCache(tmp_path, max_bytes=10**8).get(k(7))
                if hit is not None:
                    seen.append(hit)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in payloads]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert seen, "readers never saw the entry"
    for hit in seen:  # every hit is one writer's bytes with that writer's own meta: never mixed, never torn
        assert hit.data == payloads[hit.meta["writer"]]
    final = c.get(k(7))
    assert final is not None and final.data == payloads[final.meta["writer"]]
    assert not list(tmp_path.rglob(".tmp-*"))


WORKER = """
import os, sys
sys.path.insert(0, {root!r})
from nodes.comfy.adapter import bind_user_dir
from nodes.core.cache import ResultCache
cache = ResultCache({dir!r}, max_bytes=300_000)  # small cap: eviction races too
me = int(sys.argv[1])
payload = bytes([me]) * 120_000
hits = 0
for n in range(40):
    key = format(n % 4, "x") * 64
    cache.put(key, payload, {{"writer": me}})
    for other in range(4):
        hit = cache.get(format(other, "x") * 64)
        if hit is not None:
            assert hit.data == bytes([hit.meta["writer"]]) * 120_000, "torn read"
            hits += 1
print(hits)
"""


def test_concurrent_processes(tmp_path):
    script = WORKER.format(root=str(ROOT), dir=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=False):
        assert p.returncode == 0, err
        assert int(out) > 0
    stats = ResultCache(tmp_path / "cache", max_bytes=300_000).stats()
    assert 0 < stats["entries"] <= 2 and stats["bytes"] <= 300_000


# ---- where and how big -------------------------------------------------------------------------------------------


def test_default_cache_dir(monkeypatch, tmp_path):
    for var in ("RUNFLOW_CACHE_DIR", "RUNFLOW_USER_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(sys.modules, "folder_paths", None)  # "not inside ComfyUI": import raises
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "runflow-multi-angles"

    class FakeFolderPaths:
        @staticmethod
        def get_user_directory():
            return str(tmp_path / "ComfyUI" / "user")

    monkeypatch.setitem(sys.modules, "folder_paths", FakeFolderPaths)
    monkeypatch.setenv("RUNFLOW_USER_DIR", "placeholder")  # so monkeypatch restores whatever bind_user_dir sets
    monkeypatch.delenv("RUNFLOW_USER_DIR")
    from nodes.comfy.adapter import bind_user_dir

    bind_user_dir()  # what the pack does when ComfyUI loads it
    assert default_cache_dir() == tmp_path / "ComfyUI" / "user" / "runflow" / "cache"
    monkeypatch.setenv("RUNFLOW_USER_DIR", str(tmp_path / "u"))
    assert default_cache_dir() == tmp_path / "u" / "runflow" / "cache"
    monkeypatch.setenv("RUNFLOW_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert ROOT not in default_cache_dir().parents


def test_default_max_bytes(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNFLOW_CACHE_MAX_MB", raising=False)
    assert default_max_bytes() == 2048 * 2**20
    monkeypatch.setenv("RUNFLOW_CACHE_MAX_MB", "10")
    assert default_max_bytes() == 10 * 2**20
    assert ResultCache(tmp_path).max_bytes == 10 * 2**20
    assert ResultCache(tmp_path, max_bytes=5).max_bytes == 5
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv("RUNFLOW_CACHE_MAX_MB", bad)
        assert default_max_bytes() == 2048 * 2**20


def test_take_zero_is_the_key_from_before_takes_and_every_take_is_its_own_slot():
    assert key(take=0) == key()  # every result cached before re-roll existed is still found
    takes = {key(take=t) for t in range(4)}
    assert len(takes) == 4
    assert key(take=1) != key(seed=1)
