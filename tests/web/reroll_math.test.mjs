// node --test tests/web/   — the Turnaround picker's re-roll action (web/reroll_math.js), as nodes/core/reroll.py reads it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { VIEWS, computeLayout, pointToAzimuth } from "../../web/pose_math.js";
import { REROLL_OFFSET_DEG, parseReroll, rerollClick, rerollLine, rerollPoint, rerolledViews } from "../../web/reroll_math.js";

test("the first click on a view re-rolls it at take 1; again = the next take; another view joins the take", () => {
  assert.deepEqual(rerollClick("", 0, "back view"), { reroll: "back view", take: 1 });
  assert.deepEqual(rerollClick("back view", 1, "back view"), { reroll: "back view", take: 2 });
  assert.deepEqual(rerollClick("back view", 2, "front view"), { reroll: "front view, back view", take: 2 });
  // a reroll text left at take 0 (the original) starts at take 1
  assert.deepEqual(rerollClick("back", 0, "back view"), { reroll: "back view", take: 1 });
  assert.deepEqual(rerollClick(" Back View ,bogus", "3", "back view"), { reroll: "back view", take: 4 });
});

test("only selected views at take > 0 are re-rolled, and the cost line says exactly those", () => {
  assert.deepEqual(rerolledViews("back view, left side view", 1, ["front view", "back view"]), ["back view"]);
  assert.deepEqual(rerolledViews("back view", 0, VIEWS), []);
  assert.equal(rerollLine(["back view"]), "re-roll back view: 1 run × $0.20 = $0.20");
  assert.equal(rerollLine(["back view", "left side view"]), "re-roll back view, left side view: 2 runs × $0.20 = $0.40");
  assert.equal(rerollLine([]), "");
  assert.deepEqual(parseReroll("back, top"), { views: ["back view"], unknown: ["top"] });
});

test("each re-roll button sits on the orbit just clockwise of its view, clear of the view's click area", () => {
  const L = computeLayout(360, 196);
  const { cx, cy, viewRadius, viewHitR } = L.orbit;
  for (const v of L.views) {
    const p = rerollPoint(v.view, cx, cy, viewRadius);
    const expected = (VIEWS.indexOf(v.view) * 45 + REROLL_OFFSET_DEG) % 360;
    assert.ok(Math.abs(pointToAzimuth(p.x, p.y, cx, cy) - expected) < 1e-6, v.view);
    const gap = Math.hypot(p.x - v.x, p.y - v.y);
    assert.ok(gap > viewHitR + L.orbit.markerR * 0.72, `${v.view}: ${gap}`);
  }
  assert.equal(rerollPoint("top view", 0, 0, 1), null);
});
