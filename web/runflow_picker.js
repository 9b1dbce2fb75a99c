// The camera-pose picker: an SVG inside a DOM widget that drives the node's real widgets (view/angle/shot, or the
// Turnaround's `views` text). It keeps no state of its own, so the node behaves the same without it.

import { app } from "../../scripts/app.js";
import * as PM from "./pose_math.js";
import * as RR from "./reroll_math.js";
import { DOM_WIDGET_MARGIN, PICKER_MAX_HEIGHT, PICKER_MIN_HEIGHT, ensureStyle, guard, html, logError, r2, svg, titled } from "./runflow_dom.js";
import { fullName, isTranslated, labelCombos, tr } from "./runflow_i18n.js";

export const SINGLE = "RunflowMultiAngles";
export const TURNAROUND = "RunflowMultiAnglesTurnaround";
const DEFAULT_NODE_WIDTH = 380;
export const MIN_NODE_WIDTH = 340; // below this the picker's labels would shrink under ~10 px
// Rarely changed inputs: folded away (frontends with "advanced" widgets: node menu → Show Advanced). The Python node
// flags them too (INPUT_TYPES "advanced"); older frontends only read that into widget.options, so set it here.
export const ADVANCED_WIDGETS = Object.freeze(["upload_format", "callback_url", "metadata", "max_concurrent", "show_preview"]);
const POLL_MS = 500; // fallback for value changes that bypass widget callbacks (e.g. some Vue-renderer paths)

export const PICKERS = new Set();
const FOCUS_KEYS = ["data-runflow-view", "data-runflow-angle", "data-runflow-shot", "data-runflow-views", "data-runflow-reroll"];
const WRAPPED = new WeakMap(); // widget -> the picker whose refresh its callback already triggers
let pollTimer = null;

function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(() => {
    for (const picker of PICKERS) {
      const keep = guard("picker poll", () => picker.tick());
      if (keep === false) picker.dispose(true);
    }
    if (!PICKERS.size) {
      clearInterval(pollTimer);
      pollTimer = null;
    }
  }, POLL_MS);
}

class PosePicker {
  constructor(node, multi) {
    this.node = node;
    this.multi = multi; // Turnaround: several views, stored in the `views` text widget
    this.signature = "";
    this.size = { w: 0, h: 0 };
    this.layout = null;
    this.lastRun = null;
    this.flashText = "";
    this.flashTimer = null;
    this.frame = null;
    this.attached = false;
    this.detachedTicks = 0;
    this.waitingTicks = 0;

    this.root = html("div", {
      class: "runflow-picker",
      "data-runflow-picker": multi ? TURNAROUND : SINGLE,
    });
    this.svg = svg("svg", {
      class: "runflow-svg",
      role: "group",
      "aria-label": tr("picker.aria"),
      focusable: "false",
    });
    this.area = html("div", { class: "runflow-area" });
    this.area.appendChild(this.svg);
    this.status = html("div", { class: "runflow-status" });
    this.costEl = html("div", { class: "runflow-cost", "data-runflow-cost": "" });
    this.lastEl = html("div", { class: "runflow-last", "data-runflow-last": "" });
    this.status.append(this.costEl, this.lastEl);
    this.root.append(this.area, this.status);

    this.svg.addEventListener("click", (e) => guard("picker click", () => this.onClick(e)));
    this.svg.addEventListener("keydown", (e) => guard("picker key", () => this.onKey(e)));
    // A press on a control must not also start a node drag or a canvas selection; anywhere else the picker lets the
    // pointer through (CSS pointer-events), so dragging the picker area moves the node.
    this.svg.addEventListener("pointerdown", (e) => {
      if (this.targetOf(e)) e.stopPropagation();
    });

    // Lay out in real CSS pixels (ResizeObserver ignores the canvas zoom transform), so text stays readable.
    if (typeof ResizeObserver === "function") {
      this.resizeObserver = new ResizeObserver((entries) => {
        const box = entries[entries.length - 1]?.contentRect;
        const w = Math.round(box?.width ?? 0);
        const h = Math.round(box?.height ?? 0);
        if (w > 0 && h > 0 && (w !== this.size.w || h !== this.size.h)) {
          this.size = { w, h };
          this.scheduleRender();
        }
      });
      this.resizeObserver.observe(this.area);
    }

    this.widget = node.addDOMWidget("pose_picker", "runflow_pose", this.root, {
      serialize: false,
      hideOnZoom: true,
      getValue: () => "",
      setValue: () => {},
      margin: DOM_WIDGET_MARGIN,
      getMinHeight: () => PICKER_MIN_HEIGHT + 2 * DOM_WIDGET_MARGIN,
      getMaxHeight: () => PICKER_MAX_HEIGHT + 2 * DOM_WIDGET_MARGIN,
    });
    if (this.widget) {
      this.widget.serialize = false; // never in widgets_values (workflow JSON)
      // The classic canvas treats a press on a widget's area as widget input and never starts a node drag there. The
      // picker handles its own controls in the DOM (they stop the event), so the canvas may look through it.
      const widget = this.widget;
      const original = node.getWidgetOnPos;
      if (typeof original === "function") {
        node.getWidgetOnPos = function (...args) {
          const found = original.apply(this, args);
          return found === widget ? undefined : found;
        };
      }
    }

    for (const name of this.watchedWidgets()) this.wrapCallback(name);
    PICKERS.add(this);
    startPolling();
    this.render();
  }

  watchedWidgets() {
    return this.multi ? ["views", "angle", "shot", "reroll", "take"] : ["view", "angle", "shot"];
  }

  widgetByName(name) {
    return this.node.widgets?.find((w) => w.name === name);
  }

  isLinked(name) {
    const index = this.node.inputs?.findIndex((input) => input.widget?.name === name || input.name === name) ?? -1;
    if (index < 0) return false;
    if (typeof this.node.isInputConnected === "function") return !!this.node.isInputConnected(index);
    return this.node.inputs[index].link != null;
  }

  /** Redraw when the widget changes through its callback (canvas edits, Vue widgets, other extensions). */
  wrapCallback(name) {
    const widget = this.widgetByName(name);
    if (!widget || WRAPPED.get(widget) === this) return;
    const original = widget.callback;
    const picker = this;
    widget.callback = function (...args) {
      const result = original?.apply(this, args);
      picker.scheduleRender();
      return result;
    };
    WRAPPED.set(widget, this);
  }

  /** What the widgets say right now. */
  state() {
    const value = (name) => this.widgetByName(name)?.value;
    const s = {
      angle: value("angle"),
      shot: value("shot"),
      linked: {
        // Turnaround: a connected pose list replaces the views (nodes/comfy/pose_nodes.py turnaround_poses)
        view: this.isLinked(this.multi ? "views" : "view") || (this.multi && this.isLinked("pose")),
        angle: this.isLinked("angle"),
        shot: this.isLinked("shot"),
      },
    };
    if (this.multi) {
      s.viewsText = String(value("views") ?? "");
      const parsed = PM.parseViews(s.viewsText);
      s.views = parsed.views;
      s.unknown = parsed.unknown;
      s.rerollText = String(value("reroll") ?? "");
      s.take = Number(value("take") ?? 0) || 0;
      s.rerolled = RR.rerolledViews(s.rerollText, s.take, s.views);
    } else {
      s.views = PM.VIEWS.includes(value("view")) ? [value("view")] : [];
    }
    return s;
  }

  currentSignature(state) {
    return JSON.stringify([state, this.size.w, this.size.h, isTranslated(), this.node.id]);
  }

  scheduleRender() {
    if (this.frame) return;
    const run = () => {
      this.frame = null;
      guard("picker render", () => this.render());
    };
    this.frame = typeof requestAnimationFrame === "function" ? requestAnimationFrame(run) : setTimeout(run, 16);
  }

  /** The frontend may keep showing this picker after rebuilding the node (Vue renderer, undo): follow the live node. */
  relink() {
    if (this.node.graph || !this.root.isConnected) return false;
    const live = app.graph?.getNodeById?.(this.node.id);
    if (!live || live === this.node || live.type !== this.node.type) return false;
    const other = live.__runflowPicker;
    if (other && other !== this && other.root.isConnected) return false; // the frontend shows the live node's own
    if (other && other !== this) other.dispose(true);
    this.removedAt = 0;
    this.node = live;
    live.__runflowPicker = this;
    for (const name of this.watchedWidgets()) this.wrapCallback(name);
    this.render();
    return true;
  }

  /** Poll tick: false once the node is gone for good. */
  tick() {
    if (this.removedAt) {
      if (this.relink()) return true;
      return this.root.isConnected && Date.now() - this.removedAt < 5000;
    }
    if (!this.node.graph) {
      if (this.attached) return ++this.detachedTicks < 6;
      return ++this.waitingTicks < 240; // created but never added to a graph (e.g. a preview): give up after 2 min
    }
    this.attached = true;
    this.detachedTicks = 0;
    if (this.currentSignature(this.state()) !== this.signature) this.render();
    return true;
  }

  measure() {
    if (!this.size.w || !this.size.h) {
      const w = Math.round(this.area.clientWidth || 0);
      const h = Math.round(this.area.clientHeight || 0);
      if (w > 0 && h > 0) this.size = { w, h };
    }
    return this.size;
  }

  labels() {
    return {
      views: Object.fromEntries(PM.VIEWS.map((v) => [v, tr(`picker.views.${v}`)])),
      angles: Object.fromEntries(PM.ANGLES.map((a) => [a, tr(`picker.angles.${a}`)])),
      shots: Object.fromEntries(PM.SHOTS.map((s) => [s, tr(`picker.shots.${s}`)])),
      all: tr("picker.all"),
    };
  }

  render() {
    const state = this.state();
    const { w, h } = this.measure();
    this.signature = this.currentSignature(state);
    // For browser tests: which node this picker belongs to (the id is only final once the node is in a graph).
    this.root.setAttribute("data-runflow-node-id", String(this.node.id ?? ""));
    this.svg.setAttribute("aria-label", tr("picker.aria"));
    this.renderStatus(state);
    // Not laid out yet (hidden, zoomed out, or not in the document): draw at the design size; the viewBox scales it.
    const width = w || PM.DESIGN.width;
    const height = h || PM.DESIGN.height;
    this.layout = PM.computeLayout(width, height, this.labels());
    this.drawSvg(state, this.layout);
  }

  drawSvg(state, L) {
    const root = this.svg;
    // Redrawing replaces the elements: keep keyboard focus on the same control.
    const focused = root.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = focused ? FOCUS_KEYS.find((k) => focused.hasAttribute(k)) : null;
    const focusValue = focusKey ? focused.getAttribute(focusKey) : null;
    root.replaceChildren();
    try {
      this.drawContent(state, L);
    } finally {
      if (focusKey) {
        const again = [...root.querySelectorAll(`[${focusKey}]`)].find((el) => el.getAttribute(focusKey) === focusValue);
        again?.focus?.({ preventScroll: true });
      }
    }
  }

  drawContent(state, L) {
    const root = this.svg;
    root.setAttribute("viewBox", `0 0 ${r2(L.width)} ${r2(L.height)}`);
    root.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const { cx, cy } = L.orbit;
    const selectedViews = new Set(state.views);
    const font = r2(L.fontSize);
    const small = r2(L.smallFont);

    // ---- top-down orbit ----
    const orbit = svg("g", { class: "runflow-orbit" }, root);
    titled(orbit, tr("picker.orbitHint"));
    svg("circle", { class: "runflow-orbit-path", cx: r2(cx), cy: r2(cy), r: r2(L.orbit.viewRadius) }, orbit);

    // Distance rings: the whole band around a ring is clickable (data-runflow-ring); the ring's label is the
    // focusable button (data-runflow-shot), drawn later so it stays on top.
    const bandWidth = Math.max(6, (L.orbit.ringBounds[2] - L.orbit.ringBounds[1]) * 0.9);
    const shotClass = (shot) => `${shot === state.shot ? " is-selected" : ""}${state.linked.shot ? " is-linked" : ""}`;
    for (const ring of L.orbit.rings) {
      const g = svg("g", { class: `runflow-ring-group${shotClass(ring.shot)}`, "data-runflow-ring": ring.shot }, orbit);
      titled(g, fullName("shot", ring.shot));
      const width = r2(Math.min(bandWidth, ring.r));
      svg("circle", { class: "runflow-ring-hit", cx: r2(cx), cy: r2(cy), r: r2(ring.r), "stroke-width": width }, g);
      svg("circle", { class: "runflow-ring", cx: r2(cx), cy: r2(cy), r: r2(ring.r) }, g);
    }

    // Cameras on the selected distance ring, looking at the subject.
    // Smaller on the inner rings, and no sight lines at close-up, so eight cameras stay apart and off the R/L marks.
    const ringR = L.orbit.rings.find((r) => r.shot === state.shot)?.r;
    if (ringR) {
      const wideR = L.orbit.rings[L.orbit.rings.length - 1].r;
      const size = Math.min(1.1, Math.max(0.8, (1.4 * ringR) / wideR));
      for (const view of state.views) {
        const p = PM.viewToPoint(view, cx, cy, ringR);
        if (state.shot !== "close-up") {
          svg("line", { class: "runflow-sight", x1: r2(p.x), y1: r2(p.y), x2: r2(cx), y2: r2(cy) }, orbit);
        }
        this.drawCamera(orbit, p.x, p.y, PM.VIEW_AZIMUTH[view], L.scale, size);
      }
    }

    // The subject, seen from above: faces the bottom (front), with its right (R) and left (L) sides marked.
    const subject = svg("g", { class: "runflow-subject-group" }, orbit);
    titled(subject, tr("picker.orbitHint"));
    const sr = L.orbit.subjectR;
    svg("circle", { class: "runflow-subject", cx: r2(cx), cy: r2(cy), r: r2(sr * 0.75) }, subject);
    svg(
      "path",
      {
        class: "runflow-subject",
        d: `M ${r2(cx - sr * 0.45)} ${r2(cy + sr * 0.5)} L ${r2(cx + sr * 0.45)} ${r2(cy + sr * 0.5)} L ${r2(cx)} ${r2(cy + sr * 1.15)} Z`,
      },
      subject,
    );
    const sideFont = r2(L.smallFont);
    const sideOffset = L.orbit.sideOffset;
    for (const [text, dx] of [
      [tr("picker.subjectRight"), -sideOffset],
      [tr("picker.subjectLeft"), sideOffset],
    ]) {
      const t = svg(
        "text",
        { class: "runflow-subject-side", x: r2(cx + dx), y: r2(cy + sideFont * 0.35), "text-anchor": "middle", "font-size": sideFont },
        subject,
      );
      t.textContent = text;
    }

    for (const ring of L.orbit.rings) {
      const selected = ring.shot === state.shot;
      const g = svg(
        "g",
        {
          class: `runflow-shot${shotClass(ring.shot)}`,
          "data-runflow-shot": ring.shot,
          role: "button",
          tabindex: "0",
          "aria-label": fullName("shot", ring.shot),
          "aria-pressed": String(selected),
        },
        orbit,
      );
      titled(g, fullName("shot", ring.shot));
      this.drawLabelHit(g, ring.label.box);
      const t = svg(
        "text",
        { class: "runflow-ring-label", x: r2(ring.label.x), y: r2(ring.label.y), "text-anchor": ring.label.anchor, "font-size": small },
        g,
      );
      t.textContent = ring.label.text;
    }

    for (const v of L.views) {
      const selected = selectedViews.has(v.view);
      const name = fullName("view", v.view);
      const g = svg(
        "g",
        {
          class: `runflow-view${selected ? " is-selected" : ""}${state.linked.view ? " is-linked" : ""}`,
          "data-runflow-view": v.view,
          role: "button",
          tabindex: "0",
          "aria-label": name,
          "aria-pressed": String(selected),
        },
        orbit,
      );
      titled(g, this.multi ? `${name} (${tr("picker.toggleHint")})` : name);
      svg("circle", { class: "runflow-hit", cx: r2(v.x), cy: r2(v.y), r: r2(L.orbit.viewHitR) }, g);
      this.drawLabelHit(g, v.label.box, v.grip);
      svg("circle", { class: "runflow-marker", cx: r2(v.x), cy: r2(v.y), r: r2(L.orbit.markerR) }, g);
      const t = svg(
        "text",
        { class: "runflow-label", x: r2(v.label.x), y: r2(v.label.y), "text-anchor": v.label.anchor, "font-size": font },
        g,
      );
      t.textContent = v.label.text;
    }

    if (this.multi && !state.linked.view && this.widgetByName("reroll")) this.drawRerolls(orbit, state, L);

    if (this.multi) {
      const g = svg("g", { class: "runflow-all", "data-runflow-views": "all", role: "button", tabindex: "0", "aria-label": tr("picker.allHint") }, root);
      titled(g, tr("picker.allHint"));
      const a = L.all;
      this.drawLabelHit(g, a.box);
      const t = svg("text", { class: "runflow-ring-label", x: r2(a.x), y: r2(a.y), "text-anchor": a.anchor, "font-size": small }, g);
      t.textContent = a.text;
    }

    // ---- side-view elevation arc ----
    const E = L.elevation;
    const arcGroup = svg("g", { class: "runflow-elevation" }, root);
    titled(arcGroup, tr("picker.arcHint"));
    svg("line", { class: "runflow-ground", x1: r2(E.ground.x1), y1: r2(E.ground.y), x2: r2(E.ground.x2), y2: r2(E.ground.y) }, arcGroup);
    svg(
      "path",
      {
        class: "runflow-arc",
        d: `M ${r2(E.arc.from.x)} ${r2(E.arc.from.y)} A ${r2(E.r)} ${r2(E.r)} 0 0 0 ${r2(E.arc.to.x)} ${r2(E.arc.to.y)}`,
      },
      arcGroup,
    );
    svg("circle", { class: "runflow-subject", cx: r2(E.sx), cy: r2(E.sy), r: r2(E.subjectR) }, arcGroup);
    const selectedAngle = E.angles.find((a) => a.angle === state.angle);
    if (selectedAngle) {
      svg("line", { class: "runflow-sight", x1: r2(selectedAngle.x), y1: r2(selectedAngle.y), x2: r2(E.sx), y2: r2(E.sy) }, arcGroup);
    }
    for (const a of E.angles) {
      const selected = a.angle === state.angle;
      const name = fullName("angle", a.angle);
      const g = svg(
        "g",
        {
          class: `runflow-angle${selected ? " is-selected" : ""}${state.linked.angle ? " is-linked" : ""}`,
          "data-runflow-angle": a.angle,
          role: "button",
          tabindex: "0",
          "aria-label": name,
          "aria-pressed": String(selected),
        },
        arcGroup,
      );
      titled(g, `${name} (${a.elevation > 0 ? "+" : ""}${a.elevation}°)`);
      svg("circle", { class: "runflow-hit", cx: r2(a.x), cy: r2(a.y), r: r2(E.hitR) }, g);
      this.drawLabelHit(g, a.label.box, a.grip);
      svg("circle", { class: "runflow-marker", cx: r2(a.x), cy: r2(a.y), r: r2(E.markerR) }, g);
      const t = svg(
        "text",
        { class: "runflow-label", x: r2(a.label.x), y: r2(a.label.y), "text-anchor": "start", "font-size": font },
        g,
      );
      t.textContent = a.label.text;
    }
  }

  /** Turnaround: a small re-roll button next to each selected view (re-render it; the other views stay cached). */
  drawRerolls(parent, state, L) {
    const { cx, cy, viewRadius, markerR } = L.orbit;
    const rolled = new Set(state.rerolled);
    const r = markerR * 0.72;
    for (const view of state.views) {
      const p = RR.rerollPoint(view, cx, cy, viewRadius);
      const on = rolled.has(view);
      const name = fullName("view", view);
      const label = on ? tr("picker.rerollAgain", { view: name, take: state.take }) : tr("picker.reroll", { view: name });
      const g = svg(
        "g",
        { class: `runflow-reroll${on ? " is-selected" : ""}`, "data-runflow-reroll": view, role: "button", tabindex: "0", "aria-label": label },
        parent,
      );
      titled(g, `${label}\n${tr("picker.rerollHint", { price: PM.formatUsd(PM.PRICE_PER_RUN_USD) })}`);
      svg("circle", { class: "runflow-hit", cx: r2(p.x), cy: r2(p.y), r: r2(r * 1.5) }, g);
      svg("circle", { class: "runflow-reroll-dot", cx: r2(p.x), cy: r2(p.y), r: r2(r) }, g);
      const t = svg(
        "text",
        { class: "runflow-reroll-glyph", x: r2(p.x), y: r2(p.y + r * 0.42), "text-anchor": "middle", "font-size": r2(r * 1.3) },
        g,
      );
      t.textContent = on ? String(state.take) : "↻";
    }
  }

  /** Transparent click areas: the label's box, and the grip between marker and label (see pose_math grip). */
  drawLabelHit(parent, box, grip = null) {
    svg("rect", { class: "runflow-hit", x: r2(box.x - 1), y: r2(box.y - 1), width: r2(box.w + 2), height: r2(box.h + 2) }, parent);
    if (grip) svg("circle", { class: "runflow-hit", cx: r2(grip.x), cy: r2(grip.y), r: r2(grip.r) }, parent);
  }

  /** A small camera: body plus a lens opening towards the subject; drawn pointing up, then rotated. */
  drawCamera(parent, x, y, rotationDeg, k, size = 1.1) {
    const s = size * k;
    svg(
      "path",
      {
        class: "runflow-camera",
        transform: `translate(${r2(x)} ${r2(y)}) rotate(${r2(rotationDeg)}) scale(${r2(s)})`,
        d: "M -5 1 L 5 1 L 5 7 L -5 7 Z M -2.5 1 L 2.5 1 L 4.5 -4 L -4.5 -4 Z",
      },
      parent,
    );
  }

  renderStatus(state) {
    // Line 1: the live estimate (or a short notice).
    let cost;
    let warn = false;
    let hint;
    if (this.multi) {
      hint = tr("cost.turnaroundHint");
      if (state.linked.view) {
        cost = tr("cost.linkedViews", { price: PM.formatUsd(PM.PRICE_PER_RUN_USD) });
      } else if (state.unknown?.length) {
        cost = tr("cost.unknown", { names: state.unknown.join(", ") });
        warn = true;
      } else if (!state.views.length) {
        cost = tr("cost.noViews");
        warn = true;
      } else if (state.rerolled?.length) {
        cost = rerollText(state.rerolled);
        hint = `${hint}\n${tr("cost.rerollHint", { n: state.views.length - state.rerolled.length })}`;
      } else {
        cost = runsText(state.views.length);
      }
    } else {
      hint = tr("cost.singleHint");
      cost = tr("cost.single", { price: PM.formatUsd(PM.PRICE_PER_RUN_USD) });
    }
    if (this.flashText) {
      cost = this.flashText;
      warn = true;
    }
    this.costEl.textContent = cost;
    this.costEl.title = `${cost}\n${hint}`;
    this.costEl.classList.toggle("runflow-warn", warn);

    // Line 2: what the last run reported (ui.runflow).
    const info = this.lastRun;
    this.lastEl.classList.toggle("runflow-warn", !!info?.error);
    if (!info) {
      this.lastEl.textContent = "";
      this.lastEl.title = "";
      return;
    }
    if (info.error) {
      this.lastEl.textContent = info.error;
      this.lastEl.title = info.error;
      this.lastEl.setAttribute("data-runflow-error", "");
      return;
    }
    this.lastEl.removeAttribute("data-runflow-error");
    const parts = [];
    if (info.status) parts.push(String(info.status));
    if (info.spent_usd != null) parts.push(tr("last.spent", { amount: PM.formatUsd(info.spent_usd) }));
    if (info.from_cache) parts.push(tr("last.fromCache", { n: info.from_cache }));
    if (info.session_total_usd != null) parts.push(tr("last.session", { amount: PM.formatUsd(info.session_total_usd) }));
    const text = `${tr("last.prefix")} ${parts.join(" · ")}`;
    this.lastEl.textContent = text;
    this.lastEl.title = [text, info.cost_line, info.receipt, ...(info.notes ?? []), info.note].filter(Boolean).join("\n");
  }

  flash(text) {
    this.flashText = text;
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => {
      this.flashText = "";
      guard("picker status", () => this.renderStatus(this.state()));
    }, 2500);
    this.renderStatus(this.state());
  }

  /** The last run failed or was cancelled: its message on the status line (kept until the next result). */
  showError(message) {
    this.lastRun = { error: String(message) };
    this.renderStatus(this.state());
  }

  onExecuted(output) {
    const raw = output?.runflow;
    const info = Array.isArray(raw) ? raw[raw.length - 1] : raw;
    if (info && typeof info === "object") {
      this.lastRun = info;
      this.renderStatus(this.state());
    }
  }

  targetOf(event) {
    return event.target?.closest?.(
      "[data-runflow-reroll],[data-runflow-view],[data-runflow-angle],[data-runflow-shot],[data-runflow-ring],[data-runflow-views]",
    );
  }

  onClick(event) {
    this.relink();
    const target = this.targetOf(event);
    let hit = target ? hitFromElement(target) : null;
    if (!hit && this.layout) {
      const rect = this.svg.getBoundingClientRect();
      if (rect.width > 0 && rect.height > 0) {
        const x = ((event.clientX - rect.left) * this.layout.width) / rect.width;
        const y = ((event.clientY - rect.top) * this.layout.height) / rect.height;
        hit = PM.hitTest(x, y, this.layout);
      }
    }
    if (hit) {
      event.stopPropagation();
      this.apply(hit);
    }
  }

  onKey(event) {
    if (event.key !== "Enter" && event.key !== " ") return;
    const target = this.targetOf(event);
    if (!target) return;
    event.preventDefault();
    event.stopPropagation();
    const hit = hitFromElement(target);
    if (hit) this.apply(hit);
  }

  apply(hit) {
    if (this.multi && (hit.kind === "view" || hit.kind === "views") && this.isLinked("pose")) {
      this.flash(tr("picker.linked", { name: "pose" }));
      return;
    }
    if (hit.kind === "views") {
      this.setWidget("views", PM.formatViews(PM.VIEWS));
    } else if (hit.kind === "view" && this.multi) {
      const current = PM.parseViews(String(this.widgetByName("views")?.value ?? "")).views;
      const next = PM.toggleView(current, hit.value);
      if (!next.length) {
        this.flash(tr("picker.keepOne"));
        return;
      }
      this.setWidget("views", PM.formatViews(next));
      // A view taken out of the selection is no longer re-rolled either (the node refuses a re-roll it cannot do).
      const rolled = RR.parseReroll(this.widgetByName("reroll")?.value).views;
      if (rolled.some((v) => !next.includes(v))) this.setWidget("reroll", PM.formatViews(rolled.filter((v) => next.includes(v))));
    } else if (hit.kind === "reroll") {
      const { reroll, take } = RR.rerollClick(this.widgetByName("reroll")?.value, this.widgetByName("take")?.value, hit.value);
      this.setWidget("reroll", reroll);
      this.setWidget("take", take);
    } else if (hit.kind === "view") {
      this.setWidget("view", hit.value);
    } else if (hit.kind === "angle") {
      this.setWidget("angle", hit.value);
    } else if (hit.kind === "shot") {
      this.setWidget("shot", hit.value);
    }
  }

  /** Set a real widget the way a user edit would: value, then its callback, then redraw and record the change. */
  setWidget(name, value) {
    const widget = this.widgetByName(name);
    if (!widget) return false;
    if (this.isLinked(name)) {
      this.flash(tr("picker.linked", { name }));
      return false;
    }
    const allowed = widget.options?.values;
    if (Array.isArray(allowed) && !allowed.includes(value)) {
      logError(`"${value}" is not an option of ${name}`);
      return false;
    }
    if (widget.value !== value) {
      let done = false;
      if (typeof widget.setValue === "function" && app.canvas) {
        // LiteGraph's own path: value, callback, node.onWidgetChanged, graph version.
        done = guard(`setting ${name}`, () => {
          widget.setValue(value, { e: undefined, node: this.node, canvas: app.canvas });
          return true;
        }) === true;
      }
      if (!done && widget.value !== value) {
        widget.value = value;
        guard(`${name} callback`, () => widget.callback?.(widget.value, app.canvas, this.node, undefined, undefined));
      }
      guard("marking the workflow changed", () => {
        const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
        if (typeof tracker?.captureCanvasState === "function") tracker.captureCanvasState();
        else tracker?.checkState?.();
      });
    }
    guard("redraw", () => {
      this.node.setDirtyCanvas?.(true, true);
      app.graph?.setDirtyCanvas?.(true, true);
    });
    this.render();
    return true;
  }

  dispose(force = false) {
    // Removed from the graph but still on screen (the Vue renderer keeps the element across undo): keep polling a
    // little, so the picker can follow the node that replaced it (relink).
    if (!force && this.root.isConnected) {
      this.removedAt = Date.now();
      return;
    }
    PICKERS.delete(this);
    this.resizeObserver?.disconnect();
    clearTimeout(this.flashTimer);
    if (this.frame && typeof cancelAnimationFrame === "function") cancelAnimationFrame(this.frame);
    this.frame = null;
  }
}

function hitFromElement(el) {
  const d = el.dataset ?? {};
  if (d.runflowReroll) return { kind: "reroll", value: d.runflowReroll };
  if (d.runflowView) return { kind: "view", value: d.runflowView };
  if (d.runflowAngle) return { kind: "angle", value: d.runflowAngle };
  if (d.runflowShot) return { kind: "shot", value: d.runflowShot };
  if (d.runflowRing) return { kind: "shot", value: d.runflowRing };
  if (d.runflowViews) return { kind: "views", value: d.runflowViews };
  return null;
}

/** "re-roll back view: 1 run × $0.20 = $0.20", in the UI language when a translation exists. */
function rerollText(views) {
  if (!isTranslated()) return RR.rerollLine(views);
  return tr("cost.reroll", { views: views.map((v) => fullName("view", v)).join(", "), line: runsText(views.length) });
}

/** "8 runs × $0.20 = $1.60", in the UI language when a translation exists. */
function runsText(runs) {
  if (!isTranslated()) return PM.costLine(runs); // English: singular/plural handled there
  const template = tr("cost.runs");
  const each = PM.PRICE_PER_RUN_USD;
  return template
    .replace("{runs}", String(runs))
    .replace("{price}", PM.formatUsd(each))
    .replace("{total}", PM.formatUsd((Math.round(each * 10000) * runs) / 10000));
}

/**
 * New nodes start with the seed control on "fixed", so re-queueing never re-bills by accident. The Python node asks
 * for that (control_after_generate="fixed"), but frontends before ~1.28 read the string as the control widget's
 * *name* and default it to "randomize". Runs before onConfigure, so a loaded workflow keeps its saved choice.
 */
function defaultSeedControlToFixed(node) {
  const seed = node.widgets?.find((w) => w.name === "seed");
  const isControl = (w) => Array.isArray(w?.options?.values) && w.options.values.includes("fixed") && w.options.values.includes("randomize");
  const control = seed?.linkedWidgets?.find(isControl) ?? node.widgets?.[node.widgets.indexOf(seed) + 1];
  if (seed && isControl(control) && control.value !== "fixed") control.value = "fixed";
}

/** Fold the rarely used inputs away (where the frontend supports advanced widgets; elsewhere nothing changes). */
function markAdvanced(node) {
  for (const widget of node.widgets ?? []) {
    if (ADVANCED_WIDGETS.includes(widget.name) || widget.options?.advanced) {
      widget.advanced = true;
      if (widget.options) widget.options.advanced = true;
      takeNoSpaceWhenHidden(node, widget);
    }
  }
}

/**
 * Frontend 1.27 hides advanced widgets but still lays them out (a gap where they were): while hidden, report no
 * height. Newer frontends skip hidden widgets themselves, so this changes nothing there.
 */
function takeNoSpaceWhenHidden(node, widget) {
  const hidden = () => (typeof node.isWidgetVisible === "function" ? !node.isWidgetVisible(widget) : false);
  if (typeof widget.computeLayoutSize === "function") {
    const original = widget.computeLayoutSize;
    widget.computeLayoutSize = function (...args) {
      return hidden() ? { minHeight: 0, maxHeight: 0, minWidth: 0 } : original.apply(this, args);
    };
  } else {
    const original = widget.computeSize;
    widget.computeSize = function (width, ...args) {
      if (hidden()) return [0, -4];
      return original ? original.call(this, width, ...args) : [width ?? 0, globalThis.LiteGraph?.NODE_WIDGET_HEIGHT ?? 20];
    };
  }
}

/** Keep the node wide enough for readable picker labels (both renderers read node.size). */
function keepMinWidth(node) {
  const original = node.onResize;
  node.onResize = function (size, ...rest) {
    if (Array.isArray(size) || size?.length) {
      if (size[0] < MIN_NODE_WIDTH) size[0] = MIN_NODE_WIDTH;
    }
    return original?.call(this, size, ...rest);
  };
}

export function setupNode(node, multi) {
  ensureStyle();
  guard("seed control default", () => defaultSeedControlToFixed(node));
  guard("advanced inputs", () => markAdvanced(node));
  const picker = new PosePicker(node, multi);
  node.__runflowPicker = picker;
  labelCombos(node);
  guard("minimum width", () => keepMinWidth(node));
  // New nodes only (a loaded workflow restores its saved size afterwards): wide enough for readable labels, and no
  // taller than its content (computeSize skips the folded advanced inputs).
  guard("sizing the node", () => {
    const min = node.computeSize?.();
    if (min && node.size) node.setSize?.([Math.max(min[0], DEFAULT_NODE_WIDTH), min[1]]);
  });
}
