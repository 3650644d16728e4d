"""A box is not an object: a box prompt is refined to the object inside it (GrabCut on the luma).

A textured disc on a differently textured background, gray only, boxed with a margin: the refined
mask is the disc (IoU >= 0.8) and leaves the box's corners out. End to end, a photo's sidecar box
"a red disc" colours the disc and leaves the box's corners neutral, and so does a film's first
mask through the weight-free trackers; ``box_refine="off"`` keeps the rectangle (corners red).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restorer.io.color import srgb_to_lab
from restorer.models.tracking import InstancePrompts, Prompt, ShotPrompts, track_shot
from restorer.models.tracking.refine import refine_box, refine_prompts
from restorer.models.tracking.static import StaticTracker
from restorer.pipelines.tracking import prompt_mask

H, W = 120, 160
CX, CY, R = 84, 58, 34
BOX = (CX - R - 14, CY - R - 14, CX + R + 14, CY + R + 14)  # (36, 10, 132, 106)


def _texture(rng: np.random.Generator, sigma: float) -> np.ndarray:
    import cv2

    noise = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def disc_scene(seed: int = 0, mean_gap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float luma in [0, 1] and the disc's mask: fine grain on a disc, diagonal stripes
    and coarse mottling around it, the same mean brightness unless ``mean_gap``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    background = 0.5 + 0.14 * np.sin(2 * np.pi * (xx + 0.5 * yy) / 17.0) + 0.05 * _texture(rng, 5.0)
    disc_tex = 0.5 + mean_gap + 0.12 * _texture(rng, 0.8)
    disc = (yy - CY) ** 2 + (xx - CX) ** 2 <= R * R
    return np.clip(np.where(disc, disc_tex, background), 0, 1).astype(np.float32), disc


def corners(box, inset: int = 3) -> list[tuple[int, int]]:
    """(y, x) of a point just inside each corner of the box."""
    x0, y0, x1, y1 = box
    return [(y0 + inset, x0 + inset), (y0 + inset, x1 - 1 - inset),
            (y1 - 1 - inset, x0 + inset), (y1 - 1 - inset, x1 - 1 - inset)]


def corner_patches(box, size: int = 6) -> np.ndarray:
    """(H, W) bool: a size x size patch in each corner of the box."""
    x0, y0, x1, y1 = box
    m = np.zeros((H, W), bool)
    for ys in (slice(y0, y0 + size), slice(y1 - size, y1)):
        for xs in (slice(x0, x0 + size), slice(x1 - size, x1)):
            m[ys, xs] = True
    return m


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("seed,mean_gap", [(0, 0.0), (1, 0.0), (2, -0.12)])
def test_refined_box_is_the_disc_and_leaves_the_corners(seed, mean_gap):
    luma, disc = disc_scene(seed, mean_gap)
    mask = refine_box(luma, BOX)
    assert mask.shape == (H, W) and mask.dtype == bool
    assert iou(mask, disc) >= 0.8, iou(mask, disc)
    assert not mask[corner_patches(BOX)].any()
    x0, y0, x1, y1 = BOX
    inside = np.zeros((H, W), bool)
    inside[y0:y1, x0:x1] = True
    assert not mask[~inside].any(), "the refined mask stays inside its box"
    assert np.array_equal(refine_box(luma, BOX), mask), "the same box gives the same mask"
    # the rectangle, for comparison: its IoU with the disc is pi r^2 / box area
    assert iou(prompt_mask(Prompt(frame=0, box=BOX), (H, W)), disc) < 0.45


def test_degenerate_boxes_fall_back_to_the_rectangle():
    luma, _ = disc_scene()
    flat = np.full((H, W), 0.5, np.float32)
    rect = prompt_mask(Prompt(frame=0, box=BOX), (H, W))
    assert np.array_equal(refine_box(flat, BOX), rect), "nothing to separate: the box is kept"
    whole = (0, 0, W, H)
    assert refine_box(luma, whole).all(), "no background outside the box to learn from"
    tiny = (10, 10, 15, 30)
    assert refine_box(luma, tiny).sum() == 5 * 20
    assert not refine_box(luma, (W + 5, 0, W + 9, 10)).any(), "a box off the picture is empty"


def test_prompt_mask_refines_only_when_asked():
    luma, disc = disc_scene()
    p = Prompt(frame=0, box=BOX)
    rect = prompt_mask(p, (H, W))
    assert np.array_equal(prompt_mask(p, (H, W), luma, "off"), rect)
    assert iou(prompt_mask(p, (H, W), luma), disc) >= 0.8
    with pytest.raises(ValueError, match="box refinement"):
        prompt_mask(p, (H, W), luma, "rectangle")


def test_tracker_first_mask_is_refined_and_points_still_count():
    luma, disc = disc_scene()
    shot = ShotPrompts(start=0, end=3, size=(H, W), instances=(
        InstancePrompts("disc", (Prompt(frame=1, box=BOX, points=((5.0, 5.0),)),)),
        InstancePrompts("given", (Prompt(frame=0, mask=disc),)),
    ))
    reads = []

    def read(a, b):
        reads.append((a, b))
        return iter([(t, luma) for t in range(a, b + 1)])

    refined = refine_prompts(shot, read)
    assert reads == [(1, 1)], "each prompted frame with a box is read once"
    assert refined.fingerprint() != shot.fingerprint()
    assert refine_prompts(shot, read, "off") is shot
    store = track_shot(StaticTracker(), refined, read, _tmp_folder())
    first = store.get(0)[0]
    assert iou(first & ~_near((5, 5)), disc) >= 0.8
    assert first[5, 5], "a point prompt beside the box still adds its disc"
    assert not first[corner_patches(BOX)].any()
    assert np.array_equal(store.get(2)[1], disc), "a mask prompt is taken as is"


def _near(xy, r: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (yy - xy[1]) ** 2 + (xx - xy[0]) ** 2 <= r * r


def _tmp_folder() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="box-refine-"))


# --- end to end ------------------------------------------------------------------------------------

SHOTS = """\
version: 1
shots:
  - instances:
      - name: disc
        text: "a red disc"
        prompts:
          - frame: 0
            box: [{b[0]}, {b[1]}, {b[2]}, {b[3]}]
"""


def _ab(rgb: np.ndarray) -> np.ndarray:
    return srgb_to_lab(rgb.astype(np.float32) / 255)[..., 1:]


def _check(ab: np.ndarray, disc: np.ndarray, refined: bool) -> None:
    inner = disc & ~_ring(disc)
    a_disc = float(ab[inner][:, 0].mean())
    assert a_disc > 15, a_disc
    a_corners = ab[corner_patches(BOX)]
    if refined:
        assert float(np.abs(a_corners).mean()) < 2.5, a_corners.mean(axis=0)
    else:
        assert float(a_corners[:, 0].mean()) > 15, a_corners.mean(axis=0)


def _ring(disc: np.ndarray, width: int = 4) -> np.ndarray:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1,) * 2)
    m = disc.astype(np.uint8)
    return cv2.dilate(m, k).astype(bool) & ~cv2.erode(m, k).astype(bool)


@pytest.mark.parametrize("box_refine", ["grabcut", "off"])
def test_photo_box_colours_the_disc_not_the_corners(tmp_path, box_refine):
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run

    luma, disc = disc_scene()
    src = tmp_path / "x.png"
    Image.fromarray(np.rint(luma * 255).astype(np.uint8), "L").save(src)
    (tmp_path / "x.shots.yaml").write_text(SHOTS.format(b=BOX), encoding="utf-8")
    out = tmp_path / "out.png"
    colorize_run([src], out, ColorizeOptions(preset="stencil", quiet=True, box_refine=box_refine))
    _check(_ab(np.asarray(Image.open(out).convert("RGB"))), disc, box_refine == "grabcut")


@pytest.mark.parametrize("tracker,box_refine", [("static", "grabcut"), ("flow", "grabcut"), ("static", "off")])
def test_film_first_mask_colours_the_disc_not_the_corners(tmp_path, tracker, box_refine):
    from media import make_clip, read_video_frames

    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run

    luma, disc = disc_scene()
    y = np.rint(16 + 219 * luma).astype(np.uint8)  # limited-range Y'
    film = make_clip(tmp_path / "f.mkv", frames=4, size=(W, H), pattern=lambda i: y, codec="ffv1",
                     audio_streams=0)
    (tmp_path / "f.shots.yaml").write_text(SHOTS.format(b=BOX).replace(
        "  - instances:", "  - frames: [0, 3]\n    instances:"), encoding="utf-8")
    out = tmp_path / "out.mkv"
    colorize_run([film], out, ColorizeOptions(preset="stencil", quiet=True, codec="ffv1", tracker=tracker,
                                              box_refine=box_refine))
    frames = read_video_frames(out)
    assert len(frames) == 4
    from restorer.io.color import ypbpr_to_rgb

    for _, yy, u, v in (frames[0], frames[-1]):
        pb, pr = ((p.astype(np.float32) - 128) / 224 for p in (u, v))
        up = [np.repeat(np.repeat(p, H // p.shape[0], 0), W // p.shape[1], 1) for p in (pb, pr)]
        rgb = np.clip(ypbpr_to_rgb((yy.astype(np.float32) - 16) / 219, up[0], up[1], "bt601"), 0, 1)
        _check(_ab(np.rint(rgb * 255)), disc, box_refine == "grabcut")


def test_photo_box_with_sam2_takes_sam2s_mask(tmp_path, monkeypatch):
    """With ``sam2`` a photo's box is segmented by SAM2 (loaded once per run), GrabCut where it finds nothing.

    The tiny random model's own answer is replaced (it finds nothing): photo x gets a known square from
    "SAM2", photo y an empty answer."""
    from sam2_tiny import save_tiny_sam2

    from restorer.models.tracking.sam2 import Sam2Tracker
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run

    weights = save_tiny_sam2(tmp_path / "sam2")
    luma, disc = disc_scene()
    for name in ("x", "y"):
        Image.fromarray(np.rint(luma * 255).astype(np.uint8), "L").save(tmp_path / f"{name}.png")
        (tmp_path / f"{name}.shots.yaml").write_text(SHOTS.format(b=BOX), encoding="utf-8")
    square = np.zeros((H, W), bool)
    square[40:70, 60:100] = True
    loads, shots = [], []
    load, masks = Sam2Tracker.from_pretrained.__func__, Sam2Tracker._masks
    monkeypatch.setattr(Sam2Tracker, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(a) or load(cls, *a, **k)))

    def answer(self, out, shot):
        real = masks(self, out, shot)  # the model ran on the box
        assert real.shape == (1, H, W)
        shots.append(shot)
        return square[None] if len(shots) == 1 else np.zeros_like(real)

    monkeypatch.setattr(Sam2Tracker, "_masks", answer)
    out, saved = tmp_path / "out", tmp_path / "masks"
    colorize_run([tmp_path / "x.png", tmp_path / "y.png"], out,
                 ColorizeOptions(preset="stencil", quiet=True, sam2=weights, save_masks=saved, device="cpu"))
    assert len(loads) == 1 and len(shots) == 2
    assert [p.box for p in shots[0].instances[0].prompts] == [tuple(map(float, BOX))]
    assert np.array_equal(np.asarray(Image.open(saved / "x" / "00_disc.png")) > 0, square)
    assert np.array_equal(np.asarray(Image.open(saved / "y" / "00_disc.png")) > 0, refine_box(luma, BOX))


def test_a_face_box_on_the_real_sample_film_becomes_the_face() -> None:
    """On the sample film's frame 60 GrabCut finds nothing in the face box (gray gives it too little);
    the segments inside the box do: most of the box, not its corners (hair and car seat)."""
    from pathlib import Path

    import av

    from restorer.models.tracking.refine import refine_box

    sample = Path(__file__).resolve().parents[3] / "samples" / "carphone.mp4"
    with av.open(str(sample)) as c:
        luma = next(f for i, f in enumerate(c.decode(video=0)) if i == 60).to_ndarray(format="gray")
    x0, y0, x1, y1 = 54, 30, 106, 98  # the sidecar's face box
    m = refine_box(luma.astype(np.float32) / 255, (x0, y0, x1, y1))
    fill = m.sum() / ((x1 - x0) * (y1 - y0))
    assert 0.5 <= fill < 0.95, fill
    assert not m[y0:y0 + 4, x0:x0 + 4].any() and not m[y0:y0 + 4, x1 - 4:x1].any()  # the top corners stay out
    assert m[(y0 + y1) // 2, (x0 + x1) // 2]  # the middle of the face is in
