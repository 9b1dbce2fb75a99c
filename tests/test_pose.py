"""Pose reading against what the peers really emit, round trips for all 96 poses, thresholds, error messages.

Peer sources (see nodes/core/pose.py): jtydhr88/ComfyUI-qwenmultiangle nodes.py + README.md (0.4.1 c264343,
0.6.1 6f93d9b as carried by the fork ethanfel/ComfyUI-qwenmultiangle); Comfy-Org/ComfyUI PR #16251
comfy_extras/nodes_camera_angle.py and its tests; ComfyUI's Load3DCamera.CameraInfo (comfy_api/latest/_io.py).
"""

import itertools
import json
import math

import pytest

from nodes.core.pose import (
    ANGLE_VERTICAL,
    SHOT_ZOOM,
    VIEW_HORIZONTAL,
    Pose,
    angle_of,
    parse_pose,
    parse_pose_list,
    shot_of,
    to_camera_info,
    to_json,
    to_lora_prompt,
    to_numeric,
    view_of,
)
from nodes.runflow.contract import ANGLES, SHOTS, VIEWS
from nodes.runflow.errors import InputError

ALL = [Pose(v, a, s) for v, a, s in itertools.product(VIEWS, ANGLES, SHOTS)]
NODE = Pose("right side view", "eye-level shot", "medium shot")


# ---- literal values the peers emit ---------------------------------------------------------------------------------

# jtydhr88/ComfyUI-qwenmultiangle README.md "Output Prompt Format" examples, verbatim.
README_PROMPTS = {
    "<sks> front view eye-level shot medium shot": Pose("front view", "eye-level shot", "medium shot"),
    "<sks> right side view high-angle shot close-up": Pose("right side view", "high-angle shot", "close-up"),
    "<sks> back-left quarter view low-angle shot wide shot": Pose("back-left quarter view", "low-angle shot",
                                                                  "wide shot"),
}


@pytest.mark.parametrize("text, pose", README_PROMPTS.items())
def test_the_peer_readme_prompts(text, pose):
    reading = parse_pose(text)
    assert reading.pose == pose and reading.form == "words" and not reading.snapped and reading.note == ""
    assert to_lora_prompt(pose) == text


# Comfy-Org/ComfyUI PR #16251 tests (describe_camera_angle): the core node's prompt is the triple without <sks>.
@pytest.mark.parametrize("text, pose", [
    ("front view low-angle shot wide shot", Pose("front view", "low-angle shot", "wide shot")),
    ("front view eye-level shot medium shot", Pose("front view", "eye-level shot", "medium shot")),
    ("front view elevated shot close-up", Pose("front view", "elevated shot", "close-up")),
    ("front view high-angle shot close-up", Pose("front view", "high-angle shot", "close-up")),
])
def test_the_core_camera_angle_prompts(text, pose):
    assert parse_pose(text).pose == pose


# camera_info from qwenmultiangle 0.6.x _build_camera_info(h, v, zoom), evaluated for these controls.
PEER_CAMERAS = [
    ((0, 0, 5.0), {"position": {"x": 0.0, "y": 0.5, "z": 1.6}, "target": {"x": 0.0, "y": 0.5, "z": 0.0},
                   "zoom": 1, "cameraType": "perspective"}),
    ((90, 0, 5.0), {"position": {"x": 1.6, "y": 0.5, "z": 9.797174393178826e-17},
                    "target": {"x": 0.0, "y": 0.5, "z": 0.0}, "zoom": 1, "cameraType": "perspective"}),
    ((100, -16, 5.0), {"position": {"x": 1.5146527533339522, "y": 0.05898023069280134, "z": -0.2670741468171391},
                       "target": {"x": 0.0, "y": 0.5, "z": 0.0}, "zoom": 1, "cameraType": "perspective"}),
    ((45, 30, 8.0), {"position": {"x": 0.6123724356957945, "y": 1.0, "z": 0.6123724356957946},
                     "target": {"x": 0.0, "y": 0.5, "z": 0.0}, "zoom": 1, "cameraType": "perspective"}),
    ((270, -30, 1.0), {"position": {"x": -2.078460969082653, "y": -0.6999999999999997, "z": -3.8180708594096647e-16},
                       "target": {"x": 0.0, "y": 0.5, "z": 0.0}, "zoom": 1, "cameraType": "perspective"}),
    # one hair below each threshold, then on it (22 | 23, 14 | 15, 1.9 | 2.0)
    ((22, 14, 1.9), {"position": {"x": 0.8069237721103178, "y": 1.0370666082312625, "z": 1.997206420059335},
                     "target": {"x": 0.0, "y": 0.5, "z": 0.0}, "zoom": 1, "cameraType": "perspective"}),
    ((23, 15, 2.0), {"position": {"x": 0.8303180339142961, "y": 1.0694018992255456, "z": 1.9561067045831217},
                     "target": {"x": 0.0, "y": 0.5, "z": 0.0}, "zoom": 1, "cameraType": "perspective"}),
]


# What the peer's generate_prompt if/elif chain says for the same controls (worked by hand from nodes.py).
PEER_WORDS = {
    (0, 0, 5.0): Pose("front view", "eye-level shot", "medium shot"),
    (90, 0, 5.0): Pose("right side view", "eye-level shot", "medium shot"),
    (100, -16, 5.0): Pose("right side view", "low-angle shot", "medium shot"),
    (45, 30, 8.0): Pose("front-right quarter view", "elevated shot", "close-up"),
    (270, -30, 1.0): Pose("left side view", "low-angle shot", "wide shot"),
    (22, 14, 1.9): Pose("front view", "eye-level shot", "wide shot"),
    (23, 15, 2.0): Pose("front-right quarter view", "elevated shot", "medium shot"),
}


@pytest.mark.parametrize("controls, camera", PEER_CAMERAS)
def test_peer_camera_info_reads_as_the_prompt_the_peer_emitted_with_it(controls, camera):
    reading = parse_pose(camera)
    assert reading.form == "camera"
    assert reading.pose == PEER_WORDS[controls]
    assert reading.note.startswith("qwenmultiangle camera_info")
    # the same controls as JSON numbers give the same pose
    h, v, z = controls
    assert parse_pose(json.dumps({"horizontal_angle": h, "vertical_angle": v, "zoom": z})).pose == reading.pose


def test_peer_camera_snaps_only_off_the_presets():
    assert not parse_pose(PEER_CAMERAS[3][1]).snapped  # (45, 30, 8.0) is the peer's own preset for that pose
    note = parse_pose(PEER_CAMERAS[2][1]).note
    assert note == ("qwenmultiangle camera_info: snapped horizontal_angle 100° -> right side view, "
                    "vertical_angle -16° -> low-angle shot, zoom 5 -> medium shot")


# Comfy-Org/ComfyUI PR #16251: build_camera_info(0, 0, 0) is at (0, 0, SUBJECT_DISTANCE=6) looking at the origin with
# zoom 1.0; build_camera_info(90, 30, 10) at (6 cos 30, 6 sin 30, 0) with zoom MAX_ZOOM_FACTOR 1.875.
def test_core_camera_angle_camera_info():
    front = {"position": {"x": 0.0, "y": 0.0, "z": 6.0}, "target": {"x": 0.0, "y": 0.0, "z": 0.0}, "zoom": 1.0,
             "cameraType": "perspective"}
    side = {"position": {"x": 6 * math.cos(math.radians(30)), "y": 3.0, "z": 0.0},
            "target": {"x": 0.0, "y": 0.0, "z": 0.0}, "zoom": 1.875, "cameraType": "perspective"}
    assert parse_pose(front).pose == Pose("front view", "eye-level shot", "wide shot")
    assert parse_pose(side).pose == Pose("right side view", "elevated shot", "close-up")
    assert parse_pose(side).note.startswith("CameraAngle camera_info")


def test_a_load3d_camera_reads_its_direction_and_says_how_it_read_the_distance():
    # Load3D: any scene units; extra keys (e.g. the splat nodes' quaternion) are ignored
    cam = {"position": {"x": -10, "y": 0, "z": 0}, "target": {"x": 0, "y": 0, "z": 0}, "zoom": 1,
           "cameraType": "orthographic", "quaternion": [0, 0, 0, 1]}
    reading = parse_pose(cam)
    assert reading.pose == Pose("left side view", "eye-level shot", "wide shot")
    assert reading.snapped and "3D camera" in reading.note and "clamped" in reading.note
    below = dict(cam, position={"x": 0, "y": -5, "z": 1})  # steeper than the picker's -30 .. 60
    assert parse_pose(below).pose.angle == "low-angle shot" and "clamped" in parse_pose(below).note
    listed = {"position": [0, 5, 5], "target": [0, 0, 0]}  # [x, y, z] lists also accepted; no zoom = 1
    assert parse_pose(listed).pose == Pose("front view", "high-angle shot", "wide shot")


# ---- round trips for all 96 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pose", ALL, ids=str)
def test_round_trips(pose):
    for value, form in ((to_lora_prompt(pose), "words"), (to_json(pose), "json-words"),
                        (json.dumps(to_numeric(pose)), "numeric"), (to_camera_info(pose), "camera")):
        reading = parse_pose(value)
        assert (reading.pose, reading.form, reading.snapped) == (pose, form, False), value
    assert parse_pose(f"{pose.view}, {pose.angle}, {pose.shot}").pose == pose
    assert parse_pose(f"  {pose.view.upper()}\n{pose.angle.replace('-', ' ')}\n\n{pose.shot}  ").pose == pose


def test_all_96_are_distinct_and_the_reverse_matches_the_peer_presets():
    assert len({to_lora_prompt(p) for p in ALL}) == 96
    assert to_numeric(NODE) == {"horizontal_angle": 90, "vertical_angle": 0, "zoom": 4.0}
    assert VIEW_HORIZONTAL["front-left quarter view"] == 315 and ANGLE_VERTICAL["high-angle shot"] == 60
    assert SHOT_ZOOM == {"wide shot": 1.0, "medium shot": 4.0, "close-up": 8.0}  # ControlPanel.vue presets
    cam = to_camera_info(NODE)
    assert set(cam) == {"position", "target", "zoom", "cameraType"}  # Load3DCamera.CameraInfo keys
    assert cam["target"] == {"x": 0.0, "y": 0.5, "z": 0.0} and cam["zoom"] == 1
    assert cam["position"]["x"] == pytest.approx(2.6 - 0.8) and cam["position"]["z"] == pytest.approx(0)


# ---- the peer's thresholds -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("h, view", [(0, "front view"), (22, "front view"), (22.4, "front view"),
                                     (22.5, "front-right quarter view"), (67.4, "front-right quarter view"),
                                     (67.5, "right side view"), (112.5, "back-right quarter view"),
                                     (202.5, "back-left quarter view"), (292.4, "left side view"),
                                     (292.5, "front-left quarter view"), (337.4, "front-left quarter view"),
                                     (337.5, "front view"), (360, "front view")])
def test_horizontal_thresholds(h, view):
    assert view_of(h) == view


@pytest.mark.parametrize("v, angle", [(-30, "low-angle shot"), (-15.01, "low-angle shot"), (-15, "eye-level shot"),
                                      (14.99, "eye-level shot"), (15, "elevated shot"), (44.99, "elevated shot"),
                                      (45, "high-angle shot"), (60, "high-angle shot")])
def test_vertical_thresholds(v, angle):
    assert angle_of(v) == angle


@pytest.mark.parametrize("z, shot", [(0, "wide shot"), (1.99, "wide shot"), (2, "medium shot"), (5.99, "medium shot"),
                                     (6, "close-up"), (10, "close-up")])
def test_zoom_thresholds(z, shot):
    assert shot_of(z) == shot


def test_json_numbers_follow_the_peer_int_clamp_and_say_what_snapped():
    # the peer truncates with int(): 22.9 -> 22 -> front view, -15.9 -> -15 -> eye-level
    reading = parse_pose('{"horizontal_angle": 22.9, "vertical_angle": -15.9, "zoom": 1}')
    assert reading.pose == Pose("front view", "eye-level shot", "wide shot")
    assert "22.9 read as 22" in reading.note
    reading = parse_pose({"horizontal_angle": 100, "vertical_angle": 0, "zoom": 4})
    assert reading.pose == NODE and reading.snapped
    assert reading.note == "snapped horizontal_angle 100° -> right side view"
    clamped = parse_pose({"horizontal_angle": 400, "vertical_angle": 90, "zoom": 12})
    assert clamped.pose == Pose("front view", "high-angle shot", "close-up")
    assert "read as 360" in clamped.note and "read as 60" in clamped.note and "read as 10" in clamped.note


# ---- partial poses, lists ------------------------------------------------------------------------------------------

def test_parts_left_out_come_from_the_node_widgets_only_when_given():
    reading = parse_pose("back view", NODE)
    assert reading.pose == Pose("back view", "eye-level shot", "medium shot")
    assert reading.note == "angle, shot from the node's widgets"
    assert parse_pose('{"horizontal_angle": 180}', NODE).pose == Pose("back view", "eye-level shot", "medium shot")
    with pytest.raises(InputError, match="has no angle or shot"):
        parse_pose("back view")


def test_pose_list():
    text = ("# turnaround\n<sks> front view eye-level shot medium shot\n\nback view, low-angle shot, wide shot\n"
            '{"horizontal_angle": 90, "vertical_angle": 0, "zoom": 4}\n<sks> front view eye-level shot medium shot\n')
    poses = [r.pose for r in parse_pose_list(text)]
    assert poses == [Pose("front view", "eye-level shot", "medium shot"),
                     Pose("back view", "low-angle shot", "wide shot"), NODE]
    assert [r.pose for r in parse_pose_list(json.dumps([to_lora_prompt(NODE), to_numeric(ALL[0])]))] == [NODE, ALL[0]]
    assert [r.pose.view for r in parse_pose_list("front view\nback view", NODE)] == ["front view", "back view"]
    with pytest.raises(InputError, match="pose list line 2"):
        parse_pose_list("front view eye-level shot medium shot\nsideways")
    with pytest.raises(InputError, match="pose list is empty"):
        parse_pose_list("# nothing\n\n")


# ---- errors --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("", "pose is empty"),
    ("<sks> right side view eye-level shot medium shot please", "'please' is not a view, angle or shot word"),
    ("front view back view eye-level shot medium shot", "names two views"),
    ("{not json", "looks like JSON but does not parse"),
    ('{"horizontal_angle": "ninety", "vertical_angle": 0, "zoom": 5}', "horizontal_angle must be a number"),
    ('{"horizontal_angle": 90, "zoom": 5}', "no vertical_angle"),
    ('{"view": "sideways", "angle": "eye-level shot", "shot": "close-up"}', "JSON view 'sideways' is not one of"),
    ('{"colour": "red"}', "keys: colour"),
    ({"position": {"x": 1, "y": 2}, "target": {"x": 0, "y": 0, "z": 0}}, "camera_info.position must be"),
    ({"position": {"x": 0, "y": 0, "z": 0}, "target": {"x": 0, "y": 0, "z": 0}}, "sits on its target"),
    (42, "must be text or a camera_info"),
])
def test_errors_say_what_is_wrong_and_what_is_accepted(value, message):
    with pytest.raises(InputError, match=message) as info:
        parse_pose(value)
    if "camera_info." not in message and "sits on" not in message and "JSON view" not in message:
        assert "accepted pose forms" in str(info.value)


def test_turnaround_lines_may_leave_out_angle_and_shot_but_not_the_view():
    fill = {"angle": "high-angle shot", "shot": "close-up"}
    poses = [r.pose for r in parse_pose_list("front view\nback view, low-angle shot\n", fill)]
    assert poses == [Pose("front view", "high-angle shot", "close-up"), Pose("back view", "low-angle shot", "close-up")]
    with pytest.raises(InputError, match="line 1 'wide shot' has no view"):
        parse_pose_list("wide shot", fill)
    with pytest.raises(InputError, match="line 1: JSON has zoom but no horizontal_angle"):
        parse_pose_list('{"zoom": 3}', fill)
    with pytest.raises(InputError, match="shot 'closeup' is not one of Runflow's values"):
        parse_pose("front view", {"shot": "closeup"})


def test_every_peer_control_value_through_its_camera_info_reads_as_its_prompt():
    # Each whole degree and every 0.1 of zoom the peer's sliders allow, through _build_camera_info's formula
    # (to_camera_info's angles_to_camera): float noise (15 -> 14.999999999999998) must not cross a threshold.
    from nodes.core.pose_camera import angles_to_camera
    controls = ([(h, 0, 5.0) for h in range(361)] + [(0, v, 5.0) for v in range(-30, 61)]
                + [(0, 0, z / 10) for z in range(101)])
    wrong = [c for c in controls if parse_pose(angles_to_camera(*c)).pose != Pose(view_of(c[0]), angle_of(c[1]),
                                                                                  shot_of(c[2]))]
    assert wrong == []
