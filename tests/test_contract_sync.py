"""One contract, three languages: every constant the web code repeats (views, angles, shots, aspect ratios, defaults,
price, the azimuth/elevation/distance tables, the cost-line wording and what its arguments mean) equals the Python
source, evaluated by running the real JS module in Node; the locales translate labels, never values; and the Python
strings are the model page's (saved workflows store them, so none may drift)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nodes.comfy.nodes import NODE_CLASS_MAPPINGS
from nodes.core.spend import cost_line, format_usd
from nodes.runflow import contract as C

ROOT = Path(__file__).resolve().parent.parent
MODEL_PAGE = ROOT.parent / "shared" / "reference" / "multi-angles-model-page.txt"
COST_CASES = [(0, 0), (1, 0), (2, 0), (7, 0), (8, 0), (5, 3), (0, 8), (1, 1), (32, 0)]
USD_CASES = [0, 0.2, 1.6, 0.035, 0.105, 12.5, 1.4000000000000001]

JS = """
import * as M from "./web/pose_math.js";
const cases = JSON.parse(process.argv[1]);
console.log(JSON.stringify({
  VIEWS: M.VIEWS, ANGLES: M.ANGLES, SHOTS: M.SHOTS, ASPECT_RATIOS: M.ASPECT_RATIOS ?? null, DEFAULTS: M.DEFAULTS,
  PRICE_PER_RUN_USD: M.PRICE_PER_RUN_USD, VIEW_AZIMUTH: M.VIEW_AZIMUTH, ANGLE_ELEVATION: M.ANGLE_ELEVATION,
  SHOT_DISTANCE: M.SHOT_DISTANCE,
  cost: cases.cost.map(([runs, cached]) => M.costLine(runs, cached)),
  usd: cases.usd.map((v) => M.formatUsd(v)),
}));
"""


@pytest.fixture(scope="module")
def js() -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node 20 is needed for the contract test (the web code is JS)")
    args = json.dumps({"cost": COST_CASES, "usd": USD_CASES})
    out = subprocess.run([node, "--input-type=module", "-e", JS, args], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def test_js_vocabularies_equal_python(js):
    assert js["VIEWS"] == list(C.VIEWS)
    assert js["ANGLES"] == list(C.ANGLES)
    assert js["SHOTS"] == list(C.SHOTS)
    if js["ASPECT_RATIOS"] is not None:
        assert js["ASPECT_RATIOS"] == list(C.ASPECT_RATIOS)


def test_js_defaults_price_and_pose_tables_equal_python(js):
    assert js["DEFAULTS"] == {"view": C.DEFAULT_VIEW, "angle": C.DEFAULT_ANGLE, "shot": C.DEFAULT_SHOT}
    assert js["PRICE_PER_RUN_USD"] == C.PRICE_PER_RUN_USD
    assert js["VIEW_AZIMUTH"] == C.VIEW_AZIMUTH
    assert js["ANGLE_ELEVATION"] == C.ANGLE_ELEVATION
    assert js["SHOT_DISTANCE"] == C.SHOT_DISTANCE


def test_cost_line_says_the_same_with_the_same_arguments(js):
    """costLine(runs, cached) in JS and cost_line(runs, cached) in Python: runs = billable runs, cached = hits."""
    assert js["cost"] == [cost_line(r, c) for r, c in COST_CASES]
    assert js["usd"] == [format_usd(v) for v in USD_CASES]
    assert cost_line(5, 3) == "5 runs × $0.20 = $1.00 (3 from cache: $0.00)"


@pytest.mark.skipif(not MODEL_PAGE.exists(), reason="the model page is kept beside the repo, not in it")
def test_python_strings_are_the_model_pages():
    page = MODEL_PAGE.read_text()
    for group in (C.VIEWS, C.ANGLES, C.SHOTS, C.ASPECT_RATIOS):
        assert ", ".join(group) in page
    assert f"${C.PRICE_PER_RUN_USD:g}/request" in page and C.RUNS_PATH in page


@pytest.mark.parametrize("lang", ["en", "zh", "ja", "ko"])
def test_locales_translate_labels_not_values(lang):
    defs = json.loads((ROOT / "locales" / lang / "nodeDefs.json").read_text())
    for node in ("RunflowMultiAngles", "RunflowMultiAnglesTurnaround"):
        assert node in defs and defs[node].get("display_name")
        inputs = set(NODE_CLASS_MAPPINGS[node].INPUT_TYPES()["required"]) | set(
            NODE_CLASS_MAPPINGS[node].INPUT_TYPES()["optional"])
        assert set(defs[node].get("inputs", {})) <= inputs, "a locale names an input the node does not have"
    options = defs["RunflowMultiAngles"]["inputs"]
    if lang == "en":  # English shows the API strings themselves: no labels to keep in sync
        assert all("options" not in options[k] for k in ("view", "angle", "shot"))
        return
    assert list(options["view"]["options"]) == list(C.VIEWS)
    assert list(options["angle"]["options"]) == list(C.ANGLES)
    assert list(options["shot"]["options"]) == list(C.SHOTS)
