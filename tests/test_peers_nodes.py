"""Issue 13 through the node classes over real HTTP to the sandbox: connected poses (the peers' real outputs),
re-roll (bills exactly the re-rolled views, earlier takes are free), and receipts (the ledger vs the sandbox's own
billing record, across a restart)."""

import asyncio
import csv
import io
import json

import httpx
import pytest

from nodes.comfy.nodes import (
    NODE_CLASS_MAPPINGS,
    NODE_DISPLAY_NAME_MAPPINGS,
    RunflowMultiAngles,
    RunflowMultiAnglesTurnaround,
)
from nodes.core.config import user_dir
from nodes.core.pose_camera import angles_to_camera
from nodes.core.spend import Ledger
from nodes.runflow import errors as E
from nodes.runflow.contract import VIEWS
from tests.test_nodes import KW, TKW, image
from tests.test_push_and_routes import server  # noqa: F401, F811 - the routes on a live aiohttp server

# What jtydhr88/ComfyUI-qwenmultiangle 0.6.1 really emits: its prompt string and its _build_camera_info dict
# (horizontal 90, vertical 0, zoom 5 -> "<sks> right side view eye-level shot medium shot", d = 2.6 - 1.0 = 1.6).
PEER_PROMPT = "<sks> back-left quarter view elevated shot close-up"
PEER_CAMERA = {"position": {"x": 1.6, "y": 0.5, "z": 9.797174393178826e-17}, "target": {"x": 0, "y": 0.5, "z": 0},
               "zoom": 1, "cameraType": "perspective"}
# ComfyUI's Load3D camera_info after orbiting a model (three.js OrbitControls, Y up): a little left of the back.
LOAD3D_CAMERA = {"position": {"x": -3.1, "y": 1.2, "z": -7.4}, "target": {"x": 0, "y": 0, "z": 0}, "zoom": 1,
                 "cameraType": "perspective"}


def single(**kw):
    return asyncio.run(RunflowMultiAngles().execute(**{**KW, **kw}))


def turnaround(**kw):
    return asyncio.run(RunflowMultiAnglesTurnaround().execute(**{**TKW, **kw}))


def sent(sandbox, info: str) -> list[dict]:
    return [sandbox.runs[i["run_id"]]["input"] for i in json.loads(info)]


def test_the_free_node_is_registered_and_the_new_inputs_are_optional():
    assert "RunflowPoseToPrompt" in NODE_CLASS_MAPPINGS and "RunflowPoseToPrompt" in NODE_DISPLAY_NAME_MAPPINGS
    opt = RunflowMultiAngles.INPUT_TYPES()["optional"]
    assert opt["pose"] == ("STRING", opt["pose"][1]) and opt["pose"][1]["forceInput"] is True
    assert opt["camera_info"][0] == "LOAD3D_CAMERA"
    topt = RunflowMultiAnglesTurnaround.INPUT_TYPES()["optional"]
    assert topt["pose"][1]["forceInput"] is True
    assert topt["reroll"][0] == "STRING" and topt["take"][0] == "INT" and topt["take"][1]["default"] == 0


def test_a_connected_peer_prompt_sets_the_pose_sent(sandbox_env):
    _, _, info = single(image=image(), pose=PEER_PROMPT)["result"]
    got = sent(sandbox_env, info)[0]
    assert (got["view"], got["angle"], got["shot"]) == ("back-left quarter view", "elevated shot", "close-up")
    row = json.loads(info)[0]
    assert row["pose"] == "back-left quarter view · elevated shot · close-up"
    assert row["pose_input"]["form"] == "words" and row["pose_input"]["snapped"] is False


def test_a_peer_camera_info_and_a_load3d_camera_are_snapped_and_said(sandbox_env):
    _, _, info = single(image=image(), camera_info=PEER_CAMERA)["result"]
    assert (sent(sandbox_env, info)[0]["view"], sent(sandbox_env, info)[0]["shot"]) == ("right side view",
                                                                                          "medium shot")
    _, _, info = single(image=image(), camera_info=LOAD3D_CAMERA)["result"]
    row = json.loads(info)[0]
    assert sent(sandbox_env, info)[0]["view"] == "back-left quarter view"  # azimuth ~203 degrees
    assert row["pose_input"]["form"] == "camera" and row["pose_input"]["snapped"] is True
    assert row["pose_input"]["note"]


def test_a_bad_pose_costs_nothing(sandbox_env):
    with pytest.raises(E.InputError, match="accepted pose forms"):
        single(image=image(), pose="sideways please")
    with pytest.raises(E.InputError, match="both pose and camera_info"):
        single(image=image(), pose=PEER_PROMPT, camera_info=PEER_CAMERA)
    with pytest.raises(E.InputError, match="pose is empty"):  # connected but empty: never silently the widgets
        single(image=image(), pose="")
    with pytest.raises(E.InputError, match="pose list is empty"):
        turnaround(image=image(), pose="\n# nothing\n")
    assert sandbox_env.created_runs == 0 and sandbox_env.uploads == 0


def test_a_pose_list_selects_the_turnaround_poses(sandbox_env):
    poses = "\n".join(["<sks> front view eye-level shot medium shot", "right side view, low-angle shot, wide shot",
                       json.dumps({"horizontal_angle": 180, "vertical_angle": 50, "zoom": 9}),
                       json.dumps(angles_to_camera(270, 0, 5))])
    _, labels, _, info, _ = turnaround(image=image(), pose=poses)["result"]
    assert labels == ["front view", "right side view", "back view", "left side view"]
    got = [(s["view"], s["angle"], s["shot"]) for s in sent(sandbox_env, info)]
    assert got == [("front view", "eye-level shot", "medium shot"), ("right side view", "low-angle shot", "wide shot"),
                   ("back view", "high-angle shot", "close-up"), ("left side view", "eye-level shot", "medium shot")]
    assert sandbox_env.created_runs == 4


def test_reroll_bills_exactly_the_rerolled_views_and_earlier_takes_are_free(sandbox_env):
    turnaround(image=image())
    assert sandbox_env.billable_runs() == 8
    sandbox_env.reset_stats()
    # re-roll the back view: one run, the 7 others from the cache
    _, labels, _, info, _ = turnaround(image=image(), reroll="back view", take=1)["result"]
    assert labels == list(VIEWS)
    assert sandbox_env.created_runs == 1 and sandbox_env.billable_runs() == 1
    rows = {r["label"]: r for r in json.loads(info)}
    assert rows["back view"]["from_cache"] is False and rows["back view"]["take"] == 1
    assert all(rows[v]["from_cache"] for v in VIEWS if v != "back view")
    # two views at take 2: two runs
    turnaround(image=image(), reroll="back, left side view", take=2)
    assert sandbox_env.created_runs == 3 and sandbox_env.billable_runs() == 3
    # back to take 1 and to the original (take 0): free
    sandbox_env.reset_stats()
    turnaround(image=image(), reroll="back view", take=1)
    turnaround(image=image(), reroll="back view", take=0)
    turnaround(image=image())
    assert sandbox_env.created_runs == 0 and sandbox_env.billable_runs() == 0


def test_reroll_of_a_view_not_rendered_is_refused_before_anything_is_sent(sandbox_env):
    with pytest.raises(E.InputError, match="reroll names back view, which this node does not render"):
        turnaround(image=image(), views="front view", reroll="back view", take=1)
    with pytest.raises(E.InputError, match="unknown 'bak'"):
        turnaround(image=image(), reroll="bak", take=1)
    assert sandbox_env.created_runs == 0 and sandbox_env.uploads == 0


def test_the_ledger_matches_the_sandbox_billing_record_and_survives_a_restart(sandbox_env):
    sandbox_env.next_runs(status="failed", failure_code="SANDBOX_FORCED_FAILURE", failure_message="boom", times=1)
    with pytest.raises(E.PartialFailure):
        turnaround(image=image(), views="front view, back view, left side view")
    turnaround(image=image(), views="front view, back view, left side view")  # re-runs the failed one only
    turnaround(image=image(), views="front view, back view, left side view", reroll="front", take=1)
    receipts = Ledger(user_dir() / "ledger.jsonl").read()  # a new reader = what a restarted process sees
    runs = sandbox_env.runs
    made = [r for r in receipts if not r.from_cache]
    assert {r.run_id for r in made} == set(runs)
    for r in made:
        record = runs[r.run_id]
        assert r.status == record["status_code"]
        assert r.cost_usd == float(record["cost"])  # what Runflow's run record says, failed = 0.00
    assert sum(r.billed_usd for r in receipts) == pytest.approx(sum(float(x["cost"]) for x in runs.values()))
    assert sum(r.billed_usd for r in receipts) == pytest.approx(0.20 * sandbox_env.billable_runs())
    # the sandbox's own billing record: the same runs billed / not billed, with the same client_ref
    billing = {b["run_id"]: b for b in sandbox_env.billing_record()}
    assert set(billing) == {r.run_id for r in made}
    for r in made:
        assert billing[r.run_id]["billed"] == (r.billed_usd > 0) and billing[r.run_id]["client_ref"] == r.client_ref
    assert sum(b["billed"] for b in billing.values()) == 4  # 3 views + the re-roll; the failed run is not billed
    hits = [r for r in receipts if r.from_cache]
    assert len(hits) == 2 + 2 and all(r.billed_usd == 0 for r in hits)


def test_ledger_routes_summary_and_csv_match_the_sandbox(sandbox_env, server):  # noqa: F811
    from nodes.core import receipts

    turnaround(image=image(), views="front view, back view")
    turnaround(image=image(), views="front view, back view")  # 2 cache hits
    with httpx.Client(base_url=server, trust_env=False) as c:
        data = c.get("/runflow/ledger").json()
        csv_reply = c.get("/runflow/ledger.csv")
    billed = sum(float(x["cost"]) for x in sandbox_env.runs.values())
    for period in ("today", "month", "all"):
        assert data[period]["runs"] == 2 and data[period]["cache_hits"] == 2
        assert data[period]["billed_usd"] == pytest.approx(billed) and data[period]["billed"] == "$0.40"
    assert str(user_dir()) not in json.dumps(data)  # no filesystem paths
    assert csv_reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_reply.text)))
    assert [r["from_cache"] for r in rows] == ["False", "False", "True", "True"]
    assert {r["run_id"] for r in rows} == set(sandbox_env.runs)
    assert sum(float(r["billed_usd"]) for r in rows) == pytest.approx(billed)
    assert tuple(rows[0]) == receipts.CSV_COLUMNS


def test_cli_ledger_summary_and_csv(sandbox_env, capsys):
    from nodes import cli

    turnaround(image=image(), views="back view")
    assert cli.main(["--ledger"]) == 0
    out = capsys.readouterr().out
    assert "today: $0.20 billed by Runflow · 1 run · 0 from cache" in out
    assert cli.main(["--ledger", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("time_utc,label,pose,status,billed_usd") and len(lines) == 2
    assert ",back view," in lines[1] and ",0.2," in lines[1]


def test_the_node_status_says_what_runflow_billed(sandbox_env):
    out = turnaround(image=image(), views="front view, back view")
    assert out["ui"]["runflow"][0]["receipt"] == "receipt: Runflow billed $0.40 for 2 runs · today $0.40"
    out = turnaround(image=image(), views="front view, back view, left side view")
    assert out["ui"]["runflow"][0]["receipt"] == ("receipt: Runflow billed $0.20 for 1 run · 2 from cache $0.00 · "
                                                   "today $0.60")
