"""Automatic colour on real film frames: every 20th frame of the colour clips, their luma colorized.

Run: python bench/film_frames_sheet.py -o bench/tiny_film_frames.png [--model LABEL=DIR ...] [--every 20]

For each clip in ../shared/data/video that decodes (the damaged Megamind_bugy.avi is left out), every
`--every`-th frame is turned to luma (BT.601), colorized by each `--model` as a photo without texts
(the same call `restorer eval` makes: the tiny preset, its shot seed), and recombined with that luma.
One block per clip: a row per model, then the clip's own colour (the truth). DIR `shipped` is the
package's own weights. Prints the mean CIEDE2000 of each model and of gray against the truth per clip.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
CLIPS = ("carphone_pristine.mp4", "tree.avi", "Megamind.avi", "bigbuckbunny.mp4")


def frames(path: Path, every: int, side: int) -> list[np.ndarray]:
    """RGB float 0..1 frames 0, every, 2*every, ... (long side ``side`` at most); stops where decoding fails."""
    import av
    from PIL import Image

    out = []
    try:
        with av.open(str(path)) as box:
            for i, frame in enumerate(box.decode(video=0)):
                if i % every:
                    continue
                im = frame.to_image()
                im.thumbnail((side, side), Image.LANCZOS)
                out.append(np.asarray(im.convert("RGB"), np.float32) / 255)
    except av.error.FFmpegError:
        pass  # a damaged file (tree.avi) ends early: keep what decoded
    return out


def main() -> None:
    from PIL import Image, ImageDraw

    from restorer.io.color import rgb_to_luma
    from restorer.metrics import mean_ciede2000
    from restorer.pipelines.evaluate import colorize
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--model", action="append", default=None,
                    help="LABEL=DIR[:KEY=VALUE,...] (DIR 'shipped': the package's; KEY=VALUE: engine overrides)")
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--side", type=int, default=320, help="long side of the frames colorized")
    ap.add_argument("--cell", type=int, default=150)
    args = ap.parse_args()
    from bench_independent import parse_models

    models = parse_models(args.model)
    clips = {name: frames(VIDEO / name, args.every, args.side) for name in CLIPS if (VIDEO / name).exists()}
    seed = shot_seed(0, 0)
    rows: list[tuple[str, list[np.ndarray]]] = []
    scores: dict[str, dict[str, float]] = {}
    outputs = {}
    for label, (folder, overrides) in models.items():
        engine = open_engine(load_preset("tiny"), device="cpu", weights=folder, overrides=overrides)
        for clip, rgbs in clips.items():
            outs = [colorize(engine, rgb_to_luma(rgb), [], np.zeros((0, *rgb.shape[:2]), bool), seed) for rgb in rgbs]
            outputs[(label, clip)] = outs
            scores.setdefault(clip, {})[label] = float(np.mean([mean_ciede2000(o, rgb * 255)
                                                                for o, rgb in zip(outs, rgbs, strict=True)]))
    for clip, rgbs in clips.items():
        gray = [colorize(None, rgb_to_luma(rgb), [], None, seed) for rgb in rgbs]
        scores[clip]["gray"] = float(np.mean([mean_ciede2000(g, rgb * 255) for g, rgb in zip(gray, rgbs, strict=True)]))
        for label in models:
            rows.append((f"{clip}: {label}", outputs[(label, clip)]))
        rows.append((f"{clip}: truth", [rgb * 255 for rgb in rgbs]))
    width = max(len(r[1]) for r in rows)
    cell = args.cell
    sheet = Image.new("RGB", (6 + width * (cell + 4), sum(16 + int(cell * 0.85) + 6 for _ in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for label, imgs in rows:
        draw.text((6, y + 2), label, fill="black")
        for j, img in enumerate(imgs):
            im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
            im.thumbnail((cell, cell), Image.LANCZOS)
            sheet.paste(im, (6 + j * (cell + 4), y + 16))
        y += 16 + int(cell * 0.85) + 6
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
