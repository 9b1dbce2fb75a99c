"""Helpers of the real-ComfyUI tier (imported by conftest.py and the tests; stdlib + pytest only at import time)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMFYUI_DIR = os.environ.get("COMFYUI_DIR", "").strip()
PORT = int(os.environ.get("COMFY_TEST_PORT", "8188"))
PACK_NAME = "runflow-multi-angles"


def _find_harness() -> Path:
    """COMFY_HARNESS, else the nearest shared/comfyui-harness above the repo (a git worktree may sit deeper)."""
    if os.environ.get("COMFY_HARNESS"):
        return Path(os.environ["COMFY_HARNESS"]).expanduser().resolve()
    for parent in REPO.parents:
        candidate = parent / "shared" / "comfyui-harness"
        if (candidate / "comfy-up").is_file():
            return candidate.resolve()
    return (REPO.parent / "shared" / "comfyui-harness").resolve()  # conftest names it in its "no comfy-up" error


HARNESS = _find_harness()
CLIENT_ID = "runflow-comfyui-tier-" + uuid.uuid4().hex[:8]
SKIP_REASON = "COMFYUI_DIR is unset: the real-ComfyUI tier needs a ComfyUI checkout (see tests/comfyui/conftest.py)"

# measured figures, printed at the end of the run (the README quotes them)
FIGURES: dict[str, str] = {}


class ComfyError(AssertionError):
    pass


class WsRecorder:
    """Records ComfyUI's websocket JSON messages for our client id, with the local receive time (monotonic)."""

    def __init__(self, base_ws: str):
        self.url = f"{base_ws}/ws?clientId={CLIENT_ID}"
        self.messages: list[tuple[float, dict]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="comfy-ws", daemon=True)

    def start(self) -> WsRecorder:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _main(self) -> None:
        import asyncio

        import aiohttp

        async def run() -> None:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(self.url, heartbeat=20) as ws:
                    self._ready.set()
                    while not self._stop.is_set():
                        try:
                            msg = await ws.receive(timeout=0.2)
                        except asyncio.TimeoutError:
                            continue
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            try:
                                data = json.loads(msg.data)
                            except ValueError:
                                continue
                            with self._lock:
                                self.messages.append((time.monotonic(), data))
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            return

        try:
            asyncio.run(run())
        except Exception:  # noqa: BLE001 - timing figures are optional; tests never depend on the socket
            pass
        finally:
            self._ready.set()

    def node_seconds(self, prompt_id: str, node_id: str) -> float | None:
        """Seconds from 'executing <node>' to that node's 'executed' message (UI output), if both were seen."""
        with self._lock:
            msgs = list(self.messages)
        start = end = None
        for t, m in msgs:
            data = m.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if m.get("type") == "executing" and data.get("node") == node_id and start is None:
                start = t
            if m.get("type") == "executed" and data.get("node") == node_id:
                end = t
        return None if start is None or end is None else end - start


def other_instance_uses_link(port: int) -> bool:
    """Does another live harness server (another port) share our custom_nodes link? Then leave the link."""
    cdir = Path(COMFYUI_DIR).resolve()
    for linkfile in cdir.glob(".comfy-harness-*.link"):
        if linkfile.name == f".comfy-harness-{port}.link":
            continue
        pidfile = linkfile.with_suffix(".pid")
        try:
            if linkfile.read_text().strip() != str(cdir / "custom_nodes" / PACK_NAME):
                continue
            os.kill(int(pidfile.read_text().strip()), 0)
            return True
        except (OSError, ValueError):
            continue
    return False


class ComfyServer:
    """One ComfyUI process started by the harness's comfy-up, with its own input/output/temp/user folders."""

    def __init__(self, root: Path):
        self.root = root
        self.out_dir, self.in_dir = root / "out", root / "in"
        self.temp_dir, self.user_dir = root / "temp", root / "user"
        for d in (self.out_dir, self.in_dir, self.temp_dir, self.user_dir / "default"):
            d.mkdir(parents=True, exist_ok=True)
        settings = self.user_dir / "default" / "comfy.settings.json"
        if not settings.exists():
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True,
                                            "Comfy.Notification.ShowVersionUpdates": False}, indent=2))
        example = Path(COMFYUI_DIR) / "input" / "example.png"
        if example.is_file() and not (self.in_dir / "example.png").exists():
            (self.in_dir / "example.png").write_bytes(example.read_bytes())
        self.port = getattr(self, "port", PORT)  # a subclass (the browser tier) sets its own first
        self.base = f"http://127.0.0.1:{self.port}"
        self.pid: int | None = None
        self.starts = 0
        self.log_path: Path | None = None
        self.ws: WsRecorder | None = None
        import httpx

        self.http = httpx.Client(base_url=self.base, timeout=30.0, trust_env=False)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNFLOW_")}
        env.update(COMFYUI_DIR=COMFYUI_DIR, PORT=str(self.port), NODE_PACK_NAME=PACK_NAME, SEED_SETTINGS="0",
                   COMFY_LOG=str(self.log_path),
                   COMFY_ARGS=f"--output-directory {self.out_dir} --input-directory {self.in_dir} "
                              f"--temp-directory {self.temp_dir} --user-directory {self.user_dir}")
        return env

    record_ws = True  # record websocket messages (node timing); the browser tier has its own pages for that

    def start(self) -> float:
        """Start ComfyUI (comfy-up); returns the startup seconds."""
        assert self.pid is None, "already running"
        self.starts += 1
        self.log_path = self.root / f"comfyui-{self.starts}.log"
        t0 = time.monotonic()
        for attempt in range(2):  # a concurrent comfy-up of another tier may race us on the shared symlink
            proc = subprocess.run([str(HARNESS / "comfy-up"), str(REPO)], env=self._env(), capture_output=True,
                                  text=True, timeout=400)
            if proc.returncode == 0:
                break
            if attempt == 0 and "File exists" in proc.stderr:
                time.sleep(1.0)
                continue
            raise ComfyError(f"comfy-up failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}\n"
                             f"log: {self.log_tail()}")
        self.pid = int(proc.stdout.strip().splitlines()[-1])
        seconds = time.monotonic() - t0
        if self.record_ws:
            self.ws = WsRecorder(f"ws://127.0.0.1:{self.port}").start()
        return seconds

    def stop(self, keep_link: bool = False) -> None:
        if self.ws is not None:
            self.ws.stop()
            self.ws = None
        if self.pid is None:
            return
        env = self._env()
        if keep_link or other_instance_uses_link(self.port):
            env["KEEP_LINK"] = "1"
        pid, self.pid = self.pid, None
        proc = subprocess.run([str(HARNESS / "comfy-down"), str(pid)], env=env, capture_output=True, text=True,
                              timeout=60)
        if proc.returncode != 0:  # comfy-down refused (not a main.py?) or failed: make sure OUR pid is gone
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def restart(self) -> float:
        self.stop(keep_link=True)
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    # -- HTTP API ----------------------------------------------------------------------------------------------
    def get(self, path: str, **kw):
        return self.http.get(path, **kw)

    def post(self, path: str, **kw):
        return self.http.post(path, **kw)

    def settings(self, **values) -> dict:
        r = self.post("/runflow/settings", json=values)
        assert r.status_code == 200, r.text
        return r.json()

    def upload(self, name: str, data: bytes) -> str:
        r = self.post("/upload/image", files={"image": (name, data, "image/png")}, data={"overwrite": "true"})
        assert r.status_code == 200, r.text
        body = r.json()
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    def post_prompt(self, prompt: dict):
        return self.post("/prompt", json={"prompt": prompt, "client_id": CLIENT_ID})

    def queue(self, prompt: dict) -> str:
        r = self.post_prompt(prompt)
        if r.status_code != 200:
            raise ComfyError(f"POST /prompt answered {r.status_code}: {r.text[:2000]}")
        body = r.json()
        assert not body.get("node_errors"), body
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0, poll: float = 0.02) -> dict:
        """Poll /history until the prompt is there (success, error or interrupted); returns its entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.get(f"/history/{prompt_id}")
            if r.status_code == 200:
                body = r.json()
                if prompt_id in body:
                    return body[prompt_id]
            time.sleep(poll)
        raise ComfyError(f"prompt {prompt_id} not in /history after {timeout}s; log tail:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 120.0) -> tuple[dict, float, str]:
        """Queue, wait; returns (history entry, wall seconds from POST /prompt to history, prompt id)."""
        t0 = time.monotonic()
        pid = self.queue(prompt)
        entry = self.wait(pid, timeout)
        return entry, time.monotonic() - t0, pid

    def output_files(self, entry: dict, node_id: str) -> list[Path]:
        images = (entry.get("outputs", {}).get(node_id) or {}).get("images") or []
        # ComfyUI puts its temp folder in <--temp-directory>/temp
        base = {"output": self.out_dir, "temp": self.temp_dir / "temp", "input": self.in_dir}
        return [base[i.get("type", "output")] / i.get("subfolder", "") / i["filename"] for i in images]


def status_of(entry: dict) -> str:
    return (entry.get("status") or {}).get("status_str", "")


def messages(entry: dict) -> dict[str, dict]:
    return {name: data for name, data in (entry.get("status") or {}).get("messages", [])}


def error_message(entry: dict) -> str:
    err = messages(entry).get("execution_error")
    if err is None:
        raise AssertionError(f"expected an execution_error, got status {status_of(entry)!r}: "
                             f"{json.dumps(entry.get('status'))[:1500]}")
    return err["exception_message"]


def assert_success(entry: dict, server: ComfyServer | None = None) -> None:
    if status_of(entry) != "success":
        err = messages(entry).get("execution_error") or {}
        raise AssertionError(f"prompt failed: {err.get('exception_type')}: {err.get('exception_message')}\n"
                             f"{''.join(err.get('traceback') or [])[-3000:]}")


