"""The temporal stage (``temporal="propagate"``): keyframes coloured by the engine, flow between them.

Generated gray clips whose true chroma is known: a stub engine returns that truth (and records the
frames it was asked for), so what the output shows between keyframes is what the flow carried.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from media import make_clip, read_video_frames

from restorer.io.color import push_pull, srgb_to_lab, ypbpr_to_rgb
from restorer.models.stencil import StencilEngine
from restorer.pipelines.options import ColorizeOptions
from restorer.pipelines.temporal import segment_chunk, window_starts
from restorer.pipelines.tracking import tracker_factory
from restorer.pipelines.video import VideoColorizationPipeline

W, H = 128, 96
OBJ = 28  # the moving object's side


def smooth_noise(shape: tuple[int, int], seed: int, blur: float) -> np.ndarray:
    """Smooth random texture in [-1, 1]."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x = cv2.GaussianBlur(x, (0, 0), blur)
    return x / (np.abs(x).max() + 1e-6)


class Scene:
    """A textured square moving (2, 1) px a frame (``slow``: (1, 1/3)) over a textured background panning 1 px a frame.

    ``luma(t)`` is Y' in [0, 1]; ``chroma(t)`` the true a*b* (H, W, 2), moving with the texture it
    belongs to. ``switch``: from that frame on, the background is a different picture (the flow
    cannot explain it: an adaptive keyframe).
    """

    def __init__(self, frames: int, switch: int | None = None, still: bool = False, slow: bool = False):
        self.frames, self.switch, self.still, self.slow = frames, switch, still, slow
        big = (H, W + frames + 8)
        self.bg_luma = [0.5 + 0.3 * smooth_noise(big, 1, 2.0), 0.5 - 0.3 * smooth_noise(big, 1, 2.0)]  # negative
        self.bg_ab = [np.stack([35 * smooth_noise(big, s + 1, 9.0), 35 * smooth_noise(big, s + 2, 9.0)], -1)
                      for s in (1, 5)]
        self.obj_luma = 0.25 + 0.15 * smooth_noise((OBJ, OBJ), 3, 1.5)
        self.obj_ab = np.stack([45 + 10 * smooth_noise((OBJ, OBJ), 4, 4.0),
                                -35 + 10 * smooth_noise((OBJ, OBJ), 5, 4.0)], -1)

    def _pos(self, t: int) -> tuple[int, int, int]:
        if self.still:
            return 0, 30, 20
        if self.slow:
            return t, 20 + t, 20 + t // 3
        return t, 20 + 2 * t, 20 + t

    def _layer(self, t: int, which: list) -> np.ndarray:
        shift, _, _ = self._pos(t)
        k = 1 if self.switch is not None and t >= self.switch else 0
        return which[k][:, shift:shift + W].copy()

    def luma(self, t: int) -> np.ndarray:
        img = self._layer(t, self.bg_luma)
        _, x, y = self._pos(t)
        img[y:y + OBJ, x:x + OBJ] = self.obj_luma
        return np.clip(img, 0, 1).astype(np.float32)

    def chroma(self, t: int) -> np.ndarray:
        ab = self._layer(t, self.bg_ab)
        _, x, y = self._pos(t)
        ab[y:y + OBJ, x:x + OBJ] = self.obj_ab
        return ab.astype(np.float32)

    def object_mask(self, t: int) -> np.ndarray:
        m = np.zeros((H, W), bool)
        _, x, y = self._pos(t)
        m[y:y + OBJ, x:x + OBJ] = True
        return m

    def clip(self, path: Path) -> Path:
        return make_clip(path, frames=self.frames, size=(W, H), codec="ffv1", pix_fmt="gray", audio_streams=0,
                         pattern=lambda t: np.rint(self.luma(t) * 255).astype(np.uint8))


class TruthEngine:
    """Implements the engine protocol: the scene's true chroma (plus an optional per-frame flicker)."""

    name = "truth"

    def __init__(self, scene: Scene, flicker: float = 0.0, fail_after: int | None = None):
        self.scene, self.flicker, self.fail_after = scene, flicker, fail_after
        self.calls: list[int] = []

    def validate(self, ctx) -> None:
        """Any instance text will do: the scene knows its colours."""

    def shot(self, ctx, frames):
        for frame in frames:
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise KeyboardInterrupt("killed")  # a kill mid-film: nothing after this is written
            self.calls.append(frame.index)
            ab = self.scene.chroma(frame.index)
            if self.flicker:
                ab = ab + self.flicker * np.float32([np.sin(frame.index * 2.1), np.cos(frame.index * 1.7)])
            yield ab

    def close(self) -> None:
        pass


def run(clip: Path, out: Path, engine, *, shots: Path | None = None, tracker: str = "static", **kw):
    opts = ColorizeOptions(preset="stencil", codec="ffv1", quiet=True, tracker=tracker, shots=shots, **kw)
    return VideoColorizationPipeline(engine, opts, tracker_factory(opts))(clip, out)


def one_shot(folder: Path, frames: int, instances: str = "", prompt: str = "") -> Path:
    path = folder / "shots.yaml"
    path.write_text(f"version: 1\nshots:\n  - frames: [0, {frames - 1}]\n{prompt}{instances}", encoding="utf-8")
    return path


def film_ab(path: Path) -> np.ndarray:
    """(T, H, W, 2) a*b* of a decoded 8-bit BT.601 limited-range film with full-size chroma."""
    out = []
    for _pts, y, u, v in read_video_frames(path):
        yn = (y.astype(np.float32) - 16) / 219
        pb, pr = ((p.astype(np.float32) - 128) / 224 for p in (u, v))
        rgb = np.clip(ypbpr_to_rgb(yn, pb, pr, "bt601"), 0, 1)
        out.append(srgb_to_lab(rgb)[..., 1:])
    return np.stack(out)


def interior(mask: np.ndarray, px: int) -> np.ndarray:
    """Pixels at least ``px`` from the mask's edge, inside it."""
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


# --- planning -------------------------------------------------------------------------------------------


def test_segments_start_on_fixed_keyframes_and_windows_do_not_depend_on_chunking():
    assert segment_chunk(5, 8) == 8 and segment_chunk(240, 24) == 240 and segment_chunk(250, 24) == 240
    assert window_starts(10, 40, 8) == [10, 18, 26, 34]
    assert window_starts(10, 40, 8, user=[12, 99]) == [10, 12, 18, 26, 34]
    for chunk in (1, 8, 9, 17, 240):
        step = segment_chunk(chunk, 8)
        assert all((a - 10) % 8 == 0 for a in range(10, 41, step))


def test_push_pull_keeps_known_pixels_and_fills_the_rest_from_them():
    values = np.zeros((20, 30, 2), np.float32)
    known = np.zeros((20, 30), bool)
    known[:, :10] = True
    values[known] = (7.0, -3.0)
    out = push_pull(values, known)
    assert np.allclose(out, [7.0, -3.0], atol=1e-4)


# --- colour carried by the flow -----------------------------------------------------------------------


def test_between_keyframes_the_chroma_of_a_moving_textured_object_is_carried_by_the_flow(tmp_path):
    scene = Scene(frames=25)
    clip = scene.clip(tmp_path / "moving.mkv")
    engine = TruthEngine(scene)
    result = run(clip, tmp_path / "prop.mkv", engine, temporal="propagate", keyframe_interval=12)
    keys = result.keyframes[0]
    assert keys[:1] == [0] and {12, 24} <= set(keys)
    assert engine.calls == keys  # the engine coloured the keyframes only, each once, in order
    assert len(keys) <= 6
    assert 0.5 < result.propagated_share < 1.0

    off = TruthEngine(scene)
    run(clip, tmp_path / "off.mkv", off, temporal="off")
    assert off.calls == list(range(25))
    prop, truth = film_ab(tmp_path / "prop.mkv"), film_ab(tmp_path / "off.mkv")
    errors, held = [], []
    for t in set(range(25)) - set(keys):
        obj = scene.object_mask(t)
        valid = interior(obj, 3) | ~cv2.dilate(obj.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        valid[:, :4] = valid[:, -4:] = valid[:4] = valid[-4:] = False
        err = np.linalg.norm(prop[t] - truth[t], axis=-1)[valid]
        errors.append(err)
        k = max(k for k in keys if k < t)
        held.append(np.linalg.norm(truth[k] - truth[t], axis=-1)[valid])  # the keyframe's colour held still
    errors, held = np.concatenate(errors), np.concatenate(held)
    assert np.median(errors) < 2.0 and np.percentile(errors, 90) < 5.0, (np.median(errors),
                                                                         np.percentile(errors, 90))
    assert np.median(held) > 4 * np.median(errors)  # the colour moved with the picture


def test_a_static_clip_keeps_its_chroma_constant_and_flicker_is_gone_between_keyframes(tmp_path):
    scene = Scene(frames=20, still=True)
    clip = scene.clip(tmp_path / "still.mkv")
    run(clip, tmp_path / "steady.mkv", TruthEngine(scene), temporal="propagate", keyframe_interval=10)
    ab = film_ab(tmp_path / "steady.mkv")
    assert np.abs(ab - ab[0]).max() < 1.0

    run(clip, tmp_path / "flicker_off.mkv", TruthEngine(scene, flicker=6.0), temporal="off")
    result = run(clip, tmp_path / "flicker_prop.mkv", TruthEngine(scene, flicker=6.0), temporal="propagate",
                 keyframe_interval=10)
    assert result.keyframes[0] == [0, 10]
    step_off = np.abs(np.diff(film_ab(tmp_path / "flicker_off.mkv"), axis=0)).mean()
    step_prop = np.abs(np.diff(film_ab(tmp_path / "flicker_prop.mkv"), axis=0)).mean()
    assert step_prop < 0.25 * step_off


def test_new_content_makes_a_keyframe_and_is_not_smeared(tmp_path):
    scene = Scene(frames=24, switch=13)
    clip = scene.clip(tmp_path / "switch.mkv")
    engine = TruthEngine(scene)
    result = run(clip, tmp_path / "prop.mkv", engine, temporal="propagate", keyframe_interval=24)
    assert 13 in result.keyframes[0] and engine.calls == result.keyframes[0]
    prop, truth = film_ab(tmp_path / "prop.mkv"), np.stack([scene.chroma(t) for t in range(24)])
    background = ~cv2.dilate(scene.object_mask(14).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.median(np.linalg.norm(prop[14] - truth[14], axis=-1)[background]) < 3.0


# --- instances ride on their masks ---------------------------------------------------------------------

INSTANCE = """\
    instances:
      - name: square
        text: "a red square"
        prompts:
          - frame: 0
            box: [20, 20, 48, 48]
"""


def test_an_instance_colour_stays_inside_its_tracked_mask(tmp_path):
    frames = 48
    scene = Scene(frames=frames, slow=True)
    clip = scene.clip(tmp_path / "walker.mkv")
    masks = tmp_path / "masks"
    with_inst = one_shot(tmp_path, frames, INSTANCE, prompt='    prompt: "sepia"\n')
    stencil = StencilEngine()
    result = run(clip, tmp_path / "with.mkv", stencil, shots=with_inst, tracker="flow", temporal="propagate",
                 keyframe_interval=24, save_masks=masks)
    assert result.keyframes[0][:1] == [0] and 24 in result.keyframes[0]
    without = tmp_path / "plain" / "shots.yaml"
    without.parent.mkdir()
    one_shot(without.parent, frames, prompt='    prompt: "sepia"\n')
    run(clip, tmp_path / "without.mkv", stencil, shots=without, tracker="flow", temporal="propagate",
        keyframe_interval=24)
    a, b = film_ab(tmp_path / "with.mkv"), film_ab(tmp_path / "without.mkv")
    folder = masks / "shot0001" / "00_square"
    worst_out, inside_a = 0.0, []
    for t in range(frames):
        mask = cv2.imread(str(folder / f"{t:08d}.png"), cv2.IMREAD_GRAYSCALE) > 127
        assert mask.sum() > 0.5 * OBJ * OBJ
        near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        worst_out = max(worst_out, float(np.abs(a[t] - b[t]).max(axis=-1)[~near].max()))
        inside_a.append(float(a[t][interior(mask, 2), 0].mean()))
    assert worst_out < 1.0, worst_out  # outside the mask: as if the instance were not there
    assert min(inside_a) > 20  # inside: red all through the shot


# --- resume and chunking --------------------------------------------------------------------------------


def test_chunked_whole_and_killed_then_resumed_give_the_same_film_and_keyframes(tmp_path):
    scene = Scene(frames=30, switch=13)
    clip = scene.clip(tmp_path / "c.mkv")
    whole = run(clip, tmp_path / "whole.mkv", TruthEngine(scene), temporal="propagate", keyframe_interval=8)
    chunked = run(clip, tmp_path / "chunked.mkv", TruthEngine(scene), temporal="propagate", keyframe_interval=8,
                  chunk_frames=5)
    assert 13 in whole.keyframes[0]  # an adaptive one, inside the window [8, 16)
    assert chunked.keyframes == whole.keyframes
    assert chunked.propagated_share == pytest.approx(whole.propagated_share)
    with pytest.raises(KeyboardInterrupt):
        run(clip, tmp_path / "resumed.mkv", TruthEngine(scene, fail_after=4), temporal="propagate",
            keyframe_interval=8, chunk_frames=5)
    resumed = run(clip, tmp_path / "resumed.mkv", TruthEngine(scene), temporal="propagate", keyframe_interval=8,
                  chunk_frames=5)
    assert resumed.frames_reused > 0 and resumed.keyframes == whole.keyframes
    reference = read_video_frames(tmp_path / "whole.mkv")
    for other in ("chunked.mkv", "resumed.mkv"):
        frames = read_video_frames(tmp_path / other)
        assert len(frames) == len(reference)
        for (_, *planes), (_, *ref) in zip(frames, reference, strict=True):
            for p, r in zip(planes, ref, strict=True):
                assert np.array_equal(p, r), other


def test_unknown_temporal_mode_is_refused():
    from restorer.errors import InputError

    with pytest.raises(InputError, match="temporal"):
        VideoColorizationPipeline(StencilEngine(), ColorizeOptions(temporal="smooth"), None)


# --- no pops, and what no flow explains ------------------------------------------------------------------


def _propagate(scene: Scene, frames: int, interval: int, colour, fill=None, **settings) -> tuple[np.ndarray, object]:
    """Run the Propagator directly on the scene's frames; (T, H, W, 2) chroma at the working size."""
    from restorer.pipelines.temporal import Item, Propagator, TemporalSettings

    starts = window_starts(0, frames - 1, interval)
    prop = Propagator(TemporalSettings(interval=interval, **settings), (H, W), starts, colour, fill)
    items = (Item(t, scene.luma(t), np.zeros((0, H, W), bool)) for t in range(frames))
    out = np.stack([ab for _item, ab in prop.run(items, lambda: None)])
    return out, prop


@pytest.mark.parametrize("depth", [1, 3])
def test_a_keyframe_shows_the_mean_of_the_engine_on_it_and_the_keyframes_before_so_it_does_not_flash(depth):
    scene = Scene(frames=36, still=True)

    def noisy(item):  # an engine that disagrees with itself from keyframe to keyframe
        rng = np.random.default_rng(item.index)
        return scene.chroma(item.index) + rng.uniform(-8, 8, size=2).astype(np.float32)

    plain, p0 = _propagate(scene, 36, 6, noisy, reconcile=0)
    steady, p1 = _propagate(scene, 36, 6, noisy, reconcile=depth)
    assert p0.stats.keyframes == p1.stats.keyframes == [0, 6, 12, 18, 24, 30]
    truth = scene.chroma(0)
    key_plain = np.array([(plain[k] - truth).mean(axis=(0, 1)) for k in p0.stats.keyframes])
    key_steady = np.array([(steady[k] - truth).mean(axis=(0, 1)) for k in p1.stats.keyframes])
    assert np.allclose(key_plain, [noisy(type("I", (), {"index": k})).mean((0, 1)) - truth.mean((0, 1))
                                   for k in p0.stats.keyframes], atol=0.05)
    # each keyframe: the mean of the engine's colour on it and on the ``depth`` keyframes before it
    want = np.array([key_plain[max(0, n - depth):n + 1].mean(axis=0) for n in range(len(key_plain))])
    assert np.allclose(key_steady, want, atol=0.1)
    # frame-to-frame change of the whole picture's colour: smaller everywhere, and no keyframe jumps
    step = lambda ab: np.abs(np.diff(ab.mean(axis=(1, 2)), axis=0)).max(axis=-1)  # noqa: E731
    assert step(steady).sum() < 0.75 * step(plain).sum()
    assert step(steady).max() < step(plain).max()


def test_a_film_is_the_same_whole_and_in_segments_with_deeper_reconciliation(tmp_path, monkeypatch):
    import functools

    import restorer.pipelines.temporal as temporal

    monkeypatch.setattr(temporal, "TemporalSettings", functools.partial(temporal.TemporalSettings, reconcile=3))
    scene = Scene(frames=40, slow=True)

    def engine():
        return TruthEngine(scene, flicker=6.0)

    clip = scene.clip(tmp_path / "c.mkv")
    whole = run(clip, tmp_path / "whole.mkv", engine(), temporal="propagate", keyframe_interval=6)
    chunked = run(clip, tmp_path / "chunked.mkv", engine(), temporal="propagate", keyframe_interval=6,
                  chunk_frames=6)
    assert chunked.keyframes == whole.keyframes and len(whole.keyframes[0]) >= 6
    reference = read_video_frames(tmp_path / "whole.mkv")
    frames = read_video_frames(tmp_path / "chunked.mkv")
    assert len(frames) == len(reference)
    for (_, *planes), (_, *ref) in zip(frames, reference, strict=True):
        for p, r in zip(planes, ref, strict=True):
            assert np.array_equal(p, r)


def test_pixels_no_flow_explains_take_the_engines_cheap_colour_blended_in():
    scene = Scene(frames=16)  # the background pans left 1 px a frame: new columns enter on the right
    truth = scene.chroma
    calls = []

    def cheap(item):
        calls.append(item.index)
        return truth(item.index)

    without, _ = _propagate(scene, 16, 100, lambda item: truth(item.index))
    filled, prop = _propagate(scene, 16, 100, lambda item: truth(item.index), cheap)
    assert prop.stats.keyframes == [0]
    assert 15 in calls and 0 not in calls  # never on a keyframe
    calls.clear()
    still = Scene(frames=8, still=True)
    _propagate(still, 8, 100, lambda item: still.chroma(item.index), cheap)
    assert calls == []  # everything explained: the engine is not asked
    t = 15
    entered = np.zeros((H, W), bool)
    entered[4:-4, W - 12:W - 3] = True  # columns that entered after the keyframe (away from the feathered rim)
    entered &= ~scene.object_mask(t)
    err = lambda ab: np.linalg.norm(ab[t] - truth(t), axis=-1)[entered].mean()  # noqa: E731
    assert err(filled) < 0.5 * err(without), (err(filled), err(without))
    # a frame the flow explains is left alone (frame 1: one step from the keyframe)
    assert np.median(np.abs(filled[1] - without[1]).max(axis=-1)) < 0.01
    # inside the picture, where composed flow fails on the texture, it is no worse than the keyframe's smear
    inside = np.zeros((H, W), bool)
    inside[8:-8, 8:W - 30] = True
    changed = inside & (np.abs(filled[t] - without[t]).max(axis=-1) > 0.5)
    near = lambda ab: np.linalg.norm(ab[t] - truth(t), axis=-1)[changed].mean()  # noqa: E731
    assert near(filled) <= near(without)
