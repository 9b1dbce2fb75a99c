"""Helpers of the browser tier (test_browser.py): ComfyUI servers on their own ports, one per frontend, and the
Playwright plumbing (Debian chromium, console/page error collection, canvas helpers).

stdlib + pytest only at import time: httpx, playwright and Pillow are imported lazily, so the tier skips cleanly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from comfy_tier import PACK_NAME, ComfyError, ComfyServer

COMFY_HOME = Path(os.environ.get("COMFY_HOME") or (Path.home() / ".cache" / "comfyui-harness")).expanduser()
VENV = Path(os.environ.get("VENV") or (COMFY_HOME / "venv")).expanduser()

PINNED = "1.27.10"  # what ComfyUI 0.3.64's requirements.txt installs
CURRENT = os.environ.get("COMFY_FRONTEND_CURRENT", "1.58.1")  # from PyPI, cached under COMFY_HOME
# one server per frontend; COMFY_BROWSER_PORTS="<pinned>,<current>" moves them (two concurrent runs need other ports)
_ports = [int(p) for p in os.environ.get("COMFY_BROWSER_PORTS", "8288,8289").split(",")]
PORTS = {PINNED: _ports[0], CURRENT: _ports[1]}

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

    record_ws = False

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
        env.update(COMFY_ARGS=args)
        return env

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
        self.warnings: list[dict] = []

    def attach(self, page, tag: str) -> None:
        def on_console(msg):
            if msg.type not in ("error", "assert", "warning"):
                return
            loc = msg.location or {}
            entry = {"kind": "console" if msg.type != "warning" else "warning", "tag": tag, "text": msg.text,
                     "url": loc.get("url", ""), "stack": ""}
            if msg.type == "warning":  # only the pack's warnings are kept (reported, never failed on)
                if self.mentions_pack(entry):
                    self.warnings.append(entry)
                return
            self.entries.append(entry)

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


# ---- the page ------------------------------------------------------------------------------------------------

READY_JS = """() => !!(window.app && app.graph && app.canvas && window.LiteGraph &&
  Object.keys(LiteGraph.registered_node_types).length > 100 &&
  (app.extensions || []).some((e) => e.name === 'Runflow.MultiAngles'))"""

# Mark the [role=combobox] that belongs to the widget row labelled `label` inside a Vue node (both 1.27 and 1.58
# render the label as a leaf element with the widget's name; the combobox sits in the same row).
MARK_VUE_COMBO_JS = """([nodeId, label, mark]) => {
  const node = document.querySelector(`.lg-node[data-node-id="${nodeId}"]`);
  if (!node) return false;
  for (const el of node.querySelectorAll('*')) {
    if (el.children.length !== 0 || el.textContent.trim() !== label) continue;
    for (let a = el.parentElement; a && a !== node; a = a.parentElement) {
      const combo = a.querySelector('[role=combobox]');
      if (combo) { combo.setAttribute('data-bt-combo', mark); return true; }
    }
  }
  return false;
}"""


class UI:
    """One browser page on one ComfyUI server, with the tier's error log attached."""

    def __init__(self, browser, server: BrowserServer, errors: ErrorLog, tag: str, *,
                 viewport=(1600, 1000), scale: float = 1.0):
        self.server = server
        self.errors = errors
        self.tag = tag
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                           device_scale_factor=scale)
        base = server.base
        # Offline and deterministic: anything outside this ComfyUI (e.g. model downloads the newer frontend's
        # default graph probes on huggingface.co) is refused before it leaves the machine.
        self.context.route(lambda url: not url.startswith(base), lambda route: route.abort())
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        errors.attach(self.page, tag)
        self.requests: list[tuple[str, str, str]] = []  # (method, url, post body) of every request
        self.page.on("request", self._on_request)

    def _on_request(self, request) -> None:
        try:
            body = request.post_data or ""
        except Exception:  # noqa: BLE001 - binary bodies
            body = ""
        self.requests.append((request.method, request.url, body))

    def close(self) -> None:
        try:
            self.context.close()
        except Exception:  # noqa: BLE001
            pass

    # -- loading ----------------------------------------------------------------------------------------------------
    def set_setting(self, setting_id: str, value) -> None:
        r = self.server.post(f"/api/settings/{setting_id}", json=value)
        assert r.status_code == 200, r.text

    def open(self, renderer: str = "classic", *, clear: bool = True) -> None:
        """Load the app with the renderer chosen up front (switching it on a live page leaves stale DOM in 1.27)."""
        self.set_setting("Comfy.VueNodes.Enabled", renderer == "vue")
        self.renderer = renderer
        self.page.goto(self.server.base + "/")
        self.page.wait_for_selector("#graph-canvas", state="attached")
        self.page.wait_for_function(READY_JS, timeout=60_000)
        self.page.wait_for_timeout(300)  # let the default graph finish loading before we replace it
        if clear:
            self.page.evaluate("() => { app.graph.clear(); app.canvas.setDirty(true, true); }")

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def frames(self, n: int = 2) -> None:
        self.page.evaluate("(n) => new Promise((ok) => { const step = (k) => k ? requestAnimationFrame(() => "
                           "step(k - 1)) : ok(); step(n); })", n)

    # -- graph --------------------------------------------------------------------------------------------------------
    def add_node(self, node_type: str, pos=(100, 100)) -> str:
        node_id = self.js("""([t, pos]) => { const n = LiteGraph.createNode(t); if (!n) return null; n.pos = pos;
                             app.graph.add(n); app.canvas.setDirty(true, true); return String(n.id); }""",
                          [node_type, list(pos)])
        assert node_id is not None, f"LiteGraph.createNode({node_type!r}) returned null"
        if getattr(self, "renderer", "classic") == "vue":
            self.page.wait_for_selector(f'.lg-node[data-node-id="{node_id}"]', state="attached")
        self.frames(3)
        return node_id

    def widget_value(self, node_id: str, name: str):
        return self.js("""([id, name]) => { const n = app.graph.getNodeById(id) ?? app.graph.getNodeById(Number(id));
                          return n?.widgets?.find((w) => w.name === name)?.value; }""", [node_id, name])

    def set_widget_and_read(self, node_id: str, name: str, value, attr: str, frames: int = 2) -> list[str]:
        """Set a widget through its callback, wait `frames` animation frames in the page (no round trips), and
        return what the node's picker marks as selected (aria-pressed) for `attr`."""
        return self.js("""async ([id, name, value, attr, frames]) => {
          const n = app.graph.getNodeById(id) ?? app.graph.getNodeById(Number(id));
          const w = n.widgets.find((w) => w.name === name); w.value = value;
          w.callback?.(value, app.canvas, n, undefined, undefined);
          for (let i = 0; i < frames; i++) await new Promise((ok) => requestAnimationFrame(ok));
          const root = document.querySelector(`[data-runflow-picker][data-runflow-node-id="${id}"]`);
          return [...root.querySelectorAll(`[${attr}][aria-pressed=true]`)].map((e) => e.getAttribute(attr)); }""",
                       [node_id, name, value, attr, frames])

    def set_widget(self, node_id: str, name: str, value, *, callback: bool) -> None:
        self.js("""([id, name, value, cb]) => {
                   const n = app.graph.getNodeById(id) ?? app.graph.getNodeById(Number(id));
                   const w = n.widgets.find((w) => w.name === name); w.value = value;
                   if (cb) w.callback?.(value, app.canvas, n, undefined, undefined); }""",
                [node_id, name, value, callback])

    def picker(self, node_id: str):
        return self.page.locator(f'[data-runflow-picker][data-runflow-node-id="{node_id}"]')

    def vue_combo(self, node_id: str, label: str):
        mark = f"{node_id}:{label}"
        assert self.js(MARK_VUE_COMBO_JS, [node_id, label, mark]), f"no Vue combobox for {label!r} on node {node_id}"
        return self.page.locator(f'[data-bt-combo="{mark}"]')

    def choose_vue(self, node_id: str, label: str, option: str) -> None:
        self.vue_combo(node_id, label).click()
        self.page.get_by_role("option", name=option, exact=True).click()
        self.page.wait_for_timeout(150)

    # -- view / screenshots ---------------------------------------------------------------------------------------
    def node_bounds(self, node_ids=None) -> list[float]:
        """Union of the nodes' bounds (title bar included) in graph coordinates: [x, y, w, h]."""
        return self.js("""(ids) => {
          const nodes = app.graph._nodes.filter((n) => !ids || ids.includes(String(n.id)));
          let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
          for (const n of nodes) {
            const t = n.constructor.title_mode === LiteGraph.NO_TITLE ? 0 : LiteGraph.NODE_TITLE_HEIGHT;
            x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - t);
            x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
          }
          return [x0, y0, x1 - x0, y1 - y0];
        }""", None if node_ids is None else [str(i) for i in node_ids])

    def node_screen_rect(self, node_id: str) -> dict:
        """Where the node (title bar included) is on the screen, from the canvas transform (classic renderer)."""
        b = self.node_bounds([node_id])
        return self.js("""(b) => { const ds = app.canvas.ds; const r = app.canvas.canvas.getBoundingClientRect();
          return { x: r.x + (b[0] + ds.offset[0]) * ds.scale, y: r.y + (b[1] + ds.offset[1]) * ds.scale,
                   width: b[2] * ds.scale, height: b[3] * ds.scale }; }""", b)

    def fit(self, bounds, region, max_scale: float = 2.0) -> dict:
        """Zoom/pan so graph rectangle `bounds` fills screen `region` [x, y, w, h]; returns its screen clip."""
        x, y, w, h = bounds
        rx, ry, rw, rh = region
        scale = min(rw / w, rh / h, max_scale)
        ox = rx / scale - x + (rw / scale - w) / 2
        oy = ry / scale - y + (rh / scale - h) / 2
        self.js("""([s, ox, oy]) => { const ds = app.canvas.ds; ds.scale = s; ds.offset[0] = ox; ds.offset[1] = oy;
                   app.canvas.setDirty(true, true); app.canvas.draw?.(true, true); }""", [scale, ox, oy])
        self.frames(4)
        self.page.wait_for_timeout(400)
        self.frames(2)
        rect = self.js("() => app.canvas.canvas.getBoundingClientRect().toJSON()")
        return {"x": rect["x"] + (x + ox) * scale, "y": rect["y"] + (y + oy) * scale, "width": w * scale,
                "height": h * scale}

    def open_settings(self, category: str = "Runflow"):
        self.js("() => app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
        dialog = self.page.locator("[role=dialog]").filter(has_text="Settings").last
        dialog.wait_for(state="visible")
        dialog.get_by_text(category, exact=True).first.click()
        self.page.locator('[data-runflow-setting="api_key"]').wait_for(state="visible")
        return dialog


def png_text_chunks(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return dict(getattr(im, "text", {}) or im.info)


def assert_not_blank(png_bytes: bytes, what: str) -> None:
    """A screenshot with real content: many colours, and no single colour covering almost all of it."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png_bytes)) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        total = rgb.width * rgb.height
        top = max((n for n, _ in colours), default=total)
        assert rgb.width >= 200 and rgb.height >= 200, (what, rgb.size)
        assert len(colours) > 200 and top < 0.8 * total, f"{what} looks blank: {len(colours)} colours, " \
                                                          f"{top / total:.0%} one colour"


def save_jpeg_thumbnail(png_bytes: bytes, target: Path, width: int = 600, write: bool = True) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png_bytes)) as im:
        im = im.convert("RGB")
        height = round(im.height * width / im.width)
        im = im.resize((width, height), Image.LANCZOS)
        if write:
            target.parent.mkdir(parents=True, exist_ok=True)
            im.save(target, "JPEG", quality=85, optimize=True, progressive=True)
        return im.size


def save_png(png_bytes: bytes, target: Path, max_bytes: int = 400_000, write: bool = True) -> int:
    """Write a screenshot PNG, re-encoded optimised; quantised to 256 colours only if it would be too big."""
    import io

    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(png_bytes)) as im:
        im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "PNG", optimize=True)
        if buf.tell() > max_bytes:
            buf = io.BytesIO()
            im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                buf, "PNG", optimize=True)
    if write:
        target.write_bytes(buf.getvalue())
    return len(buf.getvalue())
