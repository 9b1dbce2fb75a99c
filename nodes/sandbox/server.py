"""A local emulator of Runflow's public API for the Multi Angles model ("sandbox"): free, offline, scriptable.

It is a real HTTP server (stdlib ``ThreadingHTTPServer`` on loopback) that speaks the contract in
``runflow-api.md``: Bearer auth, the 3-step asset upload with presigned storage URLs, strict input validation,
runs that move queued -> dispatching -> running -> succeeded on the clock, signed result URLs that expire and are
re-signed on every GET, ``Idempotency-Key`` replays, run search by ``client_ref``, and fault injection that fails
the way real networks do (dropped sockets, 5xx pages, slow answers, bad bodies). The "model" is a cheap,
deterministic stand-in (``render.py``): a warped, hue-rotated copy of the input marked SANDBOX.

Standalone::

    python -m nodes.sandbox --port 8787 --key rf_sandbox_key --run-seconds 3 --variant idempotency=ignored
    # then point the pack at it: RUNFLOW_API_URL=http://127.0.0.1:8787 RUNFLOW_API_KEY=rf_sandbox_key

In Python (tests)::

    with Sandbox(run_seconds=0.2) as sb:
        sb.faults.add("drop_after", path="create")      # the run is created and billed, the answer is lost
        sb.next_runs(status="failed", failure_code="INPUT_VALIDATION_FAILED", failure_message="...")

Magic prompts, for trying failure paths by hand in ComfyUI (put them in the node's ``prompt``):

- ``[sandbox:fail]``   -> the run fails with failure_code ``SANDBOX_FORCED_FAILURE``;
- ``[sandbox:slow=N]`` -> the run takes N seconds.

Out-of-process control (no auth; only ever served on loopback unless ``--allow-remote``):
``POST /_sandbox/faults`` ``{"kind": ..., "path": ..., "times": ..., ...}``, ``POST /_sandbox/faults/random``,
``DELETE /_sandbox/faults``, ``POST /_sandbox/next_runs``, ``GET|POST /_sandbox/config``, ``GET /_sandbox/stats``,
``GET /_sandbox/billing``, ``POST /_sandbox/reset``. Modules: handler (HTTP), api (/v1 routing, idempotency,
search, discovery), runs (clock, billing record), slots (concurrency cap), storage (presigned URLs, uploads),
faults, callbacks, control (/_sandbox), config (constants, variants), discovery, cli, render.

Callbacks: with ``callback_secret`` (or None: unsigned), a run's ``callback_url`` is POSTed once the run is terminal,
signed ``Runflow-Signature`` = HMAC-SHA256(secret, body), 3 attempts (1 s, 2 s), retried on 5xx/network errors only;
``sandbox.callbacks`` records each attempt. Not emulated: batches, cancel, logs.

Contract VARIANTS (config.py ``Variants``; the first value is the default, which is what the sandbox always did):

====================  =======================================  ===============================================
name                  values                                   what it switches
====================  =======================================  ===============================================
idempotency           honoured | ignored                       Idempotency-Key on POST .../runs: replay / 409
                                                               on another body / 409 "in progress"; or ignored
client_ref_search     filters | refused | ignored              GET /v1/runs?q=client_ref:...: filter; 422;
                                                               or the whole q ignored (newest runs, unfiltered)
second_confirm        ok | conflict                            confirming an upload again: 201 again, or 409
retry_after           fault | with | without                   Retry-After on 429: as the fault says; always
                                                               (fault's value or 1); never
create_status         201 | 200 | 202                          HTTP status of a successful create
output_shape          outputs | image_urls | image | url |     output: outputs[].url | image_urls[] |
                      output_url | workflow                    image.url | url | output_url | {"image": [url]}
cancel_spelling       as_scripted | canceled | cancelled       how a canceled run's status is spelled
failure_fields        failure_star | error_object              failure_code/_message/_stage_code, or error{}
rate_limit_headers    off | on                                 X-RateLimit-Limit/-Remaining/-Reset on /v1
====================  =======================================  ===============================================

Set them: ``Sandbox(variants={"idempotency": "ignored"})`` (or a ``Variants(...)``; ``output_shape=`` still works),
at runtime ``sb.config(idempotency="ignored")`` or ``sb.config(variants={...})``, over HTTP ``POST /_sandbox/config``
``{"idempotency": "ignored"}`` (or ``{"variants": {...}}``), on the CLI ``--variant idempotency=ignored``
(repeatable). ``sb.config()`` / ``GET /_sandbox/config`` show the settings. Other settings (same four ways, CLI
flags aside): run_seconds, queue_seconds, upload_url_ttl, get_url_ttl, max_concurrency (runs per organisation
running at once, default 8; the rest wait in ``queued``), create_seconds (latency of the create handler itself, to
make "in progress" replays reproducible), balance (USD; when set, a create that the balance cannot pay is refused
with 402 INSUFFICIENT_CREDIT; GET /v1/billing/balance reports it, 1000.00 minus spend when unset).

Billing record: ``sb.billing_record()`` (and ``GET /_sandbox/billing``) lists every run created since the last reset
with run_id, client_ref, idempotency_key, created_at and ``billed``; ``sb.billed_per_client_ref()`` counts billed runs
per client_ref (duplicates show as counts > 1); ``GET /_sandbox/stats`` carries both.

Discovery (read-only, Bearer auth): GET /v1/auth/me, /v1/billing/balance, /v1/models (inputs[] with validators),
/v1/models/{model_id}/examples, /v1/assets/types, /v1/runs/statuses.

Control routes (/_sandbox/...) follow the write-route rules of a secure local server (control.py): Host must be
loopback (DNS rebinding), a write with a foreign Origin is refused (403), POST bodies need Content-Type:
application/json (415 otherwise).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import secrets
import threading
import time
from collections.abc import Iterable

from ..runflow.contract import TERMINAL_OK
from .api import ApiMixin
from .callbacks import CallbacksMixin
from .config import PRICE, TERMINAL, Variants
from .control import ControlMixin
from .faults import Faults, path_matches
from .handler import Handler, Server, Server6, route_key
from .render import LONG_SIDE
from .runs import RunsMixin
from .slots import SlotsMixin
from .storage import StorageMixin

log = logging.getLogger(__name__)

SETTINGS = {"run_seconds": float, "queue_seconds": float, "upload_url_ttl": float, "get_url_ttl": float,
            "create_seconds": float, "max_concurrency": int}
DEFAULT_BALANCE = 1000.0


class Sandbox(ApiMixin, RunsMixin, SlotsMixin, StorageMixin, CallbacksMixin, ControlMixin):
    """The emulator. ``start()`` serves on ``url``; every attribute below is safe to read from tests."""

    def __init__(self, api_key: str = "rf_sandbox_key", run_seconds: float = 3.0, queue_seconds: float = 0.0,
                 port: int = 0, host: str = "127.0.0.1", output_shape: str = "outputs", upload_url_ttl: float = 600,
                 get_url_ttl: float = 3600, public_url: str | None = None, callback_secret: str | None = None,
                 variants: Variants | dict | None = None, max_concurrency: int = 8, create_seconds: float = 0.0,
                 balance: float | None = None, allow_remote: bool = False):
        self.api_key = api_key
        # run callbacks: POSTed to callback_url when a run is terminal, signed (Runflow-Signature) with this secret
        self.callback_secret = callback_secret
        self.callbacks: list[dict] = []  # one entry per delivery attempt: run_id, url, signed, http_status
        self.run_seconds = float(run_seconds)
        self.output_side = LONG_SIDE  # long side of rendered results (bench/comfy_bench.py's memory figure: 2048)
        self._rendered: dict = {}  # (input sha256, pose fields, side) -> RenderResult, oldest first (runs.py)
        self.queue_seconds = float(queue_seconds)
        self.host, self.port = host, int(port)
        if isinstance(variants, Variants):
            self.variants = variants
        else:
            self.variants = Variants().updated(**{"output_shape": output_shape, **(variants or {})})
        self.upload_url_ttl, self.get_url_ttl = upload_url_ttl, get_url_ttl
        self.public_url = public_url.rstrip("/") if public_url else None
        self.allow_remote = allow_remote
        self.max_concurrency = int(max_concurrency)
        self.create_seconds = float(create_seconds)
        self.balance_start = None if balance is None else float(balance)
        self.url: str | None = None
        self.faults = Faults()
        self.created_runs = 0
        self.uploads = 0
        self.request_log: list[tuple[str, str, int | None, dict]] = []
        self.request_times: list[tuple[float, float, str, str, int | None]] = []  # (received, answered, ...), monotonic
        self.storage_requests: list[dict] = []
        self.billing_log: list[dict] = []  # one row per created run; see billing_record()
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(32)
        self._runs: dict[str, dict] = {}
        self._state: dict = {}  # run id -> runs.RunState
        self._assets: dict = {}  # asset id -> storage.Asset
        self._tokens: dict[str, str] = {}  # storage token -> asset id
        self._idempotency: dict = {}  # key -> (body digest, Response | None while in flight)
        self._scripts: collections.deque = collections.deque()
        self._waiting: collections.deque = collections.deque()  # run ids waiting for a slot (slots.py)
        self._holding: set[str] = set()  # run ids holding a slot
        self._free_at: list[float] = []  # free slots: since when each is free
        self._rate_window = [0, 0]  # X-RateLimit-* window: [minute, requests]
        self._epoch = 0
        self._server = None
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending_callbacks: dict[str, str] = {}  # run id -> callback_url, until the run is terminal
        self._callback_thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        cls = Server6 if ":" in self.host else Server
        self._server = cls((self.host, self.port), Handler)
        self._server.sandbox = self
        self.port = self._server.server_address[1]
        self.url = f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-render")
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="runflow-sandbox", daemon=True)
        self._thread.start()
        log.info("Runflow sandbox on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Sandbox {self.url or 'stopped'} runs={len(self._runs)}>"

    @property
    def output_shape(self) -> str:
        return self.variants.output_shape

    @output_shape.setter
    def output_shape(self, value: str) -> None:
        self.variants = self.variants.updated(output_shape=value)

    # -- test controls -------------------------------------------------------------------------------------------
    @property
    def runs(self) -> dict[str, dict]:
        """Run id -> run record (brought up to date with the clock)."""
        with self._lock:
            now = time.time()
            for rs in self._state.values():
                self._refresh(rs, now)
            return self._runs

    def count(self, method: str | None, path_prefix: str = "/") -> int:
        """Requests handled with ``method`` (None: any) whose path starts with ``path_prefix`` (or a route name)."""
        with self._lock:
            return sum(1 for m, p, _s, _h in self.request_log
                       if (method is None or m == method.upper()) and path_matches(path_prefix, m, p))

    def reset_stats(self) -> None:
        with self._lock:
            self.created_runs = self.uploads = 0
            self.request_log.clear()
            self.request_times.clear()
            self.storage_requests.clear()
            self._epoch += 1

    def reset(self) -> None:
        """reset_stats(), and forget faults and scripted runs (runs and assets stay)."""
        self.reset_stats()
        self.faults.clear()
        with self._lock:
            self._scripts.clear()

    def next_runs(self, status: str = "failed", failure_code: str | None = "INPUT_VALIDATION_FAILED",
                  failure_message: str | None = None, times: int = 1, status_sequence: Iterable | None = None,
                  run_seconds: float | None = None) -> None:
        """Script the outcome of the next ``times`` created runs.

        ``status``: a terminal status (reached after the usual queued/dispatching/running) or any other string,
        which then never ends. ``status_sequence``: explicit [(status, seconds), ..., (last, None)] instead.
        """
        seq = [(str(s), None if d is None else float(d)) for s, d in status_sequence] if status_sequence else None
        if seq is not None and not seq:
            raise ValueError("status_sequence must not be empty")
        final = seq[-1][0] if seq else status
        if final in TERMINAL_OK:
            failure_code = failure_message = None
        elif final in TERMINAL and failure_message is None:
            failure_message = f"run {final} (scripted by the sandbox)"
        script = {"status": status, "sequence": seq, "run_seconds": run_seconds,
                  "failure_code": failure_code if final in TERMINAL else None,
                  "failure_message": failure_message if final in TERMINAL else None}
        with self._lock:
            self._scripts.extend(dict(script) for _ in range(int(times)))

    def stats(self) -> dict:
        with self._lock:
            requests: dict[str, int] = collections.Counter(f"{m} {route_key(p)}" for m, p, _s, _h in self.request_log)
            out = {"created_runs": self.created_runs, "uploads": self.uploads, "runs": len(self._runs),
                   "faults": self.faults.list(), "requests": dict(requests)}
        billing = self.billing_record()
        out["billable_runs"] = sum(1 for r in billing if r["billed"])
        per_ref: dict = collections.Counter(r["client_ref"] for r in billing if r["billed"])
        out["billed_per_client_ref"] = {("null" if k is None else k): v for k, v in per_ref.items()}
        out["duplicate_billed_client_refs"] = sorted(k for k, v in per_ref.items() if k is not None and v > 1)
        out["billing"] = billing
        out["variants"] = self.variants.as_dict()
        out["max_concurrency"] = self.max_concurrency
        out["balance"] = f"{self.balance():.2f}"
        return out

    def billable_runs(self) -> int:
        """Runs created since the last reset that reached, or will reach, a billed status."""
        return sum(1 for r in self.billing_record() if r["billed"])

    def balance(self) -> float:
        """The organisation's credit (USD): the start balance minus $0.20 per billed run (ever, not just since
        reset)."""
        with self._lock:
            billed = sum(1 for rs in self._state.values()
                         if rs.final in TERMINAL_OK and not (rs.result and rs.result[0] == "fail"))
        start = DEFAULT_BALANCE if self.balance_start is None else self.balance_start
        return round(start - billed * float(PRICE), 2)

    def config(self, variants: dict | None = None, **settings) -> dict:
        """Change settings and variants at runtime (names as in the module docstring); returns them all."""
        changes = {**(variants or {})}
        for k in list(settings):
            if k not in SETTINGS and k != "balance":
                changes[k] = settings.pop(k)
        new_variants = self.variants.updated(**changes) if changes else self.variants
        parsed = {k: SETTINGS[k](v) for k, v in settings.items() if k in SETTINGS}
        if "max_concurrency" in parsed and parsed["max_concurrency"] < 1:
            raise ValueError("max_concurrency must be >= 1")
        with self._lock:
            self.variants = new_variants
            for k, v in parsed.items():
                setattr(self, k, v)
            if "balance" in settings:
                self.balance_start = None if settings["balance"] is None else float(settings["balance"])
        out = {k: getattr(self, k) for k in SETTINGS}
        out.update(balance=self.balance_start, output_shape=self.variants.output_shape,
                   variants=self.variants.as_dict())
        return out
