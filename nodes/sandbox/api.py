"""The /v1 API: auth, routing, Idempotency-Key handling, run search, and the read-only discovery routes."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import time
from urllib.parse import unquote

from ..runflow.contract import MODEL_ID
from .config import ORG_ID, RATE_LIMIT, STATUSES, TERMINAL, USER_ID
from .discovery import asset_types, examples, model_entry, model_matches
from .responses import Request, Response, error, field_errors, json_response
from .validation import match, parse_q

IN_PROGRESS = "in progress"


class ApiMixin:
    """Sandbox methods answering /v1 requests (state lives on the Sandbox)."""

    def _dispatch(self, req: Request) -> Response:
        p, m = req.path, req.method
        if p.startswith("/_sandbox/"):
            return self._control(req)
        if p.startswith("/_storage/"):
            return self._storage(req)
        if p in ("/v1/health", "/v1/readiness"):
            return json_response(200, {"status": "ok"}) if m == "GET" else error(405, "METHOD_NOT_ALLOWED", "use GET")
        if not p.startswith("/v1/"):
            return error(404, "NOT_FOUND", f"no route for {p}")
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return error(401, "UNAUTHORIZED", "Missing bearer token: send 'Authorization: Bearer <key>'")
        if not hmac.compare_digest(auth[7:].strip().encode(), self.api_key.encode()):
            return error(401, "UNAUTHORIZED", "Invalid API key")
        key = req.headers.get("idempotency-key", "").strip()
        ignored = self.variants.idempotency == "ignored" and re.fullmatch(r"/v1/models/.+/runs", p)
        if m == "POST" and key and not ignored:
            return self._idempotent(key, req)
        return self._api(req)

    def _idempotent(self, key: str, req: Request) -> Response:
        try:
            canon = json.dumps(json.loads(req.body or b"{}"), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            canon = req.body
        digest = hashlib.sha256(req.path.encode() + b"\n" + canon).hexdigest()
        with self._lock:
            seen = self._idempotency.get(key)
            if seen is not None:
                if seen[0] != digest:
                    return error(409, "CONFLICT", "Idempotency-Key reused with a different request body")
                if seen[1] is None:
                    return error(409, "CONFLICT", f"A request with this Idempotency-Key is still {IN_PROGRESS}: "
                                 "retry it shortly to get its answer")
                replay = copy.copy(seen[1])
                replay.headers = {**replay.headers, "Idempotent-Replayed": "true"}
                return replay
            self._idempotency[key] = (digest, None)  # in flight
        resp = None
        try:
            resp = self._api(req)
        finally:
            with self._lock:
                if resp is not None and 200 <= resp.status < 300:
                    self._idempotency[key] = (digest, resp)
                else:
                    self._idempotency.pop(key, None)
        return resp

    def _api(self, req: Request) -> Response:
        p, m = req.path, req.method
        if p == "/v1/auth/me":
            return json_response(200, {"id": USER_ID, "email": "sandbox@runflow.local", "org_id": ORG_ID,
                                       "sandbox": True,
                                       "scopes": ["runs:create", "runs:read", "assets:create", "assets:read"]})
        if p == "/v1/asset-uploads" and m == "POST":
            return self._upload_create(req)
        if (mt := re.fullmatch(r"/v1/asset-uploads/([^/]+)/confirmations", p)) and m == "POST":
            return self._upload_confirm(unquote(mt.group(1)), req)
        if p == "/v1/assets/types" and m == "GET":
            return json_response(200, {"items": asset_types()})
        if p == "/v1/billing/balance" and m == "GET":
            return json_response(200, {"id": ORG_ID, "org_id": ORG_ID, "balance": f"{self.balance():.2f}",
                                       "currency": "USD", "low_balance_threshold": "5.00"})
        if p == "/v1/models" and m == "GET":
            return json_response(200, {"items": [model_entry()], "next_pq": None, "prev_pq": None})
        if (mt := re.fullmatch(r"/v1/models/(.+)/examples", p)) and m == "GET":
            if not model_matches(unquote(mt.group(1))):
                return error(404, "MODEL_NOT_FOUND", f"Model {unquote(mt.group(1))!r} not found")
            return json_response(200, {"items": examples(self.run_seconds)})
        if (mt := re.fullmatch(r"/v1/assets/([^/]+)", p)) and m == "GET":
            with self._lock:
                a = self._assets.get(unquote(mt.group(1)))
                if a is None or not a.confirmed:
                    return error(404, "ASSET_NOT_FOUND", "Asset not found")
                return json_response(200, self._asset_json(a))
        if mt := re.fullmatch(r"/v1/models/(.+)/runs", p):
            segments = [unquote(s) for s in mt.group(1).split("/")]
            if len(segments) < 2:
                return error(405, "METHOD_NOT_ALLOWED", "Model id must be owner/slug, e.g. runflow/multi-angles")
            if "/".join(segments) != MODEL_ID:
                return error(404, "MODEL_NOT_FOUND", f"Model {'/'.join(segments)!r} not found")
            return self._create_run(req) if m == "POST" else error(405, "METHOD_NOT_ALLOWED", "use POST")
        if p == "/v1/runs/statuses" and m == "GET":
            spelling = self.variants.cancel_spelling
            codes = [spelling if s == "canceled" and spelling != "as_scripted" else s for s in STATUSES]
            return json_response(200, {"items": [{"code": s, "is_terminal": s in TERMINAL} for s in codes]})
        if p == "/v1/runs" and m == "GET":
            return self._list_runs(req)
        if (mt := re.fullmatch(r"/v1/runs/([^/]+)", p)) and m == "GET":
            with self._lock:
                rs = self._state.get(unquote(mt.group(1)))
                if rs is None:
                    return error(404, "RUN_NOT_FOUND", "Run not found")
                self._refresh(rs, time.time())
                return json_response(200, self._present(self._runs[rs.id]))
        return error(404, "NOT_FOUND", f"no route for {m} {p}")

    def _list_runs(self, req: Request) -> Response:
        q = req.query
        try:
            preds = parse_q((q.get("q") or [""])[0])
            if any(f == "client_ref" for f, _op, _v in preds):
                if self.variants.client_ref_search == "refused":
                    raise ValueError("filtering runs by client_ref is not supported")
                if self.variants.client_ref_search == "ignored":
                    preds = []
            limit = int((q.get("limit") or ["50"])[0])
            offset = int((q.get("pq") or ["0"])[0])
            if not 1 <= limit <= 500 or offset < 0:
                raise ValueError("limit must be 1-500")
        except ValueError as exc:
            return error(422, "VALIDATION_ERROR", "Invalid query", field_errors([("q", str(exc))]))
        sort_by = (q.get("sort_by") or ["created_at:desc"])[0]
        if sort_by not in ("created_at:desc", "created_at:asc"):
            return error(422, "VALIDATION_ERROR", "Invalid query",
                         field_errors([("sort_by", "must be created_at:desc or created_at:asc")]))
        with self._lock:
            now = time.time()
            items = []
            for rs in self._state.values():
                self._refresh(rs, now)
                if all(match(self._runs[rs.id], f, op, v) for f, op, v in preds):
                    items.append((rs.t0, self._runs[rs.id]))
            items.sort(key=lambda t: t[0], reverse=sort_by.endswith("desc"))
            page = [self._present(r) for _, r in items[offset: offset + limit]]
        return json_response(200, {"items": page,
                                   "next_pq": str(offset + limit) if offset + limit < len(items) else None,
                                   "prev_pq": str(max(0, offset - limit)) if offset > 0 else None})


    def _rate_headers(self) -> dict:
        """X-RateLimit-* for a /v1 answer (variant rate_limit_headers=on): a fixed one-minute window."""
        now = time.time()
        with self._lock:
            window = int(now // 60)
            if self._rate_window[0] != window:
                self._rate_window = [window, 0]
            self._rate_window[1] += 1
            used = self._rate_window[1]
        return {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": str(max(0, RATE_LIMIT - used)),
                "X-RateLimit-Reset": str((window + 1) * 60)}
