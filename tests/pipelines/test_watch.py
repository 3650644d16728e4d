"""`restorer watch`: photos dropped into a folder come out colorized; a restart picks up where it was."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from restorer.pipelines.options import ColorizeOptions
from restorer.pipelines.photo import PhotoColorizationPipeline
from restorer.pipelines.watch import watch_folder
from restorer.presets import load_preset, open_engine


def gray(path: Path, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = (np.add.outer(np.arange(40), np.arange(56)) % 200 + value // 4).astype(np.uint8)
    Image.fromarray(img).save(path)
    return path


def pipeline() -> PhotoColorizationPipeline:
    return PhotoColorizationPipeline(open_engine(load_preset("stencil")), ColorizeOptions())


def wait_for(path: Path, seconds: float = 20) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists():
            return True
        time.sleep(0.1)
    return False


def test_new_photos_are_colorized_as_they_arrive(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    gray(src / "old.png")
    stop = threading.Event()
    counted: list[int] = []
    worker = threading.Thread(target=lambda: counted.append(
        watch_folder(src, out, pipeline(), settle=0.3, poll=0.1, stop=stop)))
    worker.start()
    try:
        assert wait_for(out / "old.png"), "what is already there is done first"
        gray(src / "roll2" / "new.png")
        assert wait_for(out / "roll2" / "new.png"), "a new photo in a subfolder keeps its relative path"
        out_img = np.asarray(Image.open(out / "roll2" / "new.png").convert("L")).astype(int)
        in_img = np.asarray(Image.open(src / "roll2" / "new.png")).astype(int)
        assert np.abs(out_img - in_img).max() <= 1, "the photo's gray is kept"
    finally:
        stop.set()
        worker.join(timeout=20)
    assert counted == [2]


def test_a_restart_skips_done_photos_and_a_bad_scan_does_not_stop_it(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    gray(src / "a.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    assert watch_folder(src, out, pipeline(), once=True) == 1
    stamp = (out / "a.png").stat().st_mtime_ns
    gray(src / "b.png")
    assert watch_folder(src, out, pipeline(), once=True) == 1, "only the new photo is done"
    assert (out / "a.png").stat().st_mtime_ns == stamp


def test_ctrl_c_stops_the_watcher_cleanly(tmp_path):
    src = tmp_path / "in"
    gray(src / "a.png")
    proc = subprocess.Popen([sys.executable, "-m", "restorer", "watch", str(src), "-o", str(tmp_path / "out"),
                             "--settle", "0.2", "--preset", "stencil"], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(tmp_path / "out" / "a.png", 60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
