"""Storage: assets, presigned PUT/GET URLs (HMAC-signed, expiring), the 3-step upload and input fetching."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ..runflow.contract import MAX_UPLOAD_BYTES
from .config import ACCEPTED_MIME, MAX_FETCH_BYTES, ORG_ID, USER_ID
from .render import InputImageError, bomb_png
from .responses import (
    Request,
    Response,
    error,
    field_errors,
    filler,
    iso,
    json_response,
    parse_body,
    s3_error,
    streamed,
)

log = logging.getLogger(__name__)



@dataclass
class Asset:
    id: str
    name: str
    mime_type: str
    declared_size: int
    source_type: str
    put_token: str
    get_token: str
    put_expires: int = 0
    data: bytes | None = None
    confirmed: bool = False
    is_output: bool = False
    r2_key: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)



def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False



def corrupt(params: dict, asset: Asset) -> Response:
    mode = params.get("mode", "truncated")
    if mode == "truncated":
        return Response(200, asset.data[: len(asset.data) // 2], asset.mime_type)
    if mode == "not_image":
        page = b"<html><body><h1>Service temporarily unavailable</h1><p>Please try again.</p></body></html>"
        return Response(200, page, params.get("content_type", "text/html"))
    if mode == "bomb":
        return Response(200, bomb_png(int(params.get("width", 30000)), int(params.get("height", 30000))), "image/png")
    total = int(float(params.get("size_mb", 300)) * 1024 * 1024)
    return streamed(200, asset.mime_type, total, filler(total, asset.data[:64], fill=b"\0"))



class StorageMixin:
    """Sandbox methods for assets and the presigned storage (state lives on the Sandbox)."""

    # -- signing -------------------------------------------------------------------------------------------------
    def _base(self) -> str:
        return self.public_url or self.url or ""

    def _sig(self, *parts) -> str:
        return hmac.new(self._secret, "\n".join(map(str, parts)).encode(), hashlib.sha256).hexdigest()

    def _get_url(self, asset: Asset) -> str:
        token, expires = asset.get_token, int(time.time() + self.get_url_ttl)
        return f"{self._base()}/_storage/get/{token}?expires={expires}&sig={self._sig('GET', token, expires)}"

    def _check_get(self, token: str, query: dict) -> tuple[Asset | None, Response | None]:
        """The asset a signed GET URL names, or the S3-style error the storage answers."""
        expires, sig = (query.get("expires") or [""])[0], (query.get("sig") or [""])[0]
        with self._lock:
            asset = self._assets.get(self._tokens.get(token, ""))
        if asset is None or asset.data is None:
            return None, s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if not hmac.compare_digest(sig, self._sig("GET", token, expires)):
            return None, s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                                  "match the signature you provided.")
        if not expires.isdigit() or time.time() >= int(expires):
            return None, s3_error(403, "AccessDenied", "Request has expired")
        return asset, None

    def _asset_json(self, a: Asset) -> dict:
        return {"id": a.id, "org_id": ORG_ID, "folder_id": None, "name": a.name, "r2_key": a.r2_key,
                "url": self._get_url(a), "thumbnail_url": None, "mime_type": a.mime_type,
                "size_bytes": len(a.data or b""), "asset_type": "image", "source_type": a.source_type,
                "source_id": None, "created_by": USER_ID, "created_at": iso(a.created_at),
                "updated_at": iso(a.updated_at)}

    def _new_asset(self, name: str, mime: str, size: int, source_type: str) -> Asset:
        aid = str(uuid.uuid4())
        a = Asset(aid, name, mime, size, source_type, secrets.token_urlsafe(18), secrets.token_urlsafe(18),
                  r2_key=f"{ORG_ID}/{'runs' if source_type == 'run_output' else 'uploads'}/{aid}/{name}")
        self._assets[aid] = a
        self._tokens[a.get_token] = aid
        self._tokens[a.put_token] = aid
        return a

    # -- uploads -------------------------------------------------------------------------------------------------
    def _upload_create(self, req: Request) -> Response:
        body, bad = parse_body(req.body)
        if bad:
            return bad
        errors = []
        name, mime, size = body.get("filename"), body.get("mime_type"), body.get("size_bytes")
        if not isinstance(name, str) or not 1 <= len(name) <= 500:
            errors.append(("filename", "must be a string of 1-500 characters"))
        if not isinstance(mime, str) or not 1 <= len(mime) <= 255:
            errors.append(("mime_type", "must be a string of 1-255 characters"))
        elif mime.lower() not in ACCEPTED_MIME:
            errors.append(("mime_type", f"unsupported mime type {mime!r}; accepted: {', '.join(ACCEPTED_MIME)}"))
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_UPLOAD_BYTES:
            errors.append(("size_bytes", f"must be an integer between 1 and {MAX_UPLOAD_BYTES}"))
        if errors:
            return error(422, "VALIDATION_ERROR", "Input validation failed", field_errors(errors))
        with self._lock:
            a = self._new_asset(name, mime.lower(), size, "upload")
            a.put_expires = int(time.time() + self.upload_url_ttl)
            sig = self._sig("PUT", a.put_token, a.put_expires, a.mime_type)
            url = f"{self._base()}/_storage/put/{a.put_token}?X-Expires={a.put_expires}&X-Sig={sig}"
            return json_response(201, {"asset_id": a.id, "upload_url": url})

    def _upload_confirm(self, asset_id: str, req: Request) -> Response:
        if req.body.strip():
            _body, bad = parse_body(req.body)
            if bad:
                return bad
        with self._lock:
            a = self._assets.get(asset_id)
            if a is None or a.is_output:
                return error(404, "ASSET_NOT_FOUND", "Upload session not found")
            if a.data is None:
                return error(409, "CONFLICT", "Nothing was uploaded yet: PUT the file to upload_url, then confirm")
            if a.confirmed and self.variants.second_confirm == "conflict":
                return error(409, "CONFLICT", "Asset upload already confirmed: use the asset returned the first time "
                             f"(GET /v1/assets/{a.id})")
            if not a.confirmed:
                a.confirmed, a.updated_at = True, time.time()
                self.uploads += 1
            return json_response(201, self._asset_json(a))

    def _storage(self, req: Request) -> Response:
        m, p = req.method, req.path
        if "authorization" in req.headers:
            return s3_error(400, "InvalidArgument", "Credentials must not be sent to presigned URLs: "
                            "remove the Authorization header (the signature is in the URL)")
        if (mt := re.fullmatch(r"/_storage/put/([^/]+)", p)) and m == "PUT":
            return self._storage_put(mt.group(1), req)
        if (mt := re.fullmatch(r"/_storage/get/([^/]+)", p)) and m == "GET":
            asset, err = self._check_get(mt.group(1), req.query)
            if err:
                return err
            fault = self.faults.take(m, p, ("corrupt_output",)) if asset.is_output else None
            if fault is not None:
                return corrupt(fault.params, asset)
            return Response(200, asset.data, asset.mime_type,
                            {"ETag": f'"{hashlib.md5(asset.data).hexdigest()}"', "Cache-Control": "private"})
        return s3_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    def _storage_put(self, token: str, req: Request) -> Response:
        expires, sig = (req.query.get("X-Expires") or [""])[0], (req.query.get("X-Sig") or [""])[0]
        with self._lock:
            a = self._assets.get(self._tokens.get(token, ""))
            if a is None or token != a.put_token or not hmac.compare_digest(
                    sig, self._sig("PUT", token, expires, a.mime_type)):
                return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                                "match the signature you provided.")
            if time.time() >= a.put_expires:
                return s3_error(403, "AccessDenied", "Request has expired")
            ctype = req.headers.get("content-type", "").strip().lower()
            if ctype != a.mime_type:
                return s3_error(403, "SignatureDoesNotMatch", f"The request signature we calculated does not match "
                                f"the signature you provided: Content-Type {ctype or '(none)'!r} is not the "
                                f"signed {a.mime_type!r}.")
            if len(req.body) != a.declared_size:
                log.info("sandbox: upload %s is %d bytes, declared %d", a.id, len(req.body), a.declared_size)
            a.data, a.updated_at = req.body, time.time()
            return Response(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})

    def _fetch_input(self, url: str) -> bytes:
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            try:
                return base64.b64decode(payload, validate=True) if head.endswith(";base64") else unquote(
                    payload).encode("latin-1")
            except (binascii.Error, ValueError) as exc:
                raise InputImageError("INPUT_FETCH_FAILED", "image_url is not a valid data URI") from exc
        parts = urlsplit(url)
        if mt := re.fullmatch(r"/_storage/get/([^/]+)", parts.path):
            with self._lock:
                ours = mt.group(1) in self._tokens
            if ours or parts.netloc == urlsplit(self._base()).netloc:
                asset, err = self._check_get(mt.group(1), parse_qs(parts.query))
                if err is not None:
                    reason = re.search(rb"<Message>(.*?)</Message>", err.body)
                    raise InputImageError("INPUT_FETCH_FAILED", f"could not fetch image_url: HTTP {err.status} "
                                          f"({reason.group(1).decode() if reason else 'error'})")
                return asset.data
        handlers = []
        if parts.hostname in ("localhost",) or is_loopback(parts.hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(urllib.request.Request(url, headers={"User-Agent": "runflow-sandbox/1"}),
                             timeout=5) as resp:
                data = resp.read(MAX_FETCH_BYTES)
        except urllib.error.HTTPError as exc:
            raise InputImageError("INPUT_FETCH_FAILED", f"could not fetch image_url: HTTP {exc.code}") from exc
        except Exception as exc:
            raise InputImageError("INPUT_FETCH_FAILED", f"could not fetch image_url: {exc}") from exc
        if len(data) >= MAX_FETCH_BYTES:
            raise InputImageError("INPUT_VALIDATION_FAILED", "input image is larger than 50 MiB")
        return data
