// node --test tests/web/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ANGLE_ELEVATION,
  ANGLES,
  DEFAULTS,
  SHOT_DISTANCE,
  SHOTS,
  VIEW_AZIMUTH,
  VIEWS,
  angleToPoint,
  azimuthToPoint,
  computeLayout,
  costLine,
  formatUsd,
  formatViews,
  hitTest,
  nearestAngle,
  nearestView,
  normalizeView,
  parseViews,
  pointToAzimuth,
  shotRadius,
  toggleView,
  turnaroundEstimate,
  viewToPoint,
} from "../../web/pose_math.js";

const ALL = [
  "front view",
  "front-right quarter view",
  "right side view",
  "back-right quarter view",
  "back view",
  "back-left quarter view",
  "left side view",
  "front-left quarter view",
];

const close = (a, b, eps = 1e-9) => Math.abs(a - b) <= eps;

describe("vocabulary", () => {
  test("exact model-page strings and order", () => {
    assert.deepEqual([...VIEWS], ALL);
    assert.deepEqual([...ANGLES], ["low-angle shot", "eye-level shot", "elevated shot", "high-angle shot"]);
    assert.deepEqual([...SHOTS], ["close-up", "medium shot", "wide shot"]);
  });

  test("tables match nodes/contract.py", () => {
    assert.deepEqual(
      VIEWS.map((v) => VIEW_AZIMUTH[v]),
      [0, 45, 90, 135, 180, 225, 270, 315],
    );
    assert.deepEqual(
      ANGLES.map((a) => ANGLE_ELEVATION[a]),
      [-30, 0, 30, 60],
    );
    assert.deepEqual(
      SHOTS.map((s) => SHOT_DISTANCE[s]),
      [0.6, 1.0, 1.8],
    );
    assert.deepEqual({ ...DEFAULTS }, { view: "right side view", angle: "eye-level shot", shot: "medium shot" });
  });

  test("constants are frozen", () => {
    assert.throws(() => {
      "use strict";
      VIEWS.push("up view");
    });
  });
});

describe("top-down orbit orientation", () => {
  const cx = 100;
  const cy = 100;
  const r = 50;
  const p = Object.fromEntries(VIEWS.map((v) => [v, viewToPoint(v, cx, cy, r)]));

  test("every view maps to a distinct point on the circle", () => {
    const keys = new Set(VIEWS.map((v) => `${p[v].x.toFixed(6)},${p[v].y.toFixed(6)}`));
    assert.equal(keys.size, 8);
    for (const v of VIEWS) assert.ok(close(Math.hypot(p[v].x - cx, p[v].y - cy), r, 1e-9), v);
  });

  test("front is at the bottom (greatest y), back on top (smallest y)", () => {
    const ys = VIEWS.map((v) => p[v].y);
    assert.equal(p["front view"].y, Math.max(...ys));
    assert.equal(p["back view"].y, Math.min(...ys));
    assert.ok(close(p["front view"].x, cx) && close(p["back view"].x, cx));
  });

  test("right side view is on the screen LEFT (the subject's right when it faces front/down)", () => {
    assert.ok(close(p["right side view"].x, cx - r) && close(p["right side view"].y, cy));
    assert.ok(close(p["left side view"].x, cx + r) && close(p["left side view"].y, cy));
  });

  test("quarter views sit between their neighbours", () => {
    const q = (v) => ({ left: p[v].x < cx - 1, top: p[v].y < cy - 1 });
    assert.deepEqual(q("front-right quarter view"), { left: true, top: false });
    assert.deepEqual(q("back-right quarter view"), { left: true, top: true });
    assert.deepEqual(q("back-left quarter view"), { left: false, top: true });
    assert.deepEqual(q("front-left quarter view"), { left: false, top: false });
  });

  test("increasing azimuth turns clockwise on screen (y down)", () => {
    // Screen angle measured from +x towards +y (down) increases clockwise as seen on screen.
    const screenAngle = (v) => (Math.atan2(p[v].y - cy, p[v].x - cx) * 180) / Math.PI;
    for (let i = 0; i < 8; i++) {
      const a = screenAngle(VIEWS[i]);
      const b = screenAngle(VIEWS[(i + 1) % 8]);
      const step = (((b - a) % 360) + 360) % 360;
      assert.ok(close(step, 45, 1e-6), `${VIEWS[i]} -> ${VIEWS[(i + 1) % 8]}: ${step}`);
    }
  });

  test("azimuth round-trips and nearestView snaps", () => {
    for (let a = 0; a < 360; a += 15) {
      const q = azimuthToPoint(a, cx, cy, r);
      assert.ok(close(pointToAzimuth(q.x, q.y, cx, cy), a, 1e-9), String(a));
    }
    for (const v of VIEWS) {
      const q = azimuthToPoint(VIEW_AZIMUTH[v] + 20, cx, cy, 30);
      assert.equal(nearestView(q.x, q.y, cx, cy), v);
    }
    const q = azimuthToPoint(350, cx, cy, 10);
    assert.equal(nearestView(q.x, q.y, cx, cy), "front view");
  });

  test("unknown values map to null", () => {
    assert.equal(viewToPoint("up view", 0, 0, 1), null);
    assert.equal(angleToPoint("dutch angle", 0, 0, 1), null);
    assert.equal(shotRadius("extreme close-up", 10), null);
  });
});

describe("elevation arc and distance rings", () => {
  test("higher angles are drawn higher; eye level on the horizon", () => {
    const pts = ANGLES.map((a) => angleToPoint(a, 0, 0, 10));
    for (let i = 1; i < pts.length; i++) assert.ok(pts[i].y < pts[i - 1].y, ANGLES[i]);
    assert.ok(close(angleToPoint("eye-level shot", 0, 0, 10).y, 0));
    assert.ok(angleToPoint("low-angle shot", 0, 0, 10).y > 0);
    for (const a of ANGLES) {
      const q = angleToPoint(a, 5, 7, 20);
      assert.equal(nearestAngle(q.x, q.y, 5, 7), a);
    }
  });

  test("ring radii grow with the shot distance, wide outermost; close-up leaves room for 8 cameras", () => {
    assert.ok(close(shotRadius("wide shot", 90), 90));
    assert.ok(shotRadius("close-up", 90) < shotRadius("medium shot", 90));
    assert.ok(shotRadius("medium shot", 90) < shotRadius("wide shot", 90));
    // eight cameras (about 10 units wide at scale 1) around the close-up ring of the default layout do not touch
    const L = computeLayout(360, 196);
    const closeR = L.orbit.rings.find((r) => r.shot === "close-up").r;
    assert.ok(2 * closeR * Math.sin(Math.PI / 8) > 14 * L.scale, `close-up ring radius ${closeR}`);
    // ...nor the subject's R/L marks (a glyph is about 0.6 em wide, the camera's lens reaches 4.4 units inwards)
    assert.ok(L.orbit.sideOffset + 0.35 * L.smallFont < closeR - 4.4 * L.scale, "R/L marks under the cameras");
  });
});

describe("layout and hitTest", () => {
  for (const [w, h] of [
    [360, 196],
    [300, 190],
    [520, 300],
    [240, 150],
  ]) {
    describe(`${w}×${h}`, () => {
      const L = computeLayout(w, h);

      test("everything fits inside the drawing area", () => {
        const inside = (x, y) => x >= -0.5 && x <= w + 0.5 && y >= -0.5 && y <= h + 0.5;
        for (const v of L.views) {
          assert.ok(inside(v.x, v.y), v.view);
          const b = v.label.box;
          assert.ok(inside(b.x, b.y) && inside(b.x + b.w, b.y + b.h), `label ${v.view}`);
        }
        for (const a of L.elevation.angles) {
          const b = a.label.box;
          assert.ok(inside(a.x, a.y) && inside(b.x + b.w, b.y + b.h), `angle ${a.angle}`);
        }
      });

      test("no two labels or markers overlap", () => {
        const boxes = [
          ...L.views.map((v) => ({ name: v.view, owner: v.view, ...v.label.box })),
          ...L.elevation.angles.map((a) => ({ name: a.angle, owner: a.angle, ...a.label.box })),
          ...L.orbit.rings.map((r) => ({ name: `ring label ${r.shot}`, owner: r.shot, ...r.label.box })),
          { name: "all 8", owner: "all", ...L.all.box },
          ...L.views.map((v) => ({
            owner: v.view,
            name: `marker ${v.view}`,
            x: v.x - L.orbit.markerR,
            y: v.y - L.orbit.markerR,
            w: 2 * L.orbit.markerR,
            h: 2 * L.orbit.markerR,
          })),
          ...[...L.views, ...L.elevation.angles].map((g) => ({
            owner: g.view ?? g.angle,
            name: `grip ${g.view ?? g.angle}`,
            x: g.grip.x - g.grip.r,
            y: g.grip.y - g.grip.r,
            w: 2 * g.grip.r,
            h: 2 * g.grip.r,
          })),
          ...L.elevation.angles.map((a) => ({
            owner: a.angle,
            name: `marker ${a.angle}`,
            x: a.x - L.elevation.markerR,
            y: a.y - L.elevation.markerR,
            w: 2 * L.elevation.markerR,
            h: 2 * L.elevation.markerR,
          })),
        ];
        for (let i = 0; i < boxes.length; i++) {
          for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i];
            const b = boxes[j];
            if (a.owner === b.owner) continue;
            const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
            assert.ok(!overlap, `${a.name} overlaps ${b.name}`);
          }
        }
      });

      test("the layout keeps the documented orientation", () => {
        const at = Object.fromEntries(L.views.map((v) => [v.view, v]));
        assert.equal(Math.max(...L.views.map((v) => v.y)), at["front view"].y);
        assert.equal(Math.min(...L.views.map((v) => v.y)), at["back view"].y);
        assert.ok(at["right side view"].x < L.orbit.cx && at["left side view"].x > L.orbit.cx);
      });

      test("each rendered view/angle position and label hits its own value", () => {
        for (const v of L.views) {
          assert.deepEqual(hitTest(v.x, v.y, L), { kind: "view", value: v.view });
          const b = v.label.box;
          assert.deepEqual(hitTest(b.x + b.w / 2, b.y + b.h / 2, L), { kind: "view", value: v.view }, v.label.text);
        }
        for (const a of L.elevation.angles) {
          assert.deepEqual(hitTest(a.x, a.y, L), { kind: "angle", value: a.angle });
          const b = a.label.box;
          assert.deepEqual(hitTest(b.x + b.w / 2, b.y + b.h / 2, L), { kind: "angle", value: a.angle });
        }
      });

      test("grips (centre of marker + label) and ring labels hit their own value", () => {
        for (const v of L.views) assert.deepEqual(hitTest(v.grip.x, v.grip.y, L), { kind: "view", value: v.view });
        for (const a of L.elevation.angles) assert.deepEqual(hitTest(a.grip.x, a.grip.y, L), { kind: "angle", value: a.angle });
        for (const ring of L.orbit.rings) {
          const b = ring.label.box;
          assert.deepEqual(hitTest(b.x + b.w / 2, b.y + b.h / 2, L), { kind: "shot", value: ring.shot }, ring.shot);
          assert.deepEqual(hitTest(b.x + 1, b.y + 1, L), { kind: "shot", value: ring.shot }, `${ring.shot} label corner`);
        }
      });

      test("each ring hits its shot (round trip), between markers and on every side", () => {
        const { cx, cy } = L.orbit;
        for (const ring of L.orbit.rings) {
          for (const az of [22.5, 112.5, 200, 292.5]) {
            const q = azimuthToPoint(az, cx, cy, ring.r);
            assert.deepEqual(hitTest(q.x, q.y, L), { kind: "shot", value: ring.shot }, `${ring.shot}@${az}`);
          }
        }
      });

      test("misses return null", () => {
        const { cx, cy } = L.orbit;
        assert.equal(hitTest(cx, cy, L), null, "the subject");
        assert.equal(hitTest(0.5, 0.5, L), null, "top-left corner");
        assert.equal(hitTest(w - 0.5, h - 0.5, L), null, "bottom-right corner");
        assert.equal(hitTest(NaN, 3, L), null);
        assert.equal(hitTest(3, 3, null), null);
        // Just outside the wide ring, between two markers: not a ring, not a marker.
        const q = azimuthToPoint(22.5, cx, cy, L.orbit.ringBounds.at(-1) + 1.5 * L.scale);
        assert.equal(hitTest(q.x, q.y, L), null);
      });
    });
  }

  test("translated labels change the label hit boxes", () => {
    const zh = { views: { "front view": "正面视图" } };
    const L = computeLayout(360, 196, zh);
    const v = L.views.find((x) => x.view === "front view");
    assert.equal(v.label.text, "正面视图");
    assert.ok(close(v.label.box.w, 4 * L.fontSize, 1e-9));
  });
});

describe("views text (Turnaround)", () => {
  test("all, case, spacing, duplicates, order", () => {
    assert.deepEqual(parseViews("all"), { views: ALL, unknown: [], all: true });
    assert.deepEqual(parseViews(" ALL ").views, ALL);
    assert.deepEqual(parseViews(ALL.join(", ")).views, ALL);
    assert.deepEqual(parseViews("Back View,  FRONT   view ,back view").views, ["front view", "back view"]);
    assert.deepEqual(parseViews("left side view\nright side view").views, ["right side view", "left side view"]);
    assert.deepEqual(parseViews("front, back-left quarter").views, ["front view", "back-left quarter view"]);
    assert.deepEqual(parseViews("all, front view").views, ALL);
  });

  test("unknown tokens are reported, not dropped silently", () => {
    const r = parseViews("front view, up view, Sideways, up view");
    assert.deepEqual(r.views, ["front view"]);
    assert.deepEqual(r.unknown, ["up view", "Sideways"]);
    assert.equal(r.all, false);
  });

  test("empty input", () => {
    assert.deepEqual(parseViews(""), { views: [], unknown: [], all: false });
    assert.deepEqual(parseViews(" , ,\n").views, []);
    assert.deepEqual(parseViews(undefined).views, []);
  });

  test("formatViews is canonical and parses back", () => {
    assert.equal(formatViews(["back view", "front view", "Front View"]), "front view, back view");
    assert.equal(formatViews(ALL), "all");
    assert.deepEqual(parseViews(formatViews(ALL)).views, ALL);
    assert.equal(formatViews([]), "");
    assert.deepEqual(parseViews(formatViews(["left side view", "back view"])).views, ["back view", "left side view"]);
  });

  test("toggleView adds/removes in model-page order and never mutates its input", () => {
    const start = ["back view"];
    assert.deepEqual(toggleView(start, "front view"), ["front view", "back view"]);
    assert.deepEqual(start, ["back view"]);
    assert.deepEqual(toggleView(["front view", "back view"], "front view"), ["back view"]);
    assert.deepEqual(toggleView(["back view"], "back view"), []);
    assert.deepEqual(toggleView("all", "left side view"), ALL.filter((v) => v !== "left side view"));
    assert.deepEqual(toggleView(["back view"], "nonsense"), ["back view"]);
    assert.deepEqual(toggleView([], "RIGHT side view"), ["right side view"]);
  });

  test("normalizeView", () => {
    assert.equal(normalizeView("  Front-Right   Quarter View "), "front-right quarter view");
    assert.equal(normalizeView("right side"), "right side view");
    assert.equal(normalizeView("right"), null);
    assert.equal(normalizeView(""), null);
  });
});

describe("money", () => {
  test("formatUsd", () => {
    assert.equal(formatUsd(0.2), "$0.20");
    assert.equal(formatUsd(1.6), "$1.60");
    assert.equal(formatUsd(0), "$0.00");
    assert.equal(formatUsd(0.035), "$0.035");
    assert.equal(formatUsd(12), "$12.00");
    assert.equal(formatUsd(0.1 + 0.2), "$0.30");
  });

  test("costLine matches the Python node's wording", () => {
    assert.equal(costLine(8), "8 runs × $0.20 = $1.60");
    assert.equal(costLine(1), "1 run × $0.20 = $0.20");
    assert.equal(costLine(0), "0 runs × $0.20 = $0.00");
    assert.equal(costLine(5, 3), "5 runs × $0.20 = $1.00 (3 from cache: $0.00)");
    assert.equal(costLine(0, 8), "0 runs × $0.20 = $0.00 (8 from cache: $0.00)");
    assert.equal(costLine(3, 0, 0.035), "3 runs × $0.035 = $0.105");
    assert.equal(costLine(7), "7 runs × $0.20 = $1.40"); // 7 × 0.2 is 1.4000000000000001 in floating point
  });

  test("turnaroundEstimate", () => {
    assert.deepEqual(turnaroundEstimate("all"), { views: ALL, unknown: [], runs: 8, line: "8 runs × $0.20 = $1.60" });
    const e = turnaroundEstimate("front view, nope");
    assert.equal(e.runs, 1);
    assert.equal(e.line, "1 run × $0.20 = $0.20");
    assert.deepEqual(e.unknown, ["nope"]);
  });
});
