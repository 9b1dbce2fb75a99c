"""Attack table, routes part (issue 10): each row through the pack's real aiohttp routes, asserting the refusal AND
that nothing reached the attacker's server on 127.0.0.1 (and that the stored settings did not change)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import httpx
import pytest
import torch

from nodes.comfy.nodes import RunflowMultiAngles
from nodes.comfy.route_guard import GuardedRoutes
from nodes.core.config import read_config, write_config
from tests.attack_kit import EVIL, KW, Attacker

REAL_KEY = "rf_live_VICTIM_real_key_7777"


@pytest.fixture
def victim(sandbox, monkeypatch, tmp_path):
    """A user who configured everything through Settings (nothing in the environment): the real key stored, the
    sandbox as the API (with its own sandbox key), callbacks configured."""
    for var in ("RUNFLOW_API_URL", "RUNFLOW_API_KEY", "RUNFLOW_PUBLIC_URL", "RUNFLOW_WEBHOOK_SECRET",
                "RUNFLOW_ALLOW_REMOTE_SETTINGS", "RUNFLOW_ALLOWED_HOSTS", "RUNFLOW_CALLBACK_HOSTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUNFLOW_USER_DIR", str(tmp_path / "user"))
    write_config({"api_key": REAL_KEY, "api_url": sandbox.url, "sandbox_key": sandbox.api_key,
                  "public_url": "https://my.comfy.example", "webhook_secret": "whsec_victim_0123456789"})
    return read_config()


def json_to(origin: str | None = None, **extra) -> dict:
    headers = {"Content-Type": "application/json", **extra}
    if origin:
        headers["Origin"] = origin
    return headers


def nothing_changed(before: dict, attacker: Attacker) -> None:
    assert read_config() == before, "the stored settings changed"
    assert attacker.hits == 0, f"the attacker's server got {attacker.seen}"


def key_never_left(sandbox, attacker: Attacker) -> None:
    """After an attack attempt: test connection and a node run still go to the configured sandbox only."""
    assert attacker.hits == 0
    for _, _, headers, body in attacker.seen:
        assert REAL_KEY not in str(headers) and REAL_KEY.encode() not in body


# ---- 1. cross-origin writes ---------------------------------------------------------------------------------------

def test_cross_origin_text_plain_write_is_refused(victim, pack, attacker, sandbox):
    """The issue's critical row: a page elsewhere POSTs text/plain (no preflight) to point the key at itself."""
    with pack.local() as c:
        r = c.post("/runflow/settings", content=f'{{"api_url": "{attacker.url}"}}',
                   headers={"Content-Type": "text/plain", "Origin": EVIL})
        assert r.status_code == 403  # foreign Origin: refused before the body type matters
        r = c.post("/runflow/settings", content=f'{{"api_url": "{attacker.url}"}}',
                   headers={"Content-Type": "text/plain"})  # no Origin at all (old browser, form post): still JSON-only
        assert r.status_code == 415
        assert c.post("/runflow/test_connection", json={}).json()["ok"] is True  # still the sandbox
    asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3)))
    assert sandbox.created_runs == 1
    nothing_changed(victim, attacker)


def test_cross_origin_json_write_is_refused(victim, pack, attacker):
    with pack.local() as c:
        for origin in (EVIL, "null", f"http://127.0.0.1:{pack.port + 1}", f"https://127.0.0.1:{pack.port}"):
            r = c.post("/runflow/settings", json={"api_url": attacker.url}, headers={"Origin": origin})
            assert r.status_code == 403, origin
        r = c.post("/runflow/settings", json={"api_url": attacker.url},
                   headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
    nothing_changed(victim, attacker)


# ---- 2. Host: foreign names and DNS rebinding ---------------------------------------------------------------------

def test_foreign_host_is_refused(victim, pack, attacker):
    with pack.local() as c:
        r = c.post("/runflow/settings", json={"api_url": attacker.url}, headers={"Host": "evil.example"})
        assert r.status_code == 403 and "host name" in r.json()["error"]
        assert c.post("/runflow/settings", json={}, headers={"Host": ""}).status_code in (400, 403)
    nothing_changed(victim, attacker)


def test_dns_rebinding_host_is_refused_for_reads_and_writes(victim, pack, attacker):
    """A hostile domain re-resolved to 127.0.0.1: the browser thinks it is same-origin (Origin == Host)."""
    host = f"rebind.evil.example:{pack.port}"
    with pack.local() as c:
        h = {"Host": host, "Origin": f"http://{host}"}
        assert c.post("/runflow/settings", json={"api_key": "rf_live_attackers_key_1"}, headers=h).status_code == 403
        assert c.post("/runflow/cache/clear", json={}, headers=h).status_code == 403
        assert c.post("/runflow/test_connection", json={}, headers=h).status_code == 403
        assert c.get("/runflow/settings", headers=h).status_code == 403
        assert c.get("/runflow/cache", headers=h).status_code == 403
        # a foreign page reading the status (possible when ComfyUI runs with --enable-cors-header)
        assert c.get("/runflow/settings", headers={"Origin": EVIL}).status_code == 403
        ok = {"Host": f"localhost:{pack.port}", "Origin": f"http://localhost:{pack.port}"}
        assert c.get("/runflow/settings", headers=ok).status_code == 200  # the real names still work
    nothing_changed(victim, attacker)


# ---- 3. remote peers ----------------------------------------------------------------------------------------------

def test_remote_peer_is_refused_without_opt_in(victim, pack, attacker, monkeypatch):
    monkeypatch.setenv("RUNFLOW_ALLOWED_HOSTS", "comfy.lan")
    with pack.remote() as c:
        for origin in (None, "http://comfy.lan:8188"):
            r = c.post("/runflow/settings", json={"api_key": "rf_live_attackers_key_1"}, headers=json_to(origin))
            assert r.status_code == 403 and "RUNFLOW_ALLOW_REMOTE_SETTINGS" in r.json()["error"]
        assert c.post("/runflow/cache/clear", json={}).status_code == 403
        status = c.get("/runflow/settings").json()  # reads work, without filesystem paths
        assert status["key_configured"] and "config_path" not in status and REAL_KEY not in str(status)
        assert "root" not in c.get("/runflow/cache").json()
    with pack.local() as c:  # a proxy/tunnel on this machine relays remote users: still remote
        r = c.post("/runflow/settings", json={"api_key": "rf_live_attackers_key_1"},
                   headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403
        assert "config_path" in c.get("/runflow/settings").json()  # the local page sees where its config is
    nothing_changed(victim, attacker)


def test_missing_origin_from_remote_peer_is_refused_even_with_opt_in(victim, pack, attacker, monkeypatch):
    monkeypatch.setenv("RUNFLOW_ALLOWED_HOSTS", "comfy.lan")
    monkeypatch.setenv("RUNFLOW_ALLOW_REMOTE_SETTINGS", "1")
    with pack.remote() as c:
        r = c.post("/runflow/settings", json={"api_key": "rf_live_attackers_key_1"})
        assert r.status_code == 403 and "Origin" in r.json()["error"]
    nothing_changed(victim, attacker)


# ---- 4. where the key may go --------------------------------------------------------------------------------------

def test_api_url_to_a_foreign_host_is_refused(victim, pack, attacker):
    with pack.local() as c:  # even from ComfyUI's own page on this machine
        for url in ("https://evil.example", "http://evil.example", "http://192.168.1.20:8188",
                    "https://api.runflow.io.evil.example", "http://user:pw@127.0.0.1:9"):
            r = c.post("/runflow/settings", json={"api_url": url})
            assert r.status_code == 400, url
    nothing_changed(victim, attacker)


def test_loopback_api_url_never_gets_the_real_key(victim, pack, attacker, monkeypatch):
    """A loopback URL is a sandbox: it gets the sandbox key only. The real key stored in config, and a key that lives
    only in the environment, are never sent to it."""
    monkeypatch.setenv("RUNFLOW_API_KEY", "rf_live_ENV_only_key_5555")
    write_config({"sandbox_key": ""})
    with pack.local() as c:
        assert c.post("/runflow/settings", json={"api_url": attacker.url}).status_code == 200
        answer = c.post("/runflow/test_connection", json={}).json()
        assert answer["ok"] is False and "sandbox" in answer["message"]
    with pytest.raises(Exception, match="sandbox"):
        asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3)))
    assert attacker.hits == 0
    assert read_config()["api_key"] == REAL_KEY


def test_env_api_url_cannot_be_redirected(sandbox, pack, attacker, monkeypatch, tmp_path):
    """A key set only in the environment, with its URL in the environment: nothing a browser sends moves it."""
    monkeypatch.setenv("RUNFLOW_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("RUNFLOW_API_URL", sandbox.url)
    monkeypatch.setenv("RUNFLOW_API_KEY", sandbox.api_key)
    with pack.local() as c:
        c.post("/runflow/settings", json={"api_url": attacker.url, "api_key": "rf_live_attackers_key_1"})
        status = c.get("/runflow/settings").json()
        assert status["api_url"] == sandbox.url and status["key_source"] == "env"
        assert c.post("/runflow/test_connection", json={}).json()["ok"] is True
    assert attacker.hits == 0


def test_plain_http_api_url_to_a_remote_host_is_refused(sandbox_env, monkeypatch, attacker):
    monkeypatch.setenv("RUNFLOW_API_URL", "http://192.0.2.10:8080")
    with pytest.raises(Exception, match="plain http"):
        asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3)))
    assert sandbox_env.created_runs == 0 and attacker.hits == 0


def test_old_config_with_a_foreign_api_url_sends_no_key(victim, pack, attacker):
    """A config file written before this rule (or by hand) that points at another host: every use fails, loudly."""
    path = __import__("nodes.core.config", fromlist=["config_path"]).config_path()
    data = read_config()
    data["api_url"] = attacker.url.replace("127.0.0.1", "evil.example")
    path.write_text(__import__("json").dumps(data))
    with pack.local() as c:
        answer = c.post("/runflow/test_connection", json={}).json()
        assert answer["ok"] is False and "neither" in answer["message"]
    with pytest.raises(Exception, match="neither"):
        asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3)))
    assert attacker.hits == 0


# ---- 5. key swap, public_url/secret swap --------------------------------------------------------------------------

def test_key_swap_is_refused_cross_origin_and_remote(victim, pack, attacker, monkeypatch):
    monkeypatch.setenv("RUNFLOW_ALLOWED_HOSTS", "comfy.lan")
    with pack.local() as c:
        assert c.post("/runflow/settings", json={"api_key": "rf_live_attackers_key_1"},
                      headers={"Origin": EVIL}).status_code == 403
    with pack.remote() as c:
        assert c.post("/runflow/settings", json={"api_key": "rf_live_attackers_key_1"},
                      headers={"Origin": "http://comfy.lan:8188"}).status_code == 403
    nothing_changed(victim, attacker)


def test_public_url_and_secret_never_settable_remotely(victim, pack, attacker, monkeypatch):
    monkeypatch.setenv("RUNFLOW_ALLOWED_HOSTS", "comfy.lan")
    monkeypatch.setenv("RUNFLOW_ALLOW_REMOTE_SETTINGS", "1")  # the user opted in: still not these
    with pack.remote() as c:
        h = {"Origin": "http://comfy.lan:8188"}
        for body in ({"public_url": attacker.url}, {"webhook_secret": "whsec_attacker_000000"},
                     {"callback_hosts": "evil.example"}, {"max_spend_per_day": "100000"},
                     {"api_url": attacker.url},
                     {"api_key": "rf_live_x_12345678", "public_url": attacker.url}):
            r = c.post("/runflow/settings", json=body, headers=h)
            assert r.status_code == 403, body
    nothing_changed(victim, attacker)
    with pack.remote() as c:  # what the opt-in does allow: the key for Runflow (behind the user's own auth)
        r = c.post("/runflow/settings", json={"api_key": "rf_live_team_key_12345"},
                   headers={"Origin": "http://comfy.lan:8188"})
        assert r.status_code == 200 and read_config()["sandbox_key"] == "rf_live_team_key_12345"


# ---- 6. cache clear -----------------------------------------------------------------------------------------------

def test_cache_clear_is_refused_cross_origin(sandbox_env, pack, attacker):
    asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3)))
    with pack.local() as c:
        assert c.post("/runflow/cache/clear", content=b"", headers={"Origin": EVIL}).status_code == 403
        assert c.post("/runflow/cache/clear", json={}, headers={"Origin": EVIL}).status_code == 403
        assert c.post("/runflow/cache/clear", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
        assert c.get("/runflow/cache").json()["entries"] == 1
        assert c.post("/runflow/cache/clear", json={}).json()["removed"] == 1  # the own page still can
    assert attacker.hits == 0


def test_every_write_route_is_guarded(pack):
    """Routes added through add_routes (also by other features later) are guarded by default."""
    kinds = {(r.method, r.path): getattr(r.handler, "runflow_guard", None) for r in pack.table}
    writes = {k: v for k, v in kinds.items() if k[0] != "GET"}
    assert writes and all(v == "write" for k, v in writes.items() if k[1] != "/runflow/callback"), kinds
    assert kinds[("POST", "/runflow/callback")] == "public"
    assert all(v == "read" for k, v in kinds.items() if k[0] == "GET")
    assert GuardedRoutes  # the wrapper any new route uses


# ---- 7. log injection ---------------------------------------------------------------------------------------------

def test_log_injection_and_values_never_logged(victim, pack, caplog):
    caplog.set_level(logging.INFO)
    with pack.local() as c:
        r = c.post("/runflow/settings", json={"api_key\nWARNING forged line": "x" * 10})
        assert r.status_code == 400 and "forged" not in r.text
        r = c.post("/runflow/settings", json={"api_key": "rf_live_new_key_ABCD1234"},
                   headers={"Origin": f"http://127.0.0.1:{pack.port}", "Host": f"127.0.0.1:{pack.port}"})
        assert r.status_code == 200
        # control characters never get past aiohttp's parser (400); obs-text bytes do, and are cleaned in the log
        assert c.post("/runflow/settings", json={"api_key": "x"},
                      headers={"Origin": "http://evil.example\x1b[2J"}).status_code == 400
        r = c.post("/runflow/settings", json={"api_key": "rf_live_new_key_EFGH5678"},
                   headers={"Origin": b"http://127.0.0.1\xe9\xff"})
        assert r.status_code == 403
        r = c.post("/runflow/cache/clear", json={}, headers={"X-Note": b"\xe9", "Origin": f"http://127.0.0.1:{pack.port}"})
        assert r.status_code == 200
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "forged" not in text and "rf_live_new_key_ABCD1234" not in text and "\x1b" not in text
    changes = [r for r in caplog.records if "settings changed" in r.getMessage()]
    assert [r.levelno for r in changes] == [logging.WARNING]
    assert "127.0.0.1" in changes[0].getMessage() and "api_key" in changes[0].getMessage()
    assert all(c.isprintable() for r in caplog.records if r.name.startswith("nodes") for c in r.getMessage())


# ---- 8. callbacks: off, oversized, non-ASCII signature ------------------------------------------------------------

def raw_post(port: int, path: str, headers: dict, body_prefix: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send headers and only the start of the body; return the server's answer (and how fast it came) without ever
    sending the rest: an answer proves the server did not wait for (read) the whole body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    start = time.monotonic()
    s.sendall(head.encode("latin-1") + b"\r\n" + body_prefix)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return data, time.monotonic() - start


def test_callbacks_off_refused_before_reading_the_body(sandbox_env, pack, monkeypatch):
    monkeypatch.delenv("RUNFLOW_WEBHOOK_SECRET", raising=False)
    answer, took = raw_post(pack.port, "/runflow/callback",
                            {"Content-Type": "application/json", "Content-Length": str(95 * 2**20)}, b"{" * 1024)
    assert answer.startswith(b"HTTP/1.1 403") and took < 2.0


def test_oversized_callback_is_refused_unread(sandbox_env, pack, monkeypatch):
    monkeypatch.setenv("RUNFLOW_WEBHOOK_SECRET", "whsec_test_0123456789")
    answer, _ = raw_post(pack.port, "/runflow/callback",
                         {"Content-Type": "application/json", "Content-Length": str(95 * 2**20),
                          "Runflow-Signature": "0" * 64}, b"{" * 1024)
    assert answer.startswith(b"HTTP/1.1 413")
    # chunked (no Content-Length): the capped read stops at 64 KiB + 1
    chunk = b"a" * 70000
    answer, _ = raw_post(pack.port, "/runflow/callback",
                         {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
                          "Runflow-Signature": "0" * 64}, f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 413")


def test_non_ascii_signature_is_401_not_500(sandbox_env, pack, monkeypatch, caplog):
    monkeypatch.setenv("RUNFLOW_WEBHOOK_SECRET", "whsec_test_0123456789")
    body = b'{"run_id": "r1", "status": "succeeded"}'
    for sig in ("é" * 64, "zz" * 32, "0" * 63, "sha256=" + "0" * 64):
        answer, _ = raw_post(pack.port, "/runflow/callback",
                             {"Content-Type": "application/json", "Content-Length": str(len(body)),
                              "Runflow-Signature": sig}, body)
        assert answer.startswith(b"HTTP/1.1 401"), (sig, answer[:40])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name != "asyncio"]


# ---- 9. the sandbox's control endpoints (rules from branch sandbox, nodes/sandbox/control.py) ----------------------

def test_sandbox_control_refuses_cross_origin_and_rebinding_writes(sandbox):
    before = (sandbox.run_seconds, sandbox.faults.list())
    with httpx.Client(base_url=sandbox.url + "/_sandbox", trust_env=False) as c:
        assert c.post("/config", content=b'{"run_seconds": 99}', headers={"Content-Type": "text/plain",
                                                                            "Origin": EVIL}).status_code == 403
        assert c.post("/config", content=b'{"run_seconds": 99}',
                      headers={"Content-Type": "text/plain"}).status_code == 415
        rebound = {"Host": "rebind.evil.example", "Origin": "http://rebind.evil.example"}
        assert c.post("/faults", json={"kind": "status", "status": 500}, headers=rebound).status_code == 403
        assert c.post("/reset", json={}, headers={"Origin": "null"}).status_code == 403
    assert (sandbox.run_seconds, sandbox.faults.list()) == before


def test_bad_environment_fails_closed_and_settings_still_open(sandbox_env, pack, monkeypatch):
    for var, value, words in (("RUNFLOW_MAX_SPEND_PER_DAY", "lots", "RUNFLOW_MAX_SPEND_PER_DAY"),
                              ("RUNFLOW_API_URL", "http://evil.example", "plain http")):
        monkeypatch.setenv(var, value)
        with pack.local() as c:
            status = c.get("/runflow/settings")
            assert status.status_code == 200 and words in status.json()["problem"]
        with pytest.raises(Exception, match=words):
            asyncio.run(RunflowMultiAngles().execute(**KW, image=torch.rand(1, 24, 24, 3)))
        monkeypatch.delenv("RUNFLOW_MAX_SPEND_PER_DAY", raising=False)
        monkeypatch.setenv("RUNFLOW_API_URL", sandbox_env.url)
    assert sandbox_env.created_runs == 0


def test_key_destination_table(monkeypatch, tmp_path):
    """README → Security, 'Where the key may go', row by row (no request is made: only the choice)."""
    from nodes.core.config import load_settings

    monkeypatch.setenv("RUNFLOW_USER_DIR", str(tmp_path))
    for var in ("RUNFLOW_API_URL", "RUNFLOW_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    write_config({"api_key": REAL_KEY, "sandbox_key": "rf_sandbox_key_1"})
    sandbox = "http://127.0.0.1:8787"

    def pick(env_url=None, env_key=None, stored_url=None):
        for var, value in (("RUNFLOW_API_URL", env_url), ("RUNFLOW_API_KEY", env_key)):
            if value:
                monkeypatch.setenv(var, value)
            else:
                monkeypatch.delenv(var, raising=False)
        write_config({"api_url": stored_url or ""})
        s = load_settings()
        return s.api_url, s.api_key

    assert pick() == ("https://api.runflow.io", REAL_KEY)
    assert pick(env_key="rf_live_env") == ("https://api.runflow.io", "rf_live_env")
    assert pick(stored_url=sandbox) == (sandbox, "rf_sandbox_key_1")
    assert pick(stored_url=sandbox, env_key="rf_live_env") == (sandbox, "rf_sandbox_key_1")
    assert pick(env_url="https://staging.example", env_key="rf_live_env") == ("https://staging.example",
                                                                               "rf_live_env")
    assert pick(env_url="https://staging.example") == ("https://staging.example", None)
    assert pick(env_url=sandbox) == (sandbox, "rf_sandbox_key_1")
    assert pick(env_url="https://api.runflow.io") == ("https://api.runflow.io", REAL_KEY)
