"""One rich console for log lines and progress bars (both on stderr)."""

from __future__ import annotations

import logging
import sys
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


class _LowerLevel(logging.Formatter):
    """``restorer: warning: ...``, matching the ``restorer: error: ...`` lines of the CLI."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = record.levelname.lower()
        return super().format(record)


def setup_logging(quiet: bool = False, debug: bool = False) -> None:
    """Rich log lines above the progress bars on a terminal; plain one-line records otherwise (logs, CI)."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=debug, markup=False,
                                               rich_tracebacks=debug)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "restorer: %(levelname)s: %(message)s"
    handler.setFormatter(_LowerLevel(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("PIL", "matplotlib", "urllib3", "httpx", "filelock", "pyscenedetect", "sentence_transformers",
                  "transformers", "diffusers", "huggingface_hub"):
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
