"""ComfyUI server routes: Settings → Runflow (key kept server-side), Test connection, and run callbacks.

No route ever returns the key: status only (configured, last 4 characters, where it came from).
"""

from __future__ import annotations

import logging

from ..core.config import CONFIG_KEYS, load_settings, store_settings
from ..core.session import process_session
from ..runflow import errors as E
from ..runflow.client import RunflowClient
from ..runflow.retry import RetryPolicy
from . import push
from .route_guard import GuardedRoutes, check, is_local_client, log_change, read_json_capped

log = logging.getLogger(__name__)
SETTABLE = CONFIG_KEYS  # what Settings may post; SENSITIVE ones only from this machine (route_guard.py)


async def test_connection() -> dict:
    """Reachable? Key accepted? One line that says the exact problem."""
    settings = load_settings()
    answer = {"ok": False, "reachable": False, "key_accepted": None, "api_url": settings.api_url}
    if not settings.api_key or settings.problem:
        try:
            settings.require_key()
        except E.ConfigError as exc:
            return {**answer, "message": exc.message}
    try:
        async with RunflowClient(settings.api_key, settings.api_url, retry=RetryPolicy(attempts=1)) as client:
            await client.check()
    except E.AuthError as exc:
        return {**answer, "reachable": True, "key_accepted": False, "message": settings.explain(exc.message)}
    except E.ApiError as exc:
        return {**answer, "reachable": True, "message": settings.explain(exc.message)}
    except E.RunflowError as exc:  # e.g. "cannot reach …: check RUNFLOW_API_URL" although the URL is from Settings
        return {**answer, "message": settings.explain(exc.message)}
    facts = await doctor_facts(settings)
    return {**answer, "ok": True, "reachable": True, "key_accepted": True, **facts,
            "message": f"Connected to {settings.api_url}; the key (…{settings.api_key[-4:]}) was accepted."
            + (f" {facts['doctor']}" if facts.get("doctor") else "")}


async def doctor_facts(settings) -> dict:
    """The doctor's short form (no spending): balance, schema, search, idempotency. Never fails the test."""
    from ..core.config import user_dir
    from ..core.doctor import run_doctor
    from ..runflow.capabilities import CAPABILITIES_FILE, CapabilityStore

    try:
        async with RunflowClient(settings.api_key, settings.api_url, retry=RetryPolicy(attempts=1),
                                 capabilities=CapabilityStore(user_dir() / CAPABILITIES_FILE)) as client:
            report = await run_doctor(client, quick=True)
    except Exception as exc:  # noqa: BLE001 - the connection test already passed; the extras are best effort
        log.info("Runflow: doctor facts failed: %s", type(exc).__name__)
        return {}
    return {"doctor": report.short(), "doctor_problems": [f.name for f in report.problems]}


def register() -> None:
    """Add the routes to ComfyUI's server; a no-op outside ComfyUI."""
    try:
        from server import PromptServer  # type: ignore[import-not-found]
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is None:
        return
    add_routes(PromptServer.instance.routes)


def add_routes(routes) -> None:
    """Add the pack's handlers to an aiohttp RouteTableDef (ComfyUI's, or a test server's), every one behind the
    route guard (route_guard.py). Routes added later must go through ``GuardedRoutes`` too."""
    from aiohttp import web

    routes = GuardedRoutes(routes)

    @routes.get("/runflow/settings")
    async def get_settings(request):
        return web.json_response(load_settings().public_status(local=is_local_client(request)))

    @routes.post("/runflow/settings")
    async def post_settings(request):
        try:
            body = await read_json_capped(request)
        except ValueError:
            return web.json_response({"error": "send one small JSON object"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "send a JSON object"}, status=400)
        unknown = [k for k in body if k not in SETTABLE]
        if unknown:
            return web.json_response({"error": f"unknown Runflow setting(s); known: {', '.join(SETTABLE)}"},
                                     status=400)
        refusal = check(request, write=True, fields=set(body))
        if refusal is not None:
            return web.json_response({"error": refusal.error}, status=refusal.status)
        try:
            store_settings(body)
        except E.ConfigError as exc:
            return web.json_response({"error": exc.message}, status=400)
        if body:
            log_change(request, "settings changed", sorted(body))
        return web.json_response(load_settings().public_status(local=is_local_client(request)))

    @routes.post("/runflow/test_connection")
    async def post_test_connection(request):
        return web.json_response(await test_connection())

    @routes.get("/runflow/cache")
    async def get_cache(request):
        from ..core.cache import ResultCache

        stats = ResultCache().stats()
        if not is_local_client(request):
            stats.pop("root", None)
        return web.json_response({**stats, "session": process_session().totals.as_dict()})

    @routes.post("/runflow/cache/clear")
    async def post_cache_clear(request):
        from ..core.cache import ResultCache

        cache = ResultCache()
        removed = cache.clear()
        log_change(request, f"result cache cleared ({removed} results)")
        return web.json_response({"removed": removed, **cache.stats()})

    @routes.get("/runflow/ledger")
    async def get_ledger(request):
        from ..core import receipts

        return web.json_response(receipts.summary(receipts.default_ledger()))

    @routes.get("/runflow/ledger.csv")
    async def get_ledger_csv(request):
        from ..core import receipts

        text = receipts.to_csv(receipts.default_ledger().read())
        return web.Response(text=text, content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="runflow-ledger.csv"',
                                     "Cache-Control": "no-store"})

    @routes.post(push.CALLBACK_PATH, public=True)  # from Runflow: each body is authenticated by its signature
    async def post_callback(request):
        secret = load_settings().webhook_secret
        status, answer = await push.receive(request, secret, process_session().wakeups)
        return web.json_response(answer, status=status)
