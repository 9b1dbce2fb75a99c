"""The pack's server routes on a real aiohttp server (as ComfyUI serves them): settings never return the key, test
connection, and run callbacks — signed, unsigned, forged, replayed and late — that wake a waiting node at once."""

import asyncio
import hashlib
import hmac
import json
import threading
import time

import httpx
import pytest
import torch
from aiohttp import web

from nodes.comfy import push
from nodes.comfy.nodes import RunflowMultiAngles
from nodes.comfy.routes import add_routes
from nodes.core.session import Wakeups
from nodes.sandbox import Sandbox

SECRET = "whsec_test_0123456789"
KW = dict(view="back view", angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True,
          aspect_ratio="1:1", seed=0)


@pytest.fixture
def server():
    """The pack's routes on a live aiohttp server in its own thread and event loop."""
    loop = asyncio.new_event_loop()
    table = web.RouteTableDef()
    add_routes(table)
    app = web.Application()
    app.add_routes(table)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def signed(body: bytes, secret: str = SECRET) -> dict:
    return {"Runflow-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def test_settings_routes_never_return_the_key(sandbox_env, server, monkeypatch):
    monkeypatch.delenv("RUNFLOW_API_KEY")
    with httpx.Client(base_url=server, trust_env=False) as c:
        assert c.get("/runflow/settings").json()["key_configured"] is False
        answer = c.post("/runflow/test_connection", json={}).json()
        assert answer["ok"] is False and "RUNFLOW_API_KEY" in answer["message"]
        r = c.post("/runflow/settings", json={"api_key": sandbox_env.api_key})
        assert r.status_code == 200 and sandbox_env.api_key not in r.text
        status = c.get("/runflow/settings").json()
        assert status["key_configured"] and status["key_last4"] == sandbox_env.api_key[-4:]
        assert status["key_source"] == "config" and sandbox_env.api_key not in json.dumps(status)
        assert c.post("/runflow/test_connection", json={}).json()["ok"] is True
        bad = c.post("/runflow/settings", json={"api_url": "not a url"})
        assert bad.status_code == 400 and "http(s)" in bad.json()["error"]
        json_type = {"Content-Type": "application/json"}
        assert c.post("/runflow/settings", content=b"[1]", headers=json_type).status_code == 400
        c.post("/runflow/settings", json={"api_key": "rf_live_wrong_key_0000"})
        answer = c.post("/runflow/test_connection", json={}).json()
        assert answer["reachable"] is True and answer["key_accepted"] is False and "0000" in answer["message"]


def test_connection_error_names_where_the_url_came_from(sandbox_env, server, monkeypatch):
    """An unreachable URL typed into Settings is blamed on Settings, not on an environment variable nobody set."""
    monkeypatch.delenv("RUNFLOW_API_URL")
    monkeypatch.delenv("RUNFLOW_API_KEY")  # an environment key pairs with an environment URL only
    with httpx.Client(base_url=server, trust_env=False) as c:
        assert c.post("/runflow/settings", json={"api_url": "http://127.0.0.1:9"}).status_code == 200
        assert c.post("/runflow/settings", json={"api_key": "rf_sandbox_key_0000"}).status_code == 200  # sandbox slot
        answer = c.post("/runflow/test_connection", json={}).json()
        assert answer["ok"] is False and answer["reachable"] is False, answer
        assert "Settings \u2192 Runflow \u2192 API URL" in answer["message"], answer["message"]
        assert "RUNFLOW_API_URL" not in answer["message"], answer["message"]
        monkeypatch.setenv("RUNFLOW_API_URL", "http://127.0.0.1:9")  # the environment wins, and is named
        monkeypatch.setenv("RUNFLOW_API_KEY", "rf_sandbox_key_0000")
        assert "RUNFLOW_API_URL" in c.post("/runflow/test_connection", json={}).json()["message"]


def test_callback_verification_unit():
    wakeups = Wakeups()
    body = json.dumps({"run_id": "r-unit-1", "status": "succeeded"}).encode()
    good = signed(body)["Runflow-Signature"]
    assert push.handle(body, good, None, wakeups)[0] == 403  # no secret configured: callbacks disabled
    assert push.handle(body, None, SECRET, wakeups)[0] == 401  # unsigned
    assert push.handle(body, "0" * 64, SECRET, wakeups)[0] == 401  # forged
    assert push.handle(body, signed(body, "other")["Runflow-Signature"], SECRET, wakeups)[0] == 401  # wrong secret
    tampered = body.replace(b"succeeded", b"failed")
    assert push.handle(tampered, good, SECRET, wakeups)[0] == 401  # body changed after signing
    assert push.handle(body, good.upper(), SECRET, wakeups) == (200, {"ok": True, "waiting": False})  # late: no waiter
    assert push.handle(body, good, SECRET, wakeups) == (200, {"ok": True, "duplicate": True})  # replayed
    nojson = b"not json"
    assert push.handle(nojson, signed(nojson)["Runflow-Signature"], SECRET, wakeups)[0] == 400


def test_callback_wakes_the_waiting_run():
    wakeups = Wakeups()

    async def go():
        event = wakeups.register("r-wake-1")
        body = json.dumps({"run_id": "r-wake-1", "status": "succeeded"}).encode()
        # delivered from another thread, as aiohttp's handler would run on ComfyUI's loop
        threading.Thread(target=push.handle,
                         args=(body, signed(body)["Runflow-Signature"], SECRET, wakeups)).start()
        await asyncio.wait_for(event.wait(), 2)
        wakeups.forget("r-wake-1")

    asyncio.run(go())


def test_signed_callbacks_end_the_wait_at_once(sandbox_env, server, monkeypatch):
    """No duration estimate yet: polls back off (0.5, 1.25, 2.4, 4.1 s). With push the result lands right after T."""
    monkeypatch.setenv("RUNFLOW_PUBLIC_URL", server)
    monkeypatch.setenv("RUNFLOW_WEBHOOK_SECRET", SECRET)
    with Sandbox(run_seconds=2.6, callback_secret=SECRET) as sb:
        monkeypatch.setenv("RUNFLOW_API_URL", sb.url)
        monkeypatch.setenv("RUNFLOW_API_KEY", sb.api_key)
        start = time.monotonic()
        asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 32, 32, 3)))
        wall = time.monotonic() - start
        (run,) = sb.runs.values()
        assert run["callback_url"] == server + "/runflow/callback"
        deliveries = [c for c in sb.callbacks if c["run_id"] == run["id"]]
        assert [c["http_status"] for c in deliveries] == [200] and deliveries[0]["signed"]
        assert wall < 3.6, f"push should end the wait right after the 2.6 s run, took {wall:.2f}s"
        # the same delivery replayed (Runflow retries, manual redelivery): accepted once, idempotent
        body = deliveries[0]["body"]
        with httpx.Client(trust_env=False) as c:
            again = c.post(server + "/runflow/callback", content=body, headers=signed(body))
            assert again.status_code == 200 and again.json()["duplicate"] is True
            forged = c.post(server + "/runflow/callback", content=body.replace(b"succeeded", b"failed"),
                            headers=signed(body))
            assert forged.status_code == 401
            unsigned = c.post(server + "/runflow/callback", content=body)
            assert unsigned.status_code == 401


def test_unsigned_callbacks_are_rejected_and_polling_still_delivers(sandbox_env, server, monkeypatch):
    monkeypatch.setenv("RUNFLOW_PUBLIC_URL", server)
    monkeypatch.setenv("RUNFLOW_WEBHOOK_SECRET", SECRET)
    with Sandbox(run_seconds=0.5, callback_secret=None) as sb:  # sends no Runflow-Signature
        monkeypatch.setenv("RUNFLOW_API_URL", sb.url)
        monkeypatch.setenv("RUNFLOW_API_KEY", sb.api_key)
        out = asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 32, 32, 3)))
        assert out["result"][0].shape[0] == 1  # the lost callback lost nothing
        deadline = time.monotonic() + 3
        while not sb.callbacks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [c["http_status"] for c in sb.callbacks] == [401]  # 4xx: Runflow does not retry


def test_no_callback_url_without_a_secret(sandbox_env, server, monkeypatch):
    monkeypatch.setenv("RUNFLOW_PUBLIC_URL", server)  # reachable, but callbacks could not be verified
    monkeypatch.delenv("RUNFLOW_WEBHOOK_SECRET", raising=False)
    asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 32, 32, 3)))
    (run,) = sandbox_env.runs.values()
    assert run["callback_url"] is None


def test_cache_routes_report_and_clear(sandbox_env, server):
    asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 32, 32, 3)))
    with httpx.Client(base_url=server, trust_env=False) as c:
        info = c.get("/runflow/cache").json()
        assert info["entries"] == 1 and info["bytes"] > 0 and "spent_usd" in info["session"]
        assert c.post("/runflow/cache/clear", json={}).json()["removed"] == 1
        assert c.get("/runflow/cache").json()["entries"] == 0
