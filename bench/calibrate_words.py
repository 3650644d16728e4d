"""Which colour each trained word actually gives: tiny's rendered hue and chroma per colour word.

Run: python bench/calibrate_words.py DATA [--photos 12] [--shard K N] [--out DIR]
     python bench/calibrate_words.py --merge DIR -o restorer/weights/tiny/rendered_colours.json

On TRAINING photos only (the development and test splits are never read), the largest region covering
3-40 % of each photo gets "a {word} {object}" for every vivid trained colour word, one at a time on an
otherwise automatic photo, and the mean a*b* inside the region is recorded. The merged file holds per
word the chroma-weighted circular mean hue and the mean chroma; `canonical_text` then reads a colour the
model was not trained on as the word whose *rendered* hue is nearest to it (the model's "green" is
yellow-green, so an emerald request is better served by another word).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np


def vivid_words() -> list[str]:
    from restorer.models.colornames import TRAINED_COLOURS, parse_color

    return [w for w in TRAINED_COLOURS if math.hypot(*parse_color(w).lab[1:]) >= 20]


def run(data: Path, photos: int, shard: tuple[int, int]) -> list[dict]:
    from restorer.io.color import rgb_to_luma, srgb_to_lab
    from restorer.pipelines import evaluate as ev
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine
    from restorer.training.dataset.records import load_record, read_dataset

    engine, seed = open_engine(load_preset("tiny"), device="cpu"), shot_seed(0, 0)
    rows = []
    for rec in read_dataset(data, "train")[:photos][shard[0]::shard[1]]:
        rgb, labels = load_record(data, rec)
        luma = rgb_to_luma(rgb)
        picked = ev.object_regions(rec)
        if not picked:
            continue
        inst = picked[0]
        m = labels == inst["id"]
        for word in vivid_words():
            out = ev.colorize(engine, luma, [f"a {word} {inst['object']}"], m[None], seed)
            a, b = srgb_to_lab(out[m] / 255)[:, 1:].mean(0)
            rows.append({"name": rec["name"], "word": word, "a": float(a), "b": float(b)})
    return rows


def merge(folder: Path) -> dict:
    rows = [r for f in sorted(folder.glob("words_*.json")) for r in json.loads(f.read_text())]
    out = {}
    for word in sorted({r["word"] for r in rows}):
        ab = np.array([[r["a"], r["b"]] for r in rows if r["word"] == word])
        mean = ab.mean(0)  # the chroma-weighted circular mean hue is the hue of the mean a*b*
        out[word] = {"hue": round(float(math.degrees(math.atan2(mean[1], mean[0])) % 360), 1),
                     "chroma": round(float(np.hypot(*ab.T).mean()), 1), "photos": int(len(ab))}
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path, nargs="?")
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--shard", type=int, nargs=2, default=(0, 1))
    ap.add_argument("--out", type=Path, default=Path("calibration"))
    ap.add_argument("--merge", type=Path, default=None)
    ap.add_argument("-o", "--output", type=Path, default=None)
    a = ap.parse_args()
    if a.merge:
        table = merge(a.merge)
        text = json.dumps({"what": "tiny's rendered colour per trained word, training photos only "
                                   "(bench/calibrate_words.py)", "words": table}, indent=1, sort_keys=True)
        if a.output:
            a.output.write_text(text + "\n")
        print(text)
        return
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    rows = run(a.data, a.photos, tuple(a.shard))
    (a.out / f"words_{a.shard[0]}.json").write_text(json.dumps(rows))
    print(f"{len(rows)} runs in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
