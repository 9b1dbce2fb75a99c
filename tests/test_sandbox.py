"""The Runflow sandbox, driven with plain httpx over real HTTP (no mocks)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
import pytest
from PIL import Image

from nodes.runflow.contract import ANGLES, ASPECT_RATIOS, RUNS_PATH, SHOTS, VIEWS
from nodes.sandbox import Sandbox
from nodes.sandbox.render import render_pose

POSE = {"view": "right side view", "angle": "eye-level shot", "shot": "medium shot"}


@pytest.fixture
def api(sandbox):
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {sandbox.api_key}"},
                      timeout=10) as client:
        yield client


def upload(api, data: bytes, mime: str = "image/png") -> dict:
    created = api.post("/v1/asset-uploads", json={"filename": "in.png", "mime_type": mime, "size_bytes": len(data)})
    assert created.status_code == 201, created.text
    put = httpx.put(created.json()["upload_url"], content=data, headers={"Content-Type": mime})
    assert put.status_code == 200, put.text
    confirmed = api.post(f"/v1/asset-uploads/{created.json()['asset_id']}/confirmations", json={})
    assert confirmed.status_code == 201, confirmed.text
    return confirmed.json()


def create(api, image_url: str, headers: dict | None = None, **fields) -> httpx.Response:
    return api.post(RUNS_PATH, json={"input": {"image_url": image_url, **POSE, **fields}}, headers=headers)


def wait(api, run_id: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/v1/runs/{run_id}").json()
        if run["status_code"] in ("succeeded", "failed", "errored", "canceled", "cancelled", "partial_succeeded"):
            return run
        assert time.monotonic() < deadline, f"run stuck in {run['status_code']}"
        time.sleep(0.03)


def run_to_end(api, image_url: str, **fields) -> dict:
    resp = create(api, image_url, **fields)
    assert resp.status_code == 201, resp.text
    return wait(api, resp.json()["id"])


@pytest.fixture
def image_url(api, sample_png_bytes) -> str:
    return upload(api, sample_png_bytes)["url"]


# -- auth, health ------------------------------------------------------------------------------------------------


def test_health_needs_no_key_and_api_needs_the_right_one(sandbox):
    assert httpx.get(f"{sandbox.url}/v1/health").json() == {"status": "ok"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": sandbox.api_key}):
        resp = httpx.get(f"{sandbox.url}/v1/auth/me", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["code"] == "UNAUTHORIZED" and resp.json()["errors"] is None
    me = httpx.get(f"{sandbox.url}/v1/auth/me", headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert me.status_code == 200 and me.json()["sandbox"] is True and me.json()["email"] == "sandbox@runflow.local"


def test_keep_alive_and_head(api, sandbox):
    for _ in range(3):
        assert api.get("/v1/auth/me").status_code == 200
    head = api.head("/v1/runs/statuses")
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0 and head.content == b""
    statuses = [s["code"] for s in api.get("/v1/runs/statuses").json()["items"]]
    assert {"queued", "dispatching", "running", "succeeded", "failed", "canceled"} <= set(statuses)
    assert sandbox.count("GET", "/v1/auth/me") == 3


# -- uploads -----------------------------------------------------------------------------------------------------


def test_upload_flow_and_signed_download(api, sandbox, sample_png_bytes):
    asset = upload(api, sample_png_bytes)
    assert asset["mime_type"] == "image/png" and asset["size_bytes"] == len(sample_png_bytes)
    assert asset["asset_type"] == "image" and asset["source_type"] == "upload" and asset["folder_id"] is None
    assert re.match(re.escape(sandbox.url) + r"/_storage/get/[^?]+\?expires=\d+&sig=[0-9a-f]+$", asset["url"])
    got = httpx.get(asset["url"])
    assert got.content == sample_png_bytes and got.headers["content-type"] == "image/png"
    assert sandbox.uploads == 1
    assert [r["method"] for r in sandbox.storage_requests] == ["PUT", "GET"]
    assert all("authorization" not in r["headers"] for r in sandbox.storage_requests)
    again = api.get(f"/v1/assets/{asset['id']}")
    assert again.status_code == 200 and httpx.get(again.json()["url"]).content == sample_png_bytes
    assert api.get("/v1/assets/nope").status_code == 404


def test_upload_refusals(api, sandbox, sample_png_bytes):
    bad = api.post("/v1/asset-uploads", json={"filename": "a.gif", "mime_type": "image/gif", "size_bytes": 0})
    assert bad.status_code == 422 and bad.json()["code"] == "VALIDATION_ERROR"
    assert {e["field"] for e in bad.json()["errors"]} == {"mime_type", "size_bytes"}
    too_big = api.post("/v1/asset-uploads", json={"filename": "a.png", "mime_type": "image/png",
                                                  "size_bytes": 52_428_801})
    assert too_big.status_code == 422 and too_big.json()["errors"][0]["field"] == "size_bytes"

    created = api.post("/v1/asset-uploads", json={"filename": "a.png", "mime_type": "image/png",
                                                  "size_bytes": len(sample_png_bytes)}).json()
    confirm = f"/v1/asset-uploads/{created['asset_id']}/confirmations"
    assert api.post(confirm, json={}).status_code == 409  # nothing PUT yet
    wrong_type = httpx.put(created["upload_url"], content=sample_png_bytes, headers={"Content-Type": "image/jpeg"})
    assert wrong_type.status_code == 403 and b"SignatureDoesNotMatch" in wrong_type.content
    with_auth = httpx.put(created["upload_url"], content=sample_png_bytes,
                          headers={"Content-Type": "image/png", "Authorization": f"Bearer {sandbox.api_key}"})
    assert with_auth.status_code == 400 and b"must not be sent to presigned URLs" in with_auth.content
    tampered = httpx.put(created["upload_url"].replace("X-Sig=", "X-Sig=0"), content=sample_png_bytes,
                         headers={"Content-Type": "image/png"})
    assert tampered.status_code == 403
    assert sandbox.storage_requests[1]["headers"]["authorization"].startswith("Bearer")  # recorded for tests
    assert api.post("/v1/asset-uploads/00000000-0000-0000-0000-000000000000/confirmations").status_code == 404


def test_expired_urls(sample_png_bytes):
    with Sandbox(upload_url_ttl=0) as sb:
        created = httpx.post(f"{sb.url}/v1/asset-uploads", headers={"Authorization": f"Bearer {sb.api_key}"},
                             json={"filename": "a.png", "mime_type": "image/png", "size_bytes": 10}).json()
        put = httpx.put(created["upload_url"], content=b"0123456789", headers={"Content-Type": "image/png"})
        assert put.status_code == 403 and b"Request has expired" in put.content
    with Sandbox(get_url_ttl=0) as sb, httpx.Client(base_url=sb.url,
                                                    headers={"Authorization": f"Bearer {sb.api_key}"}) as api:
        asset = upload(api, sample_png_bytes)
        got = httpx.get(asset["url"])
        assert got.status_code == 403 and b"Request has expired" in got.content
        bad_sig = httpx.get(asset["url"].replace("sig=", "sig=f"))
        assert bad_sig.status_code == 403
        assert httpx.get(f"{sb.url}/_storage/get/unknown?expires=1&sig=x").status_code == 404


def test_upload_of_50_mib(api, sandbox):
    data = bytes(52_428_800)
    created = api.post("/v1/asset-uploads", json={"filename": "big.png", "mime_type": "image/png",
                                                  "size_bytes": len(data)}).json()
    assert httpx.put(created["upload_url"], content=data, headers={"Content-Type": "image/png"}).status_code == 200
    asset = api.post(f"/v1/asset-uploads/{created['asset_id']}/confirmations").json()
    assert asset["size_bytes"] == len(data)


# -- create: validation ------------------------------------------------------------------------------------------

VIEW_LIST = ", ".join(VIEWS)


@pytest.mark.parametrize("change, status, field, message", [
    ({"view": "side view"}, 422, "input.view", f"must be one of: {VIEW_LIST}"),
    ({"match_input_aspect": True}, 422, "input.match_input_aspect", "must be one of: true, false (got a JSON "
                                                                      "boolean; the API takes strings)"),
    ({"match_input_aspect": "yes"}, 422, "input.match_input_aspect", "must be one of: true, false"),
    ({"image_url": "ftp://example.com/a.png"}, 422, "input.image_url",
     "media URL must use HTTP(S) or data URI, got 'ftp'"),
    ({"image_url": "runflow://assets/123"}, 422, "input.image_url",
     "media URL must use HTTP(S) or data URI, got 'runflow'"),
    ({"seed": 3}, 422, "input.seed", "unknown field"),
    ({"angle": "worm's-eye"}, 422, "input.angle", "must be one of: low-angle shot, eye-level shot, elevated shot, "
                                                  "high-angle shot"),
    ({"shot": "extreme close-up"}, 422, "input.shot", "must be one of: close-up, medium shot, wide shot"),
    ({"aspect_ratio": "5:4"}, 422, "input.aspect_ratio", "must be one of: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 21:9"),
    ({"prompt": 5}, 422, "input.prompt", "must be a string"),
    ({"view": None}, 422, "input.view", None),
])
def test_create_validates_each_input_field(api, sandbox, change, status, field, message):
    body = {"image_url": "https://example.com/a.png", **POSE, **change}
    resp = api.post(RUNS_PATH, json={"input": body})
    assert resp.status_code == status
    err = resp.json()
    assert err["code"] == "VALIDATION_ERROR" and err["message"] == "Input validation failed"
    item = next(e for e in err["errors"] if e["field"] == field)
    assert message is None or item["message"] == message
    assert sandbox.created_runs == 0


@pytest.mark.parametrize("body, status, field", [
    ({"input": {"image_url": "https://example.com/a.png"}}, 422, "input.view"),
    ({"input": {"view": "back view"}}, 422, "input.image_url"),
    ({"input": "x"}, 422, "input"),
    ({}, 422, "input"),
    ({"input": {"image_url": "https://e.com/a.png", **POSE}, "callback_url": "ftp://x"}, 422, "callback_url"),
    ({"input": {"image_url": "https://e.com/a.png", **POSE}, "callback_url": "https://e.com/" + "a" * 2048}, 422,
     "callback_url"),
    ({"input": {"image_url": "https://e.com/a.png", **POSE}, "metadata": [1]}, 422, "metadata"),
    ({"input": {"image_url": "https://e.com/a.png", **POSE}, "client_ref": "r" * 256}, 422, "client_ref"),
    ({"input": {"image_url": "https://e.com/a.png", **POSE}, "priority": 1}, 400, "priority"),
])
def test_create_validates_the_envelope(api, body, status, field):
    resp = api.post(RUNS_PATH, json=body)
    assert resp.status_code == status, resp.text
    assert field in [e["field"] for e in resp.json()["errors"]]


def test_create_bad_json_and_model_paths(api):
    assert api.post(RUNS_PATH, content=b"{nope", headers={"Content-Type": "application/json"}).status_code == 400
    other = api.post("/v1/models/runflow/other-model/runs", json={"input": {}})
    assert other.status_code == 404 and other.json()["code"] == "MODEL_NOT_FOUND"
    assert api.post("/v1/models/multi-angles/runs", json={"input": {}}).status_code == 405
    missing = api.get("/v1/runs/3f1d0d2e-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json()["code"] == "RUN_NOT_FOUND"


# -- runs --------------------------------------------------------------------------------------------------------


def test_status_progression_and_run_record(sample_png_bytes):
    with Sandbox(run_seconds=0.5, queue_seconds=0.15) as sb, httpx.Client(
            base_url=sb.url, headers={"Authorization": f"Bearer {sb.api_key}"}) as api:
        url = upload(api, sample_png_bytes)["url"]
        created = create(api, url)
        assert created.status_code == 201
        run = created.json()
        assert run["status_code"] == "queued" and run["output"] == {} and run["cost"] is None
        assert run["target_type"] == "model" and run["source_code"] == "api" and run["batch_id"] is None
        assert run["input"] == {"image_url": url, **POSE} and run["client_ref"] is None
        seen = []
        while not seen or seen[-1] not in ("succeeded", "failed"):
            seen.append(api.get(f"/v1/runs/{run['id']}").json()["status_code"])
            time.sleep(0.01)
        order = ["queued", "dispatching", "running", "succeeded"]
        assert [s for s in order if s in seen] == [s for s in dict.fromkeys(seen)]
        assert {"queued", "running", "succeeded"} <= set(seen)
        done = api.get(f"/v1/runs/{run['id']}").json()
        assert done["cost"] == "0.20" and done["failure_code"] is None and done["duration_ms"] >= 400
        for key in ("created_at", "started_at", "completed_at"):
            assert done[key].endswith("+00:00")
        out = done["output"]
        assert out["nsfw_detected"] is False and isinstance(out["seed"], int) and "inference_ms" in out["timing"]
        item = out["outputs"][0]
        assert item["type"] == "image" and item["mime_type"] == "image/webp"
        img = Image.open(io.BytesIO(httpx.get(item["url"]).content))
        assert img.format == "WEBP" and img.size == (item["width"], item["height"]) == (1024, 680)
        assert sb.billable_runs() == 1 and sb.created_runs == 1


def test_envelope_fields_are_stored(api, image_url):
    run = api.post(RUNS_PATH, json={"input": {"image_url": image_url, **POSE}, "client_ref": "abc",
                                    "metadata": {"k": 1}, "callback_url": "https://e.com/hook"}).json()
    assert (run["client_ref"], run["metadata"], run["callback_url"]) == ("abc", {"k": 1}, "https://e.com/hook")


def test_output_urls_are_resigned_on_every_get(api, sandbox, image_url):
    run = run_to_end(api, image_url)
    sandbox.get_url_ttl = 7200  # expiry has one-second resolution; a new TTL shows the re-signing at once
    again = api.get(f"/v1/runs/{run['id']}").json()
    old_url, new_url = run["output"]["outputs"][0]["url"], again["output"]["outputs"][0]["url"]
    assert new_url != old_url and httpx.get(old_url).content == httpx.get(new_url).content


@pytest.mark.parametrize("shape, path", [
    ("outputs", lambda o: o["outputs"][0]["url"]), ("image_urls", lambda o: o["image_urls"][0]),
    ("image", lambda o: o["image"]["url"]), ("url", lambda o: o["url"]), ("output_url", lambda o: o["output_url"]),
    ("workflow", lambda o: o["image"][0]),
])
def test_output_shapes(api, sandbox, image_url, shape, path):
    sandbox.output_shape = shape
    out = run_to_end(api, image_url)["output"]
    assert len(out) == (4 if shape == "outputs" else 1)
    assert Image.open(io.BytesIO(httpx.get(path(out)).content)).format == "WEBP"


def test_aspect_ratio_when_not_matching_input(api, image_url):
    out = run_to_end(api, image_url, match_input_aspect="false", aspect_ratio="4:3")["output"]["outputs"][0]
    assert (out["width"], out["height"]) == (1024, 768)
    out = run_to_end(api, image_url, match_input_aspect="false", aspect_ratio="9:16")["output"]["outputs"][0]
    assert (out["width"], out["height"]) == (576, 1024)


def test_idempotency_key(api, sandbox, image_url):
    body = {"input": {"image_url": image_url, **POSE}}
    first = api.post(RUNS_PATH, json=body, headers={"Idempotency-Key": "k1"})
    replay = api.post(RUNS_PATH, json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == replay.status_code == 201
    assert first.json()["id"] == replay.json()["id"] and replay.headers["idempotent-replayed"] == "true"
    other = api.post(RUNS_PATH, json={"input": {**body["input"], "view": "back view"}},
                     headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409
    assert other.json() == {"code": "CONFLICT", "message": "Idempotency-Key reused with a different request body",
                            "errors": None}
    a, b = api.post(RUNS_PATH, json=body).json(), api.post(RUNS_PATH, json=body).json()
    assert a["id"] != b["id"]
    assert sandbox.created_runs == 3 and sandbox.billable_runs() == 3
    assert sandbox.count("POST", "create") == 5


def test_list_runs_by_client_ref_and_status(api, sandbox, image_url):
    ids = [api.post(RUNS_PATH, json={"input": {"image_url": image_url, **POSE}, "client_ref": ref}).json()["id"]
           for ref in ("a", "b", "a")]
    page = api.get("/v1/runs", params={"q": "client_ref:a", "limit": 5, "sort_by": "created_at:desc"}).json()
    assert [r["id"] for r in page["items"]] == [ids[2], ids[0]]
    assert page["next_pq"] is None and page["prev_pq"] is None
    assert api.get("/v1/runs", params={"q": "client_ref:zzz"}).json()["items"] == []
    wait(api, ids[1])
    done = api.get("/v1/runs", params={"q": "status_code:succeeded AND client_ref:b"}).json()["items"]
    assert [r["id"] for r in done] == [ids[1]]
    paged = api.get("/v1/runs", params={"limit": 2, "sort_by": "created_at:asc"}).json()
    assert [r["id"] for r in paged["items"]] == ids[:2] and paged["next_pq"] == "2"
    assert api.get("/v1/runs", params={"q": "client_ref:a OR x"}).status_code == 422


def test_scripted_outcomes(api, sandbox, image_url):
    sandbox.next_runs(status="failed", failure_code="INPUT_VALIDATION_FAILED",
                      failure_message="image dimensions exceed 4096x4096")
    failed = run_to_end(api, image_url)
    assert failed["status_code"] == "failed" and failed["cost"] == "0.00" and failed["output"] == {}
    assert failed["failure_message"] == "image dimensions exceed 4096x4096"
    assert failed["failure_stage_code"] == "preprocess"
    sandbox.next_runs(status="canceled", failure_code=None)
    assert run_to_end(api, image_url)["status_code"] == "canceled"
    sandbox.next_runs(status="partial_succeeded")
    partial = run_to_end(api, image_url)
    assert partial["status_code"] == "partial_succeeded" and partial["output"]["outputs"]
    sandbox.next_runs(status="succeeded", status_sequence=[("warming_up", 0.4), ("running", 0.1),
                                                           ("succeeded", None)])
    run = create(api, image_url).json()
    assert run["status_code"] == "warming_up"
    assert api.get(f"/v1/runs/{run['id']}").json()["status_code"] == "warming_up"
    assert wait(api, run["id"])["status_code"] == "succeeded"
    sandbox.next_runs(status="queued", times=2)
    stuck = [create(api, image_url).json()["id"] for _ in range(2)]
    time.sleep(0.3)
    assert {api.get(f"/v1/runs/{i}").json()["status_code"] for i in stuck} == {"queued"}
    assert run_to_end(api, image_url)["status_code"] == "succeeded"  # the script is used up
    assert sandbox.billable_runs() == 3  # partial, the sequenced success, the last one


def test_magic_prompts(api, image_url):
    failed = run_to_end(api, image_url, prompt="please [sandbox:fail]")
    assert failed["status_code"] == "failed" and failed["failure_code"] == "SANDBOX_FORCED_FAILURE"
    assert "[sandbox:fail]" in failed["failure_message"]
    slow = create(api, image_url, prompt="[sandbox:slow=0.6]").json()
    time.sleep(0.35)
    assert api.get(f"/v1/runs/{slow['id']}").json()["status_code"] == "running"
    assert wait(api, slow["id"])["duration_ms"] >= 500


def test_input_image_failures(api, sandbox):
    big = io.BytesIO()
    Image.new("L", (4097, 8)).save(big, "PNG")
    too_big = run_to_end(api, upload(api, big.getvalue())["url"])
    assert (too_big["status_code"], too_big["failure_code"], too_big["failure_message"]) == (
        "failed", "INPUT_VALIDATION_FAILED", "image dimensions exceed 4096x4096")
    assert too_big["failure_stage_code"] == "preprocess"
    junk = run_to_end(api, upload(api, b"definitely not an image")["url"])
    assert junk["failure_message"] == "input is not a decodable image"
    with Sandbox() as gone:
        dead_url = f"{gone.url}/missing.png"
    unreachable = run_to_end(api, dead_url)
    assert unreachable["failure_code"] == "INPUT_FETCH_FAILED" and unreachable["failure_stage_code"] == "preprocess"
    assert sandbox.billable_runs() == 0


def test_data_uri_and_foreign_http_inputs(api, sample_png_bytes):
    data_uri = "data:image/png;base64," + base64.b64encode(sample_png_bytes).decode()
    assert run_to_end(api, data_uri)["status_code"] == "succeeded"
    with Sandbox() as other, httpx.Client(base_url=other.url,
                                          headers={"Authorization": f"Bearer {other.api_key}"}) as api2:
        foreign = upload(api2, sample_png_bytes)["url"]  # fetched over real HTTP by the first sandbox
        assert run_to_end(api, foreign)["status_code"] == "succeeded"
        assert [r["method"] for r in other.storage_requests] == ["PUT", "GET"]


# -- render ------------------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_views_differ(api, image_url, sample_png_bytes):
    renders = {v: render_pose(sample_png_bytes, {**POSE, "view": v}).data for v in VIEWS}
    assert len(set(renders.values())) == len(VIEWS)
    assert render_pose(sample_png_bytes, {**POSE, "view": "back view"}).data == renders["back view"]
    for field, value in (("angle", "high-angle shot"), ("shot", "close-up"), ("prompt", "keep the lighting")):
        assert render_pose(sample_png_bytes, {**POSE, field: value}).data != renders[POSE["view"]]
    a, b = run_to_end(api, image_url), run_to_end(api, image_url)
    assert a["output"]["seed"] == b["output"]["seed"]
    assert httpx.get(a["output"]["outputs"][0]["url"]).content == httpx.get(b["output"]["outputs"][0]["url"]).content
    assert httpx.get(a["output"]["outputs"][0]["url"]).content == renders["right side view"]


# -- faults ------------------------------------------------------------------------------------------------------


def test_status_faults(api, sandbox):
    sandbox.faults.add("status", status=503, path="/v1/auth/me", retry_after="2")
    sandbox.faults.add("status", status=502, html=True, path="/v1/auth/me")
    sandbox.faults.add("status", status=500, body="not json at all", path="/v1/auth/me")
    first = api.get("/v1/auth/me")
    assert first.status_code == 503 and first.headers["retry-after"] == "2" and first.json()["code"]
    html = api.get("/v1/auth/me")
    assert html.status_code == 502 and html.text.startswith("<html>") and "502 Bad Gateway" in html.text
    assert api.get("/v1/auth/me").text == "not json at all"
    assert api.get("/v1/auth/me").status_code == 200  # each fired once
    sandbox.faults.add("status", status=429, path="create", retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    limited = api.post(RUNS_PATH, json={"input": {}})
    assert limited.status_code == 429 and limited.headers["retry-after"].endswith("GMT")
    assert sandbox.created_runs == 0


def test_drop_after_creates_and_bills_but_loses_the_answer(api, sandbox, image_url):
    sandbox.faults.add("drop_after", path="create")
    with pytest.raises(httpx.RemoteProtocolError):
        create(api, image_url, headers={"Idempotency-Key": "same"})
    assert sandbox.created_runs == 1 and sandbox.billable_runs() == 1
    retry = create(api, image_url, headers={"Idempotency-Key": "same"})  # the safe retry replays
    assert retry.status_code == 201 and sandbox.created_runs == 1
    naive = create(api, image_url)  # the naive retry bills twice
    assert naive.status_code == 201 and sandbox.billable_runs() == 2


def test_drop_before_has_no_side_effects(api, sandbox, image_url):
    sandbox.faults.add("drop_before", path="create", reset=True)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        create(api, image_url)
    assert sandbox.created_runs == 0


def test_delay_beats_a_read_timeout(api, sandbox):
    sandbox.faults.add("delay", path="/v1/auth/me", seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/v1/auth/me", timeout=0.15)
    assert api.get("/v1/auth/me").status_code == 200


def test_malformed_and_huge_json(api, sandbox, image_url):
    run = create(api, image_url).json()
    sandbox.faults.add("malformed_json", path="get_run")
    bad = api.get(f"/v1/runs/{run['id']}")
    assert bad.status_code == 200 and bad.text == '{"id": '
    with pytest.raises(json.JSONDecodeError):
        bad.json()
    sandbox.faults.add("huge_json", path="get_run")
    with api.stream("GET", f"/v1/runs/{run['id']}") as resp:
        assert resp.status_code == 200 and int(resp.headers["content-length"]) >= 50 * 1024 * 1024
        read = 0
        for chunk in resp.iter_raw():
            read += len(chunk)
            if read > 2 * 1024 * 1024:
                break
    assert api.get(f"/v1/runs/{run['id']}").json()["id"] == run["id"]


def test_expire_output_once(api, sandbox, image_url):
    url = run_to_end(api, image_url)["output"]["outputs"][0]["url"]
    sandbox.faults.add("expire_output")
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    assert httpx.get(url).status_code == 200


@pytest.mark.parametrize("mode", ["truncated", "not_image", "bomb", "huge"])
def test_corrupt_output(api, sandbox, image_url, sample_png_bytes, mode):
    url = run_to_end(api, image_url)["output"]["outputs"][0]["url"]
    good = httpx.get(url).content
    sandbox.faults.add("corrupt_output", mode=mode)
    assert httpx.get(image_url).content == sample_png_bytes  # inputs are not "rendered results"
    with httpx.stream("GET", url) as resp:
        assert resp.status_code == 200
        length = int(resp.headers["content-length"])
        if mode == "huge":
            assert length >= 300 * 1024 * 1024
            return
        body = resp.read()
    if mode == "truncated":
        assert body == good[: len(good) // 2]
    elif mode == "not_image":
        assert body.startswith(b"<html>")
    else:
        assert len(body) < 200_000 and body.startswith(b"\x89PNG")
        with pytest.raises(Image.DecompressionBombError):
            Image.open(io.BytesIO(body))
    assert httpx.get(url).content == good  # once


def test_random_faults_are_reproducible():
    def failures() -> list[int]:
        sb = Sandbox().start()
        try:
            sb.faults.random(rate=0.3, kinds=["status"], seed=7)
            with httpx.Client(base_url=sb.url, headers={"Authorization": f"Bearer {sb.api_key}"}) as api:
                return [api.get("/v1/auth/me").status_code for _ in range(30)]
        finally:
            sb.stop()

    first = failures()
    assert first == failures()
    assert 3 <= sum(s != 200 for s in first) <= 18 and all(s in (200, 429, 500, 502, 503, 504) for s in first)


def test_http_control_endpoints(api, sandbox, image_url):
    control = httpx.Client(base_url=f"{sandbox.url}/_sandbox")
    assert control.post("/faults", json={"kind": "status", "status": 504, "path": "get_run"}).status_code == 201
    run = create(api, image_url).json()
    assert api.get(f"/v1/runs/{run['id']}").status_code == 504
    control.post("/faults", json={"kind": "status", "status": 500, "times": None})
    assert control.delete("/faults").status_code == 200
    assert api.get(f"/v1/runs/{run['id']}").status_code == 200
    assert control.post("/faults", json={"kind": "nope"}).status_code == 400
    control.post("/next_runs", json={"status": "failed", "failure_code": "X", "failure_message": "scripted"})
    assert run_to_end(api, image_url)["failure_code"] == "X"
    stats = control.get("/stats").json()
    assert stats["created_runs"] == 2 and stats["billable_runs"] == 1 and stats["uploads"] == 1
    assert stats["requests"]["GET /v1/runs/{id}"] >= 2
    assert control.post("/reset", json={}).status_code == 200
    assert control.get("/stats").json()["created_runs"] == 0 and sandbox.billable_runs() == 0
    control.close()


# -- standalone --------------------------------------------------------------------------------------------------


def test_cli_serves_and_refuses_remote_hosts():
    proc = subprocess.Popen([sys.executable, "-m", "nodes.sandbox", "--port", "0", "--key", "rf_cli_key",
                             "--run-seconds", "0.1"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"Runflow sandbox on (http://127\.0\.0\.1:\d+) \(key: rf_cli_key\)\n", line)
        assert m, line
        assert httpx.get(f"{m.group(1)}/v1/health").json() == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    refused = subprocess.run([sys.executable, "-m", "nodes.sandbox", "--host", "0.0.0.0", "--port", "0"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "--allow-remote" in refused.stderr


# -- contract variants -------------------------------------------------------------------------------------------


def control(sandbox) -> httpx.Client:
    return httpx.Client(base_url=f"{sandbox.url}/_sandbox", timeout=10)


def test_idempotency_honoured_in_progress_then_replayed(sample_png_bytes):
    body_of = {}
    with Sandbox(run_seconds=0.2, create_seconds=0.6) as sb, httpx.Client(
            base_url=sb.url, headers={"Authorization": f"Bearer {sb.api_key}"}, timeout=10) as api:
        body_of["input"] = {"image_url": upload(api, sample_png_bytes)["url"], **POSE}
        results = {}

        def post(name):
            results[name] = api.post(RUNS_PATH, json=body_of, headers={"Idempotency-Key": "k-flight"})

        first = threading.Thread(target=post, args=("first",))
        first.start()
        time.sleep(0.2)
        post("second")  # the first is still being handled
        first.join()
        assert results["first"].status_code == 201, results["first"].text
        assert results["second"].status_code == 409 and "in progress" in results["second"].json()["message"]
        replay = api.post(RUNS_PATH, json=body_of, headers={"Idempotency-Key": "k-flight"})
        assert replay.status_code == 201 and replay.json()["id"] == results["first"].json()["id"]
        assert sb.created_runs == 1 and sb.billed_per_client_ref() == {None: 1}


def test_idempotency_ignored_creates_and_bills_every_post(api, sandbox, image_url):
    sandbox.config(idempotency="ignored")
    body = {"input": {"image_url": image_url, **POSE}, "client_ref": "job-1"}
    a, b = (api.post(RUNS_PATH, json=body, headers={"Idempotency-Key": "same"}) for _ in range(2))
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers
    assert sandbox.billed_per_client_ref() == {"job-1": 2}
    rows = sandbox.billing_record()
    assert [(r["client_ref"], r["idempotency_key"], r["billed"]) for r in rows] == [("job-1", "same", True)] * 2
    stats = control(sandbox).get("/stats").json()
    assert stats["duplicate_billed_client_refs"] == ["job-1"] and stats["billed_per_client_ref"] == {"job-1": 2}
    billing = control(sandbox).get("/billing").json()
    assert billing["billed_per_client_ref"] == {"job-1": 2} and len(billing["runs"]) == 2


@pytest.mark.parametrize("mode", ["filters", "refused", "ignored"])
def test_client_ref_search_variants(api, sandbox, image_url, mode):
    sandbox.config(client_ref_search=mode)
    ids = [api.post(RUNS_PATH, json={"input": {"image_url": image_url, **POSE}, "client_ref": ref}).json()["id"]
           for ref in ("ref-a", "ref-b")]
    found = api.get("/v1/runs", params={"q": "client_ref:ref-a"})
    if mode == "refused":
        assert found.status_code == 422 and "client_ref" in found.json()["errors"][0]["message"]
        return
    assert found.status_code == 200
    got = [r["id"] for r in found.json()["items"]]
    assert got == ([ids[0]] if mode == "filters" else ids[::-1])  # ignored: the org's newest runs, unfiltered


@pytest.mark.parametrize("mode, status", [("ok", 201), ("conflict", 409)])
def test_second_asset_confirmation(api, sandbox, sample_png_bytes, mode, status):
    sandbox.config(second_confirm=mode)
    asset = upload(api, sample_png_bytes)
    again = api.post(f"/v1/asset-uploads/{asset['id']}/confirmations", json={})
    assert again.status_code == status
    if status == 201:
        assert again.json()["id"] == asset["id"]
    else:
        assert again.json()["code"] == "CONFLICT" and asset["id"] in again.json()["message"]
    assert sandbox.uploads == 1


@pytest.mark.parametrize("mode, fault_value, header", [
    ("fault", None, None), ("fault", "5", "5"), ("with", None, "1"), ("with", "5", "5"), ("without", "5", None),
])
def test_retry_after_on_429(api, sandbox, mode, fault_value, header):
    sandbox.config(retry_after=mode)
    sandbox.faults.add("status", status=429, path="/v1/auth/me", retry_after=fault_value)
    limited = api.get("/v1/auth/me")
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMITED"
    assert limited.headers.get("retry-after") == header


@pytest.mark.parametrize("status", [200, 201, 202])
def test_create_status_variant(api, sandbox, image_url, status):
    control(sandbox).post("/config", json={"create_status": status})
    created = create(api, image_url, headers={"Idempotency-Key": f"k{status}"})
    assert created.status_code == status and created.json()["status_code"] in ("queued", "dispatching")
    assert create(api, image_url, headers={"Idempotency-Key": f"k{status}"}).status_code == status  # replay


@pytest.mark.parametrize("shape, path", [
    ("outputs", lambda o: o["outputs"][0]["url"]), ("image_urls", lambda o: o["image_urls"][0]),
    ("workflow", lambda o: o["image"][0]),
])
def test_output_shape_is_a_variant(api, sandbox, image_url, shape, path):
    assert control(sandbox).post("/config", json={"variants": {"output_shape": shape}}).json()["output_shape"] == shape
    assert sandbox.output_shape == shape and sandbox.variants.output_shape == shape
    out = run_to_end(api, image_url)["output"]
    assert httpx.get(path(out)).status_code == 200


@pytest.mark.parametrize("spelling, scripted, shown", [
    ("as_scripted", "canceled", "canceled"), ("as_scripted", "cancelled", "cancelled"),
    ("cancelled", "canceled", "cancelled"), ("canceled", "cancelled", "canceled"),
])
def test_cancel_spelling(api, sandbox, image_url, spelling, scripted, shown):
    sandbox.config(cancel_spelling=spelling)
    sandbox.next_runs(status=scripted, failure_code=None)
    run = run_to_end(api, image_url)
    assert run["status_code"] == shown
    assert api.get("/v1/runs", params={"q": f"id:{run['id']}"}).json()["items"][0]["status_code"] == shown


def test_failure_fields_variants(api, sandbox, image_url):
    failed = run_to_end(api, image_url, prompt="[sandbox:fail]")
    assert failed["failure_code"] == "SANDBOX_FORCED_FAILURE" and "error" not in failed
    sandbox.config(failure_fields="error_object")
    again = api.get(f"/v1/runs/{failed['id']}").json()
    assert "failure_code" not in again and "failure_message" not in again
    assert again["error"] == {"code": "SANDBOX_FORCED_FAILURE", "message": failed["failure_message"],
                              "stage": "inference"}
    assert run_to_end(api, image_url)["error"] is None


def test_rate_limit_headers_variant(api, sandbox):
    assert not any(h.startswith("x-ratelimit") for h in api.get("/v1/auth/me").headers)
    sandbox.config(rate_limit_headers="on")
    first, second = api.get("/v1/auth/me").headers, api.get("/v1/auth/me").headers
    assert first["x-ratelimit-limit"] == "600"
    assert int(second["x-ratelimit-remaining"]) == int(first["x-ratelimit-remaining"]) - 1
    assert int(first["x-ratelimit-reset"]) > time.time()


def test_variants_from_constructor_config_and_refusals():
    from nodes.sandbox.config import Variants

    with Sandbox(variants=Variants(idempotency="ignored", create_status=202)) as sb:
        assert sb.config()["variants"]["idempotency"] == "ignored" and sb.variants.create_status == 202
    with Sandbox(variants={"second_confirm": "conflict"}, output_shape="image_urls") as sb:
        assert sb.variants.second_confirm == "conflict" and sb.output_shape == "image_urls"
        ctl = control(sb)
        assert ctl.get("/config").json()["variants"]["second_confirm"] == "conflict"
        for bad in ({"idempotency": "sometimes"}, {"no_such": 1}, {"create_status": 204}, {"max_concurrency": 0}):
            refused = ctl.post("/config", json=bad)
            assert refused.status_code == 400, bad
        assert sb.variants.idempotency == "honoured"  # a refused change changes nothing
        assert ctl.post("/config", json={"create_status": "200", "max_concurrency": 3}).json()["max_concurrency"] == 3
        assert sb.variants.create_status == 200
    with pytest.raises(ValueError, match="idempotency must be one of"):
        Sandbox(variants={"idempotency": "maybe"})


def test_cli_variants():
    proc = subprocess.Popen([sys.executable, "-m", "nodes.sandbox", "--port", "0", "--variant", "create_status=202",
                             "--variant", "output_shape=workflow", "--max-concurrency", "2"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"on (http://\S+)", proc.stdout.readline()).group(1)
        conf = httpx.get(f"{url}/_sandbox/config").json()
        assert conf["variants"]["create_status"] == 202 and conf["output_shape"] == "workflow"
        assert conf["max_concurrency"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run([sys.executable, "-m", "nodes.sandbox", "--port", "0", "--variant", "idempotency=nope"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "idempotency must be one of" in bad.stderr


# -- concurrency ---------------------------------------------------------------------------------------------------


def iso_ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def test_concurrency_cap_queues_runs(sample_png_bytes):
    with Sandbox(run_seconds=0.5, max_concurrency=2) as sb, httpx.Client(
            base_url=sb.url, headers={"Authorization": f"Bearer {sb.api_key}"}, timeout=10) as api:
        url = upload(api, sample_png_bytes)["url"]
        ids = [create(api, url).json()["id"] for _ in range(4)]
        time.sleep(0.15)
        now = [api.get(f"/v1/runs/{i}").json() for i in ids]
        assert [r["status_code"] for r in now[:2]] == ["running"] * 2
        assert [r["status_code"] for r in now[2:]] == ["queued"] * 2 and now[2]["started_at"] is None
        done = [wait(api, i) for i in ids]
        assert all(r["status_code"] == "succeeded" for r in done)
        ends = sorted(iso_ts(r["completed_at"]) for r in done[:2])
        assert [iso_ts(r["started_at"]) for r in done[2:]] == pytest.approx(ends, abs=2e-6)  # a slot frees: next starts
        edges = sorted([(iso_ts(r["started_at"]), 1) for r in done] + [(iso_ts(r["completed_at"]), -1) for r in done])
        running = [sum(d for _, d in edges[: i + 1]) for i in range(len(edges))]
        assert max(running) == 2  # never more than the cap at once
        for r in done:
            assert r["duration_ms"] >= 450, r["duration_ms"]
            assert r["duration_ms"] == round((iso_ts(r["completed_at"]) - iso_ts(r["started_at"])) * 1000)


def test_default_cap_is_generous(api, sandbox, image_url):
    ids = [create(api, image_url).json()["id"] for _ in range(8)]
    time.sleep(0.1)
    assert {api.get(f"/v1/runs/{i}").json()["status_code"] for i in ids} <= {"dispatching", "running", "succeeded"}
    assert sandbox.max_concurrency == 8


# -- discovery ---------------------------------------------------------------------------------------------------


def test_discovery_routes(api, sandbox, image_url):
    me = api.get("/v1/auth/me")
    assert me.status_code == 200 and me.json()["org_id"]
    assert api.get("/v1/billing/balance").json()["balance"] == "1000.00"
    run_to_end(api, image_url)
    assert api.get("/v1/billing/balance").json()["balance"] == "999.80"
    model = api.get("/v1/models").json()["items"][0]
    assert model["model_id"] == "runflow/multi-angles"
    inputs = {i["name"]: i for i in model["inputs"]}
    assert list(inputs) == ["image_url", "view", "angle", "shot", "prompt", "match_input_aspect", "aspect_ratio"]
    assert inputs["view"]["is_required"] and inputs["view"]["validator_attrs"]["choices"] == list(VIEWS)
    assert inputs["angle"]["validator_attrs"]["choices"] == list(ANGLES)
    assert inputs["shot"]["validator_attrs"]["choices"] == list(SHOTS)
    assert inputs["aspect_ratio"]["validator_attrs"]["choices"] == list(ASPECT_RATIOS)
    assert inputs["match_input_aspect"]["default_value"] == "true" and not inputs["shot"]["is_required"]
    assert all({"name", "is_required", "default_value", "validator_code", "validator_attrs"} <= set(i)
               for i in model["inputs"])
    for model_id in ("runflow/multi-angles", model["id"]):
        examples = api.get(f"/v1/models/{model_id}/examples").json()["items"]
        assert examples and all(e["duration_ms"] == 200 for e in examples)
    assert api.get("/v1/models/runflow/nope/examples").status_code == 404
    types = [t["mime_type"] for t in api.get("/v1/assets/types").json()["items"]]
    assert types == ["image/png", "image/jpeg", "image/webp"]
    assert httpx.get(f"{sandbox.url}/v1/models").status_code == 401  # discovery needs the key too


def test_balance_too_low_refuses_create(api, sandbox, image_url):
    sandbox.config(balance=0.30)
    run_to_end(api, image_url)
    refused = create(api, image_url)
    assert refused.status_code == 402 and refused.json()["code"] == "INSUFFICIENT_CREDIT"
    assert api.get("/v1/billing/balance").json()["balance"] == "0.10" and sandbox.created_runs == 1


# -- control-route rules -----------------------------------------------------------------------------------------


def test_control_routes_refuse_foreign_host_origin_and_non_json(sandbox):
    ctl = control(sandbox)
    host = sandbox.url.split("//")[1]
    rebound = ctl.get("/stats", headers={"Host": "evil.example"})
    assert rebound.status_code == 403 and rebound.json()["code"] == "FORBIDDEN_HOST"
    assert ctl.post("/reset", json={}, headers={"Host": f"attacker.test:{sandbox.port}"}).status_code == 403
    assert ctl.get("/stats", headers={"Host": f"localhost:{sandbox.port}"}).status_code == 200
    cross = ctl.post("/config", json={"run_seconds": 9}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and cross.json()["code"] == "CROSS_ORIGIN" and sandbox.run_seconds == 0.2
    assert ctl.delete("/faults", headers={"Origin": "null"}).status_code == 403
    assert ctl.post("/config", json={"run_seconds": 0.3}, headers={"Origin": f"http://{host}"}).status_code == 200
    assert ctl.get("/stats", headers={"Origin": "http://evil.example"}).status_code == 200  # reads: CORS blocks them
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        plain = ctl.post("/config", content=b'{"run_seconds": 9}', headers=headers)
        assert plain.status_code == 415 and plain.json()["code"] == "UNSUPPORTED_MEDIA_TYPE", headers
    assert sandbox.run_seconds == 0.3
    assert ctl.post("/config", content=b'{"run_seconds": 0.2}',
                    headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200
    assert ctl.delete("/faults").status_code == 200  # DELETE is never a simple request: no body needed
