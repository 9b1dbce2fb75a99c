// Settings → Runflow → Connection. The pack's server route (/runflow/settings) is the source of truth: secrets are
// posted there and never stored in ComfyUI's settings (each row is a custom renderer that never calls the setter),
// the workflow or the prompt. The key itself is never sent back; only "configured, …last4, from env|config".

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ensureStyle, guard, html } from "./runflow_dom.js";
import { tr } from "./runflow_i18n.js";
import { SETTING_TEXT } from "./runflow_strings.js";

const STATUS_CACHE_MS = 1500; // several settings rows render at once; share one GET
// Every write route of the pack requires JSON (the server refuses text/plain "simple" cross-origin requests).
const jsonPost = () => ({ method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });

let statusCache = { at: 0, promise: null };
const statusListeners = new Set();

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function fetchStatus() {
  const now = Date.now();
  if (statusCache.promise && now - statusCache.at < STATUS_CACHE_MS) return statusCache.promise;
  const promise = (async () => {
    try {
      const response = await api.fetchApi("/runflow/settings", { method: "GET", cache: "no-store" });
      const body = await readJson(response);
      if (!response.ok || !body || typeof body !== "object") {
        return { error: tr("settings.routesMissing", { detail: `HTTP ${response.status}` }) };
      }
      return body;
    } catch (error) {
      return { error: tr("settings.routesMissing", { detail: String(error?.message ?? error) }) };
    }
  })();
  statusCache = { at: now, promise };
  return promise;
}

async function postSettings(update) {
  try {
    const response = await api.fetchApi("/runflow/settings", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(update),
    });
    const body = await readJson(response);
    if (!response.ok) {
      return { error: body?.error || tr("settings.routesMissing", { detail: `HTTP ${response.status}` }) };
    }
    statusCache = { at: Date.now(), promise: Promise.resolve(body) };
    notifyStatus(body);
    return body;
  } catch (error) {
    return { error: tr("settings.routesMissing", { detail: String(error?.message ?? error) }) };
  }
}

function notifyStatus(status) {
  for (const entry of [...statusListeners]) {
    if (!entry.el.isConnected && Date.now() - entry.born > 5000) {
      statusListeners.delete(entry);
      continue;
    }
    guard("settings status", () => entry.update(status));
  }
}

function subscribe(el, update) {
  statusListeners.add({ el, update, born: Date.now() });
  fetchStatus().then((status) => guard("settings status", () => update(status)));
}

export async function testConnection() {
  try {
    const response = await api.fetchApi("/runflow/test_connection", jsonPost());
    const body = await readJson(response);
    if (!response.ok || !body) {
      return { ok: false, message: body?.error || tr("settings.routesMissing", { detail: `HTTP ${response.status}` }) };
    }
    return body;
  } catch (error) {
    return { ok: false, message: tr("settings.routesMissing", { detail: String(error?.message ?? error) }) };
  }
}

export function toast(severity, detail) {
  guard("toast", () => {
    app.extensionManager?.toast?.add?.({ severity, summary: "Runflow", detail, life: severity === "error" ? 8000 : 4000 });
  });
}

function sourceName(source) {
  if (source === "env") return tr("settings.sourceEnv");
  if (source === "config") return tr("settings.sourceConfig");
  return tr("settings.sourceDefault");
}

function setStatus(el, text, kind = null, title = "") {
  el.textContent = text;
  el.title = title || text;
  el.classList.toggle("is-ok", kind === "ok");
  el.classList.toggle("is-error", kind === "error");
}

function settingRow(field) {
  ensureStyle();
  const root = html("div", { class: "runflow-setting", "data-runflow-setting": field });
  const form = html("form", { autocomplete: "off" });
  const status = html("div", { class: "runflow-setting-status", "data-runflow-setting-status": field, "aria-live": "polite" });
  root.append(form, status);
  return { root, form, status };
}

function button(text, type = "button") {
  return html("button", { type, class: "runflow-button" }, text);
}

/** A secret (API key, webhook secret): write-only password box + Save/Remove; shows only what the server reports. */
function renderSecretSetting({ field, label, describe, placeholder = "" }) {
  const { root, form, status } = settingRow(field);
  const input = html("input", {
    type: "password",
    name: `runflow-${field}`,
    placeholder,
    autocomplete: "new-password",
    spellcheck: "false",
    "aria-label": label,
  });
  const save = button(tr("settings.save"), "submit");
  const remove = button(tr("settings.remove"));
  remove.hidden = true;
  form.append(input, save, remove);

  const update = (st) => {
    if (st?.error) return setStatus(status, st.error, "error");
    const { text, removable, title } = describe(st);
    remove.hidden = !removable;
    setStatus(status, text, null, title);
  };
  const submit = async (value) => {
    save.disabled = remove.disabled = true;
    setStatus(status, tr("settings.saving"));
    const result = await postSettings({ [field]: value });
    input.value = ""; // never keep the secret in the page longer than needed
    save.disabled = remove.disabled = false;
    if (result?.error) {
      setStatus(status, result.error, "error");
      toast("error", result.error);
    }
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (!value) return setStatus(status, tr("settings.pasteFirst"), "error");
    submit(value);
  });
  remove.addEventListener("click", () => submit(""));
  setStatus(status, tr("settings.loading"));
  subscribe(root, update);
  return root;
}

/** A plain (non-secret) URL: prefilled from the server, Save/Reset. */
function renderUrlSetting({ field, label, placeholder, value, describe, resetText }) {
  const { root, form, status } = settingRow(field);
  const input = html("input", { type: "url", name: `runflow-${field}`, placeholder, spellcheck: "false", "aria-label": label });
  const save = button(tr("settings.save"), "submit");
  const reset = button(resetText);
  form.append(input, save, reset);
  let dirty = false;
  input.addEventListener("input", () => {
    dirty = true;
  });
  const update = (st) => {
    if (st?.error) return setStatus(status, st.error, "error");
    if (!dirty || document.activeElement !== input) {
      input.value = value(st) ?? "";
      dirty = false;
    }
    const { text, title } = describe(st);
    setStatus(status, text, null, title);
  };
  const submit = async (v) => {
    save.disabled = reset.disabled = true;
    setStatus(status, tr("settings.saving"));
    const result = await postSettings({ [field]: v });
    save.disabled = reset.disabled = false;
    dirty = false;
    if (result?.error) {
      setStatus(status, result.error, "error");
      toast("error", result.error);
    } else {
      input.value = value(result) ?? "";
    }
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(input.value.trim());
  });
  reset.addEventListener("click", () => submit(""));
  setStatus(status, tr("settings.loading"));
  subscribe(root, update);
  return root;
}

/** What a test result depends on: the key (its last 4) and the URL. */
function connectionSignature(st) {
  return JSON.stringify([st?.key_configured ?? null, st?.key_last4 ?? null, st?.key_source ?? null, st?.api_url ?? null]);
}

function renderTestConnection() {
  const { root, form, status } = settingRow("test_connection");
  const run = button(tr("settings.test"), "submit");
  form.append(run);
  let testedFor = null; // the signature the shown result belongs to (null: nothing shown)
  let current = null;
  const runTest = async ({ notify }) => {
    run.disabled = true;
    setStatus(status, tr("settings.testing"));
    const result = await testConnection();
    run.disabled = false;
    const message = String(result?.message || (result?.ok ? tr("settings.testOk") : tr("settings.testFailed")));
    setStatus(status, message, result?.ok ? "ok" : "error");
    testedFor = current;
    if (notify) toast(result?.ok ? "success" : "error", message);
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    runTest({ notify: true });
  });
  // A result shown for another key or URL is stale: after Save / Remove, test again by itself (a free check).
  subscribe(root, (st) => {
    if (st?.error) return;
    current = connectionSignature(st);
    if (testedFor !== null && testedFor !== current && !run.disabled) runTest({ notify: false });
  });
  return root;
}

function renderResultCache() {
  const { root, form, status } = settingRow("result_cache");
  const clear = button(tr("settings.cacheClear"), "submit");
  form.append(clear);
  const show = async () => {
    const response = await guard("reading the cache", () => api.fetchApi("/runflow/cache", { cache: "no-store" }));
    const info = response?.ok ? await readJson(response) : null;
    if (info) {
      const size = (info.bytes / 2 ** 20).toFixed(1);
      setStatus(status, tr("settings.cacheInfo", { entries: info.entries, size, path: info.root }));
    }
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear.disabled = true;
    const response = await guard("clearing the cache", () => api.fetchApi("/runflow/cache/clear", jsonPost()));
    const info = response?.ok ? await readJson(response) : null;
    clear.disabled = false;
    if (info) toast("success", tr("settings.cacheCleared", { removed: info.removed }));
    await show();
  });
  show();
  return root;
}

/** Settings → Runflow → Spending: today / this month per Runflow's run records (GET /runflow/ledger), CSV export. */
function renderLedger() {
  const { root, form, status } = settingRow("ledger");
  const href = guard("ledger CSV address", () => api.apiURL("/runflow/ledger.csv")) ?? "/api/runflow/ledger.csv";
  const link = html("a", { class: "runflow-link", href, download: "runflow-ledger.csv", "data-runflow-ledger-csv": "" }, tr("settings.ledgerExport"));
  form.append(link);
  (async () => {
    const response = await guard("reading the ledger", () => api.fetchApi("/runflow/ledger", { cache: "no-store" }));
    const info = response?.ok ? await readJson(response) : null;
    if (!info?.today || !info?.month) {
      setStatus(status, tr("settings.routesMissing", { detail: response ? `HTTP ${response.status}` : "no answer" }), "error");
      return;
    }
    const text = tr("settings.ledgerInfo", {
      today: info.today.billed,
      todayRuns: info.today.runs,
      month: info.month.billed,
      monthRuns: info.month.runs,
      hits: info.month.cache_hits,
    });
    const notes = [text, tr("settings.ledgerTitle")];
    if (info.month.unreported) notes.push(tr("settings.ledgerUnreported", { n: info.month.unreported }));
    if (info.month.not_runflow) notes.push(tr("settings.ledgerNotRunflow", { n: info.month.not_runflow }));
    setStatus(status, text, null, notes.join("\n"));
  })();
  return root;
}

const SETTINGS = [
  {
    key: "ApiKey",
    render: () =>
      renderSecretSetting({
        field: "api_key",
        label: "Runflow API key",
        placeholder: tr("settings.keyPlaceholder"),
        describe: (st) => {
          const source = sourceName(st?.key_source);
          let text = tr("settings.keyMissing");
          if (st?.key_configured) {
            text = st.key_last4
              ? tr("settings.keyConfigured", { last4: st.key_last4, source })
              : tr("settings.keyConfiguredNoHint", { source });
          }
          const notes = [text];
          if (st?.key_source === "env") notes.push(tr("settings.keyEnvWins"));
          if (st?.config_path) notes.push(tr("settings.savedTo", { path: st.config_path }));
          return { text, title: notes.join("\n"), removable: st?.key_source === "config" };
        },
      }),
  },
  {
    key: "ApiUrl",
    render: () =>
      renderUrlSetting({
        field: "api_url",
        label: "Runflow API URL",
        placeholder: "https://api.runflow.io",
        resetText: tr("settings.reset"),
        value: (st) => st?.api_url,
        describe: (st) => {
          const text = tr("settings.urlStatus", { url: st?.api_url ?? "?", source: sourceName(st?.api_url_source) });
          return { text, title: st?.api_url_source === "env" ? `${text}\n${tr("settings.urlEnvWins")}` : text };
        },
      }),
  },
  {
    key: "PublicUrl",
    render: () =>
      renderUrlSetting({
        field: "public_url",
        label: "Public URL",
        placeholder: "https://…",
        resetText: tr("settings.clear"),
        value: (st) => st?.public_url,
        describe: (st) => {
          if (!st?.public_url) return { text: tr("settings.publicMissing") };
          const text = tr("settings.publicSet", { url: st.public_url });
          return {
            text: st.webhook_secret_configured ? text : `${text}. ${tr("settings.publicNeedsSecret")}`,
          };
        },
      }),
  },
  {
    key: "WebhookSecret",
    render: () =>
      renderSecretSetting({
        field: "webhook_secret",
        label: "Runflow webhook secret",
        describe: (st) => ({
          text: st?.webhook_secret_configured ? tr("settings.secretConfigured") : tr("settings.secretMissing"),
          removable: !!st?.webhook_secret_configured,
        }),
      }),
  },
  {
    key: "TestConnection",
    render: renderTestConnection,
  },
  {
    key: "Ledger",
    render: renderLedger,
  },
  {
    key: "ResultCache",
    render: renderResultCache,
  },
];

/**
 * Register the settings. Ids are Runflow.MultiAngles.<Key> (never Runflow.<Key>: Runflow's own "ComfyUI-Runflow"
 * deploy pack registers Runflow.ApiUrl and Runflow.ApiKey as plain text settings); the category keeps them under
 * Settings → Runflow.
 */
export function registerSettings(extensionName) {
  const settings = SETTINGS.map((s) => {
    const id = `Runflow.MultiAngles.${s.key}`;
    return {
      id,
      category: ["Runflow", "Connection", s.key],
      name: SETTING_TEXT[s.key].name,
      tooltip: SETTING_TEXT[s.key].tooltip,
      sortOrder: SETTING_TEXT[s.key].sortOrder,
      defaultValue: "",
      // A custom renderer (supported since long before frontend 1.27): it never calls the setter, so nothing is
      // ever stored under this id in comfy.settings.json.
      type: () => guard(`rendering ${id}`, s.render) ?? html("span", {}, "—"),
    };
  });
  app.registerExtension({ name: `${extensionName}.Settings`, settings });
}

