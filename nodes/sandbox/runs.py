"""Runs: the state machine on the clock (queued -> dispatching -> running -> terminal), the per-organisation
concurrency cap, rendering off the lock, the output shapes, and the billing record."""

from __future__ import annotations

import concurrent.futures
import copy
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

from ..runflow.contract import MODEL_ID, TERMINAL_OK
from .config import FORCE_FAIL, FORCE_SLOW, MODEL_UUID, ORG_ID, PRICE, RUN_FIELDS, TERMINAL
from .render import POSE_FIELDS, InputImageError, render_pose
from .responses import Request, Response, error, field_errors, iso, json_response, parse_body
from .validation import validate_run

log = logging.getLogger(__name__)
RENDER_CACHE = 64  # rendered results kept (deterministic: same input + pose = same bytes)


@dataclass
class RunState:
    id: str
    t0: float
    plan: list  # [(status, seconds | None)]; the last entry lasts forever
    fields: dict
    output_shape: str
    epoch: int
    failure_code: str | None = None
    failure_message: str | None = None
    future: concurrent.futures.Future | None = None
    result: tuple | None = None  # ("ok", asset_id, width, height, seed, ms) | ("fail", code, message)
    done_at: float | None = None
    frozen: bool = False
    slot_wait: bool = False  # waiting for a concurrency slot (slots.py)
    end_t: float | None = None  # when it reached its terminal status

    @property
    def final(self) -> str:
        return self.plan[-1][0]


def plan_for(final: str, run_seconds: float, queue_seconds: float) -> list:
    dispatch = min(0.05, 0.05 * run_seconds)
    return [("queued", queue_seconds), ("dispatching", dispatch), ("running", max(0.0, run_seconds - dispatch)),
            (final, None)]


class RunsMixin:
    """Sandbox methods for runs (state lives on the Sandbox)."""

    def _create_run(self, req: Request) -> Response:
        body, bad = parse_body(req.body)
        if bad:
            return bad
        unknown = [k for k in body if k not in RUN_FIELDS]
        if unknown:
            return error(400, "BAD_REQUEST", f"Unknown field(s): {', '.join(unknown)}",
                         field_errors([(k, "unknown field") for k in unknown]))
        errors = validate_run(body)
        if errors:
            return error(422, "VALIDATION_ERROR", "Input validation failed", field_errors(errors))
        fields = body["input"]
        if self.create_seconds > 0:  # the create handler's own latency: a replay in this window is "in progress"
            time.sleep(self.create_seconds)
        now = time.time()
        if self.balance_start is not None and self.balance() < float(PRICE):
            return error(402, "INSUFFICIENT_CREDIT", "Your organization's credit balance is too low for this run: "
                         "top up at app.runflow.io/settings/billing (GET /v1/billing/balance shows it)")
        with self._lock:
            script = self._scripts.popleft() if self._scripts else None
            failure_code = failure_message = None
            run_seconds = self.run_seconds
            prompt = fields.get("prompt") or ""
            if script is None and (slow := FORCE_SLOW.search(prompt)):
                run_seconds = min(3600.0, float(slow.group(1)))
            if script is not None:
                if script["run_seconds"] is not None:
                    run_seconds = float(script["run_seconds"])
                status = script["status"]
                plan = script["sequence"] or (plan_for(status, run_seconds, self.queue_seconds)
                                              if status in TERMINAL else [(status, None)])
                failure_code, failure_message = script["failure_code"], script["failure_message"]
            elif FORCE_FAIL.search(prompt):
                plan = plan_for("failed", run_seconds, self.queue_seconds)
                failure_code = "SANDBOX_FORCED_FAILURE"
                failure_message = "The prompt contains [sandbox:fail], so the sandbox failed this run on purpose."
            else:
                plan = plan_for("succeeded", run_seconds, self.queue_seconds)
            rs = RunState(str(uuid.uuid4()), now, plan, copy.deepcopy(fields), self.variants.output_shape, self._epoch,
                          failure_code, failure_message)
            record = {
                "id": rs.id, "status_code": plan[0][0], "model_id": MODEL_UUID, "model": MODEL_ID,
                "target_type": "model", "source_code": "api", "org_id": ORG_ID, "input": copy.deepcopy(fields),
                "output": {}, "client_ref": body.get("client_ref"), "metadata": body.get("metadata"),
                "callback_url": body.get("callback_url"), "request_id": req.request_id,
                "created_at": iso(now), "started_at": None, "completed_at": None, "cost": None,
                "cost_breakdown": None, "duration_ms": None, "failure_code": None, "failure_message": None,
                "failure_stage_code": None, "batch_id": None, "has_logs": False, "has_node_runs": False,
            }
            self._state[rs.id], self._runs[rs.id] = rs, record
            self._enqueue(rs, now)
            self.created_runs += 1
            self.billing_log.append({"run_id": rs.id, "client_ref": body.get("client_ref"),
                                     "idempotency_key": req.headers.get("idempotency-key") or None,
                                     "created_at": record["created_at"], "epoch": rs.epoch})
            if body.get("callback_url"):
                self._schedule_callback(rs.id, body["callback_url"])
            if rs.final in TERMINAL_OK and self._executor is not None:
                rs.future = self._executor.submit(self._process, rs)
            return json_response(self.variants.create_status, self._present(record))

    def _present(self, record: dict) -> dict:
        """A copy of a run record as the API shows it under the current variants (call with the lock held)."""
        rec = copy.deepcopy(record)
        spelling = self.variants.cancel_spelling
        if spelling != "as_scripted" and rec["status_code"] in ("canceled", "cancelled"):
            rec["status_code"] = spelling
        if self.variants.failure_fields == "error_object":
            code, message = rec.pop("failure_code", None), rec.pop("failure_message", None)
            stage = rec.pop("failure_stage_code", None)
            rec["error"] = None if code is None and message is None else {"code": code, "message": message,
                                                                          "stage": stage}
        return rec

    def billing_record(self, wait: bool = True) -> list[dict]:
        """Every run created since the last reset: run_id, client_ref, idempotency_key, created_at, and ``billed``
        (the run reached, or will reach, a billed status). ``wait``: let pending renders land first."""
        with self._lock:
            rows = [dict(r) for r in self.billing_log if r["epoch"] == self._epoch]
            states = {r["run_id"]: self._state[r["run_id"]] for r in rows}
            pending = [rs.future for rs in states.values() if rs.future is not None and rs.result is None]
        if wait:
            concurrent.futures.wait(pending, timeout=30)
        with self._lock:
            for r in rows:
                rs = states[r["run_id"]]
                r["billed"] = rs.final in TERMINAL_OK and not (rs.result and rs.result[0] == "fail")
                del r["epoch"]
        return rows

    def billed_per_client_ref(self) -> dict:
        """client_ref -> number of billed runs carrying it (runs without a client_ref are counted under None)."""
        counts: dict = {}
        for r in self.billing_record():
            if r["billed"]:
                counts[r["client_ref"]] = counts.get(r["client_ref"], 0) + 1
        return counts

    def render(self, data: bytes, fields: dict):
        """The stand-in result for (input bytes, pose fields) at ``output_side``. Rendering is deterministic, so
        results are kept (up to RENDER_CACHE) and ``prerender`` can do it ahead: then a run takes exactly its run
        time however busy the machine is (bench/comfy_bench.py's fixed T)."""
        key = (hashlib.sha256(data).hexdigest(), json.dumps({k: fields.get(k) for k in POSE_FIELDS}, sort_keys=True),
               self.output_side)
        with self._lock:
            hit = self._rendered.get(key)
        if hit is not None:
            return hit
        result = render_pose(data, fields, self.output_side)
        with self._lock:
            self._rendered[key] = result
            while len(self._rendered) > RENDER_CACHE:
                self._rendered.pop(next(iter(self._rendered)))
        return result

    def prerender(self, data: bytes, fields: dict) -> None:
        """Render what a run with this input will return, before it is created (see ``render``)."""
        self.render(data, fields)

    def _process(self, rs: RunState) -> None:
        """Preprocess (fetch + check the input) and render; runs on the executor, off the lock."""
        started = time.perf_counter()
        try:
            data = self._fetch_input(rs.fields["image_url"])
            result = self.render(data, rs.fields)
            ms = int((time.perf_counter() - started) * 1000)
            with self._lock:
                a = self._new_asset("output.webp", result.mime_type, len(result.data), "run_output")
                a.data, a.confirmed, a.is_output = result.data, True, True
                a.r2_key = f"{ORG_ID}/runs/{rs.id}/output.webp"
                outcome = ("ok", a.id, result.width, result.height, result.seed, ms)
        except InputImageError as exc:
            outcome = ("fail", exc.code, exc.message)
        except Exception:
            log.exception("sandbox: rendering run %s failed", rs.id)
            outcome = ("fail", "SANDBOX_INTERNAL_ERROR", "The sandbox failed to render this run (see its log).")
        with self._lock:
            rs.done_at, rs.result = time.time(), outcome

    def _refresh(self, rs: RunState, now: float) -> None:
        """Bring the public record of a run up to date with the clock (call with the lock held)."""
        rec = self._runs[rs.id]
        if rs.slot_wait:
            self._admit(now)
            if rs.slot_wait:
                return
        if not rs.frozen:
            elapsed, offset, started = now - rs.t0, 0.0, None
            status = rs.plan[-1][0]
            for i, (st, dur) in enumerate(rs.plan):
                if started is None and st != "queued":
                    started = offset
                if i == len(rs.plan) - 1 or dur is None or elapsed < offset + dur:
                    status = st
                    break
                offset += dur
            bad_input = rs.result is not None and rs.result[0] == "fail"
            # input problems surface when the run would start running (failure_stage_code "preprocess")
            fail_at = max(sum(d or 0.0 for st, d in rs.plan if st in ("queued", "dispatching")),
                          (rs.done_at or rs.t0) - rs.t0)
            if bad_input and elapsed >= fail_at:
                self._freeze(rs, rec, "failed", rs.t0 + fail_at, started, rs.result[1], rs.result[2])
            elif status in TERMINAL_OK and rs.result is None:
                rec["status_code"] = "running"  # the render is late: keep running until it lands
                rec["started_at"] = rec["started_at"] or iso(rs.t0 + (started or 0.0))
            elif status in TERMINAL and not bad_input:
                end = max(offset, (rs.done_at or rs.t0) - rs.t0)
                self._freeze(rs, rec, status, rs.t0 + end, started, rs.failure_code, rs.failure_message)
            else:
                rec["status_code"] = status
                if started is not None and elapsed >= started:
                    rec["started_at"] = iso(rs.t0 + started)
        if rs.frozen and rs.result and rs.result[0] == "ok" and rec["status_code"] in TERMINAL_OK:
            rec["output"] = self._output(rs)

    def _freeze(self, rs, rec, status, completed, started_offset, code, message) -> None:
        started = rs.t0 + started_offset if started_offset is not None else completed
        started = min(started, completed)
        ok = status in TERMINAL_OK
        rec.update(status_code=status, started_at=iso(started), completed_at=iso(completed),
                   duration_ms=int(round((completed - started) * 1000)), cost=PRICE if ok else "0.00",
                   failure_code=None if ok else code, failure_message=None if ok else message,
                   failure_stage_code=None if ok else (
                       "preprocess" if (code or "").startswith("INPUT_") else "inference"))
        rs.frozen, rs.end_t = True, completed

    def _output(self, rs: RunState) -> dict:
        _, asset_id, w, h, seed, ms = rs.result
        url = self._get_url(self._assets[asset_id])
        shape = rs.output_shape
        if shape == "image_urls":
            return {"image_urls": [url]}
        if shape == "image":
            return {"image": {"url": url}}
        if shape == "url":
            return {"url": url}
        if shape == "output_url":
            return {"output_url": url}
        if shape == "workflow":
            return {"image": [url]}
        return {"outputs": [{"url": url, "type": "image", "mime_type": "image/webp", "width": w, "height": h}],
                "seed": seed, "timing": {"inference_ms": ms}, "nsfw_detected": False}
