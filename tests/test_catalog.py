"""Catalogs: folders and manifests, pose grids, the spend cap, review files, and resume after a real kill -9.

Every test talks HTTP to a live sandbox; the kill test runs the CLI as a subprocess and kills it mid-job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from nodes.cli import main
from nodes.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


def make_images(folder: Path, n: int, prefix: str = "p", first: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(first, first + n):
        im = Image.new("RGB", (64, 48), (20 + 37 * i % 230, 90, 200 - 13 * i % 180))
        ImageDraw.Draw(im).ellipse((8 + i % 20, 8, 40, 40), fill=(255, 220 - i, 0))
        path = folder / f"{prefix}{i:03d}.png"
        im.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def env(tmp_path, monkeypatch):
    sb = Sandbox(run_seconds=0.3, max_concurrency=6).start()
    monkeypatch.setenv("RUNFLOW_API_URL", sb.url)
    monkeypatch.setenv("RUNFLOW_API_KEY", sb.api_key)
    monkeypatch.setenv("RUNFLOW_SANDBOX", "1")
    monkeypatch.setenv("RUNFLOW_USER_DIR", str(tmp_path / "user"))
    try:
        yield sb
    finally:
        sb.stop()


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_folder_pose_grid_review_files_and_free_rerun(env, tmp_path, capsys):
    src = tmp_path / "products"
    make_images(src / "shoes", 2)
    make_images(src, 1, prefix="bag", first=7)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    args = [str(src), "--views", "front, back", "--angles", "eye-level, elevated", "--shots", "medium", "--out",
            str(out), "--max-concurrent", "4"]
    assert main(args) == 0
    # 3 sources (folders recursive, stable order, text file ignored) × 2 views × 2 angles
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["bag007", "shoes-p000", "shoes-p001"]
    files = sorted(p.name for p in (out / "shoes-p000").iterdir())
    assert "back-view_elevated-shot_medium-shot.webp" in files and "contact_sheet.png" in files
    with Image.open(out / "shoes-p000" / "turntable.webp") as tt:
        assert tt.n_frames == 4  # one orbit (front, back) per angle
    s = summary(out)
    assert s["totals"]["created"] == 12 and s["totals"]["uploads"] == 3  # one upload per unique source
    assert {r["status"] for r in s["renders"]} == {"done"} and all(r["run_id"] for r in s["renders"])
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("source,input,pose,view,angle,shot,file")
    html = (out / "index.html").read_text()
    assert html.count("<section>") == 3 and "shoes-p001/front-view_eye-level-shot_medium-shot.webp" in html
    assert env.billable_runs() == 12
    capsys.readouterr()
    assert main([*args, "-q"]) == 0  # the same command again: nothing created, nothing billed
    assert "0 runs × $0.20 = $0.00 (12 from cache: $0.00)" in capsys.readouterr().err
    assert env.billable_runs() == 12 and summary(out)["totals"]["from_cache"] == 12


def test_manifest_with_bad_rows_spends_nothing_unless_skipped(env, tmp_path, capsys):
    good = make_images(tmp_path / "img", 2)
    manifest = tmp_path / "shoes.csv"
    manifest.write_text("source,views,angles,prompt,name\n"
                        f"{good[0]},front;back,,,left-shoe\n"
                        "missing.png,front,,,\n"
                        f"{good[1]},top view,,,\n"
                        "ftp://example.com/x.png,front,,,\n"
                        f"img/{good[1].name},front,high-angle,[sandbox:fail],broken\n")
    out = tmp_path / "out"
    assert main(["--manifest", str(manifest), "--out", str(out)]) == 64
    err = capsys.readouterr().err
    assert "3 bad rows; nothing was created" in err
    assert "line 3: " in err and "missing.png: no such file" in err
    assert "line 4: views: unknown 'top view'" in err and "line 5: " in err and "https://" in err
    assert "line 2" not in err and "line 6" not in err
    assert env.stats()["created_runs"] == 0 and env.stats()["uploads"] == 0 and not out.exists()

    code = main(["--manifest", str(manifest), "--out", str(out), "--skip-bad-rows"])
    err = capsys.readouterr().err
    assert code == 2  # the row that fails in the sandbox fails; the others are done
    assert "(skipped)" in err and "SANDBOX_FORCED_FAILURE" in err
    rows = summary(out)["renders"]
    assert [(r["source"], r["view"], r["status"]) for r in rows] == [
        ("left-shoe", "front view", "done"), ("left-shoe", "back view", "done"), ("broken", "front view", "failed")]
    html = (out / "index.html").read_text()
    assert "class='fail'" in html and "SANDBOX_FORCED_FAILURE" in html and "1 failed" in html


def test_max_spend_stops_before_the_cap_and_dry_run_plans(env, tmp_path, capsys):
    make_images(tmp_path / "img", 1)
    out = tmp_path / "out"
    base = [str(tmp_path / "img"), "--out", str(out), "-q"]
    assert main([*base, "--dry-run", "--max-spend", "1"]) == 0
    text = capsys.readouterr().out
    assert "dry run: 8 renders, 5 runs × $0.20 = $1.00; nothing was created" in text
    assert "stops after 5 of 8 new runs" in text and "expected wall time" in text
    assert main([*base, "--max-spend", "1.00"]) == 2
    assert env.billable_runs() == 5
    rows = summary(out)["renders"]
    assert sum(r["status"] == "not created" for r in rows) == 3 and "--max-spend" in rows[-1]["error"] + "".join(
        r["error"] for r in rows)
    capsys.readouterr()
    assert main([*base, "--dry-run"]) == 0
    assert "dry run: 8 renders, 3 runs × $0.20 = $0.60 (5 from cache: $0.00)" in capsys.readouterr().out
    assert main(base) == 0 and env.billable_runs() == 8  # the rerun pays only for the 3 missing renders


def test_kill_9_mid_job_then_rerun_adopts_every_run(env, tmp_path):
    """40 runs (5 sources × 8 views); kill -9 the CLI when about half are created; the rerun bills 0 twice."""
    make_images(tmp_path / "img", 5)
    env.config(run_seconds=0.6)
    env.faults.add("drop_after", path="create", times=2)  # created and billed, answer lost: found by client_ref
    cmd = [sys.executable, "-m", "nodes.cli", str(tmp_path / "img"), "--out", str(tmp_path / "out"), "-q",
           "--max-concurrent", "8"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while env.stats()["created_runs"] < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    created_before = env.stats()["created_runs"]
    assert 15 <= created_before < 40
    rerun = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    s = summary(tmp_path / "out")
    assert s["totals"]["done"] == 40 and s["totals"]["adopted"] >= 1
    assert env.billable_runs() == 40 and not env.stats()["duplicate_billed_client_refs"]
    again = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "(40 from cache: $0.00)" in again.stderr
    assert env.billable_runs() == 40  # re-billed 0
