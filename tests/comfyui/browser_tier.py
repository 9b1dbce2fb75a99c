"""Helpers of the browser tier (test_browser.py): ComfyUI servers on their own ports, one per frontend, and the
Playwright plumbing (Debian chromium, console/page error collection, canvas helpers).

stdlib + pytest only at import time: httpx, playwright and Pillow are imported lazily, so the tier skips cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from comfy_tier import COMFYUI_DIR, HARNESS, PACK_NAME, REPO, ComfyError, ComfyServer

COMFY_HOME = Path(os.environ.get("COMFY_HOME") or (Path.home() / ".cache" / "comfyui-harness")).expanduser()
VENV = Path(os.environ.get("VENV") or (COMFY_HOME / "venv")).expanduser()

PINNED = "1.27.10"  # what ComfyUI 0.3.64's requirements.txt installs
CURRENT = os.environ.get("COMFY_FRONTEND_CURRENT", "1.58.1")  # from PyPI, cached under COMFY_HOME
PORTS = {PINNED: 8288, CURRENT: 8289}

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

SEED_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Notification.ShowVersionUpdates": False}

# Console messages that are known and harmless (harness README "Gotchas"): 404s for optional user files.
HARMLESS_404 = ("user.css", "api/userdata/user.css", "api/userdata?dir=workflows", "api/userdata/comfy.templates.json")
PACK_MARKERS = ("runflow", "/extensions/" + PACK_NAME + "/")


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium")


def frontend_root(version: str) -> Path | None:
    """None for the pinned frontend (ComfyUI's own); else the static dir of a cached PyPI install."""
    if version == PINNED:
        return None
    target = COMFY_HOME / f"frontend-{version}"
    static = target / "comfyui_frontend_package" / "static"
    if not (static / "index.html").is_file():
        pip = VENV / "bin" / "pip"
        proc = subprocess.run([str(pip), "install", "-q", "--no-deps", "--target", str(target),
                               f"comfyui-frontend-package=={version}"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not (static / "index.html").is_file():
            raise ComfyError(f"could not install comfyui-frontend-package=={version}: {proc.stderr[-2000:]}")
    return static


class BrowserServer(ComfyServer):
    """ComfyServer on its own port (never 8188) with an optional --front-end-root; same folders layout."""

    def __init__(self, root: Path, port: int, front_end_root: Path | None = None):
        self.port = port
        self.front_end_root = front_end_root
        super().__init__(root)
        self.http.close()
        import httpx

        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=30.0, trust_env=False)

    def _env(self) -> dict:
        env = super()._env()
        args = env["COMFY_ARGS"]
        if self.front_end_root is not None:
            args += f" --front-end-root {self.front_end_root}"
        env.update(PORT=str(self.port), COMFY_ARGS=args)
        return env

    def start(self) -> float:
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
        return time.monotonic() - t0

    def _other_instance_uses_link(self) -> bool:
        cdir = Path(COMFYUI_DIR).resolve()
        for linkfile in cdir.glob(".comfy-harness-*.link"):
            if linkfile.name == f".comfy-harness-{self.port}.link":
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

    def user_settings_path(self) -> Path:
        return self.user_dir / "default" / "comfy.settings.json"

    def user_settings_text(self) -> str:
        try:
            return self.user_settings_path().read_text()
        except OSError:
            return ""


class ErrorLog:
    """Console errors and page errors of one page, each with its text, location and (page errors) stack."""

    def __init__(self):
        self.entries: list[dict] = []

    def attach(self, page, tag: str) -> None:
        def on_console(msg):
            if msg.type not in ("error", "assert"):
                return
            loc = msg.location or {}
            self.entries.append({"kind": "console", "tag": tag, "text": msg.text,
                                 "url": loc.get("url", ""), "stack": ""})

        def on_pageerror(err):
            self.entries.append({"kind": "pageerror", "tag": tag, "text": f"{err.name}: {err.message}",
                                 "url": "", "stack": err.stack or ""})

        page.on("console", on_console)
        page.on("pageerror", on_pageerror)

    @staticmethod
    def harmless_404(e: dict) -> bool:
        blob = e["text"] + " " + e["url"]
        return "404" in blob and any(h in blob for h in HARMLESS_404)

    @staticmethod
    def mentions_pack(e: dict) -> bool:
        blob = " ".join((e["text"], e["url"], e["stack"])).lower()
        return any(m.lower() in blob for m in PACK_MARKERS)

    def pack_errors(self) -> list[dict]:
        return [e for e in self.entries if self.mentions_pack(e) and not self.harmless_404(e)]

    def others(self) -> list[dict]:
        return [e for e in self.entries if not self.mentions_pack(e)]


def eprint(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
