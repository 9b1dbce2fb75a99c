"""One contract, three languages: the exact API strings in Python, in the web widget's JS and in the locales agree
with each other and with the model page (saved workflows store them, so none may drift)."""

import json
import re
from pathlib import Path

import pytest

from nodes.comfy.nodes import NODE_CLASS_MAPPINGS
from nodes.runflow.contract import ANGLES, ASPECT_RATIOS, SHOTS, VIEWS

ROOT = Path(__file__).resolve().parent.parent
MODEL_PAGE = ROOT.parent / "shared" / "reference" / "multi-angles-model-page.txt"


def js_array(name: str) -> list[str]:
    source = (ROOT / "web" / "pose_math.js").read_text()
    match = re.search(rf"export const {name} = Object\.freeze\(\[(.*?)\]\)", source, re.S)
    assert match, f"{name} not found in web/pose_math.js"
    return re.findall(r'"([^"]+)"', match.group(1))


def test_js_vocabularies_equal_python():
    assert js_array("VIEWS") == list(VIEWS)
    assert js_array("ANGLES") == list(ANGLES)
    assert js_array("SHOTS") == list(SHOTS)


@pytest.mark.skipif(not MODEL_PAGE.exists(), reason="the model page is kept beside the repo, not in it")
def test_python_strings_are_the_model_pages():
    page = MODEL_PAGE.read_text()
    for group in (VIEWS, ANGLES, SHOTS, ASPECT_RATIOS):
        assert ", ".join(group) in page


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
    assert list(options["view"]["options"]) == list(VIEWS)
    assert list(options["angle"]["options"]) == list(ANGLES)
    assert list(options["shot"]["options"]) == list(SHOTS)
