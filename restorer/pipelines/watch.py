"""`restorer watch`: colorize photos as they arrive in a folder.

Scanners and archivists drop files into a folder; each image is colorized into the
output folder under the same relative path once its size has stopped changing (a file
still being copied is never read half-way). Photos whose output already exists are
taken as done, so stopping the watcher and starting it again picks up where it was.
Ctrl-C stops it after the current photo.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from restorer.errors import InputError, OutputError
from restorer.pipelines.photo import PhotoColorizationPipeline, PhotoTask, is_image

log = logging.getLogger(__name__)


def output_for(src: Path, folder: Path, output: Path) -> Path:
    from restorer.io.images import output_suffix

    rel = src.relative_to(folder)
    return (output / rel).with_suffix(output_suffix(src.suffix))


class _Arrivals:
    """Paths seen by watchdog, handed out once their size has been stable for ``settle`` seconds."""

    def __init__(self, settle: float):
        self.settle = settle
        self.seen: dict[Path, tuple[int, float]] = {}
        self.lock = threading.Lock()

    def note(self, path: Path) -> None:
        with self.lock:
            self.seen[path] = (-1, time.monotonic())

    def ready(self) -> list[Path]:
        now, out = time.monotonic(), []
        with self.lock:
            for path, (size, since) in list(self.seen.items()):
                try:
                    current = path.stat().st_size
                except OSError:
                    del self.seen[path]
                    continue
                if current != size:
                    self.seen[path] = (current, now)
                elif now - since >= self.settle:
                    del self.seen[path]
                    out.append(path)
        return sorted(out)


def _observer(folder: Path, arrivals: _Arrivals):
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.is_directory or event.event_type not in ("created", "modified", "moved", "closed"):
                return
            path = Path(getattr(event, "dest_path", "") or event.src_path)
            if is_image(path) and not path.name.startswith("."):
                arrivals.note(path)

    obs = Observer()
    obs.schedule(Handler(), str(folder), recursive=True)
    return obs


def watch_folder(folder: Path, output: Path, pipeline: PhotoColorizationPipeline, *, settle: float = 2.0,
                 poll: float = 0.5, stop: threading.Event | None = None, once: bool = False) -> int:
    """Colorize what is in ``folder`` and then what arrives, until ``stop`` is set (or at once if ``once``).

    Returns:
        The number of photos colorized.
    """
    if not folder.is_dir():
        raise InputError("not a folder", path=folder, hint="give the folder to watch")
    if output.resolve().is_relative_to(folder.resolve()):
        raise OutputError("the output folder is inside the watched folder", path=output,
                          hint="choose an output folder outside it")
    stop = stop or threading.Event()
    arrivals = _Arrivals(settle)
    obs = _observer(folder, arrivals)
    obs.start()
    done = 0
    try:
        done += _batch(sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p)
                              and not p.name.startswith(".")), folder, output, pipeline)
        if not once:
            log.info("watching %s for new photos (Ctrl-C to stop)", folder)
        while not once and not stop.is_set():
            done += _batch(arrivals.ready(), folder, output, pipeline)
            stop.wait(poll)
    finally:
        obs.stop()
        obs.join(timeout=5)
    return done


def _batch(sources: list[Path], folder: Path, output: Path, pipeline: PhotoColorizationPipeline) -> int:
    """Colour the photos of ``sources`` not done yet (one after another, or over the pipeline's Ray pool);
    return how many were colorized."""
    tasks = []
    for src in sources:
        task = PhotoTask(src, output_for(src, folder, output))
        if task.output.exists() and not pipeline.opts.overwrite:
            log.debug("%s: done already", task.output)
            continue
        tasks.append(task)
    done = 0
    for task, outcome in pipeline.each(tasks):
        if isinstance(outcome, InputError):  # a bad scan is reported and skipped; the watcher goes on
            log.error("%s (skipped)", outcome)
            continue
        log.info("%s -> %s", task.source, task.output)
        done += 1
    return done
