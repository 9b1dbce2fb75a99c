"""The doctor: checks the real API against what the pack assumes, without spending (``--spend-one``: one $0.20 run),
and remembers what it learned (capabilities per API URL) so the pack uses it.

Checks: key accepted, balance, the model's live input schema (exact enums and defaults) against the pack's strings,
accepted upload MIME types, whether client_ref search filters, which rate-limit headers come back; with
``spend_one``: one real run, then the same Idempotency-Key re-sent with an invalid body (409 = honoured, 422 =
ignored; neither bills).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from ..runflow import errors as E
from ..runflow.capabilities import FILTERS, HONOURED, IGNORED, REFUSED, Capabilities
from ..runflow.client import RunflowClient
from ..runflow.contract import (
    ANGLES,
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    MODEL_ID,
    RUNS_PATH,
    SHOTS,
    VIEWS,
)
from ..runflow.creating import PROBE_INPUT

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")
UPLOAD_MIMES = ("image/png", "image/jpeg", "image/webp")  # what the pack's encoder may send
# the pack's strings: name -> (choices, default the pack assumes when the input is left out, required)
EXPECTED = {
    "image_url": (None, None, True),
    "view": (VIEWS, None, True),
    "angle": (ANGLES, None, False),
    "shot": (SHOTS, None, False),
    "prompt": (None, None, False),
    "match_input_aspect": (("true", "false"), "true", False),
    "aspect_ratio": (ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, False),
}


@dataclass
class Fact:
    name: str
    ok: bool | None  # None: not checked / informational
    text: str


@dataclass
class DoctorReport:
    api_url: str
    facts: list[Fact] = field(default_factory=list)
    caps: Capabilities | None = None

    @property
    def problems(self) -> list[Fact]:
        return [f for f in self.facts if f.ok is False]

    def add(self, name: str, ok: bool | None, text: str) -> None:
        self.facts.append(Fact(name, ok, text))

    def text(self) -> str:
        """The pasteable report."""
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        lines = [f"Runflow doctor · {self.api_url} · {stamp}"]
        for f in self.facts:
            mark = {True: "ok ", False: "BAD", None: " - "}[f.ok]
            lines.append(f"[{mark}] {f.name}: {f.text}")
        verdict = "OK" if not self.problems else f"{len(self.problems)} problem(s): " + ", ".join(
            f.name for f in self.problems)
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)

    def short(self) -> str:
        """One line for Settings → Runflow → Test connection."""
        return " · ".join(f"{f.name}: {f.text.split(';')[0]}" for f in self.facts if f.name != "key")


async def run_doctor(client: RunflowClient, *, spend_one: bool = False, image: tuple[bytes, str] | None = None,
                     quick: bool = False) -> DoctorReport:
    report = DoctorReport(client.base_url)
    headers: set[str] = set()

    async def get(path: str, params: dict | None = None):
        reply = await client.http.send("GET", path, params=params, parse=lambda r: r, limit=16 << 20)
        headers.update(h for h in RATE_HEADERS if h in reply.headers)
        if reply.status >= 400:
            from ..runflow.responses import error_from_response

            raise error_from_response(reply.as_response("GET", client.base_url + path), api_key=client._key)
        from ..runflow.responses import parse_json

        return parse_json(reply.body, "GET", path)

    try:
        me = await get("/v1/auth/me")
    except E.RunflowError as exc:
        report.add("key", False, exc.message)
        return report
    report.add("key", True, f"accepted ({E.mask_key(client._key)})" + (" — SANDBOX" if isinstance(me, dict)
                                                                         and me.get("sandbox") else ""))
    await _balance(report, get)
    await _schema(report, get)
    if not quick:
        await _mime_types(report, get)
    await client.creator().learn_search()
    if spend_one:
        await _spend_one(report, client, image)
    search = client.capabilities.get(client.base_url).search
    search_text = {FILTERS: "filters (a random client_ref returned no runs while the org has runs)",
                   IGNORED: "IGNORED (a random client_ref returned other runs: not a proof of absence)",
                   REFUSED: "refused (4xx on q=client_ref:…)"}.get(search or "", "unknown (no runs in the org yet)")
    report.add("client_ref search", None, search_text)
    caps = client.capabilities.get(client.base_url)
    idem = {HONOURED: "honoured (reused key + other body -> 409)", IGNORED: "IGNORED (reused key + other body was "
            "processed: 422)"}.get(caps.idempotency or "", "not known (run --doctor --spend-one: one $0.20 run)")
    report.add("idempotency on runs", None, idem)
    report.add("rate-limit headers", None, ", ".join(sorted(headers)) or "none on these answers")
    if caps.idempotency or caps.search:
        client.capabilities.learn(client.base_url, source="doctor", idempotency=caps.idempotency, search=caps.search)
    report.caps = client.capabilities.get(client.base_url)
    safe = ("never stops" if report.caps.replay_safe or report.caps.absence_provable
            else "an ambiguous create is settled by listing runs back to a fence, else stopped safely")
    report.add("never pay twice", None, safe)
    return report


async def _balance(report: DoctorReport, get) -> None:
    try:
        bal = await get("/v1/billing/balance")
    except E.RunflowError as exc:
        report.add("balance", None, f"not readable ({exc.message})")
        return
    value = None
    if isinstance(bal, dict):
        if bal.get("balance") is not None:
            value = f"${float(bal['balance']):.2f}"
        elif bal.get("balance_cents") is not None:
            value = f"${int(bal['balance_cents']) / 100:.2f}"
    report.add("balance", value is not None and not value.startswith("$0.0") and not value.startswith("$-"),
               value or "unknown shape")


async def _find_model(get) -> dict | None:
    params: dict = {"limit": 500}
    for _ in range(10):
        page = await get("/v1/models", params)
        items = page.get("items") if isinstance(page, dict) else None
        for item in items or []:
            if isinstance(item, dict) and MODEL_ID in (item.get("model_id"), f"{item.get('owner')}/{item.get('slug')}"):
                return item
        nxt = page.get("next_pq") if isinstance(page, dict) else None
        if not nxt:
            return None
        params = {"limit": 500, "pq": nxt}
    return None


async def _schema(report: DoctorReport, get) -> None:
    try:
        model = await _find_model(get)
    except E.RunflowError as exc:
        report.add("model schema", None, f"not readable ({exc.message})")
        return
    if model is None:
        report.add("model schema", False, f"{MODEL_ID} is not in GET /v1/models")
        return
    live = {i.get("name"): i for i in model.get("inputs") or [] if isinstance(i, dict)}
    problems = []
    for name, (choices, default, required) in EXPECTED.items():
        item = live.get(name)
        if item is None:
            problems.append(f"{name} missing")
            continue
        if bool(item.get("is_required")) != required:
            problems.append(f"{name} required={item.get('is_required')}")
        attrs = item.get("validator_attrs") or {}
        got = attrs.get("choices") or attrs.get("enum") or attrs.get("values") if isinstance(attrs, dict) else None
        if choices is not None and got is not None and tuple(got) != tuple(choices):
            extra, missing = sorted(set(got) - set(choices)), sorted(set(choices) - set(got))
            problems.append(f"{name} choices differ" + (f" (+{extra})" if extra else "")
                            + (f" (-{missing})" if missing else "") + ("" if extra or missing else " (order)"))
        if default is not None and item.get("default_value") not in (None, default):
            problems.append(f"{name} default {item.get('default_value')!r}, pack assumes {default!r}")
    extra_inputs = sorted(set(live) - set(EXPECTED))
    defaults = {n: live[n].get("default_value") for n in ("angle", "shot") if n in live}
    note = f"; live defaults angle={defaults.get('angle')!r} shot={defaults.get('shot')!r}"
    if extra_inputs:
        note += f"; inputs the pack does not send: {', '.join(map(str, extra_inputs))}"
    if problems:
        report.add("model schema", False, "MISMATCH: " + "; ".join(problems) + note)
    else:
        report.add("model schema", True, f"{MODEL_ID} matches the pack (strings, enums, defaults){note}")


async def _mime_types(report: DoctorReport, get) -> None:
    try:
        page = await get("/v1/assets/types")
    except E.RunflowError as exc:
        report.add("upload types", None, f"not readable ({exc.message})")
        return
    items = page.get("items") if isinstance(page, dict) else page
    mimes = {(i.get("mime_type") if isinstance(i, dict) else i) for i in items or []}
    missing = [m for m in UPLOAD_MIMES if m not in mimes]
    report.add("upload types", not missing, "accepted: " + ", ".join(m for m in UPLOAD_MIMES if m in mimes)
               + (f"; NOT accepted: {', '.join(missing)}" if missing else ""))


async def _spend_one(report: DoctorReport, client: RunflowClient, image: tuple[bytes, str] | None) -> None:
    """One real run; then its key re-sent with an invalid body: 409 = honoured, 422 = ignored. Nothing else bills."""
    if image is None:
        report.add("spend one", False, "no image to upload")
        return
    data, mime = image
    key = str(uuid.uuid4())
    ref = f"rfma-doctor-{key}"
    try:
        asset = await client.upload(data, mime, "doctor." + mime.split("/")[-1])
        body = client.run_body({"image_url": asset.url, "view": "front view"}, client_ref=ref)
        run = await client.creator().create(body, idempotency_key=key, client_ref=ref)
    except E.RunflowError as exc:
        report.add("spend one", False, f"the run could not be created: {exc.message}")
        return
    report.add("spend one", True, f"run {run.id} created (client_ref {ref}, $0.20)")
    try:
        await client._request("POST", RUNS_PATH, body={"input": PROBE_INPUT, "client_ref": ref},
                              headers={"Idempotency-Key": key}, once=True)
        verdict = None
    except E.ConflictError:
        verdict = HONOURED
    except E.ValidationError:
        verdict = IGNORED
    except E.RunflowError:
        verdict = None
    if verdict:
        client.capabilities.learn(client.base_url, source="doctor", idempotency=verdict)
    found = await client.creator().find(ref)
    if found is not None and found.id == run.id and client.capabilities.get(client.base_url).search is None:
        await client.creator().learn_search()
    try:
        await client.wait(run, timeout=300)
        report.add("run result", True, f"run {run.id} succeeded")
    except E.RunflowError as exc:
        report.add("run result", False, exc.message)
