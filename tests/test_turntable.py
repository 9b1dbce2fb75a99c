"""Turntables: orbit frame order, a looping animated WebP, and the CLI's turntable.webp next to the contact sheet."""

import numpy as np
import pytest
from PIL import Image

from nodes.cli import main
from nodes.core import codec
from nodes.core.turntable import FRAME_MS, orbit_order, write_turntable
from nodes.runflow.contract import VIEWS


def test_orbit_order_walks_the_azimuths_once_per_angle_and_shot():
    poses = [("back view", "eye-level shot", "medium shot"), ("front view", "elevated shot", "medium shot"),
             ("right side view", "eye-level shot", "medium shot"), ("front view", "eye-level shot", "medium shot")]
    assert orbit_order(poses) == [3, 2, 0, 1]
    everything = [(v, "eye-level shot", "wide shot") for v in reversed(VIEWS)]
    assert [everything[i][0] for i in orbit_order(everything)] == list(VIEWS)


def test_write_turntable_loops_and_fits_odd_sizes(tmp_path):
    frames = [np.full((40, 60, 3), 30 * i, np.uint8) for i in range(5)] + [np.zeros((60, 40, 3), np.uint8)]
    path = write_turntable(frames, tmp_path / "t.webp")
    with Image.open(path) as im:
        assert im.n_frames == 6 and im.size == (60, 40) and im.info["loop"] == 0
        im.load()
        assert im.info["duration"] == FRAME_MS
    with pytest.raises(ValueError, match="at least 2 frames"):
        write_turntable(frames[:1], tmp_path / "one.webp")


def test_cli_writes_turntable_webp_next_to_the_contact_sheet_in_orbit_order(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNFLOW_USER_DIR", str(tmp_path / "user"))
    out = tmp_path / "out"
    assert main(["--sandbox", "--sandbox-seconds", "0.2", "--out", str(out), "-q",
                 "--views", "back view, front view, left side view, right side view"]) == 0
    assert (out / "contact_sheet.png").exists()
    views = [v for v in VIEWS if v in ("front view", "right side view", "back view", "left side view")]
    stills = [codec.decode((out / f"sample_{v.replace(' ', '-')}_eye-level-shot_medium-shot.webp").read_bytes())
              .astype(float) for v in views]
    with Image.open(out / "turntable.webp") as im:
        assert im.n_frames == 4 and im.info["loop"] == 0
        for i in range(im.n_frames):
            im.seek(i)
            frame = np.asarray(im.convert("RGB"), dtype=float)
            errors = [np.abs(frame - s).mean() for s in stills]
            assert int(np.argmin(errors)) == i, f"frame {i} is not {views[i]}"
    # one view: no turntable
    out1 = tmp_path / "one"
    assert main(["--sandbox", "--sandbox-seconds", "0.2", "--out", str(out1), "-q", "--views", "front view"]) == 0
    assert not (out1 / "turntable.webp").exists()
