"""Issue 13 in a real ComfyUI, through the API with graphs: a LOAD3D_CAMERA from ComfyUI's own Load3D and from
RunflowPoseToPrompt, a pose string link, the Turnaround's pose list, re-roll billing, and the ledger across a
restart against the sandbox's own billing record. Skipped when COMFYUI_DIR is unset."""

from __future__ import annotations

import json

import pytest
from comfy_tier import COMFYUI_DIR, SKIP_REASON, assert_success
from test_comfyui import Delta, load_image, multi_angles, source_png, turnaround

pytestmark = [pytest.mark.comfyui, pytest.mark.skipif(not COMFYUI_DIR, reason=SKIP_REASON)]

# ComfyUI's Load3D widget value (LOAD_3D): the frontend's captured images plus camera_info (three.js, Y up);
# this camera is behind the model, a little to its left, slightly above: azimuth ~203 degrees, elevation ~8,
# 8.1 units out.
LOAD3D_CAMERA = {"position": {"x": -3.1, "y": 1.2, "z": -7.4}, "target": {"x": 0, "y": 0, "z": 0}, "zoom": 1,
                 "cameraType": "perspective"}


def pose_to_prompt(view, angle="eye-level shot", shot="medium shot") -> dict:
    return {"class_type": "RunflowPoseToPrompt", "inputs": {"view": view, "angle": angle, "shot": shot}}


def sent(sandbox, d: Delta) -> list[tuple[str, str, str]]:
    return [(sandbox.runs[i]["input"]["view"], sandbox.runs[i]["input"]["angle"], sandbox.runs[i]["input"]["shot"])
            for i in d.new_ids()]


def runflow_ui(entry: dict, node_id: str) -> dict:
    return entry["outputs"][node_id]["runflow"][0]


def test_load3d_camera_and_string_links_set_the_pose(comfy, rf_sandbox, good_settings):
    name = comfy.upload("peers_pose.png", source_png("peers pose"))
    (comfy.in_dir / "3d").mkdir(exist_ok=True)
    (comfy.in_dir / "3d" / "peers_box.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    load3d = {"class_type": "Load3D", "inputs": {
        "model_file": "3d/peers_box.obj", "width": 512, "height": 512,
        "image": {"image": name, "mask": name, "normal": name, "lineart": name, "recording": "",
                  "camera_info": LOAD3D_CAMERA}}}
    graph = {"1": load_image(name), "2": load3d,
             "3": {**multi_angles(["1", 0]), "inputs": {**multi_angles(["1", 0])["inputs"], "camera_info": ["2", 5]}},
             "4": pose_to_prompt("front view", "high-angle shot", "close-up"),
             "5": {**multi_angles(["1", 0]), "inputs": {**multi_angles(["1", 0])["inputs"], "pose": ["4", 0]}},
             "6": {**multi_angles(["1", 0]), "inputs": {**multi_angles(["1", 0])["inputs"], "camera_info": ["4", 1]}},
             "7": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
             "8": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
             "9": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}}
    d = Delta(rf_sandbox)
    entry, _, _ = comfy.run(graph)
    assert_success(entry)
    # node 5 (LoRA prompt) and node 6 (our camera_info) name the same pose: one run, the other from the cache
    # the Load3D camera is 8.1 units out: far on the picker's distance scale = wide shot (said in the note)
    assert sorted(set(sent(rf_sandbox, d))) == [("back-left quarter view", "eye-level shot", "wide shot"),
                                                ("front view", "high-angle shot", "close-up")]
    assert d.runs == 2, d.runs
    notes = runflow_ui(entry, "3")["notes"]
    assert any(n.startswith("pose used: back-left quarter view · eye-level shot · wide shot (3D camera:")
               for n in notes), notes


def test_turnaround_pose_list_and_reroll_bill_exactly_what_they_say(comfy, rf_sandbox, good_settings):
    name = comfy.upload("peers_reroll.png", source_png("peers reroll"))
    poses = "\n".join(["<sks> front view eye-level shot medium shot", "back view, low-angle shot, wide shot",
                       json.dumps({"horizontal_angle": 90, "vertical_angle": 40, "zoom": 7})])
    lines = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": poses}}
    turn = turnaround(["1", 0])
    turn["inputs"]["pose"] = ["2", 0]
    graph = {"1": load_image(name), "2": lines, "3": turn,
             "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    d = Delta(rf_sandbox)
    entry, _, _ = comfy.run(graph)
    assert_success(entry)
    assert sorted(sent(rf_sandbox, d)) == [("back view", "low-angle shot", "wide shot"),
                                           ("front view", "eye-level shot", "medium shot"),
                                           ("right side view", "elevated shot", "close-up")]
    # re-roll the back view: exactly one new billable run
    rf_sandbox.reset_stats()
    graph["3"]["inputs"].update(reroll="back view", take=1)
    d = Delta(rf_sandbox)
    entry, _, _ = comfy.run(graph)
    assert_success(entry)
    assert sent(rf_sandbox, d) == [("back view", "low-angle shot", "wide shot")]
    assert rf_sandbox.billable_runs() == 1
    ui = runflow_ui(entry, "3")
    assert ui["receipt"].startswith("receipt: Runflow billed $0.20 for 1 run · 2 from cache $0.00"), ui
    assert any(n.startswith("re-roll back view (take 1)") for n in ui["notes"]), ui["notes"]
    # back to the original take: free
    graph["3"]["inputs"].update(take=0)
    d = Delta(rf_sandbox)
    assert_success(comfy.run(graph)[0])
    assert d.runs == 0


def test_ledger_survives_a_restart_and_matches_the_sandbox(comfy, rf_sandbox, good_settings, figures):
    name = comfy.upload("peers_ledger.png", source_png("peers ledger"))
    graph = {"1": load_image(name), "2": turnaround(["1", 0], views="front view, left side view"),
             "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    before = comfy.get("/runflow/ledger").json()
    d = Delta(rf_sandbox)
    assert_success(comfy.run(graph)[0])
    after = comfy.get("/runflow/ledger").json()
    billed = sum(float(rf_sandbox.runs[i]["cost"]) for i in d.new_ids())
    assert d.runs == 2 and billed == pytest.approx(0.40)
    assert after["all"]["billed_usd"] - before["all"]["billed_usd"] == pytest.approx(billed)
    assert after["today"]["runs"] - before["today"]["runs"] == 2
    csv_text = comfy.get("/runflow/ledger.csv").text
    assert all(i in csv_text for i in d.new_ids())
    seconds = comfy.restart()
    figures["ledger: ComfyUI restart"] = f"{seconds:.1f} s"
    assert comfy.get("/runflow/ledger").json()["all"] == after["all"]
    graph["3"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    assert_success(comfy.run(graph)[0])  # ComfyUI's own cache is gone after the restart: the pack's cache answers
    again = comfy.get("/runflow/ledger").json()["all"]
    assert again["billed_usd"] == pytest.approx(after["all"]["billed_usd"])
    assert again["cache_hits"] == after["all"]["cache_hits"] + 2
    assert str(comfy.user_dir) not in json.dumps(again)
