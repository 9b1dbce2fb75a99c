"""Under fire: every fault kind through the full node flow ends with exactly one billable run or one clear error,
never a hang and never a second run; odd inputs and bad results are handled deliberately."""

import asyncio
import time

import pytest
import torch

from nodes.comfy.nodes import RunflowMultiAngles
from nodes.core.config import load_settings
from nodes.core.runner import Runner, Source
from nodes.core.spec import JobSpec
from nodes.runflow import errors as E
from nodes.runflow.client import RunflowClient
from nodes.runflow.retry import RetryPolicy

KW = dict(view="back view", angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True,
          aspect_ratio="1:1", seed=0)


def image(h=40, w=56):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(h * w))


def fast_runner(sandbox, **client_kw):
    """The real runner with a fast retry policy (backoff in ms), as the soak uses."""
    settings = load_settings()
    factory = lambda: RunflowClient(settings.api_key, settings.api_url,  # noqa: E731
                                    retry=RetryPolicy(base=0.02, cap=0.1, jitter=0.01),
                                    **{"settle": 0.3, **client_kw})
    return Runner(settings, client_factory=factory, use_cache=False)


def run_once(sandbox, source_png, **client_kw):
    r = fast_runner(sandbox, **client_kw)
    src = Source(data=source_png, mime="image/png", pixel_sha256="p" * 64, upload_sha256=str(time.time()))
    start = time.monotonic()
    (res,) = asyncio.run(r.run([(src, JobSpec(view="back view", label="back view"))]))
    return res, time.monotonic() - start


FAULTS = [
    ("status", dict(status=500, path="create", times=3)),
    ("status", dict(status=502, html=True, path="get_run", times=3)),
    ("status", dict(status=503, path="upload_create", times=2)),
    ("status", dict(status=429, retry_after="0", path="create", times=2)),
    ("drop_after", dict(path="create", times=1)),
    ("drop_after", dict(path="create", times=2)),
    ("drop_before", dict(path="create", times=2)),
    ("drop_after", dict(path="get_run", times=2)),
    ("drop_after", dict(path="upload_confirm", times=1)),
    ("drop_before", dict(path="upload_put", times=2)),
    ("expire_output", dict(path="download", times=1)),
    ("malformed_json", dict(path="get_run", times=2)),
    ("malformed_json", dict(path="create", times=1)),
]


@pytest.mark.parametrize("kind,params", FAULTS, ids=[f"{k}-{p.get('path')}-{p.get('status', '')}x{p['times']}"
                                                      for k, p in FAULTS])
def test_transient_faults_end_in_exactly_one_run(sandbox_env, sample_png_bytes, kind, params):
    sandbox_env.faults.add(kind, **params)
    res, wall = run_once(sandbox_env, sample_png_bytes)
    assert res.error is None, res.error
    assert res.data and res.data[8:12] == b"WEBP"
    assert sandbox_env.created_runs == 1 and sandbox_env.billable_runs() == 1
    assert wall < 15


def test_slow_create_past_the_read_timeout_bills_once(sandbox_env, sample_png_bytes):
    import httpx

    sandbox_env.faults.add("delay", seconds=1.2, path="create", times=1)
    res, _ = run_once(sandbox_env, sample_png_bytes, timeout=httpx.Timeout(5.0, read=0.5))
    assert res.error is None
    time.sleep(1.0)  # let the delayed handler finish: it must replay, not create a second run
    assert sandbox_env.created_runs == 1


def test_slow_polls_past_the_read_timeout_recover(sandbox_env, sample_png_bytes):
    import httpx

    sandbox_env.faults.add("delay", seconds=1.0, path="get_run", times=2)
    res, _ = run_once(sandbox_env, sample_png_bytes, timeout=httpx.Timeout(5.0, read=0.4))
    assert res.error is None and sandbox_env.created_runs == 1


def test_persistent_server_errors_end_in_a_clear_error(sandbox_env, sample_png_bytes):
    sandbox_env.faults.add("status", status=503, path="create", times=None)
    res, wall = run_once(sandbox_env, sample_png_bytes)
    assert isinstance(res.error, E.ServerError)
    assert "503" in res.error.message and "try again" in res.error.message
    assert sandbox_env.created_runs == 0 and wall < 10


def test_unknown_status_then_success(sandbox_env, sample_png_bytes):
    sandbox_env.next_runs(status="succeeded", status_sequence=[("provisioning", 0.6), ("succeeded", None)])
    res, _ = run_once(sandbox_env, sample_png_bytes)
    assert res.error is None and sandbox_env.created_runs == 1


def test_stuck_in_queue_ends_with_timeout_not_a_hang(sandbox_env, sample_png_bytes, monkeypatch):
    monkeypatch.setenv("RUNFLOW_TIMEOUT", "1.5")
    sandbox_env.next_runs(status="queued")
    res, wall = run_once(sandbox_env, sample_png_bytes)
    assert isinstance(res.error, E.RunTimeout) and "queued" in res.error.message
    assert wall < 6 and sandbox_env.created_runs == 1


@pytest.mark.parametrize("mode,needle", [("truncated", "truncated or corrupt"), ("not_image", "not an image"),
                                         ("bomb", "pixels"), ("huge", "limit")])
def test_bad_results_are_clear_errors(sandbox_env, mode, needle):
    sandbox_env.faults.add("corrupt_output", mode=mode, times=1)
    with pytest.raises(E.RunflowError) as info:
        asyncio.run(RunflowMultiAngles().execute(**KW, image=image()))
    assert needle in str(info.value).lower() or needle in str(info.value)
    assert sandbox_env.created_runs == 1


def test_huge_json_body_is_refused_not_buffered(sandbox_env, sample_png_bytes):
    sandbox_env.faults.add("huge_json", path="get_run", times=1)
    res, wall = run_once(sandbox_env, sample_png_bytes)
    assert isinstance(res.error, E.ResultError) and "MB" in res.error.message
    assert wall < 10


@pytest.mark.parametrize("shape,note", [((1, 1, 1, 3), None), ((1, 16, 16, 2), "grey+alpha"),
                                        ((1, 20, 20, 1), None)])
def test_odd_shapes_are_handled(sandbox_env, shape, note):
    out = asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(*shape)))
    assert out["result"][0].shape[-1] == 3


def test_out_of_range_values_are_clipped(sandbox_env):
    img = image() * 3 - 1  # values in -1..2
    img[0, 0, 0] = float("inf")
    out = asyncio.run(RunflowMultiAngles().execute(**KW, image=img))
    assert torch.isfinite(out["result"][0]).all()


def test_huge_input_is_downscaled_under_the_limits_before_upload(sandbox_env):
    big = torch.zeros(1, 8192, 8192, 3)
    big[..., 0] = torch.linspace(0, 1, 8192)
    asyncio.run(RunflowMultiAngles().execute(**KW, image=big))
    (run,) = sandbox_env.runs.values()
    assert run["status_code"] == "succeeded", "the sandbox fails inputs over 4096 px like the real API"
    del big


def test_five_channels_is_a_clear_input_error_and_free(sandbox_env):
    with pytest.raises(E.InputError, match="channels"):
        asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 8, 8, 5)))
    assert sandbox_env.request_log == []


def test_no_task_or_connection_is_left_behind(sandbox_env):
    async def go():
        before = set(asyncio.all_tasks())
        await RunflowMultiAngles().execute(**KW, image=image())
        return set(asyncio.all_tasks()) - before - {asyncio.current_task()}

    assert asyncio.run(go()) == set()
