"""The node classes without ComfyUI: contract, validation before any request, execute over real HTTP to the sandbox,
the persistent cache, turnaround ordering, partial failure, spend guard, resume after cancel."""

import asyncio
import json

import numpy as np
import pytest
import torch

from nodes.comfy.nodes import NODE_CLASS_MAPPINGS, RunflowMultiAngles, RunflowMultiAnglesTurnaround
from nodes.runflow import errors as E
from nodes.runflow.contract import ANGLES, ASPECT_RATIOS, SHOTS, VIEWS

KW = dict(view="right side view", angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True,
          aspect_ratio="1:1", seed=0)
TKW = dict(views="all", angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True,
           aspect_ratio="1:1", seed=0, max_concurrent=8)


def image(batch=1, h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0, 1, w).repeat(h, 1)
    img = torch.stack([base, base.T[:h, :w] if h == w else base.flip(1), torch.full((h, w), 0.5)], dim=-1)
    return (img[None].repeat(batch, 1, 1, 1) + 0.05 * torch.rand(batch, h, w, 3, generator=g)).clamp(0, 1)


def single(**kw):
    return asyncio.run(RunflowMultiAngles().execute(**{**KW, **kw}))


def turnaround(**kw):
    return asyncio.run(RunflowMultiAnglesTurnaround().execute(**{**TKW, **kw}))


def test_contract_of_the_single_node():
    spec = RunflowMultiAngles.INPUT_TYPES()
    req, opt = spec["required"], spec["optional"]
    assert list(req["view"][0]) == list(VIEWS) and list(req["angle"][0]) == list(ANGLES)
    assert list(req["shot"][0]) == list(SHOTS) and list(req["aspect_ratio"][0]) == list(ASPECT_RATIOS)
    assert req["match_input_aspect"] == ("BOOLEAN", req["match_input_aspect"][1])
    assert req["match_input_aspect"][1]["default"] is True
    assert req["prompt"][1]["multiline"] is True and req["prompt"][1]["default"] == ""
    assert opt["image"][0] == "IMAGE" and opt["image_url"][0] == "STRING"
    assert {"callback_url", "metadata"} <= set(opt)
    # saved workflows keep widget values by position: the inputs added later stay at the end
    assert list(opt) == ["image", "image_url", "upload_format", "callback_url", "metadata", "pose", "camera_info",
                         "show_preview"]
    assert list(RunflowMultiAnglesTurnaround.INPUT_TYPES()["optional"]) == ["image", "image_url", "upload_format",
                                                                           "pose", "reroll", "take", "show_preview"]
    advanced = {n for n, (_, o) in {**req, **opt}.items() if o.get("advanced")}
    assert advanced == {"upload_format", "callback_url", "metadata", "show_preview"}
    for name, (_, options) in {**req, **opt}.items():
        assert options.get("tooltip"), f"{name} has no tooltip"
    assert RunflowMultiAngles.RETURN_TYPES == ("IMAGE", "STRING", "STRING")
    assert RunflowMultiAngles.RETURN_NAMES == ("image", "urls", "run_info")
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert not getattr(cls, "OUTPUT_NODE", False), "an unconnected node must never run"
        assert not hasattr(cls, "IS_CHANGED"), "ComfyUI's own cache must keep working"
        if name not in ("RunflowContactSheet", "RunflowPoseToPrompt"):  # paid nodes wait on the network: async
            assert asyncio.iscoroutinefunction(getattr(cls, cls.FUNCTION))


def test_single_run_returns_the_image_urls_and_info(sandbox_env):
    out = single(image=image())
    batch, urls, info = out["result"]
    assert batch.dtype == torch.float32 and batch.shape[0] == 1 and batch.shape[-1] == 3
    assert 0 <= batch.min() and batch.max() <= 1
    assert batch.shape[1:3] == (48, 64) or batch.shape[2] / batch.shape[1] == pytest.approx(64 / 48, rel=0.05)
    assert urls.startswith(sandbox_env.url)
    (item,) = json.loads(info)
    assert item["run_id"] in sandbox_env.runs and item["cost"] == "0.20" and item["label"] == "right side view"
    sent = sandbox_env.runs[item["run_id"]]["input"]
    assert sent["view"] == "right side view" and sent["match_input_aspect"] == "true"
    assert "aspect_ratio" not in sent and "prompt" not in sent
    assert out["ui"]["runflow"][0]["spent_usd"] == pytest.approx(0.2)


def test_aspect_ratio_is_sent_only_when_not_matching(sandbox_env):
    out = single(image=image(), match_input_aspect=False, aspect_ratio="16:9", prompt="keep the lighting")
    (item,) = json.loads(out["result"][2])
    sent = sandbox_env.runs[item["run_id"]]["input"]
    assert sent["match_input_aspect"] == "false" and sent["aspect_ratio"] == "16:9"
    assert sent["prompt"] == "keep the lighting"
    h, w = out["result"][0].shape[1:3]
    assert w / h == pytest.approx(16 / 9, rel=0.02)


def test_batch_means_one_run_per_item_in_order(sandbox_env):
    imgs = torch.cat([image(seed=1), image(seed=2), image(seed=3)])
    out = single(image=imgs)
    batch, urls, info = out["result"]
    items = json.loads(info)
    assert batch.shape[0] == 3 and len(urls.splitlines()) == 3
    assert [i["label"] for i in items] == ["#1 right side view", "#2 right side view", "#3 right side view"]
    assert sandbox_env.created_runs == 3 and sandbox_env.uploads == 3


@pytest.mark.parametrize("kwargs,needle", [
    (dict(), "no source"),
    (dict(image_url="https://example.com/a.png", image="IMG"), "not both"),
    (dict(image_url="file:///etc/passwd"), "a file on this computer"),
    (dict(image_url="ftp://example.com/a.png"), "public https://"),
    (dict(image_url="http://example.com/a.png"), "public https://"),  # the docs promise https; http would fail later
    (dict(image_url="/home/me/a.png"), "Load Image node"),
    (dict(image_url="C:\\photos\\shoe.png"), "is a file on this computer (C:\\photos\\shoe.png)"),
    (dict(image_url="\\\\server\\share\\shoe.png"), "connect that to the image input"),
    (dict(image="IMG", metadata="{not json"), "metadata"),
    (dict(image="IMG", metadata="[1, 2]"), "metadata must be a JSON object"),
    (dict(image="IMG", callback_url="javascript:alert(1)"), "callback_url"),
    (dict(image="IMG", prompt="x" * 5000), "prompt"),
    (dict(image="IMG", view="top view"), "view"),
    (dict(image="IMG", upload_format="gif"), "upload_format"),
    (dict(image="EMPTY"), "empty"),
])
def test_bad_input_is_refused_before_any_request(sandbox_env, kwargs, needle):
    if kwargs.get("image") == "IMG":
        kwargs["image"] = image()
    elif kwargs.get("image") == "EMPTY":
        kwargs["image"] = torch.zeros(0, 8, 8, 3)
    with pytest.raises(E.InputError) as info:
        single(**kwargs)
    assert needle in str(info.value)
    assert sandbox_env.request_log == [], "rejected input must not reach Runflow"


def test_missing_key_says_where_to_put_it(sandbox_env, monkeypatch):
    monkeypatch.delenv("RUNFLOW_API_KEY")
    with pytest.raises(E.ConfigError) as info:
        single(image=image())
    assert "RUNFLOW_API_KEY" in str(info.value) and "Settings" in str(info.value)
    assert sandbox_env.created_runs == 0


def test_requeue_is_free_even_after_a_restart(sandbox_env):
    first = single(image=image())
    assert sandbox_env.created_runs == 1
    again = single(image=image())  # a new node instance and runner, same disk cache: as after a restart
    assert sandbox_env.created_runs == 1 and sandbox_env.uploads == 1
    assert torch.equal(first["result"][0], again["result"][0])
    assert again["ui"]["runflow"][0]["from_cache"] == 1 and again["ui"]["runflow"][0]["spent_usd"] == 0
    single(image=image(), seed=1)  # a new seed is a deliberate re-roll
    assert sandbox_env.created_runs == 2


def test_turnaround_renders_views_in_order_with_one_upload(sandbox_env):
    out = turnaround(image=image())
    images, labels, urls, info, singles = out["result"]
    assert labels == list(VIEWS)
    assert images.shape[0] == 8 and len(singles) == 8 and singles[3].shape[0] == 1
    assert sandbox_env.uploads == 1 and sandbox_env.created_runs == 8
    sent = [sandbox_env.runs[i["run_id"]]["input"]["view"] for i in json.loads(info)]
    assert sent == list(VIEWS)
    # every view is visibly different
    assert not torch.equal(images[0], images[4])


def test_turnaround_view_selection_and_shared_upload_across_nodes(sandbox_env):
    out = turnaround(image=image(), views="Back view, front, back view")
    assert out["result"][1] == ["front view", "back view"]
    single(image=image(), view="left side view")  # another node, same source: no second upload
    assert sandbox_env.uploads == 1
    with pytest.raises(E.InputError, match="unknown 'top'"):
        turnaround(image=image(), views="front view, top")


def test_partial_failure_keeps_the_rest_and_requeue_reruns_only_failed(sandbox_env):
    sandbox_env.next_runs(status="failed", failure_code="SANDBOX_FORCED_FAILURE", failure_message="boom", times=2)
    with pytest.raises(E.PartialFailure) as info:
        turnaround(image=image())
    assert len(info.value.failures) == 2 and "2 of 8" in str(info.value)
    assert all(label in VIEWS for label in info.value.failures)
    assert sandbox_env.created_runs == 8
    out = turnaround(image=image())
    assert sandbox_env.created_runs == 10
    assert out["result"][1] == list(VIEWS)


def test_spend_guard_refuses_before_anything_is_sent(sandbox_env, monkeypatch):
    monkeypatch.setenv("RUNFLOW_MAX_RUNS_PER_PROMPT", "4")
    with pytest.raises(E.SpendLimitError) as info:
        turnaround(image=image())
    assert "8 runs × $0.20 = $1.60" in str(info.value) and "RUNFLOW_MAX_RUNS_PER_PROMPT" in str(info.value)
    assert sandbox_env.uploads == 0 and sandbox_env.created_runs == 0
    out = turnaround(image=image(), views="front view, back view")
    assert out["result"][1] == ["front view", "back view"]


def test_cancel_then_requeue_polls_the_same_run(sandbox_env):
    sandbox_env.next_runs(status="succeeded", run_seconds=1.5)

    async def cancel_midway():
        task = asyncio.ensure_future(RunflowMultiAngles().execute(**KW, image=image()))
        while sandbox_env.created_runs == 0:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert sandbox_env.created_runs == 1
    out = single(image=image())  # picks the in-flight run up from the journal
    assert sandbox_env.created_runs == 1 and out["result"][0].shape[0] == 1


def test_rgba_and_grey_inputs_are_handled(sandbox_env):
    rgba = torch.cat([image(), torch.full((1, 48, 64, 1), 0.5)], dim=-1)
    out = single(image=rgba)
    assert out["result"][0].shape[-1] == 3
    grey = image()[..., :1]
    out = single(image=grey)
    assert out["result"][0].shape[-1] == 3
    nan = image().clone()
    nan[0, 0, 0, 0] = float("nan")
    assert torch.isfinite(single(image=nan)["result"][0]).all()


def test_image_url_source(sandbox_env, sample_png_bytes):
    from nodes.runflow.client import RunflowClient

    async def upload():
        async with RunflowClient(sandbox_env.api_key, sandbox_env.url) as c:
            return (await c.upload(sample_png_bytes, "image/png", "a.png")).url

    url = asyncio.run(upload())
    out = single(image_url=url)
    (item,) = json.loads(out["result"][2])
    assert sandbox_env.runs[item["run_id"]]["input"]["image_url"] == url
    assert np.asarray(out["result"][0]).shape[0] == 1


def test_a_journalled_run_unknown_to_runflow_is_created_afresh(sandbox_env, monkeypatch):
    from nodes.sandbox import Sandbox

    monkeypatch.setenv("RUNFLOW_SANDBOX", "1")  # both sandboxes share one cache identity, as in the CLI
    sandbox_env.next_runs(status="succeeded", run_seconds=5)

    async def cancel_midway():
        task = asyncio.ensure_future(RunflowMultiAngles().execute(**KW, image=image()))
        while sandbox_env.created_runs == 0:
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(cancel_midway())
    with Sandbox(run_seconds=0.2) as other:  # the journal's run id means nothing here: 404 -> create a new run
        monkeypatch.setenv("RUNFLOW_API_URL", other.url)
        monkeypatch.setenv("RUNFLOW_API_KEY", other.api_key)
        out = single(image=image())
        assert other.created_runs == 1 and out["result"][0].shape[0] == 1


def test_status_text_and_progress_without_comfyui_are_harmless_and_complete(sandbox_env, monkeypatch):
    from nodes.comfy import adapter

    shown = []
    monkeypatch.setattr(adapter, "status_text", lambda text, node_id=None: shown.append(text))
    single(image=image())
    single(image=image())
    assert any("About to spend $0.20 (1 run × $0.20)." in t for t in shown), shown
    assert any("Spending $0.20 (1 run × $0.20)." in t for t in shown), shown  # once the run is sent
    done = next(t for t in shown if t.startswith("Runflow: done"))
    assert "Spent $0.20; session total $0.20 (1 run)." in done, done
    assert shown[-1].startswith("Runflow: from cache") and "$0.00; session total $0.20 (1 run)." in shown[-1]
    for text in shown:  # two short sentences at most (no notes here), no "(1 runs)", no ".."
        assert len(text.splitlines()) <= 2 and "1 runs" not in text and ".." not in text, text
        assert all(line.endswith(".") for line in text.splitlines()), text  # reads well without line breaks too


def test_status_plural_and_progress_follows_the_run():
    from nodes.comfy.status import Status, running_fraction
    from nodes.core.events import ItemEvent, ItemState, Plan
    from nodes.core.session import SpendTotals

    now = [100.0]
    st = Status(2, "Runflow turnaround", SpendTotals(), clock=lambda: now[0])
    st.event(Plan(items=2, cached=0, pending=0, new_runs=2, cost_usd=0.4, line="", estimate_s=10.0))
    assert "About to spend $0.40 (2 runs × $0.20)." in st.text()
    st.event(ItemEvent(0, "a", ItemState.QUEUED))
    st.event(ItemEvent(1, "b", ItemState.RUNNING))
    now[0] += 4
    assert "1 running, 1 queued · 4s, about 6s left." in st.text() and "Spending $0.40" in st.text()
    # a slow run (30 s against a 10 s estimate) keeps moving, never reaches the end
    seen = [running_fraction(t, 10.0) for t in (0, 5, 10, 15, 20, 30, 60)]
    assert seen == sorted(seen) and seen[-1] < 1.0 and seen[3] - seen[2] > 0.05
    assert running_fraction(30, 1.0) < 0.95  # a far too small estimate does not pin the bar at the end


def test_requeue_after_cancel_says_it_collects_a_run_already_sent():
    from nodes.comfy.status import Status
    from nodes.core.events import Plan
    from nodes.core.session import SpendTotals

    st = Status(1, "Runflow", SpendTotals())
    st.event(Plan(items=1, cached=0, pending=1, new_runs=0, cost_usd=0.0, line="0 runs × $0.20 = $0.00"))
    assert "Collecting 1 run sent earlier (no new charge)." in st.text()
    assert "spend" not in st.text().lower() and "0 runs" not in st.text()


def test_cancel_after_a_run_was_sent_says_it_may_still_bill(sandbox_env, monkeypatch):
    """ComfyUI's Cancel while a run is at Runflow: the user is told (status and the error they see) that it may
    still finish and bill, and how to collect it; a re-queue then collects it without a new run."""
    from nodes.comfy import adapter

    shown = []
    monkeypatch.setattr(adapter, "status_text", lambda text, node_id=None: shown.append(text))
    sandbox_env.next_runs(status="succeeded", run_seconds=3)
    monkeypatch.setattr(adapter, "interrupted", lambda: sandbox_env.created_runs > 0)  # Cancel once a run exists
    with pytest.raises(E.Interrupted) as err:
        single(image=image())
    assert "1 run already sent to Runflow may still finish and bill (up to $0.20)" in err.value.message
    assert "re-queue the same inputs to collect it" in err.value.message
    assert type(err.value).__module__ == "runflow"  # ComfyUI shows "runflow.Interrupted", not a file path
    assert shown[-1].startswith("Runflow: cancelled") and "may still finish and bill" in shown[-1]
    monkeypatch.setattr(adapter, "interrupted", lambda: False)
    single(image=image())
    assert sandbox_env.created_runs == 1, "the re-queue created a second run instead of collecting the first"
    assert any("Collecting 1 run sent earlier (no new charge)." in t for t in shown), shown[-5:]


def test_cancel_before_anything_was_sent_bills_nothing():
    from nodes.comfy import adapter
    from nodes.comfy.status import Status
    from nodes.core.events import ItemEvent, ItemState
    from nodes.core.session import SpendTotals

    st = Status(1, "Runflow", SpendTotals())
    st.event(ItemEvent(0, "a", ItemState.UPLOADING))
    assert st.sent() == 0
    assert st.cancelled() == "Cancelled before anything was sent to Runflow: nothing was billed."
    st.event(ItemEvent(0, "a", ItemState.CREATING))  # the create may have reached Runflow: it may bill
    assert st.sent() == 1 and "may still finish and bill" in st.cancelled()
    with pytest.raises(E.Interrupted, match="nothing was billed"):  # outside ComfyUI: ours, same words
        adapter.raise_comfy_interrupt()


def test_error_types_have_a_short_stable_name():
    """ComfyUI names an error "<module>.<class>"; inside ComfyUI the pack's module is its absolute path."""
    import inspect

    classes = [c for c in vars(E).values() if inspect.isclass(c) and issubclass(c, E.RunflowError)]
    assert len(classes) > 10
    for cls in classes:
        assert cls.__module__ == "runflow", cls
        assert "/" not in f"{cls.__module__}.{cls.__qualname__}"


def test_input_notes_stay_visible_on_the_node(sandbox_env, monkeypatch):
    from nodes.comfy import adapter

    shown = []
    monkeypatch.setattr(adapter, "status_text", lambda text, node_id=None: shown.append(text))
    rgba = torch.cat([image(), torch.full((1, 48, 64, 1), 0.5)], dim=-1)
    single(image=rgba)
    assert "Note: RGBA composited over white" in shown[-1] and "done" in shown[-1]


def test_contact_sheet_lays_out_a_labelled_grid():
    from nodes.comfy.nodes import RunflowContactSheet

    batch = torch.cat([torch.full((1, 40, 60, 3), v) for v in (0.0, 0.25, 0.5, 0.75, 1.0)])
    (sheet,) = RunflowContactSheet().execute([batch], [3], [64], list("abcde"))
    assert sheet.shape[0] == 1 and sheet.shape[-1] == 3
    # 3 columns x 2 rows of 64 px cells (+ gaps and caption rows): wider than tall, and not blank
    assert sheet.shape[2] > sheet.shape[1] > 128 and sheet.std() > 0.1
    (same,) = RunflowContactSheet().execute([batch], [3], [64], ["a\nb\nc\nd\ne"])
    assert torch.equal(sheet, same)
