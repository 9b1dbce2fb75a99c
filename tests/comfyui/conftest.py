"""Real-ComfyUI tier: a real ComfyUI server (CPU, headless) with this pack linked in, against the in-process sandbox.

Skipped entirely when COMFYUI_DIR is unset (CI has no ComfyUI): nothing below imports ComfyUI, httpx, aiohttp or
playwright at module level, and the test modules carry a skipif marker, so no fixture ever runs there.

Run:  COMFYUI_DIR=~/.cache/comfyui-harness/ComfyUI ~/.cache/comfyui-harness/venv/bin/python -m pytest tests/comfyui -q

Knobs (environment): COMFYUI_DIR (required), COMFY_HOME / VENV (the harness defaults), COMFY_HARNESS (folder with
comfy-up / comfy-down; default: the nearest shared/comfyui-harness above the repo, so a git worktree
finds it too), COMFY_TEST_PORT (default 8188).
Every RUNFLOW_* variable is removed from ComfyUI's environment: the pack must take its key and URL from the
settings route (env would take precedence over it).
"""

from __future__ import annotations

import pytest
from comfy_tier import COMFYUI_DIR, FIGURES, HARNESS, SKIP_REASON, ComfyServer


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.section("Runflow real-ComfyUI figures")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def figures() -> dict:
    return FIGURES


@pytest.fixture(scope="session")
def rf_sandbox():
    """The Runflow emulator in this pytest process; ComfyUI reaches it over HTTP on 127.0.0.1."""
    import secrets

    from nodes.sandbox import Sandbox

    sb = Sandbox(api_key="rf_tier_" + secrets.token_hex(12), run_seconds=1.0).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="session")
def comfy(rf_sandbox, tmp_path_factory, figures):
    """A running ComfyUI with the pack, configured (through its own settings route) to use the sandbox."""
    if not COMFYUI_DIR:
        pytest.skip(SKIP_REASON)
    if not (HARNESS / "comfy-up").is_file():
        pytest.fail(f"no comfy-up in {HARNESS}; set COMFY_HARNESS to the comfyui-harness folder")
    server = ComfyServer(tmp_path_factory.mktemp("comfyui"))
    try:
        seconds = server.start()
        figures["ComfyUI startup (comfy-up)"] = f"{seconds:.1f} s"
        server.settings(api_key=rf_sandbox.api_key, api_url=rf_sandbox.url)
        yield server
    finally:
        server.stop()
        server.http.close()


@pytest.fixture
def good_settings(comfy, rf_sandbox):
    """Restore the working key/URL and clear sandbox faults/scripts after the test, whatever it did."""
    comfy.settings(api_key=rf_sandbox.api_key, api_url=rf_sandbox.url)
    try:
        yield
    finally:
        rf_sandbox.reset()  # faults and scripted runs (counters too; tests only use deltas)
        comfy.settings(api_key=rf_sandbox.api_key, api_url=rf_sandbox.url)
