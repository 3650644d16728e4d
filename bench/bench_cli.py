"""The README's commands as a user runs them: wall time of whole `restorer` processes.

Run: python bench/bench_cli.py [--repeats 1] [--photo PATH]

Each command starts a fresh process (interpreter start, imports, model load, work, encoding),
which is what a user waits for and what the README quotes. Outputs go to a temporary folder.
Rows: the first README command (sample film, stencil preset), one photo with the default tiny
preset, and the refusals that must come before any model loads (an existing output, an empty
photo, sd15 without a base). Prints a Markdown table with the machine's CPU count.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "carphone.mp4"
PHOTO = Path(os.environ.get("RESTORER_BENCH_PHOTO", ROOT.parent / "shared" / "data" / "photos"
                            / "gcompris-qt-data__alpaca.jpg"))


def restorer() -> list[str]:
    script = shutil.which("restorer")
    return [script] if script else [sys.executable, "-m", "restorer.cli"]


def timed(args: list[str], cwd: Path) -> tuple[float, int, str]:
    t = time.perf_counter()
    p = subprocess.run([*restorer(), *args], cwd=cwd, capture_output=True, text=True)
    last = (p.stderr.strip().splitlines() or [""])[-1]
    return time.perf_counter() - t, p.returncode, last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--photo", type=Path, default=PHOTO)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "exists.jpg").write_bytes(b"earlier result")
        (d / "empty.png").touch()
        cases = [
            ("sample film, stencil (README's first command)",
             lambda i: ["colorize", str(SAMPLE), "-o", str(d / f"film{i}.mp4"), "--preset", "stencil"]),
            ("one photo, tiny (default preset)", lambda i: ["colorize", str(a.photo), "-o", str(d / f"p{i}.jpg")]),
            ("refusal: output exists (photo, tiny)", lambda i: ["colorize", str(a.photo), "-o", str(d / "exists.jpg")]),
            ("refusal: empty photo", lambda i: ["colorize", str(d / "empty.png"), "-o", str(d / "e.png")]),
            ("refusal: sd15 without --base",
             lambda i: ["colorize", str(a.photo), "-o", str(d / f"s{i}.jpg"), "--preset", "sd15"]),
        ]
        for name, args in cases:
            times, codes, lines = [], set(), []
            for i in range(a.repeats):
                s, rc, last = timed(args(i), d)
                times.append(s)
                codes.add(rc)
                lines.append(last)
            rows.append((name, min(times), sorted(codes), lines[-1][:90]))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print("| command | wall s (best of %d) | exit | last line |" % a.repeats)
    print("| --- | --- | --- | --- |")
    for name, s, codes, last in rows:
        print(f"| {name} | {s:.1f} | {','.join(map(str, codes))} | {last.replace('|', '/')} |")


if __name__ == "__main__":
    main()
