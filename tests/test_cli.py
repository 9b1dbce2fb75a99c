"""The headless main job: files written, the shared result cache, exit codes and one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nodes.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNFLOW_USER_DIR", str(tmp_path / "user"))
    for var in ("RUNFLOW_API_KEY", "RUNFLOW_API_URL", "RUNFLOW_SANDBOX"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_sandbox_turnaround_writes_every_view_and_a_sheet(user_dir, capsys):
    out = user_dir / "out"
    assert main(["--sandbox", "--sandbox-seconds", "0.2", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.glob("sample_*.webp"))
    assert len(files) == 8 and "sample_right-side-view_eye-level-shot_medium-shot.webp" in files
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 1000
    err = capsys.readouterr().err
    assert "8 runs × $0.20 = $1.60" in err and "simulated" in err
    # the same command again: everything from the cache, nothing created
    assert main(["--sandbox", "--sandbox-seconds", "0.2", "--out", str(out), "-q"]) == 0
    assert "0 runs × $0.20 = $0.00 (8 from cache: $0.00)" in capsys.readouterr().err


def test_views_angle_shot_and_aspect(user_dir, capsys, sample_png_bytes):
    src = user_dir / "shoe.png"
    src.write_bytes(sample_png_bytes)
    out = user_dir / "o"
    code = main([str(src), "--sandbox", "--sandbox-seconds", "0.1", "--views", "front view, back view",
                 "--angle", "high-angle shot", "--shot", "wide shot", "--aspect-ratio", "16:9", "--out", str(out)])
    assert code == 0
    names = sorted(p.name for p in out.glob("shoe_*"))
    assert names == ["shoe_back-view_high-angle-shot_wide-shot.webp", "shoe_front-view_high-angle-shot_wide-shot.webp"]
    with Image.open(out / names[0]) as im:
        assert im.width / im.height == pytest.approx(16 / 9, rel=0.02)


def test_dry_run_creates_nothing(user_dir, capsys):
    assert main(["--sandbox", "--dry-run", "--views", "all"]) == 0
    assert "dry run: 8 renders, 8 runs × $0.20 = $1.60; nothing was created" in capsys.readouterr().out


@pytest.mark.parametrize("args,code,needle", [
    (["missing.png"], 64, "no such file"),
    (["--image-url", "file:///etc/passwd"], 64, "give the file as the image argument instead"),
    (["--image-url", "http://example.com/a.png"], 64, "public https://"),
    (["--views", "top view"], 64, "unknown 'top view'"),
    (["--prompt", "[sandbox:fail]", "--views", "front"], 1, "SANDBOX_FORCED_FAILURE"),
])
def test_errors_are_one_line_with_exit_codes(user_dir, capsys, args, code, needle):
    assert main(["--sandbox", "--sandbox-seconds", "0.1", "--out", str(user_dir / "o"), *args]) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_no_key_says_where_to_put_it(user_dir, capsys):
    assert main(["--views", "front", "--out", str(user_dir / "o")]) == 1
    assert "RUNFLOW_API_KEY" in capsys.readouterr().err


def test_module_entry_point_runs(user_dir):
    proc = subprocess.run([sys.executable, "-m", "nodes.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "--sandbox" in proc.stdout


def test_cache_info_and_clear(user_dir, capsys):
    assert main(["--sandbox", "--sandbox-seconds", "0.1", "--views", "front, back", "-q",
                 "--out", str(user_dir / "o")]) == 0
    capsys.readouterr()
    assert main(["--cache-info"]) == 0
    assert "2 results" in capsys.readouterr().out
    assert main(["--clear-cache"]) == 0
    out = capsys.readouterr().out
    assert "removed 2 cached results" in out and "0 results" in out


def test_cli_inside_a_comfyui_tree_shares_comfyuis_user_dir(tmp_path, monkeypatch):
    """Run from <ComfyUI>/custom_nodes/<pack>, the CLI uses ComfyUI's key, cache and timing (no env needed)."""
    import shutil

    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    pack = comfy / "custom_nodes" / "runflow-multi-angles"
    shutil.copytree(ROOT / "nodes", pack / "nodes", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.delenv("RUNFLOW_USER_DIR", raising=False)
    monkeypatch.delenv("RUNFLOW_CACHE_DIR", raising=False)
    code = ("from nodes.core.config import user_dir; from nodes.core.cache import default_cache_dir; "
            "print(user_dir()); print(default_cache_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=pack, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [str(comfy / "user" / "runflow"), str(comfy / "user" / "runflow" / "cache")]
