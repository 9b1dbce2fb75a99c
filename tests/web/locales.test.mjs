// node --test tests/web/   — the locales/ files stay complete, in sync with the English UI text, and fit the picker.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { ANGLES, SHOTS, VIEWS, computeLayout } from "../../web/pose_math.js";
import { COMMAND_TEXT, EN, SETTING_TEXT } from "../../web/runflow_strings.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../locales");
const LANGS = ["en", "zh", "ja", "ko"];
const TRANSLATED = ["zh", "ja", "ko"];
const FILES = ["main.json", "nodeDefs.json", "settings.json", "commands.json"];

// The nodes' frozen input/output names (nodes/multi_angles.py).
const NODES = {
  RunflowMultiAngles: {
    inputs: [
      "view",
      "angle",
      "shot",
      "prompt",
      "match_input_aspect",
      "aspect_ratio",
      "seed",
      "image",
      "image_url",
      "callback_url",
      "metadata",
      "upload_format",
      "pose",
      "camera_info",
      "show_preview",
    ],
    outputs: ["image", "urls", "run_info"],
  },
  RunflowMultiAnglesTurnaround: {
    inputs: [
      "views",
      "angle",
      "shot",
      "prompt",
      "match_input_aspect",
      "aspect_ratio",
      "seed",
      "max_concurrent",
      "image",
      "image_url",
      "upload_format",
      "pose",
      "reroll",
      "take",
      "show_preview",
    ],
    outputs: ["images", "labels", "urls", "run_info", "image_list"],
  },
  RunflowPoseToPrompt: {
    inputs: ["view", "angle", "shot"],
    outputs: ["lora_prompt", "camera_info", "pose"],
  },
};

const load = (lang, file) => JSON.parse(fs.readFileSync(path.join(ROOT, lang, file), "utf8"));

/** Every leaf path of an object, e.g. "picker.views.front view". */
function leaves(obj, prefix = "") {
  return Object.entries(obj).flatMap(([k, v]) =>
    v && typeof v === "object" ? leaves(v, `${prefix}${k}.`) : [[`${prefix}${k}`, v]],
  );
}

// Runflow's deploy pack (runflow-io/ComfyUI-Runflow) registers these ids as plain text settings; translations are
// looked up by id, so ours must not claim anything about storage for them (see registerSettings).

const placeholders = (text) => [...String(text).matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe("locale files", () => {
  for (const lang of LANGS) {
    test(`${lang}: all files exist and parse`, () => {
      for (const file of FILES) assert.doesNotThrow(() => load(lang, file), `${lang}/${file}`);
    });
  }

  test("en/main.json carries exactly the built-in English UI text", () => {
    assert.deepEqual(load("en", "main.json").runflowMultiAngles, JSON.parse(JSON.stringify(EN)));
  });

  test("en/settings.json and en/commands.json match the extension's own text", () => {
    const settings = load("en", "settings.json");
    for (const [key, text] of Object.entries(SETTING_TEXT)) {
      const id = `Runflow_MultiAngles_${key}`;
      assert.deepEqual(settings[id], { name: text.name, tooltip: text.tooltip }, id);
    }
    // Never a Runflow_<Key> entry: Runflow's own deploy pack owns Runflow.ApiKey / Runflow.ApiUrl.
    for (const id of Object.keys(settings)) assert.ok(id.startsWith("Runflow_MultiAngles_"), id);
    const commands = load("en", "commands.json");
    for (const [id, text] of Object.entries(COMMAND_TEXT)) assert.deepEqual(commands[id.replaceAll(".", "_")], text);
  });

  for (const lang of TRANSLATED) {
    describe(lang, () => {
      test("main.json: same keys and placeholders as the English UI text", () => {
        const ui = load(lang, "main.json").runflowMultiAngles;
        const want = new Map(leaves(JSON.parse(JSON.stringify(EN))));
        const got = new Map(leaves(ui));
        assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
        for (const [key, text] of got) {
          assert.equal(typeof text, "string", key);
          assert.ok(text.trim(), `${key} is empty`);
          assert.deepEqual(placeholders(text), placeholders(want.get(key)), key);
        }
        const cats = load(lang, "main.json").settingsCategories;
        for (const c of ["Runflow", "Connection", "Multi Angles"]) assert.ok(cats[c], c);
      });

      test("nodeDefs.json: every input, output and combo option of both nodes", () => {
        const defs = load(lang, "nodeDefs.json");
        for (const [node, spec] of Object.entries(NODES)) {
          const d = defs[node];
          assert.ok(d?.display_name && d?.description, node);
          assert.deepEqual(Object.keys(d.inputs).sort(), [...spec.inputs].sort(), node);
          for (const [name, entry] of Object.entries(d.inputs)) {
            assert.ok(entry.name && entry.tooltip, `${node}.${name}`);
          }
          assert.deepEqual(
            Object.keys(d.outputs),
            spec.outputs.map((_, i) => String(i)),
          );
          for (const out of Object.values(d.outputs)) assert.ok(out.name && out.tooltip);
          // Option labels are keyed by the exact API value, which is what gets serialized.
          assert.deepEqual(Object.keys(d.inputs.angle.options), [...ANGLES]);
          assert.deepEqual(Object.keys(d.inputs.shot.options), [...SHOTS]);
          if (d.inputs.view) assert.deepEqual(Object.keys(d.inputs.view.options), [...VIEWS]);
          const labels = Object.values(d.inputs.angle.options);
          assert.equal(new Set(labels).size, labels.length, "distinct labels");
        }
      });

      test("settings.json and commands.json: every id", () => {
        const settings = load(lang, "settings.json");
        for (const key of Object.keys(SETTING_TEXT)) {
          const id = `Runflow_MultiAngles_${key}`;
          assert.ok(settings[id]?.name && settings[id]?.tooltip, id);
        }
        for (const id of Object.keys(settings)) assert.ok(id.startsWith("Runflow_MultiAngles_"), id);
        const commands = load(lang, "commands.json");
        for (const id of Object.keys(COMMAND_TEXT)) assert.ok(commands[id.replaceAll(".", "_")]?.label, id);
      });

      test("short picker labels fit the picker without overlapping", () => {
        const p = load(lang, "main.json").runflowMultiAngles.picker;
        for (const [w, h] of [
          [352, 196],
          [300, 190],
        ]) {
          const L = computeLayout(w, h, { views: p.views, angles: p.angles, shots: p.shots });
          const boxes = [
            ...L.views.map((v) => ({ name: v.view, ...v.label.box })),
            ...L.elevation.angles.map((a) => ({ name: a.angle, ...a.label.box })),
            ...L.orbit.rings.map((r) => ({ name: `ring ${r.shot}`, ...r.label.box })),
          ];
          for (const b of boxes) {
            assert.ok(b.x >= 0 && b.x + b.w <= w && b.y >= 0 && b.y + b.h <= h, `${b.name} out of bounds at ${w}×${h}`);
          }
          for (let i = 0; i < boxes.length; i++) {
            for (let j = i + 1; j < boxes.length; j++) {
              const a = boxes[i];
              const b = boxes[j];
              const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
              assert.ok(!overlap, `${a.name} overlaps ${b.name}`);
            }
          }
        }
      });
    });
  }

  test("text the frontend compiles has no vue-i18n syntax characters", () => {
    // nodeDefs/settings/commands strings go through vue-i18n's message compiler: { } @ | would be parsed.
    for (const lang of LANGS) {
      for (const file of ["nodeDefs.json", "settings.json", "commands.json"]) {
        for (const [key, text] of leaves(load(lang, file))) {
          assert.ok(!/[{}@|]/.test(String(text)), `${lang}/${file} ${key}: ${text}`);
        }
      }
      for (const [key, text] of leaves(load(lang, "main.json"))) {
        assert.ok(!/[@|]/.test(String(text).replace(/\{\w+\}/g, "")), `${lang}/main.json ${key}`);
        assert.ok(!/[{}]/.test(String(text).replace(/\{\w+\}/g, "")), `${lang}/main.json ${key}: stray brace`);
      }
    }
  });
});
