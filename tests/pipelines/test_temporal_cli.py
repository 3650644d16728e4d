"""The temporal stage as a user drives it: --temporal, --keyframe-interval, keyframes: in shots.yaml,
and what report.json says (issue 12)."""

from __future__ import annotations

import json

from media import make_clip


def _shots(path, keyframes) -> None:
    path.write_text(json.dumps({"version": 1, "shots": [{"frames": [0, 29], "keyframes": keyframes}]}))


def test_report_lists_keyframes_including_the_users(tmp_path, restorer) -> None:
    clip = make_clip(tmp_path / "film.mp4", frames=30, audio_streams=0)
    _shots(tmp_path / "film.shots.yaml", [17])
    proc = restorer("colorize", clip, "-o", tmp_path / "out.mkv", "--preset", "stencil", "--codec", "ffv1",
                    "--keyframe-interval", "10", "--report", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["temporal"] == "propagate"
    keys = r["keyframes"]["0"]
    assert {0, 10, 17, 20} <= set(keys) and keys == sorted(keys)  # the fixed ones and the user's
    assert 0 < r["propagated_share"] < 1


def test_temporal_off_colours_every_frame_itself(tmp_path, restorer) -> None:
    clip = make_clip(tmp_path / "film.mp4", frames=12, audio_streams=0)
    proc = restorer("colorize", clip, "-o", tmp_path / "out.mkv", "--preset", "stencil", "--codec", "ffv1",
                    "--temporal", "off", "--report", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["temporal"] == "off" and r["propagated_share"] == 0 and r["keyframes"] == {}


def test_a_keyframe_outside_its_shot_is_one_error_at_its_line(tmp_path, restorer, one_error) -> None:
    clip = make_clip(tmp_path / "film.mp4", frames=30, audio_streams=0)
    (tmp_path / "film.shots.yaml").write_text("version: 1\nshots:\n  - frames: [0, 29]\n    keyframes: [5, 40]\n")
    proc = restorer("colorize", clip, "-o", tmp_path / "out.mkv", "--preset", "stencil")
    assert proc.returncode == 2
    line = one_error(proc)
    assert "film.shots.yaml:4" in line and "keyframe 40 is outside the shot" in line
    assert not (tmp_path / "out.mkv").exists()


def test_shots_preview_draws_the_keyframes(tmp_path, restorer) -> None:
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.preview import fixed_keyframes, preview_frames

    clip = make_clip(tmp_path / "film.mp4", frames=30, audio_streams=0)
    _shots(tmp_path / "film.shots.yaml", [17])
    proc = restorer("shots", "preview", clip, "-o", tmp_path / "pv", "--every", "100")
    assert proc.returncode == 0, proc.stderr
    frames = sorted(int(p.stem.split("frame")[1]) for p in (tmp_path / "pv").glob("shot*_frame*.png"))
    assert frames == [0, 17, 24, 29]  # start, the user's keyframe, the interval's, the last frame

    class Shot:
        start, end, keyframes, instances = 0, 29, (17,), []

    assert fixed_keyframes(Shot, ColorizeOptions(keyframe_interval=10)) == (0, 10, 17, 20)
    assert fixed_keyframes(Shot, ColorizeOptions(temporal="off")) == ()
    assert preview_frames(Shot, 100, (5,)) == [0, 5, 29]
