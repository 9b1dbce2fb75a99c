"""The free RunflowPoseToPrompt node: contract, exact outputs, and that its outputs read back as the same pose."""

import itertools
import json

import pytest

from nodes.comfy.pose_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, RunflowPoseToPrompt
from nodes.core.pose import Pose, parse_pose
from nodes.runflow import errors as E
from nodes.runflow.contract import ANGLES, DEFAULT_ANGLE, DEFAULT_SHOT, DEFAULT_VIEW, SHOTS, VIEWS


def test_contract():
    assert NODE_CLASS_MAPPINGS == {"RunflowPoseToPrompt": RunflowPoseToPrompt}
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == {"RunflowPoseToPrompt"}
    req = RunflowPoseToPrompt.INPUT_TYPES()["required"]
    assert list(req) == ["view", "angle", "shot"]
    assert (req["view"][0], req["angle"][0], req["shot"][0]) == (list(VIEWS), list(ANGLES), list(SHOTS))
    assert [req[k][1]["default"] for k in req] == [DEFAULT_VIEW, DEFAULT_ANGLE, DEFAULT_SHOT]
    assert RunflowPoseToPrompt.RETURN_TYPES == ("STRING", "LOAD3D_CAMERA", "STRING")
    assert RunflowPoseToPrompt.RETURN_NAMES == ("lora_prompt", "camera_info", "pose")
    assert len(RunflowPoseToPrompt.OUTPUT_TOOLTIPS) == 3


def test_default_pose_outputs():
    node = RunflowPoseToPrompt()
    prompt, camera, pose = getattr(node, node.FUNCTION)(DEFAULT_VIEW, DEFAULT_ANGLE, DEFAULT_SHOT)
    assert prompt == "<sks> right side view eye-level shot medium shot"
    assert json.loads(pose) == {"view": "right side view", "angle": "eye-level shot", "shot": "medium shot"}
    # ComfyUI's Load3DCamera.CameraInfo shape, as the Qwen Multiangle Camera node builds it (zoom 4 -> distance 1.8)
    assert set(camera) == {"position", "target", "zoom", "cameraType"}
    assert camera["target"] == {"x": 0.0, "y": 0.5, "z": 0.0} and camera["cameraType"] == "perspective"
    assert camera["position"]["x"] == pytest.approx(1.8) and camera["position"]["y"] == pytest.approx(0.5)
    json.dumps(camera)  # travels through the UI as JSON


@pytest.mark.parametrize("view, angle, shot", list(itertools.product(VIEWS, ANGLES, SHOTS)))
def test_outputs_read_back_as_the_same_pose(view, angle, shot):
    prompt, camera, pose = RunflowPoseToPrompt().execute(view, angle, shot)
    want = Pose(view, angle, shot)
    assert {parse_pose(prompt).pose, parse_pose(camera).pose, parse_pose(pose).pose} == {want}


def test_a_stale_combo_value_is_refused_with_the_valid_words():
    with pytest.raises(E.InputError, match="view 'side view' is not one of Runflow's values: front view"):
        RunflowPoseToPrompt().execute("side view", DEFAULT_ANGLE, DEFAULT_SHOT)


def test_node_pose_wiring_helper():
    from nodes.comfy.pose_nodes import node_pose
    assert node_pose("back view", "elevated shot", "close-up").pose == Pose("back view", "elevated shot", "close-up")
    reading = node_pose("back view", "elevated shot", "close-up", pose="<sks> left side view")
    assert reading.pose == Pose("left side view", "elevated shot", "close-up")
    assert reading.note == "angle, shot from the node's widgets"
    camera = RunflowPoseToPrompt().execute("front view", "low-angle shot", "wide shot")[1]
    assert node_pose(DEFAULT_VIEW, DEFAULT_ANGLE, DEFAULT_SHOT, camera_info=camera).pose == Pose(
        "front view", "low-angle shot", "wide shot")
    with pytest.raises(E.InputError, match="both pose and camera_info"):
        node_pose(DEFAULT_VIEW, DEFAULT_ANGLE, DEFAULT_SHOT, pose="back view", camera_info=camera)


def test_turnaround_poses_wiring_helper():
    from nodes.comfy.pose_nodes import turnaround_poses
    readings = turnaround_poses(["front view", "back view"], "eye-level shot", "wide shot")
    assert [r.pose.view for r in readings] == ["front view", "back view"]
    listed = turnaround_poses(list(VIEWS), "eye-level shot", "wide shot",
                              poses="<sks> back view high-angle shot close-up\nleft side view")
    assert [r.pose for r in listed] == [Pose("back view", "high-angle shot", "close-up"),
                                        Pose("left side view", "eye-level shot", "wide shot")]
    with pytest.raises(E.InputError, match="not one camera"):
        turnaround_poses(list(VIEWS), "eye-level shot", "wide shot", poses={"position": [0, 0, 1], "target": [0, 0, 0]})
