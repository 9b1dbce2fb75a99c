"""Shared pieces of the attack tests: the pack's real routes on a live aiohttp server (TCP on 127.0.0.1 for local
clients, a unix socket for a "remote" peer), and an attacker's server on 127.0.0.1 that counts what reaches it."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from aiohttp import web

from nodes.comfy.routes import add_routes

EVIL = "http://evil.example"


@dataclass
class Attacker:
    """An HTTP server on 127.0.0.1 that records every request (method, path, headers) and answers ``reply``."""

    seen: list = field(default_factory=list)
    reply: tuple[int, dict, bytes] = (200, {"Content-Type": "application/json"}, b"{}")
    url: str = ""
    server: ThreadingHTTPServer | None = None

    @property
    def hits(self) -> int:
        return len(self.seen)

    def start(self) -> Attacker:
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                attacker.seen.append((self.command, self.path, dict(self.headers), body))
                status, headers, data = attacker.reply
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class PackServer:
    """The pack's routes (exactly as ComfyUI gets them from add_routes) on TCP 127.0.0.1 and on a unix socket."""

    def __init__(self, sock_path: Path):
        self.sock_path = sock_path
        self.loop = asyncio.new_event_loop()
        table = web.RouteTableDef()
        add_routes(table)
        self.table = table
        app = web.Application()
        app.add_routes(table)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.loop.run_until_complete(web.UnixSite(self.runner, str(sock_path)).start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def local(self) -> httpx.Client:
        """A client on this machine (loopback peer), like ComfyUI's own page or curl on the box."""
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    def remote(self) -> httpx.Client:
        """A peer that is not loopback (over the unix socket the peer address is not 127.0.0.1)."""
        return httpx.Client(base_url="http://comfy.lan:8188", transport=httpx.HTTPTransport(uds=str(self.sock_path)),
                            trust_env=False, timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# one job's inputs for the attack tests
KW = dict(view="back view", angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True,
          aspect_ratio="1:1", seed=0)
