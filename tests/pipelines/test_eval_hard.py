"""The hard binding evaluation: unseen colour words, free phrasings, objects on an automatic photo,
leakage in the border band (issue 11 item 5)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from restorer import metrics
from restorer.models.colornames import COUNTER_COLORS
from restorer.models.colornames import TRAINED_COLOURS as PALETTE
from restorer.pipelines import evaluate as ev


def test_hard_colours_are_never_training_words_and_far_from_the_truth() -> None:
    from restorer.io.color import hue_difference_deg, lab_hue_deg
    from restorer.models.colornames import parse_color

    training = set(PALETTE) | set(COUNTER_COLORS)
    assert not set(ev.HARD_COLORS) & training
    for phrase in ev.HARD_PHRASINGS:
        assert not phrase.startswith("a {color}")  # training's one template
    for truth in [(50, 60, 40), (60, -40, 30), (40, 10, -50), (70, 0, 0)]:
        c = ev.hard_color(truth)
        assert c in ev.HARD_COLORS
        if np.hypot(*truth[1:]) >= 10:
            assert hue_difference_deg(lab_hue_deg(np.array(truth[1:], float)),
                                      lab_hue_deg(np.array(parse_color(c).lab[1:]))) >= 90


def test_border_band_is_the_ring_just_outside() -> None:
    mask = np.zeros((100, 100), bool)
    mask[40:60, 30:50] = True
    band = metrics.border_band(mask)  # 2 % of the 141-px diagonal: 3 px
    dist = ndimage.distance_transform_edt(~mask)  # an independent distance to the mask
    assert not (band & mask).any()
    assert band[(dist > 0) & (dist <= 2)].all()  # every pixel within 2 px is in it
    assert not band[dist > 3 * np.sqrt(2)].any()  # none beyond the kernel's reach


def _object_dataset(tmp_path):
    from restorer.training.dataset.build import build_dataset

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i, (bg, obj) in enumerate([((60, 140, 60), (200, 40, 40)), ((70, 90, 200), (230, 200, 40))]):
        img = np.zeros((96, 128, 3), np.float32)
        img[:] = bg
        img[30:62, 40:80] = obj  # about 10 % of the photo
        img += rng.normal(0, 2, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photos / f"p{i}.png")
    data = tmp_path / "data"
    build_dataset(photos, data, size=128, val_fraction=0.0, test_fraction=0.0, namer=lambda crop: "box")
    return data


def test_stencil_binds_unseen_words_without_bleeding(tmp_path) -> None:
    data = _object_dataset(tmp_path)
    r = ev.evaluate_hard(data, split="train", preset="stencil")
    assert r["hard_instances"] == 2
    assert r["hard_binding"] == 1.0  # the stencil lays the named colour itself
    assert r["band_leakage"] < 0.5 and r["far_leakage"] == 0.0
    texts = [h["text"] for h in r["raw"]["hard"]]
    assert texts[0].startswith("the box should be bright ") and texts[1].startswith("make the box ")
    assert all(t.split()[-1] in ev.HARD_COLORS or t.split()[0] in ev.HARD_COLORS for t in texts)


def test_band_leakage_catches_colour_that_bleeds(tmp_path, monkeypatch) -> None:
    data = _object_dataset(tmp_path)
    real = ev.colorize

    def bleeding(engine, luma, texts, masks, seed):
        out = real(engine, luma, texts, masks, seed)
        if texts:  # paint the instance's colour 2 px beyond its mask, as a blurry model would
            grown = ndimage.binary_dilation(masks[0], iterations=2) & ~masks[0]
            out = out.copy()
            out[grown] = out[masks[0]].mean(0)
        return out

    monkeypatch.setattr(ev, "colorize", bleeding)
    r = ev.evaluate_hard(data, split="train", preset="stencil")
    assert r["band_leakage"] > 5 and r["far_leakage"] == 0.0
