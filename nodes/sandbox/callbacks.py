"""Run callbacks, as Runflow sends them: once per terminal run, POSTed to callback_url, signed
``Runflow-Signature`` = HMAC-SHA256(secret, body) when a secret is set, 3 attempts (1 s, 2 s), retried on
5xx / network errors only; each attempt is recorded in ``Sandbox.callbacks``."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

from ..runflow.contract import TERMINAL_OK
from .config import TERMINAL


class CallbacksMixin:
    """Sandbox methods delivering callbacks (state lives on the Sandbox)."""

    def _schedule_callback(self, run_id: str, url: str) -> None:
        """Call with the lock held."""
        self._pending_callbacks[run_id] = url
        if self._callback_thread is None or not self._callback_thread.is_alive():
            self._callback_thread = threading.Thread(target=self._callback_loop, name="sandbox-callbacks",
                                                     daemon=True)
            self._callback_thread.start()

    def _callback_loop(self) -> None:
        while self._server is not None:
            time.sleep(0.02)
            due = []
            with self._lock:
                now = time.time()
                for run_id, url in list(self._pending_callbacks.items()):
                    self._refresh(self._state[run_id], now)
                    record = self._runs[run_id]
                    if record["status_code"] in TERMINAL:
                        due.append((url, self._present(record)))
                        del self._pending_callbacks[run_id]
            for url, record in due:
                threading.Thread(target=self._deliver_callback, args=(url, record), daemon=True).start()

    def _deliver_callback(self, url: str, record: dict) -> None:
        status = record["status_code"]
        event = {"succeeded": "run.completed", "partial_succeeded": "run.partial_succeeded",
                 "canceled": "run.cancelled", "cancelled": "run.cancelled"}.get(status, "run.failed")
        payload = {"event": event, "run_id": record["id"], "status": status,
                   "output": record["output"] if status in TERMINAL_OK else None,
                   "duration_ms": record.get("duration_ms"), "created_at": record.get("created_at"),
                   "completed_at": record.get("completed_at"), "metadata": record.get("metadata")}
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Runflow-Request-Id": str(uuid.uuid4())}
        if self.callback_secret:
            headers["Runflow-Signature"] = hmac.new(self.callback_secret.encode(), body, hashlib.sha256).hexdigest()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for wait in (0.0, 1.0, 2.0):
            time.sleep(wait)
            try:
                with opener.open(urllib.request.Request(url, data=body, headers=headers, method="POST"),
                                 timeout=5) as resp:
                    code: int | None = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except Exception:  # noqa: BLE001 - a network failure is retried like Runflow does
                code = None
            with self._lock:
                self.callbacks.append({"run_id": record["id"], "url": url, "signed": bool(self.callback_secret),
                                       "http_status": code, "at": time.time(), "body": body})
            if code is not None and code < 500:
                return
