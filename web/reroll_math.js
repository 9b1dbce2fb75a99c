// Re-roll on the Turnaround picker: pure logic (no DOM, no side effects), tested in tests/web/reroll_math.test.mjs.
//
// The node keeps re-rolls in two plain inputs saved with the workflow (nodes/core/reroll.py): `reroll` (view
// names) and `take` (0 = the original render). A re-rolled view's cache slot includes its take, so every other view
// stays the cached result at $0.00 and going back to an earlier take is free.

import { PRICE_PER_RUN_USD, VIEW_AZIMUTH, azimuthToPoint, costLine, formatViews, parseViews } from "./pose_math.js";

/** Where a view's re-roll button sits: on the orbit, this many degrees clockwise of the view's marker. */
export const REROLL_OFFSET_DEG = 19;

/** The `reroll` text as exact view names (model page order) plus what it could not read. */
export function parseReroll(text) {
  const { views, unknown } = parseViews(String(text ?? ""));
  return { views, unknown };
}

/**
 * What the re-roll button of `view` does: add the view to `reroll` (take at least 1), or, when it is already being
 * re-rolled, move to the next take (a fresh render of every re-rolled view; earlier takes stay cached).
 * @returns {{reroll: string, take: number}}
 */
export function rerollClick(rerollText, take, view) {
  const current = parseReroll(rerollText).views;
  const t = Math.max(0, Math.floor(Number(take) || 0));
  if (current.includes(view) && t > 0) return { reroll: formatViews(current), take: t + 1 };
  return { reroll: formatViews([...current, view]), take: Math.max(1, t) };
}

/**
 * The views a queue would re-render: those in `reroll` that are also selected, when take > 0 (else none).
 * @returns {string[]}
 */
export function rerolledViews(rerollText, take, selected) {
  if (!(Math.floor(Number(take) || 0) > 0)) return [];
  const chosen = new Set(selected);
  return parseReroll(rerollText).views.filter((v) => chosen.has(v));
}

/** "re-roll back view: 1 run × $0.20 = $0.20", or "" when nothing is re-rolled. English; see rerollText in the picker. */
export function rerollLine(views, price = PRICE_PER_RUN_USD) {
  if (!views.length) return "";
  return `re-roll ${views.join(", ")}: ${costLine(views.length, 0, price)}`;
}

/** Screen position of a view's re-roll button on the orbit (same radius as the view markers). */
export function rerollPoint(view, cx, cy, r) {
  if (!(view in VIEW_AZIMUTH)) return null;
  return azimuthToPoint(VIEW_AZIMUTH[view] + REROLL_OFFSET_DEG, cx, cy, r);
}
