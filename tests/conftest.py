"""Shared fixtures: a live sandbox per test, env pointing the pack at it, and a small sample PNG."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from nodes.sandbox import Sandbox


@pytest.fixture
def sandbox():
    """A started Runflow sandbox (runs take 0.2 s), stopped after the test."""
    sb = Sandbox(run_seconds=0.2).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def sandbox_env(sandbox, monkeypatch, tmp_path):
    """The sandbox, with RUNFLOW_API_URL / RUNFLOW_API_KEY pointing at it and RUNFLOW_USER_DIR in a tmp dir."""
    monkeypatch.setenv("RUNFLOW_API_URL", sandbox.url)
    monkeypatch.setenv("RUNFLOW_API_KEY", sandbox.api_key)
    user_dir = tmp_path / "runflow_user"
    user_dir.mkdir()
    monkeypatch.setenv("RUNFLOW_USER_DIR", str(user_dir))
    return sandbox


@pytest.fixture
def sample_png_bytes() -> bytes:
    """A deterministic 96x64 RGB PNG: a horizontal gradient with a yellow disc and a green block."""
    im = Image.new("RGB", (96, 64))
    draw = ImageDraw.Draw(im)
    for x in range(96):
        draw.line((x, 0, x, 63), fill=(x * 2, 100, 255 - x * 2))
    draw.ellipse((30, 12, 66, 52), fill=(240, 200, 40))
    draw.rectangle((5, 40, 20, 60), fill=(30, 160, 60))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def fresh_process_session():
    """Each test starts like a new process: no uploads, totals, prompt counts or waiters from another test."""
    from nodes.core.session import process_session

    process_session().reset()
    yield
    process_session().reset()


@pytest.fixture
def attacker():
    """A server on 127.0.0.1 that counts every request it gets (the attack tests: nothing may ever reach it)."""
    from tests.attack_kit import Attacker

    a = Attacker().start()
    yield a
    a.stop()


@pytest.fixture
def pack(tmp_path):
    """The pack's real aiohttp routes, served as ComfyUI serves them (the attack tests)."""
    from tests.attack_kit import PackServer

    s = PackServer(tmp_path / "comfy.sock")
    yield s
    s.stop()
