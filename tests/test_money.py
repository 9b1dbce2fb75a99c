"""Never pay twice, under every reading of the docs the sandbox can play (runflow-api.md §6, §10): ambiguous creates,
409s, refused upload confirmations, twins in one process and in two, re-queues after "stopped safely", and the
doctor. All over real HTTP against the sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nodes.core.config import load_settings, user_dir
from nodes.core.doctor import run_doctor
from nodes.core.journal import UNCERTAIN
from nodes.core.runner import Runner, Source
from nodes.core.spec import JobSpec
from nodes.runflow import errors as E
from nodes.runflow.capabilities import CAPABILITIES_FILE, CapabilityStore
from nodes.runflow.client import RunflowClient
from nodes.runflow.contract import RUNS_PATH
from nodes.runflow.retry import RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
FAST = RetryPolicy(base=0.02, cap=0.1, jitter=0.01)


def runner(read: float = 5.0) -> Runner:
    settings = load_settings()
    factory = lambda: RunflowClient(settings.api_key, settings.api_url, retry=FAST,  # noqa: E731
                                    timeout=httpx.Timeout(5.0, read=read), settle=0.3)
    return Runner(settings, client_factory=factory, use_cache=False, guard_limit=0)


def job(png: bytes, view: str = "back view") -> tuple[Source, JobSpec]:
    return (Source(data=png, mime="image/png", pixel_sha256="p" * 64, upload_sha256="u" * 64),
            JobSpec(view=view, label=view))


def run_job(png: bytes, r: Runner | None = None, view: str = "back view"):
    (res,) = asyncio.run((r or runner()).run([job(png, view)]))
    return res


def billed(sb) -> int:
    return sum(1 for row in sb.billing_record() if row["billed"])


def creates(sb) -> int:
    return sb.created_runs


def caps(sb):
    return CapabilityStore(user_dir() / CAPABILITIES_FILE).get(sb.url)


VARIANTS = {
    "defaults": {},
    "idem-ignored": {"idempotency": "ignored"},
    "search-refused": {"client_ref_search": "refused"},
    "search-ignored": {"client_ref_search": "ignored"},
    "ignored+refused": {"idempotency": "ignored", "client_ref_search": "refused"},
    "ignored+ignored": {"idempotency": "ignored", "client_ref_search": "ignored"},
    "create-200": {"create_status": 200},
    "create-202": {"create_status": 202},
}
AMBIGUOUS = [("drop_after", {}), ("drop_before", {}), ("status", {"status": 500}), ("status", {"status": 504}),
             ("status", {"status": 408}),
             ("delay", {"seconds": 1.5}), ("malformed_json", {}), ("malformed_json", {"json": []})]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind,params", AMBIGUOUS, ids=[f"{k}{p.get('status', '')}{'-list' if 'json' in p else ''}"
                                                        for k, p in AMBIGUOUS])
def test_ambiguous_create_never_bills_twice(sandbox_env, sample_png_bytes, variant, kind, params):
    """Learn the API with one clean run first (as a real session would), then make the create ambiguous."""
    sandbox_env.config(VARIANTS[variant])
    first = run_job(sample_png_bytes, view="front view")
    assert first.error is None and billed(sandbox_env) == 1
    sandbox_env.faults.add(kind, path="create", **params)
    res = run_job(sample_png_bytes, runner(read=1.0))
    assert billed(sandbox_env) == 2, f"{variant}: {billed(sandbox_env)} billable runs for 2 jobs"
    assert res.error is None, res.error  # every variant gives a way to know once one run exists
    assert res.data[8:12] == b"WEBP"


@pytest.mark.parametrize("variant", ["defaults", "idem-ignored", "ignored+refused", "ignored+ignored"])
def test_ambiguous_first_create_of_a_fresh_org(sandbox_env, sample_png_bytes, variant):
    """Nothing learned, no runs in the org: the empty run list (a fence at nothing) proves absence."""
    sandbox_env.config(VARIANTS[variant])
    sandbox_env.faults.add("status", status=502, path="create", times=2)
    res = run_job(sample_png_bytes)
    assert res.error is None, res.error
    assert billed(sandbox_env) == 1


def test_capabilities_are_learned_free_and_remembered(sandbox_env, sample_png_bytes):
    assert run_job(sample_png_bytes).error is None
    c = caps(sandbox_env)
    assert (c.idempotency, c.search) == ("honoured", "filters")
    assert billed(sandbox_env) == 1  # the probes never bill
    sandbox_env.config({"idempotency": "ignored", "client_ref_search": "refused"})
    store = user_dir() / CAPABILITIES_FILE
    store.unlink()
    assert run_job(sample_png_bytes, view="front view").error is None
    c = caps(sandbox_env)
    assert (c.idempotency, c.search) == ("ignored", "refused")
    assert json.loads(store.read_text())[sandbox_env.url]["idempotency"] == "ignored"
    assert billed(sandbox_env) == 2


def test_stops_safely_when_it_cannot_know_and_requeue_looks_up_first(sandbox_env, sample_png_bytes):
    """Idempotency ignored and the run list unreachable: the dropped create made a run, but nothing can show it."""
    sandbox_env.config({"idempotency": "ignored"})
    sandbox_env.faults.add("status", status=503, path="list_runs", times=None)
    sandbox_env.faults.add("drop_after", path="create")
    r = runner()
    res = run_job(sample_png_bytes, r)
    assert isinstance(res.error, E.RunMaybeCreated), res.error
    ref = res.error.client_ref
    assert ref.startswith("comfyui-rfma-") and f"look for client_ref {ref} at app.runflow.io \u2192 Runs" in \
        res.error.message and "re-queue" in res.error.message
    assert billed(sandbox_env) == 1  # the one run the user asked for; never a second
    (key,) = r.keys([job(sample_png_bytes)])
    entry = r.journal.get(key)
    assert entry["state"] == UNCERTAIN and entry["body"]["client_ref"] == ref and not entry.get("run_id")
    # re-queue once the list answers again: the run is found by client_ref, not created again
    sandbox_env.faults.clear()
    res = run_job(sample_png_bytes)
    assert res.error is None and billed(sandbox_env) == 1
    assert res.info["run_id"] == next(iter(sandbox_env.runs))


def test_requeue_resends_the_journalled_body_under_its_key(sandbox_env, sample_png_bytes):
    """A stale journal entry (key + exact body, no run id): search refused, so the reused key is probed (409 =
    Runflow holds it) and the journalled body is replayed: the same run, no 409 for a changed body."""
    sandbox_env.config({"client_ref_search": "refused"})
    r = runner()
    (key,) = r.keys([job(sample_png_bytes)])

    async def first_attempt():
        async with RunflowClient(sandbox_env.api_key, sandbox_env.url) as client:
            asset = await client.upload(sample_png_bytes, "image/png", "a.png")
            body = client.run_body({**job(sample_png_bytes)[1].api_input(), "image_url": asset.url},
                                   client_ref="comfyui-rfma-k1")
            resp = await client._request("POST", RUNS_PATH, body=body, headers={"Idempotency-Key": "k1"})
            return body, resp["id"]

    body, run_id = asyncio.run(first_attempt())
    r.journal.put(key, {"idempotency_key": "k1", "client_ref": "comfyui-rfma-k1", "created": time.time(),
                        "state": UNCERTAIN, "body": body, "run_id": None})
    res = run_job(sample_png_bytes, r)
    assert res.error is None, res.error
    assert res.info["run_id"] == run_id and billed(sandbox_env) == 1


def test_409_in_progress_on_create_reconciles(sandbox_env, sample_png_bytes):
    """Two creates with one key at once (honoured, slow create handler): the second's 409 'in progress' is
    reconciled into the same run."""
    sandbox_env.config(create_seconds=0.6)

    async def go():
        async with RunflowClient(sandbox_env.api_key, sandbox_env.url, retry=FAST, settle=0.3) as client:
            asset = await client.upload(sample_png_bytes, "image/png", "a.png")
            inp = {"view": "back view", "image_url": asset.url}
            return await asyncio.gather(*(client.create_run(inp, idempotency_key="same", client_ref="same")
                                          for _ in range(2)))

    a, b = asyncio.run(go())
    assert a.id == b.id and billed(sandbox_env) == 1


@pytest.mark.parametrize("fault", ["drop_after", "delay"])
def test_refused_second_upload_confirmation_recovers(sandbox_env, sample_png_bytes, fault):
    sandbox_env.config({"second_confirm": "conflict"})
    sandbox_env.faults.add(fault, path="upload_confirm", **({"seconds": 1.5} if fault == "delay" else {}))
    res = run_job(sample_png_bytes, runner(read=1.0))
    assert res.error is None, res.error
    assert billed(sandbox_env) == 1


def test_429_without_retry_after_backs_off(sandbox_env, sample_png_bytes):
    sandbox_env.config({"retry_after": "without"})
    sandbox_env.faults.add("status", status=429, path="create", times=3)
    res = run_job(sample_png_bytes)
    assert res.error is None and billed(sandbox_env) == 1


def test_twins_in_one_process_post_once(sandbox_env, sample_png_bytes):
    """Two identical nodes run by two runners at once, no result cache: one create, both get the image."""
    sandbox_env.config(create_seconds=0.3)

    async def go():
        return await asyncio.gather(runner().run([job(sample_png_bytes)]), runner().run([job(sample_png_bytes)]))

    (a,), (b,) = asyncio.run(go())
    assert a.error is None and b.error is None
    assert a.info["run_id"] == b.info["run_id"]
    assert creates(sandbox_env) == 1 and billed(sandbox_env) == 1


TWIN = """
import asyncio, sys
from nodes.core.config import load_settings
from nodes.core.runner import Runner
from nodes.core import sources
from nodes.core.spec import JobSpec
src = sources.from_file(__import__("pathlib").Path(sys.argv[1]), "png")
spec = JobSpec(view="back view", label="twin")
(res,) = asyncio.run(Runner(load_settings(), guard_limit=0, use_cache=False).run([(src, spec)]))
print("RUN", res.info.get("run_id"), res.error)
"""


def test_two_processes_same_job_one_user_dir_bill_once(sandbox_env, tmp_path, sample_png_bytes):
    """The CLI and a second process run the same job at once against one user dir: exactly one billable run. No
    result cache on either side (--no-cache), so only the journal stands between them and a second charge; runs
    take 4 s so the two surely overlap."""
    sandbox_env.config(create_seconds=0.5, run_seconds=4.0)
    img = tmp_path / "src.png"
    img.write_bytes(sample_png_bytes)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = subprocess.Popen([sys.executable, "-m", "nodes.cli", str(img), "--views", "back view", "--format", "png",
                            "--no-cache", "--out", str(tmp_path / "out"), "-q"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    twin = subprocess.Popen([sys.executable, "-c", TWIN, str(img)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out_cli, err_cli = cli.communicate(timeout=120)
    out_twin, err_twin = twin.communicate(timeout=120)
    assert cli.returncode == 0, err_cli
    assert "RUN " in out_twin and "None" in out_twin.split("RUN ", 1)[1], out_twin + err_twin
    assert creates(sandbox_env) == 1 and billed(sandbox_env) == 1


def test_wait_is_a_hard_deadline_even_when_polls_hang(sandbox_env, sample_png_bytes):
    sandbox_env.faults.add("delay", path="get_run", seconds=20, before=True, times=None)

    async def go():
        async with RunflowClient(sandbox_env.api_key, sandbox_env.url) as client:  # 30 s read timeout, 5 retries
            asset = await client.upload(sample_png_bytes, "image/png", "a.png")
            run = await client.create_run({"view": "back view", "image_url": asset.url}, idempotency_key="d",
                                          client_ref="d")
            t0 = time.monotonic()
            with pytest.raises(E.RunTimeout):
                await client.wait(run, timeout=2.0)
            return time.monotonic() - t0

    assert asyncio.run(go()) < 3.5


def test_doctor_reports_and_teaches_the_pack(sandbox_env, sample_png_bytes):
    sandbox_env.config({"idempotency": "ignored", "client_ref_search": "ignored", "rate_limit_headers": "on"})

    async def go(spend: bool):
        store = CapabilityStore(user_dir() / CAPABILITIES_FILE)
        async with RunflowClient(sandbox_env.api_key, sandbox_env.url, capabilities=store) as client:
            return await run_doctor(client, spend_one=spend, image=(sample_png_bytes, "image/png"))

    quick = asyncio.run(go(False))
    text = quick.text()
    assert "[ok ] key: accepted" in text and "[ok ] model schema" in text and "upload types: accepted" in text
    assert "x-ratelimit-limit" in text and "not known (run --doctor --spend-one" in text
    assert billed(sandbox_env) == 0
    full = asyncio.run(go(True))
    assert billed(sandbox_env) == 1  # exactly the one run it announced
    assert "idempotency on runs: IGNORED" in full.text() and "client_ref search: IGNORED" in full.text()
    c = caps(sandbox_env)
    assert (c.idempotency, c.search, c.source) == ("ignored", "ignored", "doctor")


def test_doctor_cli_exit_code_and_schema_mismatch(sandbox_env):
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "--doctor"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("Runflow doctor · ") and "verdict: OK" in out.stdout


@pytest.mark.parametrize("path", ["upload_create", "upload_confirm", "get_run", "create"])
def test_valid_json_of_the_wrong_shape_is_a_retried_server_error(sandbox_env, sample_png_bytes, path):
    sandbox_env.faults.add("malformed_json", path=path, json=["not", "an", "object"], times=2)
    res = run_job(sample_png_bytes)
    assert res.error is None, res.error
    assert billed(sandbox_env) == 1


def test_test_connection_carries_the_doctor_short_form(sandbox_env):
    from nodes.comfy.routes import test_connection

    answer = asyncio.run(test_connection())
    assert answer["ok"] is True and answer["doctor_problems"] == []
    assert "balance: $1000.00" in answer["doctor"] and "model schema: runflow/multi-angles matches" in answer["doctor"]
    assert answer["doctor"] in answer["message"]
    assert billed(sandbox_env) == 0
