// Pure math and text helpers for the Runflow Multi Angles camera-pose picker.
//
// Side-effect free on purpose: no DOM, no ComfyUI imports, nothing runs at import time. The frontend loads it
// (everything under web/ is loaded as an extension module, which is harmless here) and `node --test tests/web/`
// tests it directly.
//
// ORIENTATION (top-down orbit, "seen from above", front at the bottom)
// ---------------------------------------------------------------------
// The subject stands at the centre and faces the bottom of the picker, i.e. towards the "front view" camera,
// which therefore sits BELOW the subject (largest y; screen y grows downwards) looking up at it.
// Azimuth is measured in degrees clockwise as seen from above, front = 0 (nodes/contract.py VIEW_AZIMUTH).
// Seen from above with front at 6 o'clock, turning clockwise goes 6 -> 7:30 -> 9 -> 10:30 -> 12 -> ...
// The subject faces 6 o'clock, so its own right hand points to 9 o'clock: "right side view" (90°) puts the
// camera at the subject's RIGHT side, which is the LEFT of the picker — exactly as on the model page ("right
// side view" rotates 90 degrees clockwise; the camera moves to the subject's right side). Every position is
// labelled with its name, and the subject marker shows its R/L sides, so nobody has to guess:
//
//   view                      azimuth  where it is drawn (clock position / screen)
//   front view                    0°   6:00   bottom centre
//   front-right quarter view     45°   7:30   bottom-left
//   right side view              90°   9:00   left
//   back-right quarter view     135°  10:30   top-left
//   back view                   180°  12:00   top centre
//   back-left quarter view      225°   1:30   top-right
//   left side view              270°   3:00   right
//   front-left quarter view     315°   4:30   bottom-right
//
// Point for azimuth a at radius r around (cx, cy):  x = cx - r·sin(a),  y = cy + r·cos(a).
//
// ELEVATION ARC (side view, right-hand panel): the subject is at the arc's centre, the camera to its right;
// elevation e (degrees above the horizon) is drawn at x = sx + r·cos(e), y = sy - r·sin(e), so "high-angle shot"
// (60°) is highest and "low-angle shot" (-30°) is below the horizon line.
//
// DISTANCE RINGS: three concentric rings on the orbit, close-up innermost, wide outermost (RING_FRACTION: drawn
// wider apart than the real distances 0.6 / 1.0 / 1.8, so the cameras never cover the subject). Their labels are a
// row of buttons at the bottom right.

/** Runflow's price for one run of the Multi Angles model, in US dollars. */
export const PRICE_PER_RUN_USD = 0.2;

/** The eight horizontal views, exact API strings, in the model page's order. */
export const VIEWS = Object.freeze([
  "front view",
  "front-right quarter view",
  "right side view",
  "back-right quarter view",
  "back view",
  "back-left quarter view",
  "left side view",
  "front-left quarter view",
]);

/** The four vertical angles, exact API strings, in the model page's order. */
export const ANGLES = Object.freeze(["low-angle shot", "eye-level shot", "elevated shot", "high-angle shot"]);

/** The three shot distances, exact API strings, in the model page's order. */
export const SHOTS = Object.freeze(["close-up", "medium shot", "wide shot"]);

/** Degrees clockwise seen from above, front = 0. */
export const VIEW_AZIMUTH = Object.freeze(Object.fromEntries(VIEWS.map((v, i) => [v, i * 45])));

/** Degrees above the horizon. */
export const ANGLE_ELEVATION = Object.freeze({
  "low-angle shot": -30,
  "eye-level shot": 0,
  "elevated shot": 30,
  "high-angle shot": 60,
});

/** Relative camera distance. */
export const SHOT_DISTANCE = Object.freeze({ "close-up": 0.6, "medium shot": 1.0, "wide shot": 1.8 });

/** The Python node's defaults (nodes/contract.py). */
export const DEFAULTS = Object.freeze({ view: "right side view", angle: "eye-level shot", shot: "medium shot" });

/** Short English labels drawn in the picker (the full string is the tooltip and the value). */
export const VIEW_SHORT = Object.freeze({
  "front view": "front",
  "front-right quarter view": "front-right",
  "right side view": "right",
  "back-right quarter view": "back-right",
  "back view": "back",
  "back-left quarter view": "back-left",
  "left side view": "left",
  "front-left quarter view": "front-left",
});
export const ANGLE_SHORT = Object.freeze({
  "low-angle shot": "low",
  "eye-level shot": "eye level",
  "elevated shot": "elevated",
  "high-angle shot": "high",
});
export const SHOT_SHORT = Object.freeze({ "close-up": "close-up", "medium shot": "medium", "wide shot": "wide" });

const RAD = Math.PI / 180;

/** Screen point of an azimuth (degrees clockwise from above, front = 0) on a top-down orbit, front at the bottom. */
export function azimuthToPoint(azimuthDeg, cx, cy, r) {
  const a = azimuthDeg * RAD;
  return { x: cx - r * Math.sin(a), y: cy + r * Math.cos(a) };
}

/** Inverse of azimuthToPoint: the azimuth (0 ≤ a < 360) of a screen point around (cx, cy). */
export function pointToAzimuth(x, y, cx, cy) {
  const a = Math.atan2(-(x - cx), y - cy) / RAD;
  return ((a % 360) + 360) % 360;
}

/** Screen point of a view on the orbit; null for an unknown view. */
export function viewToPoint(view, cx, cy, r) {
  if (!(view in VIEW_AZIMUTH)) return null;
  return azimuthToPoint(VIEW_AZIMUTH[view], cx, cy, r);
}

/** The view whose azimuth is nearest to a screen point's direction. */
export function nearestView(x, y, cx, cy) {
  const a = pointToAzimuth(x, y, cx, cy);
  return VIEWS[Math.round(a / 45) % 8];
}

/** Screen point of an elevation (degrees above the horizon) on the side-view arc centred on the subject. */
export function elevationToPoint(elevationDeg, sx, sy, r) {
  const e = elevationDeg * RAD;
  return { x: sx + r * Math.cos(e), y: sy - r * Math.sin(e) };
}

/** Screen point of an angle on the elevation arc; null for an unknown angle. */
export function angleToPoint(angle, sx, sy, r) {
  if (!(angle in ANGLE_ELEVATION)) return null;
  return elevationToPoint(ANGLE_ELEVATION[angle], sx, sy, r);
}

/** The angle whose elevation is nearest to the direction of a point seen from the subject. */
export function nearestAngle(x, y, sx, sy) {
  const e = Math.atan2(sy - y, x - sx) / RAD;
  let best = ANGLES[0];
  for (const angle of ANGLES) {
    if (Math.abs(ANGLE_ELEVATION[angle] - e) < Math.abs(ANGLE_ELEVATION[best] - e)) best = angle;
  }
  return best;
}

/**
 * How far out each distance ring is drawn, as a fraction of the wide-shot ring. Not to scale on purpose (the real
 * distances are 0.6 / 1.0 / 1.8): at scale the close-up ring is so small that eight cameras pile onto the subject.
 */
export const RING_FRACTION = Object.freeze({ "close-up": 0.46, "medium shot": 0.72, "wide shot": 1.0 });

/** Ring radius of a shot when the wide-shot ring has radius wideRadius; null for an unknown shot. */
export function shotRadius(shot, wideRadius) {
  if (!(shot in RING_FRACTION)) return null;
  return wideRadius * RING_FRACTION[shot];
}

/** Rough rendered width of a label: CJK glyphs are about 1 em wide, Latin ones about 0.56 em. */
export function textWidth(text, fontSize) {
  let em = 0;
  for (const ch of String(text)) em += ch.codePointAt(0) >= 0x2e80 ? 1 : 0.56;
  return em * fontSize;
}

function labelBox(x, y, text, fontSize, anchor) {
  const w = textWidth(text, fontSize);
  const left = anchor === "end" ? x - w : anchor === "middle" ? x - w / 2 : x;
  // (x, y) is the text baseline; glyphs rise about 0.8 em above it and descend about 0.25 em.
  return { x: left, y: y - fontSize * 0.8, w, h: fontSize * 1.05 };
}

function inBox(x, y, box, pad = 2) {
  return x >= box.x - pad && x <= box.x + box.w + pad && y >= box.y - pad && y <= box.y + box.h + pad;
}

/**
 * The centre of the bounding box of a marker's hit circle and its label, plus a small radius around it: the gap
 * between marker and label is clickable too, and a click at the centre of the drawn group (what browser-test
 * tools do) always lands on it.
 */
function grip(x, y, hitR, box, r) {
  const left = Math.min(x - hitR, box.x);
  const right = Math.max(x + hitR, box.x + box.w);
  const top = Math.min(y - hitR, box.y);
  const bottom = Math.max(y + hitR, box.y + box.h);
  return { x: (left + right) / 2, y: (top + bottom) / 2, r };
}

/** Nominal design size; computeLayout scales it uniformly into the real width/height and centres it. */
export const DESIGN = Object.freeze({ width: 360, height: 196 });

/**
 * Geometry of the whole picker for a width × height drawing area (CSS px = SVG user units).
 *
 * `labels` optionally replaces the short labels ({views: {view: text}, angles: {...}, shots: {...}}), e.g. with
 * translations, so the label hit boxes match what is drawn.
 */
export function computeLayout(width, height, labels = {}) {
  const W = DESIGN.width;
  const H = DESIGN.height;
  const w = Number.isFinite(width) && width > 0 ? width : W;
  const h = Number.isFinite(height) && height > 0 ? height : H;
  const k = Math.min(1.6, Math.max(0.5, Math.min(w / W, h / H)));
  const ox = (w - W * k) / 2;
  const oy = (h - H * k) / 2;
  const X = (v) => ox + v * k;
  const Y = (v) => oy + v * k;
  // Labels: 11 px at the default node width (the picker is about 350 px wide there); the node keeps a minimum width
  // (runflow_picker.js MIN_NODE_WIDTH) so they never shrink below about 10 px.
  const fontSize = 11 * k;
  const smallFont = 10.5 * k;
  const viewText = (v) => labels.views?.[v] ?? VIEW_SHORT[v];
  const angleText = (a) => labels.angles?.[a] ?? ANGLE_SHORT[a];
  const shotText = (s) => labels.shots?.[s] ?? SHOT_SHORT[s];

  // Top-down orbit (left part).
  const cx = X(128);
  const cy = Y(98);
  const viewRadius = 70 * k;
  const markerR = 8 * k;
  const viewHitR = 12 * k;
  const labelRadius = viewRadius + markerR + 4 * k;
  const wideR = viewRadius - markerR - 6 * k;
  const subjectR = 8 * k;
  // Ring labels: a row of three buttons under the elevation arc (bottom right), where nothing else is drawn; on the
  // rings themselves they collided with the cameras at close-up.
  const rowY = Y(DESIGN.height - 6);
  const gap = 9 * k;
  let rowX = X(DESIGN.width - 4);
  const rings = SHOTS.map((shot) => ({ shot, r: shotRadius(shot, wideR) }));
  for (const ring of [...rings].reverse()) {
    const text = shotText(ring.shot);
    ring.label = { x: rowX, y: rowY, anchor: "end", text, box: labelBox(rowX, rowY, text, smallFont, "end") };
    rowX -= textWidth(text, smallFont) + gap;
  }
  // The Turnaround's "all 8" button: top right.
  const allText = labels.all ?? "all 8";
  const allY = Y(4) + smallFont * 0.8;
  const all = { x: X(DESIGN.width - 4), y: allY, anchor: "end", text: allText,
    box: labelBox(X(DESIGN.width - 4), allY, allText, smallFont, "end") };
  // The subject's R / L marks: just outside its body, inside the close-up ring's cameras.
  const sideOffset = subjectR + 5 * k;
  // A click anywhere in the disc goes to the nearest ring; these are the band edges (subject and outer rim excluded).
  const ringBounds = [subjectR + 2 * k];
  for (let i = 0; i < rings.length - 1; i++) ringBounds.push((rings[i].r + rings[i + 1].r) / 2);
  ringBounds.push(wideR + 5 * k);

  const views = VIEWS.map((view) => {
    const p = viewToPoint(view, cx, cy, viewRadius);
    const lp = viewToPoint(view, cx, cy, labelRadius);
    const dx = (lp.x - cx) / labelRadius;
    const dy = (lp.y - cy) / labelRadius;
    const anchor = Math.abs(dx) < 0.3 ? "middle" : dx > 0 ? "start" : "end";
    let ly = lp.y + fontSize * 0.35; // beside the marker: vertically centred
    if (dy < -0.3) ly = lp.y; // above the marker: baseline at the label point
    if (dy > 0.3) ly = lp.y + fontSize * 0.8; // below the marker: hang the text under it
    const text = viewText(view);
    const box = labelBox(lp.x, ly, text, fontSize, anchor);
    return {
      view,
      azimuth: VIEW_AZIMUTH[view],
      x: p.x,
      y: p.y,
      label: { x: lp.x, y: ly, anchor, text, box },
      grip: grip(p.x, p.y, viewHitR, box, 4 * k),
    };
  });

  // Side-view elevation arc (right part).
  const sx = X(250);
  const sy = Y(114);
  const arcR = 45 * k;
  const angleMarkerR = 6.5 * k;
  const angleHitR = 11 * k;
  const angles = ANGLES.map((angle) => {
    const p = angleToPoint(angle, sx, sy, arcR);
    const lx = p.x + angleMarkerR + 3 * k;
    const ly = p.y + fontSize * 0.35;
    const text = angleText(angle);
    const box = labelBox(lx, ly, text, fontSize, "start");
    return {
      angle,
      elevation: ANGLE_ELEVATION[angle],
      x: p.x,
      y: p.y,
      label: { x: lx, y: ly, anchor: "start", text, box },
      grip: grip(p.x, p.y, angleHitR, box, 4 * k),
    };
  });
  const arcFrom = elevationToPoint(ANGLE_ELEVATION["low-angle shot"] - 8, sx, sy, arcR);
  const arcTo = elevationToPoint(ANGLE_ELEVATION["high-angle shot"] + 8, sx, sy, arcR);

  return {
    width: w,
    height: h,
    scale: k,
    fontSize,
    smallFont,
    orbit: { cx, cy, viewRadius, markerR, viewHitR, labelRadius, subjectR, sideOffset, rings, ringBounds },
    all,
    views,
    elevation: {
      sx,
      sy,
      r: arcR,
      markerR: angleMarkerR,
      hitR: angleHitR,
      angles,
      arc: { from: arcFrom, to: arcTo },
      ground: { x1: sx - 14 * k, x2: sx + arcR + 6 * k, y: sy },
      subjectR: 5.5 * k,
    },
  };
}

/** The value of the target nearest to (x, y) within hitR, else the first whose label or grip contains it. */
function pickTarget(items, key, hitR, x, y) {
  let best = null;
  let bestD = Infinity;
  for (const it of items) {
    const d = Math.hypot(x - it.x, y - it.y);
    if (d <= hitR && d < bestD) [best, bestD] = [it[key], d];
  }
  if (best) return best;
  const hit = items.find((it) => inBox(x, y, it.label.box) || Math.hypot(x - it.grip.x, y - it.grip.y) <= it.grip.r);
  return hit ? hit[key] : null;
}

/**
 * What a click at (x, y) selects: {kind: "view"|"angle"|"shot", value} or null.
 * View markers and labels win over everything, then the angle markers/labels, then the ring labels, then the
 * nearest distance ring. The subject (centre) and everything outside these is a miss.
 */
export function hitTest(x, y, layout) {
  if (!layout || !Number.isFinite(x) || !Number.isFinite(y)) return null;
  const { orbit, elevation } = layout;
  const view = pickTarget(layout.views, "view", orbit.viewHitR, x, y);
  if (view) return { kind: "view", value: view };
  const angle = pickTarget(elevation.angles, "angle", elevation.hitR, x, y);
  if (angle) return { kind: "angle", value: angle };
  for (const ring of orbit.rings) if (inBox(x, y, ring.label.box, 1)) return { kind: "shot", value: ring.shot };

  const d = Math.hypot(x - orbit.cx, y - orbit.cy);
  const b = orbit.ringBounds;
  if (d < b[0] || d > b[b.length - 1]) return null;
  for (let i = 0; i < orbit.rings.length; i++) {
    if (d <= b[i + 1]) return { kind: "shot", value: orbit.rings[i].shot };
  }
  return null;
}

// ---- the Turnaround node's `views` string ----------------------------------------------------------------------

const VIEW_LOOKUP = new Map(VIEWS.map((v) => [v.toLowerCase(), v]));

/** Exact view string for one token (case/whitespace-insensitive, "front" -> "front view"), else null. */
export function normalizeView(token) {
  const t = String(token ?? "").trim().toLowerCase().split(/\s+/).filter(Boolean).join(" ");
  if (!t) return null;
  return VIEW_LOOKUP.get(t) ?? VIEW_LOOKUP.get(`${t} view`) ?? null;
}

/**
 * Parse the Turnaround's `views` text the way the Python node does (nodes/spec.py parse_views): tokens separated
 * by commas or new lines, case-insensitive, surrounding/multiple spaces ignored, "front" means "front view",
 * "all" means all eight; duplicates dropped; result in the model page's order. Unknown tokens are reported (the
 * Python node refuses to run with them), never silently dropped.
 *
 * @returns {{views: string[], unknown: string[], all: boolean}}
 */
export function parseViews(text) {
  const items = Array.isArray(text) ? text : String(text ?? "").split(/[,\n]/);
  const wanted = new Set();
  const unknown = [];
  for (const raw of items) {
    const token = String(raw ?? "").trim();
    if (!token) continue;
    if (token.toLowerCase() === "all") {
      VIEWS.forEach((v) => wanted.add(v));
      continue;
    }
    const view = normalizeView(token);
    if (view) wanted.add(view);
    else if (!unknown.includes(token)) unknown.push(token);
  }
  const views = VIEWS.filter((v) => wanted.has(v));
  return { views, unknown, all: views.length === VIEWS.length };
}

/**
 * The canonical `views` text: "all" for all eight (short, so the widget's "views" label stays visible in the classic
 * renderer), else exact names in the model page's order, comma-separated; unknown entries dropped.
 */
export function formatViews(list) {
  const views = parseViews(Array.isArray(list) ? list : [list]).views;
  return views.length === VIEWS.length ? "all" : views.join(", ");
}

/** A new selection with `view` added or removed, in the model page's order (the input is not modified). */
export function toggleView(list, view) {
  const exact = normalizeView(view);
  const current = new Set(parseViews(Array.isArray(list) ? list : String(list ?? "")).views);
  if (!exact) return VIEWS.filter((v) => current.has(v));
  if (current.has(exact)) current.delete(exact);
  else current.add(exact);
  return VIEWS.filter((v) => current.has(v));
}

// ---- money ------------------------------------------------------------------------------------------------------

// Amounts are handled in hundredths of a cent so 8 × 0.20 is exactly 1.60 (floating point would say 1.6000000000000001).
const UNITS = 10000;
const toUnits = (usd) => Math.round(Number(usd) * UNITS);

/** "$0.20", "$1.60", "$0.035" (two decimals, more only when the amount needs them). */
export function formatUsd(usd) {
  const units = toUnits(usd);
  if (!Number.isFinite(units)) return "$?";
  const sign = units < 0 ? "-" : "";
  const abs = Math.abs(units);
  let text = (abs / UNITS).toFixed(4);
  text = text.replace(/0{1,2}$/, ""); // keep at least two decimals
  return `${sign}$${text}`;
}

/**
 * The cost of a plan, in the same words and with the same arguments as the Python side
 * (nodes/core/spend.py cost_line; tests/test_contract_sync.py proves they agree):
 *   costLine(8)    -> "8 runs × $0.20 = $1.60"
 *   costLine(1)    -> "1 run × $0.20 = $0.20"
 *   costLine(5, 3) -> "5 runs × $0.20 = $1.00 (3 from cache: $0.00)"
 * `runs` counts the billable runs only; `cached` counts results served from the cache (they cost nothing).
 */
export function costLine(runs, cached = 0, price = PRICE_PER_RUN_USD) {
  const billed = Math.max(0, Math.floor(Number(runs) || 0));
  const hits = Math.max(0, Math.floor(Number(cached) || 0));
  const each = toUnits(price);
  let text = `${billed} run${billed === 1 ? "" : "s"} × ${formatUsd(each / UNITS)} = ${formatUsd((billed * each) / UNITS)}`;
  if (hits) text += ` (${hits} from cache: ${formatUsd(0)})`;
  return text;
}

/** Live estimate for the Turnaround node from its `views` text. */
export function turnaroundEstimate(viewsText, price = PRICE_PER_RUN_USD) {
  const { views, unknown } = parseViews(viewsText);
  return { views, unknown, runs: views.length, line: costLine(views.length, 0, price) };
}
