// DOM helpers, error guards and the scoped stylesheet of the Runflow Multi Angles extension.
// Everything in web/ is loaded by ComfyUI as an extension module; importing this one has no side effects.

export const SVG_NS = "http://www.w3.org/2000/svg";
export const PICKER_MIN_HEIGHT = 232; // CSS px of the picker itself (the Vue renderer sizes it by its CSS min-height)
export const PICKER_MAX_HEIGHT = 340;
export const DOM_WIDGET_MARGIN = 10; // the classic renderer gives a DOM widget (height - 2 × margin)

export function logError(message, error) {
  console.error(`[Runflow] ${message}`, error ?? "");
}

/** Call fn, log instead of throwing. */
export function guard(message, fn) {
  try {
    return fn();
  } catch (error) {
    logError(message, error);
    return undefined;
  }
}

/** Chain a method on an object (prototype or instance) instead of overwriting it. */
export function chainCallback(target, name, fn) {
  const original = target[name];
  target[name] = function (...args) {
    const result = original?.apply(this, args);
    try {
      fn.apply(this, args);
    } catch (error) {
      logError(`${name} hook failed`, error);
    }
    return result;
  };
}

// ---- styles (all scoped under runflow- classes) ------------------------------------------------------------

const STYLE_ID = "runflow-multi-angles-style";
const CSS = `
.runflow-picker {
  --runflow-accent: #4ea3ff;
  --runflow-muted: var(--descrip-text, #9a9a9a);
  box-sizing: border-box; display: flex; flex-direction: column; gap: 2px;
  width: 100%; height: 100%; min-height: ${PICKER_MIN_HEIGHT}px; padding: 3px 4px 2px;
  background: var(--comfy-input-bg, #222); color: var(--input-text, #ddd);
  border: 1px solid var(--border-color, #4e4e4e); border-radius: 6px;
  font-family: inherit; overflow: hidden; user-select: none; -webkit-user-select: none;
  /* Only the controls take the pointer: a drag anywhere else moves the node (the event reaches the canvas / the
     Vue node underneath). SVG children inherit this; the hit areas and focusable groups turn it back on. */
  pointer-events: none;
}
/* The frontend's wrapper around a DOM widget (classic: .dom-widget; Vue nodes: the widget cell) would take the pointer
   instead, and neither starts a node drag. */
.dom-widget:has(> .runflow-picker), .lg-node-widgets :has(> .runflow-picker) { pointer-events: none !important; }
.runflow-picker .runflow-area { position: relative; flex: 1 1 0; min-height: 120px; width: 100%; }
.runflow-picker .runflow-svg { position: absolute; inset: 0; display: block; width: 100%; height: 100%; overflow: hidden; }
.runflow-picker text { fill: currentColor; font-family: inherit; }
.runflow-picker .runflow-muted { fill: var(--runflow-muted); }
.runflow-picker .runflow-orbit-path { fill: none; stroke: var(--border-color, #555); stroke-dasharray: 2 3; }
.runflow-picker .runflow-ring { fill: none; stroke: var(--border-color, #5a5a5a); stroke-width: 1; }
.runflow-picker .runflow-ring-hit { fill: none; stroke: transparent; pointer-events: stroke; }
.runflow-picker .runflow-ring-label { fill: var(--input-text, #ddd); paint-order: stroke; stroke: var(--comfy-input-bg, #222);
  stroke-width: 3px; stroke-linejoin: round; pointer-events: none; }
.runflow-picker [data-runflow-ring]:hover .runflow-ring { stroke: var(--input-text, #ddd); }
.runflow-picker [data-runflow-ring].is-selected .runflow-ring { stroke: var(--runflow-accent); stroke-width: 2; }
.runflow-picker [data-runflow-shot]:hover .runflow-ring-label { fill: var(--input-text, #ddd); }
.runflow-picker [data-runflow-shot].is-selected .runflow-ring-label { fill: var(--runflow-accent); font-weight: 600; }
.runflow-picker .runflow-hit { fill: transparent; stroke: none; pointer-events: all; }
.runflow-picker .runflow-marker { fill: var(--comfy-menu-bg, #353535); stroke: var(--runflow-muted); stroke-width: 1.2; }
.runflow-picker [data-runflow-view], .runflow-picker [data-runflow-angle], .runflow-picker [data-runflow-shot],
.runflow-picker [data-runflow-ring], .runflow-picker [data-runflow-views] { cursor: pointer; outline: none; }
.runflow-picker [data-runflow-shot]:focus-visible .runflow-ring-label { text-decoration: underline; }
.runflow-picker [data-runflow-view]:hover .runflow-marker,
.runflow-picker [data-runflow-angle]:hover .runflow-marker { stroke: var(--input-text, #ddd); stroke-width: 2; }
.runflow-picker [data-runflow-view]:focus-visible .runflow-marker,
.runflow-picker [data-runflow-angle]:focus-visible .runflow-marker { stroke: var(--runflow-accent); stroke-width: 2.5; }
.runflow-picker .is-selected .runflow-marker { fill: var(--runflow-accent); stroke: var(--runflow-accent); }
.runflow-picker .is-selected > .runflow-label { fill: var(--runflow-accent); font-weight: 600; }
.runflow-picker .is-linked { opacity: 0.45; cursor: not-allowed; }
.runflow-picker .runflow-subject { fill: var(--input-text, #ddd); stroke: none; pointer-events: none; }
.runflow-picker .runflow-subject-side { fill: var(--input-text, #ddd); font-weight: 600; pointer-events: none; }
.runflow-picker .runflow-camera { fill: var(--runflow-accent); stroke: var(--comfy-input-bg, #222); stroke-width: 0.8; pointer-events: none; }
.runflow-picker .runflow-sight { stroke: var(--runflow-accent); stroke-width: 1; stroke-dasharray: 3 3; opacity: 0.7; pointer-events: none; }
.runflow-picker .runflow-arc { fill: none; stroke: var(--border-color, #5a5a5a); stroke-width: 1.2; }
.runflow-picker .runflow-ground { stroke: var(--runflow-muted); stroke-dasharray: 4 3; stroke-width: 1; }
.runflow-picker [data-runflow-views]:hover text { fill: var(--input-text, #ddd); text-decoration: underline; }
.runflow-picker .runflow-status { flex: 0 0 auto; font-size: 11px; line-height: 14px; padding: 0 2px; }
.runflow-picker .runflow-status > div { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; min-height: 14px;
  max-width: 100%; width: fit-content; pointer-events: auto; }
.runflow-picker .runflow-status > div[data-runflow-error] { white-space: normal; max-height: 42px; }
.runflow-picker .runflow-cost { color: var(--input-text, #ddd); }
.runflow-picker .runflow-last { color: var(--runflow-muted); }
.runflow-picker .runflow-warn { color: #e8a33d; }
.runflow-picker [data-runflow-reroll] { cursor: pointer; outline: none; }
.runflow-picker .runflow-reroll-dot { fill: var(--comfy-menu-bg, #353535); stroke: var(--runflow-muted); stroke-width: 1; }
.runflow-picker .runflow-reroll-glyph { fill: var(--runflow-muted); font-weight: 600; pointer-events: none; }
.runflow-picker [data-runflow-reroll]:hover .runflow-reroll-dot,
.runflow-picker [data-runflow-reroll]:focus-visible .runflow-reroll-dot { stroke: #e8a33d; stroke-width: 1.8; }
.runflow-picker [data-runflow-reroll]:hover .runflow-reroll-glyph { fill: var(--input-text, #ddd); }
.runflow-picker [data-runflow-reroll].is-selected .runflow-reroll-dot { fill: #e8a33d; stroke: #e8a33d; }
.runflow-picker [data-runflow-reroll].is-selected .runflow-reroll-glyph { fill: #1a1a1a; }
.runflow-setting a.runflow-link { color: var(--runflow-accent, #4ea3ff); font-size: 12px; }
.runflow-setting { display: flex; flex-direction: column; align-items: flex-end; gap: 4px; max-width: 26rem; }
.runflow-setting form { display: flex; gap: 6px; align-items: center; margin: 0; }
.runflow-setting input { width: 14rem; padding: 4px 8px; border-radius: 6px; font: inherit;
  background: var(--comfy-input-bg, #222); color: var(--input-text, #ddd); border: 1px solid var(--border-color, #4e4e4e); }
.runflow-setting button { padding: 4px 10px; border-radius: 6px; font: inherit; cursor: pointer;
  background: var(--comfy-menu-bg, #353535); color: var(--input-text, #ddd); border: 1px solid var(--border-color, #4e4e4e); }
.runflow-setting button:disabled { opacity: 0.6; cursor: default; }
.runflow-setting .runflow-setting-status { font-size: 12px; color: var(--descrip-text, #9a9a9a); text-align: right; }
.runflow-setting .runflow-setting-status.is-ok { color: #5fbf6a; }
.runflow-setting .runflow-setting-status.is-error { color: #e5645c; }
`;

export function ensureStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  document.head.appendChild(style);
}

// ---- element builders ----------------------------------------------------------------------------------------

export function svg(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  parent?.appendChild(el);
  return el;
}

export function html(tag, attrs = {}, text = null) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  if (text != null) el.textContent = text;
  return el;
}

export function titled(parent, text) {
  svg("title", {}, parent).textContent = text;
}

export const r2 = (v) => Math.round(v * 100) / 100;

