// Translations for the Runflow Multi Angles extension: English is built in (runflow_strings.js); zh/ja/ko come from
// the pack's locales/ through ComfyUI's /i18n route, loaded once when the UI language is not English.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { logError, guard } from "./runflow_dom.js";
import { EN } from "./runflow_strings.js";

const NODE_FOR_OPTIONS = "RunflowMultiAngles"; // both nodes share the view/angle/shot vocabulary

let STRINGS = EN;
let OPTION_LABELS = { view: {}, angle: {}, shot: {} }; // API value -> translated label (empty for English)
let localeReady = null;

export function lookup(table, path) {
  let cursor = table;
  for (const part of path.split(".")) {
    if (cursor == null || typeof cursor !== "object") return undefined;
    cursor = cursor[part];
  }
  return cursor;
}

/** Translated string with {placeholders} filled in. */
export function tr(path, vars = {}) {
  let text = lookup(STRINGS, path);
  if (typeof text !== "string") text = lookup(EN, path);
  if (typeof text !== "string") return path;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

export function currentLocale() {
  const fromSetting = guard("reading Comfy.Locale", () => {
    return app.extensionManager?.setting?.get?.("Comfy.Locale") ?? app.ui?.settings?.getSettingValue?.("Comfy.Locale");
  });
  return String(fromSetting || globalThis.navigator?.language || "en");
}

function deepMerge(base, extra) {
  if (!extra || typeof extra !== "object") return base;
  const out = Array.isArray(base) ? [...base] : { ...base };
  for (const [key, value] of Object.entries(extra)) {
    out[key] =
      value && typeof value === "object" && !Array.isArray(value) && base?.[key] && typeof base[key] === "object"
        ? deepMerge(base[key], value)
        : value;
  }
  return out;
}

/** Load this pack's translations for the UI locale once (English needs no request). */
export function loadLocale() {
  if (localeReady) return localeReady;
  localeReady = (async () => {
    const locale = currentLocale();
    if (!locale || locale === "en" || locale.startsWith("en-")) return false;
    const response = await api.fetchApi("/i18n");
    if (!response.ok) return false;
    const data = await response.json();
    const messages = data?.[locale] ?? data?.[locale.split("-")[0]];
    if (!messages) return false;
    STRINGS = deepMerge(EN, messages.runflowMultiAngles);
    const inputs = messages.nodeDefs?.[NODE_FOR_OPTIONS]?.inputs ?? {};
    OPTION_LABELS = {
      view: { ...(inputs.view?.options ?? {}) },
      angle: { ...(inputs.angle?.options ?? {}) },
      shot: { ...(inputs.shot?.options ?? {}) },
    };
    return true;
  })().catch((error) => {
    logError("could not load translations", error);
    return false;
  });
  return localeReady;
}

/** Show translated option labels on the combos (frontends with `getOptionLabel`); the value stays the API string. */
export function labelCombos(node) {
  for (const name of ["view", "angle", "shot"]) {
    const labels = OPTION_LABELS[name];
    if (!labels || !Object.keys(labels).length) continue;
    const widget = node.widgets?.find((w) => w.name === name);
    if (!widget?.options || widget.options.getOptionLabel) continue;
    widget.options.getOptionLabel = (value) => (value == null ? "" : (labels[value] ?? String(value)));
  }
}

export function fullName(kind, value) {
  return OPTION_LABELS[kind]?.[value] ?? value;
}

/** True once a non-English translation has been loaded. */
export function isTranslated() {
  return STRINGS !== EN;
}
