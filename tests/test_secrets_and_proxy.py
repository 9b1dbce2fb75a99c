"""The API key never leaks (logs at DEBUG incl. httpx, exceptions and tracebacks, reprs, storage requests, workflow
files, config permissions), and HTTP(S)_PROXY / NO_PROXY are honoured, tested against a real proxy on loopback."""

import asyncio
import http.client
import json
import logging
import os
import stat
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

from nodes.comfy.nodes import NODE_CLASS_MAPPINGS, RunflowMultiAngles
from nodes.core.config import config_path, load_settings, write_config
from nodes.runflow import errors as E
from nodes.runflow.client import RunflowClient
from nodes.runflow.retry import RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
KW = dict(view="back view", angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True,
          aspect_ratio="1:1", seed=0)


def run_node(**kw):
    return asyncio.run(RunflowMultiAngles().execute(**{**KW, **kw}))


def test_key_never_in_debug_logs_even_httpx(sandbox_env, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "nodes", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    run_node(image=torch.rand(1, 32, 32, 3))
    sandbox_env.faults.add("status", status=401, path="create", times=1)
    with pytest.raises(E.AuthError):
        run_node(image=torch.rand(1, 32, 32, 3), seed=1)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args}" for r in caplog.records)
    assert "HTTP Request" in logged, "httpx's own request logging must have been captured"
    out, err = capfd.readouterr()
    for text in (logged, out, err):
        assert sandbox_env.api_key not in text


def test_key_never_in_exceptions_or_tracebacks(sandbox_env, monkeypatch):
    key = sandbox_env.api_key
    cases = [
        lambda: sandbox_env.faults.add("status", status=401, path="create", times=1),
        lambda: sandbox_env.faults.add("status", status=422, path="create", times=1),
        lambda: sandbox_env.faults.add("status", status=500, path="create", times=None),
        lambda: sandbox_env.next_runs(status="failed", failure_message=f"echo {key}"[:0] + "boom"),
    ]
    for i, arm in enumerate(cases):
        sandbox_env.faults.clear()
        arm()
        with pytest.raises(E.RunflowError) as info:
            run_node(image=torch.rand(1, 24, 24, 3), seed=100 + i)
        text = "".join(traceback.format_exception(info.value))
        assert key not in text and key not in repr(info.value.__dict__)
    monkeypatch.setenv("RUNFLOW_API_URL", "http://127.0.0.1:9")
    with pytest.raises(E.ConnectError) as info:
        run_node(image=torch.rand(1, 24, 24, 3), seed=200)
    assert key not in "".join(traceback.format_exception(info.value))


def test_reprs_and_status_show_at_most_the_last_4(sandbox_env):
    key = sandbox_env.api_key
    settings = load_settings()
    client = RunflowClient(key, sandbox_env.url)
    asyncio.run(client.aclose())
    for text in (repr(settings), repr(client), json.dumps(settings.public_status())):
        assert key not in text
    assert settings.public_status()["key_last4"] == key[-4:]
    assert E.mask_key(key) == "…" + key[-4:]
    assert E.mask_key("short") == "…"


def test_config_file_is_owner_only_and_env_wins(sandbox_env, monkeypatch):
    write_config({"api_key": "rf_live_from_config_1234"})
    mode = stat.S_IMODE(os.stat(config_path()).st_mode)
    assert mode == 0o600
    s = load_settings()
    assert s.api_key == sandbox_env.api_key and s.key_source == "env"  # env first
    monkeypatch.delenv("RUNFLOW_API_KEY")
    monkeypatch.delenv("RUNFLOW_API_URL")
    s = load_settings()
    assert (s.api_key, s.key_source, s.api_url) == ("rf_live_from_config_1234", "config", "https://api.runflow.io")
    write_config({"api_key": ""})
    assert load_settings().api_key is None
    with pytest.raises(E.ConfigError):
        write_config({"api_url": "ftp://x"})
    with pytest.raises(E.ConfigError):
        write_config({"api_key": "has space in it"})


def test_no_input_can_hold_a_key_and_workflows_carry_none():
    for cls in NODE_CLASS_MAPPINGS.values():
        spec = cls.INPUT_TYPES()
        names = {n for part in spec.values() for n in part}
        assert not any("key" in n or "token" in n or "secret" in n for n in names)
    for wf in (ROOT / "example_workflows").glob("*.json"):
        text = wf.read_text()
        assert "rf_live_" not in text and "rf_sandbox" not in text and "Bearer" not in text


# -- proxies ----------------------------------------------------------------------------------------------------


class _Proxy(BaseHTTPRequestHandler):
    """A minimal forward proxy for http:// targets (absolute-form request lines), counting what passes."""

    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args):
        pass

    def _forward(self):
        target = urlsplit(self.path)
        self.seen.append((self.command, target.netloc, target.path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        conn.request(self.command, target.path + (f"?{target.query}" if target.query else ""), body=body or None,
                     headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = _forward


@pytest.fixture
def proxy():
    _Proxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Proxy.seen
    server.shutdown()
    server.server_close()


def test_http_proxy_is_honoured(sandbox_env, proxy, monkeypatch):
    url, seen = proxy
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    run_node(image=torch.rand(1, 24, 24, 3))
    paths = [p for _, _, p in seen]
    assert any(p.endswith("/runs") for p in paths), "the run create went through the proxy"
    assert any(p.startswith("/_storage/") for p in paths), "storage (upload/download) went through the proxy"
    assert sandbox_env.created_runs == 1


def test_no_proxy_bypasses_it(sandbox_env, proxy, monkeypatch):
    url, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    run_node(image=torch.rand(1, 24, 24, 3))
    assert seen == [] and sandbox_env.created_runs == 1


def test_dead_proxy_is_a_clear_connect_error(sandbox_env, monkeypatch):
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    settings = load_settings()

    async def go():
        async with RunflowClient(settings.api_key, settings.api_url,
                                 retry=RetryPolicy(attempts=2, base=0.01, jitter=0)) as c:
            await c.check()

    with pytest.raises(E.ConnectError, match="HTTPS_PROXY"):
        asyncio.run(go())
