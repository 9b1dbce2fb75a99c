"""Attack table, client part (issue 10): wake spin, spend across prompts, a workflow's callback_url, SSRF through
storage/result URLs and redirects, and the decompression bomb. Real HTTP throughout (the sandbox, the pack's routes,
a hostile API and an attacker's server on 127.0.0.1 that counts what reaches it)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from nodes.comfy.nodes import RunflowMultiAngles
from nodes.core import codec
from nodes.core.config import load_settings
from nodes.core.runner import Runner
from nodes.core.session import Reservations
from nodes.core.sources import from_pixels
from nodes.core.spec import JobSpec
from nodes.core.spend import DEFAULT_DAILY_USD, DailyCap, Ledger
from nodes.runflow import errors as E
from nodes.runflow.client import RunflowClient
from nodes.runflow.models import Run
from nodes.runflow.retry import RetryPolicy
from nodes.sandbox import Sandbox
from tests.attack_kit import KW

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_test_0123456789"


def status_polls(sb: Sandbox) -> int:
    return sb.stats()["requests"].get("GET /v1/runs/{id}", 0)


# ---- wake spin ----------------------------------------------------------------------------------------------------

def test_early_callback_does_not_spin_polls(sandbox_env, pack, monkeypatch):
    """The issue measured 2,345 polls in a 3 s run after one early wake; the schedule alone makes ~4-8."""
    monkeypatch.setenv("RUNFLOW_PUBLIC_URL", pack.url)
    monkeypatch.setenv("RUNFLOW_WEBHOOK_SECRET", SECRET)
    with Sandbox(run_seconds=3.0, callback_secret=None) as sb:  # its own (unsigned) callback is refused
        monkeypatch.setenv("RUNFLOW_API_URL", sb.url)
        monkeypatch.setenv("RUNFLOW_API_KEY", sb.api_key)
        done = threading.Event()
        threading.Thread(target=lambda: (asyncio.run(RunflowMultiAngles().execute(
            **KW, image=torch.rand(1, 24, 24, 3))), done.set()), daemon=True).start()
        deadline = time.monotonic() + 10
        while not sb.runs and time.monotonic() < deadline:
            time.sleep(0.01)
        (run_id,) = sb.runs
        answers = []
        with httpx.Client(trust_env=False) as c:
            for status in ("running", "succeeded"):  # a non-terminal one is ignored; a (premature) terminal wakes
                body = json.dumps({"run_id": run_id, "status": status}).encode()
                sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                answers.append(c.post(pack.url + "/runflow/callback", content=body,
                                      headers={"Runflow-Signature": sig, "Content-Type": "application/json"}).json())
        assert answers[0].get("ignored") and answers[1] == {"ok": True, "waiting": True}
        assert done.wait(15)
        polls = status_polls(sb)
    assert polls <= 12, f"{polls} status polls: the wake spins"


def test_a_wake_set_continuously_is_bounded_by_the_poll_gap(sandbox):
    """Even a wake set every millisecond cannot poll faster than MIN_POLL_GAP."""
    from nodes.runflow.client import MIN_POLL_GAP

    sandbox.run_seconds = 2.0

    async def go():
        async with RunflowClient(sandbox.api_key, sandbox.url) as client:
            asset = await client.upload(SRC.data, SRC.mime, SRC.filename)
            run = await client.create_run({"image_url": asset.url, "view": "back view",
                                           "angle": "eye-level shot", "shot": "medium shot",
                                           "match_input_aspect": "true"}, idempotency_key="k1", client_ref="c1")
            wake = asyncio.Event()

            async def hammer():
                while True:
                    wake.set()
                    await asyncio.sleep(0.001)

            task = asyncio.ensure_future(hammer())
            start = time.monotonic()
            try:
                await client.wait(run, wake=wake, timeout=30)
            finally:
                task.cancel()
            return client.stats.status_polls, time.monotonic() - start

    polls, took = asyncio.run(go())
    assert polls <= took / MIN_POLL_GAP + 2


# ---- spend across prompts -----------------------------------------------------------------------------------------

SRC = from_pixels(np.full((24, 24, 3), 128, np.uint8), "png")


def jobs(n: int, seed: int) -> list:
    src = SRC
    views = ["front view", "back view", "left side view", "right side view"]
    return [(src, JobSpec(view=views[i], seed=seed)) for i in range(n)]


def run_prompt(prompt_id: str | None, n: int, seed: int, **kw):
    return asyncio.run(Runner(load_settings(), prompt_id=prompt_id, **kw).run(jobs(n, seed)))


def test_spend_across_prompts_hits_the_daily_cap(sandbox_env, monkeypatch):
    """Each prompt is under the per-prompt guard; changing the seed misses the cache; the day's total is capped."""
    monkeypatch.setenv("RUNFLOW_MAX_SPEND_PER_DAY", "1.00")
    run_prompt("p1", 2, seed=1)
    run_prompt("p2", 2, seed=2)
    with pytest.raises(E.SpendLimitError) as info:
        run_prompt("p3", 2, seed=3)
    assert sandbox_env.created_runs == 4, "the refused prompt must create nothing"
    assert "RUNFLOW_MAX_SPEND_PER_DAY" in str(info.value) and "$0.80" in str(info.value)
    run_prompt("p4", 1, seed=4)  # what still fits is allowed
    assert sandbox_env.created_runs == 5


def test_daily_cap_is_on_by_default_and_counts_the_cli(sandbox_env, monkeypatch, tmp_path):
    """Shared by the nodes and the CLI through the ledger (a separate process)."""
    cap = DailyCap(Ledger(tmp_path / "l.jsonl"), Reservations(), max_usd=load_settings().max_spend_per_day,
                   max_runs=None)
    assert cap.max_usd == DEFAULT_DAILY_USD > 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "--views", "front view, back view", "--out",
                          str(tmp_path / "out"), "-q"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sandbox_env.created_runs == 2
    monkeypatch.setenv("RUNFLOW_MAX_SPEND_PER_DAY", "0.60")
    with pytest.raises(E.SpendLimitError, match=r"\$0.40 \(2 runs\)"):
        run_prompt("p1", 2, seed=9)
    assert sandbox_env.created_runs == 2
    monkeypatch.setenv("RUNFLOW_MAX_RUNS_PER_DAY", "3")
    monkeypatch.setenv("RUNFLOW_MAX_SPEND_PER_DAY", "0")
    with pytest.raises(E.SpendLimitError, match="RUNFLOW_MAX_RUNS_PER_DAY"):
        run_prompt("p2", 2, seed=10)
    assert sandbox_env.created_runs == 2


def test_no_prompt_id_inside_comfyui_fails_closed(sandbox_env):
    with pytest.raises(E.SpendLimitError, match="did not say which prompt"):
        run_prompt(None, 1, seed=1, require_prompt=True)
    assert sandbox_env.created_runs == 0


def test_adopted_runs_count_toward_the_daily_cap(sandbox_env, monkeypatch):
    """A run created by an earlier process (journalled, never receipted) is adopted, and counts."""
    runner = Runner(load_settings(), prompt_id="p0")
    job = jobs(1, seed=5)
    key = runner.keys(job)[0]

    async def create():
        async with RunflowClient(sandbox_env.api_key, sandbox_env.url) as c:
            asset = await c.upload(SRC.data, SRC.mime, SRC.filename)
            return await c.create_run({**job[0][1].api_input(), "image_url": asset.url},
                                      idempotency_key="idem-adopt", client_ref="comfyui-rfma-adopt")

    run = asyncio.run(create())
    runner.journal.put(key, {"idempotency_key": "idem-adopt", "client_ref": "comfyui-rfma-adopt", "run_id": run.id,
                             "created": time.time()})
    asyncio.run(runner.run(job))
    assert runner.stats.resumed == 1 and sandbox_env.created_runs == 1
    usd, runs = runner.daily.spent()
    assert runs == 1 and usd > 0
    monkeypatch.setenv("RUNFLOW_MAX_RUNS_PER_DAY", "1")
    with pytest.raises(E.SpendLimitError):
        run_prompt("p1", 1, seed=6)
    assert sandbox_env.created_runs == 1


# ---- a workflow's callback_url ------------------------------------------------------------------------------------

def test_workflow_callback_url_to_an_unknown_host_is_refused(sandbox_env, attacker, monkeypatch, caplog):
    hook = attacker.url + "/hook"
    with pytest.raises(E.InputError, match="not allowed"):
        asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3), callback_url=hook))
    assert sandbox_env.created_runs == 0 and sandbox_env.uploads == 0 and attacker.hits == 0
    monkeypatch.setenv("RUNFLOW_CALLBACK_HOSTS", "127.0.0.1")  # the user allowed that host
    caplog.set_level(logging.DEBUG, logger="nodes")
    asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3), callback_url=hook))
    (run,) = sandbox_env.runs.values()
    assert run["callback_url"] == hook
    assert "callbacks → 127.0.0.1" in caplog.text  # the node status names the host


def test_callback_url_equal_to_the_public_url_host_is_allowed(sandbox_env, monkeypatch):
    monkeypatch.setenv("RUNFLOW_PUBLIC_URL", "https://my.comfy.example")
    asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3),
                                             callback_url="https://my.comfy.example/other/hook"))
    assert sandbox_env.created_runs == 1


# ---- SSRF: storage and result URLs, redirects ---------------------------------------------------------------------

class HostileApi:
    """An API on 127.0.0.1 that answers with storage URLs of its choosing (and a redirect on /redirect)."""

    def __init__(self, upload_url: str = "", result_url: str = "", location: str = ""):
        self.upload_url, self.result_url, self.location = upload_url, result_url, location
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict | None = None, headers: dict | None = None):
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/asset-uploads":
                    return self._send(201, {"asset_id": "a1", "upload_url": api.upload_url})
                self._send(404)

            def do_GET(self):
                if self.path.startswith("/redirect"):
                    return self._send(302, headers={"Location": api.location})
                self._send(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _client(base: str) -> RunflowClient:
    return RunflowClient("rf_live_VICTIM_real_key_7777", base, retry=RetryPolicy(attempts=1))


def _succeeded(url: str) -> Run:
    return Run({"id": "r1", "status": "succeeded", "output": {"outputs": [{"url": url}]}})


def test_ssrf_result_urls_from_a_loopback_api_stay_on_its_origin(attacker):
    api = HostileApi()
    try:
        async def go(url):
            async with _client(api.url) as c:
                return await c.fetch_result(_succeeded(url))

        for url in (attacker.url + "/steal", "http://169.254.169.254/latest/meta-data/",
                    attacker.url.replace("127.0.0.1", "localhost") + "/x", "http://10.0.0.1/x"):
            with pytest.raises(E.ResultError, match="refusing"):
                asyncio.run(go(url))
    finally:
        api.stop()
    assert attacker.hits == 0


def test_ssrf_result_urls_from_the_real_api_must_be_public_https(attacker):
    """With Runflow's API (never contacted here), storage must be https on public addresses."""
    port = attacker.url.rsplit(":", 1)[1]

    async def go(url):
        async with _client("https://api.runflow.io") as c:
            return await c.download(url)

    for url in (attacker.url + "/x", f"https://127.0.0.1:{port}/x", f"https://localhost:{port}/x",
                f"https://[::ffff:127.0.0.1]:{port}/x", f"https://2130706433:{port}/x", f"https://[::1]:{port}/x",
                "https://10.1.2.3/x", "https://192.168.0.1/x", "https://100.64.0.1/x", "https://user:pw@e.com/x"):
        with pytest.raises(E.RunflowError, match="refusing|resolve"):
            asyncio.run(go(url))
    assert attacker.hits == 0


def test_ssrf_upload_url_is_refused_before_the_image_is_sent(attacker):
    api = HostileApi(upload_url=attacker.url + "/put")
    try:
        async def go():
            async with _client(api.url) as c:
                return await c.upload(b"\x89PNG private pixels", "image/png", "a.png")

        with pytest.raises(E.ResultError, match="refusing"):
            asyncio.run(go())
    finally:
        api.stop()
    assert attacker.hits == 0


def test_redirects_are_explicit_errors_and_not_followed(attacker):
    api = HostileApi(location=attacker.url + "/steal")
    try:
        async def go():
            async with _client(api.url) as c:
                return await c.download(api.url + "/redirect")

        with pytest.raises(E.ResultError, match=r"redirect \(HTTP 302 to http://127.0.0.1:\d+\)"):
            asyncio.run(go())
    finally:
        api.stop()
    assert attacker.hits == 0


def test_plain_http_api_url_to_a_remote_host_is_refused_by_the_client():
    with pytest.raises(E.ConfigError, match="plain http"):
        RunflowClient("rf_live_x", "http://api.runflow.io")


# ---- decompression bomb -------------------------------------------------------------------------------------------



def _bomb(n: int) -> tuple[int, int, float]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "decode_memory.py"), str(n)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    size, mib, secs = out.stdout.split()
    return int(size), int(mib), float(secs)


def test_decompression_bomb_peak_memory_is_bounded():
    """A small RGBA PNG of 4096²: one decode, and 8 at once (a turnaround), measured in a fresh process."""
    size, one, t1 = _bomb(1)
    _, eight, t8 = _bomb(8)
    assert one < 300, f"one decode took {one} MiB (float32 compositing took 961)"
    assert eight < codec.DECODE_CONCURRENCY * one + 120, "concurrent decodes are not bounded"


def test_oversized_result_is_refused_before_decoding():
    import struct
    import zlib

    def header_only(w: int, h: int) -> bytes:
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
        idat = zlib.compress(b"\0" * 64)
        return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xffffffff)
                + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat)))

    for w, h in ((8192, 8192), (4097, 4096), (100000, 100000)):
        with pytest.raises(E.ResultError, match="safety limit|far too many"):
            codec.decode(header_only(w, h))


def test_integer_compositing_matches_the_float_formula():
    import numpy as np

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (37, 41, 4), dtype=np.uint8)
    got, composited = codec.composite_over_white(a)
    f = a.astype(np.float64) / 255
    want = np.rint((f[..., :3] * f[..., 3:] + (1 - f[..., 3:])) * 255).astype(np.uint8)
    assert composited and np.array_equal(got, want)


def test_daily_cap_counts_per_api(tmp_path):
    """Free sandbox runs never use up the real budget (and the other way round)."""
    from nodes.core.spend import Receipt

    ledger = Ledger(tmp_path / "ledger.jsonl")
    for _ in range(3):
        ledger.append(Receipt(pose="p", source="s", status="succeeded", run_id="r", cost_usd=0.2, api="sandbox"))
    ledger.append(Receipt(pose="p", source="s", status="succeeded", run_id="r", cost_usd=0.2, api="runflow"))
    ledger.append(Receipt(pose="p", source="s", status="from cache", from_cache=True, cost_usd=0.0, api="runflow"))
    real = DailyCap(ledger, Reservations(), max_usd=0.4, max_runs=None, api="runflow")
    assert real.spent() == (0.2, 1)
    real.admit(1, "1 run").release()
    with pytest.raises(E.SpendLimitError, match=r"\$0.20 \(1 runs\)"):
        real.admit(2, "2 runs")
    assert DailyCap(ledger, Reservations(), max_usd=None, max_runs=None, api="sandbox").spent() == (0.6, 3)


def test_hostile_error_text_cannot_inject_log_lines():
    """An API error body with newlines and terminal escapes becomes one printable line in messages and logs."""
    from nodes.runflow.responses import error_from_response

    for body in (b'{"error": {"code": "X\\n", "message": "bad\\nWARNING forged line\\u001b[2J"}}',
                 b"<html>bad\r\nWARNING forged\x1b[31m line</html>"):
        err = error_from_response(httpx.Response(400, content=body, request=httpx.Request("GET", "https://x/")))
        assert "\n" not in err.message and "\r" not in err.message and "\x1b" not in err.message, err.message
        assert "forged" in err.message  # kept, as text on the same line
