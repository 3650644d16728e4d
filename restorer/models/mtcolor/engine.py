"""The MT-Color engine behind the ``tiny`` and ``sd15`` presets.

``open_mtcolor(options, device=..., dtype=..., weights=..., base=..., overrides=...)`` builds it once
per run; :meth:`MTColorEngine.shot` embeds the shot's texts once, then for every frame runs
multi-instance sampling and yields a*b* chroma (h, w, 2) float32 at the engine's working
size (see :mod:`restorer.models.mtcolor.spaces`); the pipeline upsamples and recombines.

Films: every frame of a shot starts from the same initial noise, drawn from the shot's
seed alone (not from the frame index), and the DDIM eta-noise comes from generators seeded
the same way, so frames agree before any temporal stabilisation, and a resumed shot gives
the same chroma as an uninterrupted one.

Devices and dtypes: every module the engine runs (U-Net, ControlNet, adapter, colour prior,
EfficientNet features, VAE, text encoder) is registered in ``engine.modules``, so
:meth:`MTColorEngine.to` moves them all at once, and every tensor the engine makes is made on
its device. ``dtype`` (auto: float16 on CUDA, float32 on the CPU) is what the diffusion modules
and the text encoder run in; the DDIM state and the colour prior's path stay float32
(``LATENT``, ``FLOAT32_MODULES``; why: bench/RESULTS.md, "Precision on the CPU").

Options (preset YAML ``options:``; CLI ``overrides`` replace them): ``backbone`` (tiny |
sd15), ``steps``, ``guidance``, ``eta``, ``alpha``, ``beta``, ``fusion`` (vp | literal),
``crop``, ``margin``; tiny: ``grid``, ``features``, ``model`` (U-Net widths etc.),
``init_seed``, ``scheduler``, ``prior`` (use the weights' colour prior, default true),
``prior_temperature``, ``prior_flip`` (average the prior over the mirror image too), ``prior_strength``,
``prompt_strength`` (the strength when the shot has a
global prompt; see :mod:`restorer.models.mtcolor.prior`), ``canonical_texts`` (read instance texts
in the form and colour words of the training texts: :func:`restorer.models.mtcolor.text.canonical_text`);
sd15: ``size``, ``base_config``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from restorer.devices import resolve_device
from restorer.errors import InputError, WeightsError
from restorer.models.engine import FrameInput, ShotContext, check_chroma, with_background
from restorer.models.mtcolor.model import Conditions, MTColorModel, guided_eps
from restorer.models.mtcolor.sampler import SamplingOptions, Schedule, instance_boxes, sample

log = logging.getLogger(__name__)

# The DDIM state (z_t, the fusion, the prior's z_0 guess) stays float32 whatever the engine's dtype, as
# diffusers' schedulers keep it: a latent of a*b* / 100 rounded to bfloat16 at every step drifts; only what
# enters a module is in the engine's dtype.
LATENT = torch.float32
# tiny's colour prior (EfficientNet pyramid, logits sharpened by 1 / T before the annealed mean) is as sensitive,
# and cheap next to the diffusion (one pass per frame), so it runs in float32 at any engine dtype.
# The measurements behind both: bench/RESULTS.md, "Precision on the CPU".
FLOAT32_MODULES = ("features", "prior", "prior_features")

OVERRIDES = ("steps", "guidance", "alpha", "beta", "fusion", "eta", "prior", "prior_temperature", "prior_strength",
             "prompt_strength", "prior_flip", "prior_saturation")


@dataclass
class ShotTexts:
    """A shot's embedded texts: prompt states (cond, uncond) and one vector per instance."""

    prompt: torch.Tensor
    empty: torch.Tensor
    instances: torch.Tensor
    has_prompt: bool = True


class MTColorEngine:
    """Engine protocol implementation (restorer.models.engine.Engine)."""

    name = "mtcolor"

    def __init__(self, model: MTColorModel, space: Any, text: Any, scheduler: dict, opts: SamplingOptions,
                 device: str, dtype: torch.dtype, prior: Any = None, prior_temperature: float = 0.4,
                 prompt_strength: float = 0.3, prior_features: Any = None, prior_flip: bool = False,
                 prior_saturation: float = 1.0):
        self.model, self.prior = model.eval(), None if prior is None else prior.eval()
        self.space, self.text, self.scheduler, self.opts = space, text, scheduler, opts
        self.prior_temperature, self.prompt_strength = prior_temperature, prompt_strength
        # the prior's own backbone when it reads another than ControlNet's (None: the space's features);
        # prior_flip averages the prior's logits over the picture and its mirror image (test-time augmentation)
        self.prior_features, self.prior_flip = prior_features, bool(prior_flip)
        self.prior_saturation = float(prior_saturation)  # the annealed mean's a*b* times this (1: as decoded)
        # every module the engine runs, registered once: one .to() moves them all
        self.modules = torch.nn.ModuleDict({"model": self.model})
        for name, module in (("prior", self.prior), ("features", getattr(space, "features", None)),
                             ("prior_features", prior_features),
                             ("vae", getattr(space, "vae", None)), ("text", text_module(text))):
            if isinstance(module, torch.nn.Module):
                self.modules[name] = module.eval()
        self.to(device, dtype)

    def to(self, device: str | torch.device, dtype: torch.dtype) -> "MTColorEngine":
        """Move every module (U-Net, ControlNet, adapter, prior, features, VAE, text encoder) at once;
        the colour prior's path stays float32 (``FLOAT32_MODULES``)."""
        for name, module in self.modules.items():
            if name in FLOAT32_MODULES:
                module.to(device=device).float()
            else:
                module.to(device=device, dtype=dtype)
        self.device, self.dtype = str(device), dtype
        return self

    def validate(self, ctx: ShotContext) -> None:
        """Nothing to refuse: the text encoder reads any text (free phrasing, any colour word)."""

    def shot(self, ctx: ShotContext, frames: Iterable[FrameInput]) -> Iterator[np.ndarray]:
        texts = self.embed(ctx)
        schedule = Schedule.ddim(self.scheduler, self.opts.steps)
        for frame in frames:
            yield check_chroma(self.frame(frame, texts, schedule, ctx.seed), self.name)

    def close(self) -> None:
        self.model = self.prior = self.modules = None

    @torch.no_grad()
    def embed(self, ctx: ShotContext) -> ShotTexts:
        proj = self.model.adapter.prompt_proj
        prompt = [self.text.prompt(p) for p in (ctx.prompt or "", "")]
        prompt = [proj(p.to(self.device, self.dtype)) for p in prompt]
        inst = self.text.pooled([i.text for i in ctx.instances]).to(self.device, self.dtype)
        return ShotTexts(prompt[0], prompt[1], inst, bool((ctx.prompt or "").strip()))

    def initial_noise(self, size: tuple[int, int], seed: int) -> torch.Tensor:
        """The shot's z_T: depends on the seed and the latent size only."""
        g = torch.Generator().manual_seed(seed)
        return torch.randn((1, self.space.channels, *size), generator=g).to(self.device, LATENT)

    @torch.no_grad()
    def frame(self, frame: FrameInput, texts: ShotTexts, schedule: Schedule, seed: int) -> np.ndarray:
        # resized in float32 on the engine's device (antialiased resizing has no half kernels on the CPU)
        luma = torch.from_numpy(np.ascontiguousarray(frame.luma, dtype=np.float32))[None, None].to(self.device)
        size = self.space.latent_size(tuple(luma.shape[-2:]))
        pyramid = self.space.features.pyramid(luma) if self.prior is not None else None
        gray32, control = self.space.prepare(luma, size, pyramid)
        x0_prior = self.prior_latent(luma, gray32, pyramid)
        gray = None if gray32 is None else gray32.to(self.dtype)
        cover32, small, present = self._masks(frame.masks, size)
        cover = cover32.to(self.dtype)
        enc = self.model.adapter.encoder
        tokens = enc(texts.instances[None], small[None], present[None])
        nulls = enc(texts.instances[None], small[None], torch.zeros_like(present)[None])
        base = dict(control_image=control.to(self.dtype), gray=gray)
        cond = Conditions(texts.prompt, cover[None], tokens, **base)
        uncond = Conditions(texts.empty, cover[None], nulls, **base)
        ids = present.nonzero().flatten().tolist()
        inst = self._instance_eps(cond, uncond, cover, ids)
        # With alpha = 1 no global step follows the fusion and the global sample only fills the cells no
        # instance covers: it runs with the instances' null tokens there, so that no instance's text reaches
        # the background through the convolutions.
        alone = bool(ids) and round(self.opts.alpha * len(schedule.timesteps)) >= len(schedule.timesteps)
        if alone:
            cond = Conditions(texts.prompt, cover[None], nulls, **base)
        # with no prompt and no instance text the two halves of classifier-free guidance are one and the same
        guidance = self.opts.guidance if texts.has_prompt or (ids and not alone) else 1.0
        opts = self.opts
        if texts.has_prompt and self.prior is not None:  # the global text needs steps to say something
            opts = replace(opts, prior_strength=max(opts.prior_strength, self.prompt_strength))
        global_eps = self._in_dtype(lambda z, t: guided_eps(self.model, z, t, cond, uncond, guidance))
        inst_eps = None if inst is None else self._as_eps(self._in_dtype(inst), schedule)
        layers: dict = {}
        z0 = sample(self._as_eps(global_eps, schedule), inst_eps, self.initial_noise(size, seed),
                    cover32[ids], schedule, opts, seed, ids, x0_prior=x0_prior, layers=layers)
        ab = self.space.decode(z0)
        if ids and "global" in layers:  # the picture without its instances, for the region outside them
            return with_background(ab, self.space.decode(layers["global"]))
        return ab

    @property
    def has_automatic(self) -> bool:
        """Whether :meth:`automatic` is cheap and available (tiny's prior; sd15 has none)."""
        return self.prior is not None

    @torch.no_grad()
    def automatic(self, frame: FrameInput) -> np.ndarray:
        """The cheap automatic chroma of a frame: the colour prior alone, no diffusion step (what the
        temporal stage fills unexplained pixels with). Needs :attr:`has_automatic`."""
        luma = torch.from_numpy(np.ascontiguousarray(frame.luma, dtype=np.float32))[None, None].to(self.device)
        size = self.space.latent_size(tuple(luma.shape[-2:]))
        return check_chroma(self.space.decode(self.prior_latent(luma, self.space.gray(luma, size))), self.name)

    @torch.no_grad()
    def prior_latent(self, luma: torch.Tensor, gray: torch.Tensor | None,
                     pyramid: dict[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        """tiny's colour prior as a latent z_0 guess (annealed mean a*b* / ab_scale), or None without one.

        ``luma`` (1, 1, H, W) in [0, 1]; ``gray``: it at the grid in [-1, 1]; ``pyramid``: the space's
        features of ``luma`` if already computed (used when the prior reads the same backbone)."""
        if self.prior is None or gray is None:
            return None
        logits = self._prior_logits(luma, gray.float(), pyramid)
        if self.prior_flip:  # the mirror image's logits, mirrored back
            logits = (logits + self._prior_logits(luma.flip(-1), gray.float().flip(-1)).flip(-1)) / 2
        ab = self.prior.decode(logits, self.prior_temperature) * self.prior_saturation
        return (ab / self.space.ab_scale).to(LATENT)

    def _prior_logits(self, luma: torch.Tensor, gray: torch.Tensor,
                      pyramid: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        net = self.prior_features or self.space.features
        if pyramid is None or self.prior_features is not None:
            pyramid = net.pyramid(luma)
        return self.prior(gray, {k: v.float() for k, v in pyramid.items()})

    def _as_eps(self, fn, schedule: Schedule):
        """The model's output as eps: v-prediction models (tiny) give eps = sqrt(a) v + sqrt(1 - a) z."""
        if self.scheduler.get("prediction_type", "epsilon") != "v_prediction":
            return fn

        def eps(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a = float(schedule.alphas[int(t)])
            return a ** 0.5 * fn(z, t) + (1 - a) ** 0.5 * z

        return eps

    def _in_dtype(self, fn):
        """``fn`` run on a float32 latent: the model sees it in the engine's dtype, its output comes back float32."""
        return lambda z, t: fn(z.to(self.dtype), t).to(z.dtype)

    def _masks(self, masks: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Coverage at the latent grid (float32, for the fusion), the token encoder's input (the engine's dtype),
        and which instances are present."""
        m = torch.from_numpy(np.asarray(masks, dtype=np.float32)).to(self.device)
        if m.ndim != 3:
            m = m.reshape(0, *size)
        enc_size = self.model.adapter.config.mask_size
        cover = F.adaptive_avg_pool2d(m[None], size)[0] if m.shape[0] else m.new_zeros(0, *size)
        small = F.adaptive_avg_pool2d(m[None], enc_size)[0] if m.shape[0] else m.new_zeros(0, enc_size, enc_size)
        return cover, small.to(self.dtype), cover.flatten(1).amax(1) > 0

    def _instance_eps(self, cond: Conditions, uncond: Conditions, cover: torch.Tensor, ids: list[int]):
        """Guided eps for all present instances batched, each with its own mask and text, on its box."""
        if not ids:
            return None
        boxes = instance_boxes(cover[ids], self.opts)
        rows_c, rows_u = [], []
        for (y, x, h, w), i in zip(boxes, ids, strict=True):
            for rows, src in ((rows_c, cond), (rows_u, uncond)):
                one = Conditions(src.prompt, src.masks[:, i:i + 1], src.tokens[:, [0, i + 1]],
                                 src.control_image, src.gray)
                rows.append(one.crop(y, x, h, w))
        cond_i, uncond_i = Conditions.cat(rows_c), Conditions.cat(rows_u)
        return lambda z, t: guided_eps(self.model, z, t, cond_i, uncond_i, self.opts.guidance)


def sampling_options(opts: dict[str, Any], multiple: int) -> SamplingOptions:
    """The sampler's settings from merged options; ``multiple`` is the U-Net's size multiple."""
    names = {f.name for f in fields(SamplingOptions)} - {"multiple"}
    return SamplingOptions(**{k: opts[k] for k in names if k in opts}, multiple=multiple)


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """``auto`` (float16 on CUDA, float32 elsewhere), ``float32``, ``float16`` or ``bfloat16``.

    Raises:
        InputError: an unknown name, or bfloat16 on a CUDA device without it.
    """
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    else:
        name = str(dtype or "auto").lower()
        if name == "auto":
            return torch.float16 if str(device).startswith("cuda") else torch.float32
        if name not in DTYPES:
            raise InputError(f"unknown dtype {dtype!r}", hint=f"use auto, {', '.join(DTYPES)}")
        chosen = DTYPES[name]
    if chosen == torch.bfloat16 and str(device).startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise InputError("this GPU has no bfloat16", hint="use --dtype float16 or float32")
    return chosen


def text_module(text: Any) -> torch.nn.Module | None:
    """The text encoder's torch module (MiniLM's SentenceTransformer, CLIP's text model), if it has one."""
    for attr in ("model", "encoder"):
        module = getattr(text, attr, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def open_mtcolor(options: dict, *, device: str, weights: Path | None, base: Path | None,
                 overrides: dict, dtype: str | torch.dtype = "auto", runtime: str = "torch",
                 threads: int | None = None) -> MTColorEngine:
    """Build the engine for a preset's ``options`` (see the module docstring).

    ``dtype``: auto (float16 on CUDA, float32 on the CPU), float32, float16 or bfloat16; every module
    and every tensor the engine makes follows it and ``device``.

    ``runtime``: ``torch``, or ``onnx`` (tiny only: features, prior and U-Net on ONNX Runtime with ``threads``
    intra-op threads, :mod:`restorer.models.mtcolor.onnx_runtime`; they run in float32).

    Raises:
        InputError: an option it does not read (:mod:`restorer.models.mtcolor.options`).
        WeightsError: weights missing or mismatched (exit code 2), naming what, where, and the flag.
    """
    from restorer.models.mtcolor.options import check_options
    from restorer.models.mtcolor.paths import check_paths

    check_options(options)
    opts = {**options, **{k: v for k, v in (overrides or {}).items() if k in OVERRIDES and v is not None}}
    backbone = opts.get("backbone", "tiny")
    check_paths(opts, weights, base, runtime=runtime)  # every missing path or package refused before any load
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if backbone == "tiny" and runtime == "onnx":
        from restorer.models.mtcolor.onnx_runtime import open_tiny_onnx

        return open_tiny_onnx(opts, device, weights, torch_dtype, threads)
    if backbone == "tiny":
        return _open_tiny(opts, device, weights, torch_dtype)
    if backbone == "sd15":
        return _open_sd15(opts, device, weights, base, torch_dtype)
    raise WeightsError(f"unknown MT-Color backbone {backbone!r}", hint="use 'tiny' or 'sd15' in the preset")


def _open_tiny(opts: dict, device: str, weights: Path | None, dtype: torch.dtype) -> MTColorEngine:
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.features import EfficientNetFeatures
    from restorer.models.mtcolor.loading import resolve
    from restorer.models.mtcolor.spaces import AB_SCALE, TinySpace
    from restorer.models.mtcolor.text import MiniLMText

    # everything is built on the CPU in float32; the engine moves it all to (device, dtype) at once
    features = EfficientNetFeatures() if opts.get("features", "efficientnet-lite0") != "none" else None
    root = resolve(weights, "RESTORER_WEIGHTS") or tiny.shipped()
    model = tiny.load(root, opts) if root is not None else tiny.random_init(opts)
    text = MiniLMText("cpu")
    if opts.get("canonical_texts", False):  # instance texts in the words tiny was trained on
        from restorer.models.colornames import TRAINED_COLOURS
        from restorer.models.mtcolor.text import CanonicalText

        calibration = Path(root) / "rendered_colours.json" if root is not None else None
        rendered = None
        if calibration is not None and calibration.is_file():
            import json

            rendered = json.loads(calibration.read_text())["words"]
        text = CanonicalText(text, TRAINED_COLOURS, rendered)
    space = TinySpace(grid=int(opts.get("grid", 32)), multiple=tiny.multiple(model.unet), features=features,
                      ab_scale=float(opts.get("ab_scale", AB_SCALE)))
    prior = tiny.load_prior(root) if root is not None and features is not None and opts.get("prior", True) else None
    from restorer.models.mtcolor.prior import prior_backbone

    backbone = prior_backbone(prior)
    prior_features = None if prior is None or backbone == features.backbone else EfficientNetFeatures(backbone=backbone)
    return MTColorEngine(model, space, text, tiny.scheduler_config(opts), sampling_options(opts, space.multiple),
                         device, dtype, prior=prior, prior_features=prior_features, **tiny_knobs(opts))


def tiny_knobs(opts: dict) -> dict[str, Any]:
    """The engine's keyword options a tiny preset sets (its colour prior, the prompt's strength), defaults filled."""
    return {"prior_temperature": float(opts.get("prior_temperature", 0.4)),
            "prompt_strength": float(opts.get("prompt_strength", 0.3)),
            "prior_flip": bool(opts.get("prior_flip", False)),
            "prior_saturation": float(opts.get("prior_saturation", 1.0))}


def _open_sd15(opts: dict, device: str, weights: Path | None, base: Path | None,
               dtype: torch.dtype) -> MTColorEngine:
    import os

    from restorer.models.mtcolor import loading
    from restorer.models.mtcolor.spaces import SDSpace

    root = loading.resolve(base, "RESTORER_SD15")
    if root is not None and root.is_file():
        config_dir = Path(opts.get("base_config") or os.environ.get("RESTORER_SD15_CONFIG") or root.parent)
        parts = loading.load_sd15_single(root, config_dir, dtype)
    else:
        parts = loading.load_sd15_folder(loading.require(root, loading.SD15_PARTS, "Stable Diffusion 1.5 base",
                                                         "--base", "RESTORER_SD15"), dtype)
    ours = loading.resolve(weights, "RESTORER_WEIGHTS")
    controlnet, adapter = loading.load_ours(loading.require(ours, loading.OUR_PARTS, "MT-Color weights "
                                            "(ControlNet, adapter)", "--weights", "RESTORER_WEIGHTS"),
                                            parts["unet"], dtype)
    model = MTColorModel(parts["unet"], controlnet, adapter)
    space = SDSpace(parts["vae"], size=int(opts.get("size", 512)))
    multiple = 2 ** (len(parts["unet"].config.block_out_channels) - 1)
    return MTColorEngine(model, space, parts["text"], parts["scheduler"], sampling_options(opts, multiple),
                         device, dtype)
