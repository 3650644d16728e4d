"""`--backend ray`: the same film and photos as the local backend, a killed worker retried, resume across backends.

One small local Ray cluster (2 CPUs) serves the whole module; each run starts its own actors on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from media import audio_packets, make_clip, read_video_frames

from restorer.cli import main

FRAMES = 48
SHOTS = """\
version: 1
prompt: "a street"
shots:
  - frames: [0, 15]
  - frames: [16, 31]
    instances:
      - name: car
        text: "a red car"
        prompts:
          - frame: 16
            box: [4, 4, 28, 24]
  - frames: [32, 47]
"""


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=200 * 1024 ** 2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    """A 3-shot film with audio (the second shot has an instance: its two segments go to one worker),
    its shots file, and the film the local backend makes of it."""
    folder = tmp_path_factory.mktemp("film")
    src = make_clip(folder / "film.mp4", frames=FRAMES, size=(64, 48), audio_streams=1)
    shots = folder / "film.shots.yaml"
    shots.write_text(SHOTS, encoding="utf-8")
    reference = folder / "local.mkv"
    run(src, shots, reference)
    return src, shots, reference


def run(src: Path, shots: Path, out: Path, *extra: str):
    """`restorer colorize` in this process: 6 segments of 8 frames; returns click's result."""
    return CliRunner().invoke(main, ["colorize", str(src), "--shots", str(shots), "-o", str(out), "--preset",
                                     "stencil", "--tracker", "static", "--quiet", "--chunk-frames", "8",
                                     "--keyframe-interval", "8", *extra])


def ok(result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


def same_film(a: Path, b: Path) -> None:
    fa, fb = read_video_frames(a), read_video_frames(b)
    assert len(fa) == len(fb) == FRAMES
    for x, y in zip(fa, fb, strict=True):
        for pa, pb in zip(x[1:], y[1:], strict=True):
            assert np.array_equal(pa, pb)
    assert audio_packets(a) == audio_packets(b)


def test_film_over_ray_is_the_local_film(cluster, film, tmp_path):
    src, shots, reference = film
    out = tmp_path / "ray.mkv"
    report = tmp_path / "r.json"
    result = run(src, shots, out, "--backend", "ray", "--report", str(report))
    ok(result)
    same_film(out, reference)
    r = json.loads(report.read_text())
    assert r["backend"] == "ray" and r["frames_processed"] == FRAMES and r["shots"] == 3
    assert not (tmp_path / ".ray.mkv.restorer-job").exists()


def test_a_worker_killed_mid_segment_is_retried_and_the_film_is_the_same(cluster, film, tmp_path, monkeypatch):
    from restorer.pipelines.backends import KILL_ONCE_ENV

    src, shots, reference = film
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))  # forwarded to the workers: one SIGKILLs itself once
    out = tmp_path / "ray.mkv"
    ok(run(src, shots, out, "--backend", "ray"))
    assert marker.exists(), "no worker was killed"
    same_film(out, reference)


def test_a_ray_run_stopped_after_two_segments_resumes_locally_to_the_same_film(cluster, film, tmp_path, monkeypatch):
    from restorer.jobs import Job

    src, shots, reference = film
    out = tmp_path / "ray.mkv"
    finish = Job.finish_unit
    recorded = []

    class Stop(Exception):
        pass

    def finish_two(self, name, record):
        if name.startswith("segments/") and len(recorded) == 2:
            raise Stop("the driver stops here")
        finish(self, name, record)
        recorded.append(name)

    monkeypatch.setattr(Job, "finish_unit", finish_two)
    stopped = run(src, shots, out, "--backend", "ray")
    assert stopped.exit_code != 0 and isinstance(stopped.exception, (Stop, SystemExit)), stopped.output
    monkeypatch.setattr(Job, "finish_unit", finish)
    job = tmp_path / ".ray.mkv.restorer-job"
    assert len(list((job / "segments").glob("*.done.json"))) == 2
    assert not out.exists()

    report = tmp_path / "r.json"
    ok(run(src, shots, out, "--backend", "local", "--report", str(report)))
    r = json.loads(report.read_text())
    assert r["frames_reused"] == 16 and r["frames_processed"] == FRAMES - 16
    same_film(out, reference)


def _photos(folder: Path, n: int = 6) -> Path:
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(n):
        y = np.clip(np.linspace(0, 255, 40)[None, :] * 0.8 + rng.integers(0, 40, (30, 40)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"p{k}.png"), y)
    (folder / "p1.shots.yaml").write_text(
        'version: 1\nprompt: "a garden"\nshots:\n  - instances:\n      - name: hat\n        text: "a red hat"\n'
        '        prompts:\n          - box: [2, 2, 20, 16]\n', encoding="utf-8")
    return folder


def test_photos_and_watch_over_ray_are_the_local_photos(cluster, tmp_path):
    import cv2

    src = _photos(tmp_path / "in")
    base = ["--preset", "stencil", "--quiet"]
    ok(CliRunner().invoke(main, ["colorize", str(src), "-o", str(tmp_path / "local"), *base]))
    ok(CliRunner().invoke(main, ["colorize", str(src), "-o", str(tmp_path / "ray"), *base, "--backend", "ray"]))
    watched = CliRunner().invoke(main, ["watch", str(src), "-o", str(tmp_path / "watch"), "--preset", "stencil",
                                        "--once", "--backend", "ray"])
    ok(watched)
    assert "colorized 6 photo(s)" in watched.output
    names = sorted(p.name for p in (tmp_path / "local").glob("*.png"))
    assert len(names) == 6
    for folder in ("ray", "watch"):
        assert sorted(p.name for p in (tmp_path / folder).glob("*.png")) == names
        for name in names:
            a = cv2.imread(str(tmp_path / "local" / name), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(tmp_path / folder / name), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(a, b), (folder, name)


@pytest.mark.parametrize("command", ["colorize", "watch"])
def test_backend_ray_without_ray_is_one_line_before_any_model(tmp_path, monkeypatch, command):
    import restorer.presets

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if the extra were not installed

    def no_model(*a, **k):
        raise AssertionError("a model was opened")

    monkeypatch.setattr(restorer.presets, "open_engine", no_model)
    src = make_clip(tmp_path / "film.mp4", frames=8) if command == "colorize" else tmp_path
    result = CliRunner().invoke(main, [command, str(src), "-o", str(tmp_path / "out.mkv"), "--preset", "stencil",
                                       "--backend", "ray"])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("restorer: error:"), result.output
    assert 'pip install "restorer[ray]"' in lines[0]


def test_an_address_where_nothing_answers_is_one_line_at_once(tmp_path, monkeypatch):
    """`--ray-address` on a port nothing listens on: exit 2 with one line naming it, not minutes of Ray's
    retries (``ray.init`` is never reached)."""
    import socket

    ray = pytest.importorskip("ray")
    from restorer.pipelines import backends

    with pytest.raises(backends.BackendError, match="not HOST:PORT"):
        backends.probe_address("nohost")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def no_init(*a, **k):
        raise AssertionError("ray.init was called")

    monkeypatch.setattr(ray, "init", no_init)
    src = make_clip(tmp_path / "film.mp4", frames=8)
    result = CliRunner().invoke(main, ["colorize", str(src), "-o", str(tmp_path / "out.mkv"), "--preset", "stencil",
                                       "--backend", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [ln for ln in result.output.splitlines() if ln.startswith("restorer: error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "ray start --head" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.mkv").exists()
