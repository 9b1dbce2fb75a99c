"""The async client against the sandbox over real HTTP: upload, runs, statuses, output shapes, errors, retries."""

import asyncio
import email.utils
import time

import pytest

from nodes.runflow import errors as E
from nodes.runflow.client import RunflowClient
from nodes.runflow.models import extract_output_urls
from nodes.runflow.retry import RetryPolicy, parse_retry_after

INPUT = {"view": "back view", "angle": "eye-level shot", "shot": "medium shot", "match_input_aspect": "true"}


class Sleeps:
    """Records backoff delays and sleeps briefly instead, so tests are fast but the policy is observable."""

    def __init__(self):
        self.calls = []

    async def __call__(self, seconds):
        self.calls.append(seconds)
        await asyncio.sleep(0.01)


def make_client(sandbox, key=None, sleeps=None, **kw):
    return RunflowClient(key or sandbox.api_key, sandbox.url, sleep=sleeps or Sleeps(), **kw)


def arun(coro):
    return asyncio.run(coro)


async def _upload_and_run(client, png, input=INPUT, key="k-1"):
    asset = await client.upload(png, "image/png", "src.png")
    run = await client.create_run({**input, "image_url": asset.url}, idempotency_key=key, client_ref="ref-" + key)
    run = await client.wait(run, timeout=20)
    data, url, run = await client.fetch_result(run)
    return asset, run, data, url


def test_upload_run_and_download(sandbox, sample_png_bytes):
    async def go():
        async with make_client(sandbox) as client:
            return await _upload_and_run(client, sample_png_bytes)

    asset, run, data, url = arun(go())
    assert asset.url.startswith(sandbox.url)
    assert run.status == "succeeded" and run.succeeded
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert url in run.output_urls
    info = run.info()
    assert info["run_id"] == run.id and info["cost"] == "0.20" and "seed" in info
    assert sandbox.created_runs == 1 and sandbox.uploads == 1
    # presigned storage requests never carry our key
    assert sandbox.storage_requests, "the upload PUT and the download must go to storage"
    for req in sandbox.storage_requests:
        headers = {k.lower(): v for k, v in req["headers"].items()}
        assert "authorization" not in headers
        assert sandbox.api_key not in repr(req)


def test_wrong_key_is_auth_error_with_masked_key(sandbox):
    async def go():
        async with make_client(sandbox, key="rf_live_wrongkey_9876") as client:
            await client.check()

    with pytest.raises(E.AuthError) as info:
        arun(go())
    msg = str(info.value)
    assert "RUNFLOW_API_KEY" in msg and "Settings" in msg
    assert "9876" in msg and "rf_live_wrongkey" not in msg


def test_validation_error_lists_fields(sandbox):
    async def go():
        async with make_client(sandbox) as client:
            await client.create_run({**INPUT, "view": "top view", "image_url": "https://example.com/a.png"},
                                    idempotency_key="v1", client_ref="v1")

    with pytest.raises(E.ValidationError) as info:
        arun(go())
    assert info.value.status == 422
    assert "input.view" in str(info.value) and "Runflow refused the input" in str(info.value)
    assert sandbox.created_runs == 0


@pytest.mark.parametrize("status,cls", [(401, E.AuthError), (402, E.CreditError), (403, E.PermissionError_),
                                        (404, E.NotFoundError), (409, E.ConflictError), (422, E.ValidationError),
                                        (429, E.RateLimitError), (500, E.ServerError), (503, E.ServerError)])
def test_every_error_status_maps_to_its_class(sandbox, status, cls):
    sandbox.faults.add("status", status=status, path="/v1/auth/me", times=10)
    sleeps = Sleeps()

    async def go():
        async with make_client(sandbox, sleeps=sleeps, retry=RetryPolicy(attempts=3)) as client:
            await client.check()

    with pytest.raises(cls) as info:
        arun(go())
    assert info.value.status == status
    assert sandbox.api_key not in str(info.value)
    retried = status in (429, 500, 503)
    assert len(sleeps.calls) == (2 if retried else 0)


def test_retry_after_seconds_and_http_date_are_honoured(sandbox):
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    sandbox.faults.add("status", status=429, path="/v1/auth/me", retry_after="2", times=1)
    sandbox.faults.add("status", status=503, path="/v1/auth/me", retry_after=when, times=1)
    sleeps = Sleeps()

    async def go():
        async with make_client(sandbox, sleeps=sleeps) as client:
            return await client.check()

    assert arun(go())["sandbox"] is True
    assert sleeps.calls[0] == pytest.approx(2.0)
    assert 1.0 <= sleeps.calls[1] <= 3.5


def test_parse_retry_after_forms():
    now = 1_700_000_000.0
    assert parse_retry_after("7", now=now) == 7
    assert parse_retry_after("0.5", now=now) == 0.5
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


def test_backoff_grows_is_capped_and_jittered():
    policy = RetryPolicy(base=1, cap=8, jitter=1)
    delays = [policy.delay(n) for n in range(6)]
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 3 and 4 <= delays[2] <= 5
    assert all(8 <= d <= 9 for d in delays[3:])
    assert policy.delay(0, retry_after=500) == policy.max_retry_after


def test_dropped_create_does_not_bill_twice(sandbox, sample_png_bytes):
    sandbox.faults.add("drop_after", path="create", times=1)

    async def go():
        async with make_client(sandbox) as client:
            return await _upload_and_run(client, sample_png_bytes)

    _, run, data, _ = arun(go())
    assert run.succeeded and data
    assert sandbox.created_runs == 1
    assert sandbox.billable_runs() == 1


def test_create_retry_reuses_idempotency_key(sandbox, sample_png_bytes):
    sandbox.faults.add("status", status=502, path="create", times=2)

    async def go():
        async with make_client(sandbox) as client:
            return await _upload_and_run(client, sample_png_bytes, key="same-key")

    _, run, _, _ = arun(go())
    assert run.succeeded and sandbox.created_runs == 1
    keys = [h.get("Idempotency-Key") or h.get("idempotency-key") for m, p, s, h in sandbox.request_log
            if m == "POST" and p.endswith("/runs")]
    assert len(keys) >= 3 and set(keys) == {"same-key"}  # 2 faulted + 1 created (+ a free 409 probe)


def test_sandbox_replays_same_idempotency_key(sandbox, sample_png_bytes):
    async def go():
        async with make_client(sandbox) as client:
            asset = await client.upload(sample_png_bytes, "image/png", "a.png")
            body = {**INPUT, "image_url": asset.url}
            a = await client.create_run(body, idempotency_key="dup", client_ref="dup")
            b = await client.create_run(body, idempotency_key="dup", client_ref="dup")
            return a, b

    a, b = arun(go())
    assert a.id == b.id and sandbox.created_runs == 1


@pytest.mark.parametrize("shape", ["outputs", "image_urls", "image", "url", "output_url", "workflow"])
def test_every_output_shape(sandbox, sample_png_bytes, shape):
    sandbox.output_shape = shape

    async def go():
        async with make_client(sandbox) as client:
            return await _upload_and_run(client, sample_png_bytes)

    _, run, data, _ = arun(go())
    assert data[8:12] == b"WEBP"


@pytest.mark.parametrize("status", ["failed", "errored", "canceled", "cancelled"])
def test_failed_statuses_raise_run_failed(sandbox, sample_png_bytes, status):
    sandbox.next_runs(status=status, failure_code="INPUT_VALIDATION_FAILED",
                      failure_message="image dimensions exceed 4096x4096")

    async def go():
        async with make_client(sandbox) as client:
            return await _upload_and_run(client, sample_png_bytes)

    with pytest.raises(E.RunFailed) as info:
        arun(go())
    assert info.value.status == status
    assert "INPUT_VALIDATION_FAILED" in str(info.value) and "4096x4096" in str(info.value)


def test_unknown_status_keeps_polling(sandbox, sample_png_bytes):
    sandbox.next_runs(status="succeeded", status_sequence=[("warming_up", 2.2), ("running", 0.2),
                                                           ("succeeded", None)])
    seen = []

    async def go():
        async with make_client(sandbox) as client:
            asset = await client.upload(sample_png_bytes, "image/png", "a.png")
            run = await client.create_run({**INPUT, "image_url": asset.url}, idempotency_key="u", client_ref="u")
            return await client.wait(run, timeout=10, on_status=lambda r, t: seen.append(r.status))

    run = arun(go())
    assert run.succeeded and "warming_up" in seen


def test_stuck_queued_times_out_with_clear_error(sandbox, sample_png_bytes):
    sandbox.next_runs(status="queued")

    async def go():
        async with make_client(sandbox) as client:
            asset = await client.upload(sample_png_bytes, "image/png", "a.png")
            run = await client.create_run({**INPUT, "image_url": asset.url}, idempotency_key="q", client_ref="q")
            return await client.wait(run, timeout=1.0)

    start = time.monotonic()
    with pytest.raises(E.RunTimeout) as info:
        arun(go())
    assert time.monotonic() - start < 5
    assert "queued" in str(info.value) and "RUNFLOW_TIMEOUT" in str(info.value)


def test_expired_output_url_is_refreshed(sandbox, sample_png_bytes):
    sandbox.faults.add("expire_output", path="download", times=1)

    async def go():
        async with make_client(sandbox) as client:
            return await _upload_and_run(client, sample_png_bytes)

    _, run, data, _ = arun(go())
    assert data[8:12] == b"WEBP"
    assert sandbox.created_runs == 1


def test_malformed_json_while_polling_is_retried(sandbox, sample_png_bytes):
    sandbox.faults.add("malformed_json", path="get_run", times=1)

    async def go():
        async with make_client(sandbox) as client:
            return await _upload_and_run(client, sample_png_bytes)

    _, run, _, _ = arun(go())
    assert run.succeeded and sandbox.created_runs == 1


def test_html_gateway_error_is_readable(sandbox):
    sandbox.faults.add("status", status=502, html=True, path="/v1/auth/me", times=10)

    async def go():
        async with make_client(sandbox, retry=RetryPolicy(attempts=2)) as client:
            await client.check()

    with pytest.raises(E.ServerError) as info:
        arun(go())
    msg = str(info.value)
    assert "502" in msg and "<" not in msg and "after 2 attempts" in msg


def test_unreachable_server_is_connect_error():
    async def go():
        async with RunflowClient("rf_live_abcdefgh1234", "http://127.0.0.1:9", sleep=Sleeps(),
                                 retry=RetryPolicy(attempts=2)) as client:
            await client.check()

    with pytest.raises(E.ConnectError) as info:
        arun(go())
    assert "Cannot reach Runflow" in str(info.value) and "RUNFLOW_API_URL" in str(info.value)
    assert "abcdefgh" not in str(info.value)


def test_extract_output_urls_every_shape():
    u = "https://cdn.example/x.webp"
    assert extract_output_urls({"outputs": [{"url": u, "type": "image"}]}) == [u]
    assert extract_output_urls({"image_urls": [u]}) == [u]
    assert extract_output_urls({"image": {"url": u}}) == [u]
    assert extract_output_urls({"url": u}) == [u]
    assert extract_output_urls({"output_url": u}) == [u]
    assert extract_output_urls({"image": [u]}) == [u]
    assert extract_output_urls({"my_output_7": [u]}) == [u]
    assert extract_output_urls({}) == [] and extract_output_urls(None) == []
