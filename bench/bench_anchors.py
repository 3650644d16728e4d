"""The anchors preset (DISCO at CPU size) against gray and against tiny's automatic colour, with paired intervals.

Run: python bench/bench_anchors.py DATA [--split val] [--independent] [--weights DIR] [--threads 2]
                                   [--sheet PNG] [--edit-sheet PNG] [--json FILE] [--timing]
e.g. nice python bench/bench_anchors.py /tmp/w/DATA_final --split val --threads 2 \
         --sheet bench/anchors_dev_sheet.png --edit-sheet bench/anchors_editing_sheet.png --timing

Photos: the dataset's development split (``--split val``; settings may be chosen here) and, with ``--independent``,
the photos reserved for independent checks (bench/bench_independent.py's list, never trained or chosen on), at
their stored size (the dataset: 256 px long side) or ``--size`` for the independent ones (512).

Each photo is made gray (BT.601 luma), colorized with no texts by ``gray`` (nothing: a*b* = 0), ``tiny`` (the
tiny preset: with no texts its colour prior alone) and ``anchors`` (automatic: each anchor its most likely
colour), and compared with its own colours: mean CIEDE2000, the paired differences anchors - gray and anchors -
tiny with 95 % bootstrap intervals (negative: anchors closer to the truth), and colourfulness (Hasler &
Süsstrunk) of the mean output over the mean truth.

``--timing``: seconds per 512x512 photo for anchors and tiny (median of 5 after one warm-up, this machine's
``--threads``), the whole photo path: model, luma-guided upsampling and recombination.

``--edit-sheet``: per photo, gray | automatic | one anchor edited (the anchor covering most of the picture set to a
colour far from its own, the point marked) | seeds 1, 2, 3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))


def recombined(luma: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
    from restorer.pipelines.photo import chroma_rgb

    rgb = chroma_rgb(luma, ab_small, np.zeros((0, *luma.shape), bool))
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.float64)


def dev_photos(data: Path, split: str):
    from restorer.training.dataset.records import load_record, read_dataset

    for rec in read_dataset(data, split):
        rgb, _ = load_record(data, rec)
        yield "dev", rec["name"], np.round(rgb * 255).astype(np.uint8)


def far_colour(ab: np.ndarray) -> tuple[float, float]:
    """A clearly different colour for an edit: the hue turned half way round, at least 40 units of chroma."""
    a, b = float(ab[0]), float(ab[1])
    chroma = max(40.0, float(np.hypot(a, b)))
    angle = float(np.arctan2(b, a)) + np.pi
    return chroma * float(np.cos(angle)), chroma * float(np.sin(angle))


def edit_row(engine, luma: np.ndarray, truth: np.ndarray) -> list[tuple[np.ndarray, str]]:
    from restorer.models.anchors.engine import AnchorEdit
    from restorer.models.anchors.superpixels import hard_labels

    auto_ab, anchors = engine.colorize(luma)
    # the anchor whose primitives cover most of the picture: where an edit shows its reach
    h, w = luma.shape
    model = engine.model
    with torch.no_grad():
        from restorer.models.mtcolor.spaces import resize

        full = torch.from_numpy(luma)[None, None]
        size = engine.working_size(h, w)
        gray = resize(full, (size[0] // 2, size[1] // 2)) * 2 - 1
        assoc = model.associate(gray)
        labels = hard_labels(assoc, model.pixel_cell)[0]
    gy, gx = anchors.grid
    k = int(np.argmax([(labels == int(i)).sum() for i in anchors.index]))
    cell = int(anchors.index[k])
    ys, xs = np.nonzero((labels == cell).numpy())
    y, x = float(ys.mean()) * h / labels.shape[0], float(xs.mean()) * w / labels.shape[1]
    colour = far_colour(anchors.ab[k].numpy())
    edited_ab, _ = engine.colorize(luma, edits=[AnchorEdit(x, y, colour)])
    row = [(np.repeat(luma[..., None] * 255, 3, axis=2), "gray"), (recombined(luma, auto_ab), "automatic"),
           (recombined(luma, edited_ab), f"anchor at ({x:.0f},{y:.0f}) edited")]
    for seed in (1, 2, 3):
        ab, _ = engine.colorize(luma, seed=seed)
        row.append((recombined(luma, ab), f"seed {seed}"))
    row.append((truth.astype(np.float64), "truth"))
    row[2] = (row[2][0], row[2][1], (x, y))
    return row


def draw_rows(path: Path, rows: list[list[tuple]], cell: int = 170) -> None:
    strip = 14
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cell * cols, len(rows) * (cell + strip)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y0 = r * (cell + strip)
        for c, item in enumerate(row):
            img, label = item[0], item[1]
            im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
            scale = min(cell / im.width, cell / im.height)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
            ox, oy = c * cell + (cell - im.width) // 2, y0 + strip + (cell - im.height) // 2
            sheet.paste(im, (ox, oy))
            if len(item) > 2:  # the edited point
                px, py = ox + item[2][0] * scale, oy + item[2][1] * scale
                draw.ellipse((px - 5, py - 5, px + 5, py + 5), outline="white", width=2)
                draw.ellipse((px - 7, py - 7, px + 7, py + 7), outline="black", width=1)
            draw.text((c * cell + 2, y0 + 1), label[: cell // 6], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def timing(engines: dict, threads: int) -> dict[str, float]:
    from restorer.pipelines.evaluate import colorize

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:512, 0:512]
    luma = np.clip(0.5 + 0.3 * np.sin(x / 37.0) * np.cos(y / 23.0) + 0.05 * rng.standard_normal((512, 512)),
                   0, 1).astype(np.float32)
    none = np.zeros((0, 512, 512), bool)
    out = {}
    for label, engine in engines.items():
        colorize(engine, luma, [], none, 0)
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            colorize(engine, luma, [], none, 0)
            runs.append(time.perf_counter() - t)
        out[label] = statistics.median(runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="?", help="dataset folder (restorer dataset build)")
    ap.add_argument("--split", default="val", choices=["val", "test"], help="val: the development split")
    ap.add_argument("--independent", action="store_true", help="also the reserved independent photos")
    ap.add_argument("--size", type=int, default=512, help="independent photos: long side")
    ap.add_argument("--weights", type=Path, default=None, help="anchors weights (default: shipped)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sheet", type=Path, help="gray | tiny | anchors | truth per photo")
    ap.add_argument("--edit-sheet", type=Path, help="the anchor-editing sheet (first 6 photos)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--timing", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bench_independent import fmt_ci, photos

    from restorer.io.color import rgb_to_luma
    from restorer.metrics import image_metrics, paired_bootstrap
    from restorer.pipelines.evaluate import colorize
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine

    engines = {"tiny": open_engine(load_preset("tiny"), device="cpu"),
               "anchors": open_engine(load_preset("anchors"), device="cpu", weights=args.weights)}
    seed = shot_seed(0, 0)
    sources = []
    if args.data is not None:
        sources.append(("development" if args.split == "val" else "test", dev_photos(args.data, args.split)))
    if args.independent:
        sources.append(("independent", photos(args.size)))
    result: dict = {"split": args.split, "weights": str(args.weights or "shipped")}
    sheet_rows, edit_rows = [], []
    for set_name, items in sources:
        records = []
        for source, name, truth in items:
            gt = truth.astype(np.float64)
            luma = rgb_to_luma(gt / 255.0).astype(np.float32)
            none = np.zeros((0, *luma.shape), bool)
            outs = {"gray": colorize(None, luma, [], none, seed)}
            for label, engine in engines.items():
                outs[label] = colorize(engine, luma, [], none, seed)
            rec = {"name": f"{source} {name}", **{k: image_metrics(v, gt) for k, v in outs.items()}}
            records.append(rec)
            if len(sheet_rows) < 40:
                sheet_rows.append([(outs["gray"], f"gray {rec['gray']['ciede2000']:.1f}"),
                                   (outs["tiny"], f"tiny {rec['tiny']['ciede2000']:.1f}"),
                                   (outs["anchors"], f"anchors {rec['anchors']['ciede2000']:.1f}"), (gt, "truth")])
            if args.edit_sheet and len(edit_rows) < 6:
                edit_rows.append(edit_row(engines["anchors"], luma, gt))
            print(f"  {rec['name']}: " + " ".join(f"{k} {rec[k]['ciede2000']:.2f}" for k in outs), flush=True)
        de = {k: [r[k]["ciede2000"] for r in records] for k in ("gray", "tiny", "anchors")}
        col = {k: float(np.mean([r[k]["colourfulness_pred"] for r in records])
                        / max(np.mean([r[k]["colourfulness_gt"] for r in records]), 1e-9)) for k in de}
        summary = {"count": len(records), "ciede2000": {k: float(np.mean(v)) for k, v in de.items()},
                   "anchors_vs_gray": paired_bootstrap(de["anchors"], de["gray"]),
                   "anchors_vs_tiny": paired_bootstrap(de["anchors"], de["tiny"]),
                   "tiny_vs_gray": paired_bootstrap(de["tiny"], de["gray"]), "colourfulness_ratio": col}
        result[set_name] = {"summary": summary, "photos": records}
        print(f"\n{set_name}: {len(records)} photos, no texts\n")
        print("| output | CIEDE2000 | colourfulness / truth |\n| --- | --- | --- |")
        for k in de:
            print(f"| {k} | {np.mean(de[k]):.2f} | {col[k]:.2f} |")
        print(f"\nanchors - gray {fmt_ci(summary['anchors_vs_gray'])}; anchors - tiny "
              f"{fmt_ci(summary['anchors_vs_tiny'])}; tiny - gray {fmt_ci(summary['tiny_vs_gray'])}\n")
    if args.timing:
        result["seconds_per_512_photo"] = timing(engines, args.threads)
        print("seconds per 512x512 photo (median of 5): "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["seconds_per_512_photo"].items())
              + f" ({args.threads} threads)")
    if args.sheet and sheet_rows:
        draw_rows(args.sheet, sheet_rows, cell=150)
        print(f"sheet: {args.sheet}")
    if args.edit_sheet and edit_rows:
        draw_rows(args.edit_sheet, edit_rows)
        print(f"edit sheet: {args.edit_sheet}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
