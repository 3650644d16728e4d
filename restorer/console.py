"""One rich console for log lines and progress bars (both on stderr)."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True, soft_wrap=True)


def setup_logging(quiet: bool = False, debug: bool = False) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = RichHandler(console=console, show_time=False, show_path=debug, markup=False,
                          rich_tracebacks=debug)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    for noisy in ("PIL", "matplotlib", "urllib3", "httpx", "filelock", "pyscenedetect"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RateColumn(ProgressColumn):
    """Frames (or items) per second over the whole task."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  -- fps" if speed is None else f"{speed:6.1f} fps", style="progress.data.speed")


@contextmanager
def progress(enabled: bool = True) -> Iterator[Progress | None]:
    """A progress display: description (current shot), bar, n/N, fps, ETA."""
    if not enabled:
        yield None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TaskProgressColumn(), RateColumn(), TimeRemainingColumn(),
                   console=console, transient=False)
    with bar:
        yield bar


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)
