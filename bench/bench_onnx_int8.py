"""Does int8 pay for tiny's automatic path on ONNX Runtime? Speed and development-split colour, in one run.

Run: python bench/bench_onnx_int8.py DATA [--threads 2] [--repeat 5] [--calibration 32] [--json FILE]
e.g. nice python bench/bench_onnx_int8.py /tmp/w/DATA_final --threads 2

tiny's features (EfficientNet-Lite0 and the prior's Lite2) and colour prior graphs, exported as for
``--runtime onnx``, then quantised with ``onnxruntime.quantization``:

* ``int8 dynamic``: ``quantize_dynamic`` (weights int8, activations quantised at run time; what issue 15 names);
* ``int8 static``: ``quantize_static``, QOperator format, per-channel weights, activations calibrated (MinMax) on
  ``--calibration`` photos of the dataset's *train* split.

For each: seconds of the automatic path (features + prior, what a photo without texts costs) on a 512x512
picture (median of ``--repeat`` after a warm-up), and the development split's mean CIEDE2000 with no texts
against float32 ONNX (paired differences, 95 % bootstrap intervals). Issue 15's rule: int8 is kept only if its
CIEDE2000 moves by less than 0.2, and the target is that it is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRAPHS = ("features", "prior_features", "prior")


def quantise(src: Path, dst: Path, kind: str, calibration: list[dict[str, list]]) -> None:
    """A copy of the exported folder ``src`` with its feature and prior graphs in int8."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    shutil.copytree(src, dst)
    manifest = json.loads((src / "manifest.json").read_text())
    for name in GRAPHS:
        if name not in manifest["graphs"]:
            continue
        graph = dst / manifest["graphs"][name]
        pre = dst / f"{name}.pre.onnx"
        quant_pre_process(str(graph), str(pre), skip_symbolic_shape=True)
        if kind == "dynamic":
            quantize_dynamic(str(pre), str(graph), weight_type=QuantType.QInt8, per_channel=True)
        else:
            feeds = [{k: v for k, v in c.items()} for c in calibration if set(c) >= _inputs(pre)]
            if not feeds:
                raise SystemExit(f"no calibration inputs for {name}")

            reader = _Reader(CalibrationDataReader, feeds)
            quantize_static(str(pre), str(graph), reader, quant_format=QuantFormat.QOperator, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        pre.unlink()


def _Reader(base, feeds: list[dict]):
    class Reader(base):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    return Reader()


def _inputs(path: Path) -> set[str]:
    import onnx

    return {i.name for i in onnx.load(str(path)).graph.input}


class Recorder:
    """Wraps an engine's ORT sessions to record the inputs each graph receives (the calibration data)."""

    def __init__(self, engine):
        self.feeds: list[dict] = []
        for part in (engine.space.features, engine.prior, engine.prior_features):
            if part is not None:
                sess = part.sess
                part.sess = self._wrap(sess)

    def _wrap(self, sess):
        recorder = self

        class Wrapped:
            def __init__(self):
                self.inner = sess

            def get_inputs(self):
                return sess.get_inputs()

            def run(self, names, feed):
                recorder.feeds.append({k: np.array(v) for k, v in feed.items()})
                return sess.run(names, feed)

        return Wrapped()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="dataset folder (restorer dataset build)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--calibration", type=int, default=32, help="train-split photos that calibrate static int8")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from restorer.io.color import rgb_to_luma
    from restorer.metrics import mean_ciede2000, paired_bootstrap
    from restorer.models.engine import FrameInput
    from restorer.models.mtcolor.onnx_runtime import onnx_folder
    from restorer.pipelines.evaluate import colorize
    from restorer.pipelines.options import shot_seed
    from restorer.presets import load_preset, open_engine
    from restorer.training.dataset.records import load_record, read_dataset

    preset = load_preset("tiny")
    rng = np.random.default_rng(0)
    import cv2

    luma512 = cv2.GaussianBlur(rng.random((args.size, args.size)).astype(np.float32), (0, 0), 4)
    luma512 = (luma512 - luma512.min()) / (luma512.max() - luma512.min())
    frame = FrameInput(0, luma512, np.zeros((0, args.size, args.size), bool))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RESTORER_CACHE"] = str(Path(tmp) / "cache")
        engines = {"torch": open_engine(preset, runtime="torch"),
                   "onnx": open_engine(preset, runtime="onnx", threads=args.threads)}
        exported = onnx_folder(dict(preset.options), None)
        recorder = Recorder(engines["onnx"])
        for rec in list(read_dataset(args.data, "train"))[: args.calibration]:
            rgb, _ = load_record(args.data, rec)
            engines["onnx"].automatic(FrameInput(0, rgb_to_luma(rgb).astype(np.float32), np.zeros((0, 1, 1), bool)))
        engines["onnx"] = open_engine(preset, runtime="onnx", threads=args.threads)  # unwrapped sessions
        for kind in ("dynamic", "static"):
            folder = Path(tmp) / f"int8-{kind}"
            quantise(exported, folder, kind, recorder.feeds)
            engines[f"int8 {kind}"] = open_engine(preset, runtime="onnx", threads=args.threads, weights=folder)
        seconds = {}
        for label, engine in engines.items():
            engine.automatic(frame)
            runs = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                engine.automatic(frame)
                runs.append(time.perf_counter() - t)
            seconds[label] = statistics.median(runs)
        seed = shot_seed(0, 0)
        scores: dict[str, list[float]] = {k: [] for k in engines}
        for rec in read_dataset(args.data, "val"):
            rgb, _ = load_record(args.data, rec)
            gt = np.round(rgb * 255).astype(np.float64)
            luma = rgb_to_luma(gt / 255.0).astype(np.float32)
            none = np.zeros((0, *luma.shape), bool)
            for label, engine in engines.items():
                scores[label].append(mean_ciede2000(colorize(engine, luma, [], none, seed), gt))
    print(f"tiny automatic path (features + prior); command: python bench/bench_onnx_int8.py {' '.join(sys.argv[1:])}")
    print(f"{args.size}x{args.size}, {args.threads} threads, median of {args.repeat}; development split "
          f"{len(scores['onnx'])} photos, no texts\n")
    print("| runtime | seconds | time / onnx float32 | CIEDE2000 | minus onnx float32 [95 % CI] |")
    print("| --- | --- | --- | --- | --- |")
    table = {}
    for label in engines:
        d = paired_bootstrap(scores[label], scores["onnx"])
        table[label] = {"seconds": seconds[label], "ciede2000": float(np.mean(scores[label])), "vs_onnx": d}
        print(f"| {label} | {seconds[label]:.3f} | {seconds[label] / seconds['onnx']:.2f}x | "
              f"{np.mean(scores[label]):.2f} | {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] |")
    for kind in ("dynamic", "static"):
        row = table[f"int8 {kind}"]
        keep = abs(row["vs_onnx"]["mean"]) < 0.2 and row["seconds"] < seconds["onnx"]
        print(f"int8 {kind}: colour moves {row['vs_onnx']['mean']:+.3f} (rule: < 0.2), "
              f"{row['seconds'] / seconds['onnx']:.2f}x the time: {'keep' if keep else 'drop'}")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "scores": scores}, indent=1))


if __name__ == "__main__":
    main()
