"""The texts of a record: an "object + colour" text per instance region and a global text (:mod:`.build`'s
docstring, steps 3-4)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from restorer.models.colornames import name_color

GENERIC = "area"


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in the classifier's output order (package data)."""
    from importlib.resources import files

    text = files("restorer.models").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()


class ObjectNamer:
    """EfficientNet-Lite0's ImageNet top-1 label on a crop, or ``GENERIC`` below the confidence."""

    def __init__(self, min_confidence: float):
        import torch

        from restorer.models.mtcolor.features import _load_lite0

        torch.manual_seed(0)
        self.net, self.min_confidence = _load_lite0().eval(), min_confidence
        self.labels = imagenet_classes()

    def __call__(self, crop: np.ndarray) -> str:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.no_grad():
            p = self.net((x - mean) / std).softmax(-1)[0]
        conf, idx = float(p.max()), int(p.argmax())
        return self.labels[idx].lower() if conf >= self.min_confidence else GENERIC


@functools.lru_cache(maxsize=2)
def object_namer(min_confidence: float) -> ObjectNamer:
    """One classifier per process (it takes seconds to load)."""
    return ObjectNamer(min_confidence)


def instance_text(obj: str, color: str) -> str:
    return f"a {color} {obj}"


def tone_words(lab: np.ndarray) -> str:
    """Overall tone of an image from its pixels' CIELab: warm/cool/neutral and colourful/muted/gray."""
    chroma = float(np.hypot(lab[:, 1], lab[:, 2]).mean())
    b_mean = float(lab[:, 2].mean())
    vivid = "colourful" if chroma > 25 else "muted" if chroma > 8 else "nearly gray"
    warmth = "warm" if b_mean > 8 else "cool" if b_mean < -4 else "neutral"
    return f"a {warmth}, {vivid} photo"


def global_text(tone: str, instances: list[dict[str, Any]], most: int = 4) -> str:
    big = sorted(instances, key=lambda r: -r["area"])[:most]
    phrases = [r["text"] for r in big]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{tone} of {listing}"


def describe(rgb: np.ndarray, labels: np.ndarray, namer, palette: dict[str, np.ndarray]) -> dict[str, Any]:
    """Instance records and the global text of one segmented photo."""
    from restorer.io.color import srgb_to_lab

    lab = srgb_to_lab(rgb).reshape(-1, 3)
    instances = []
    for k in range(int(labels.max()) + 1):
        m = labels.ravel() == k
        mean = lab[m].mean(0)
        color = name_color(mean, palette)
        ys, xs = np.nonzero(labels == k)
        obj = namer(rgb[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        instances.append({"id": k, "object": obj, "color": color, "text": instance_text(obj, color),
                          "area": round(float(m.mean()), 6), "lab": [round(float(v), 3) for v in mean]})
    return {"instances": instances, "global": global_text(tone_words(lab), instances)}
