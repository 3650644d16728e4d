"""MT-Color (An et al., arXiv 2505.08705) on diffusers: instance-aware diffusion colorization.

Modules, each documenting its decisions:

- ``regions``  one region per token, masking before the softmax, grouped vs dense attention
- ``pmam``     pixel-level mask attention (Sec. III-A); K' and V' from the control features
- ``instance`` instance tokens and the gated, zero-initialised masked self-attention (Sec. III-B)
- ``adapter``  the added modules as one diffusers model; processors installed on a stock U-Net
- ``model``    one noise prediction: U-Net + ControlNet (grayscale condition) + adapter
- ``sampler``  DDIM + CFG + multi-instance sampling and fusion (Sec. III-C; default ``convex``)
- ``spaces``   where each preset denoises (tiny: a*b* at a 32-cell grid; sd15: VAE latent)
- ``tiny``     tiny's model and its departures from the paper
- ``paths``    the cheap refusals (missing weights, base, packages) before any heavy import
- ``loading``  sd15 folder / single file and our weights, never downloading, strict keys
- ``engine``   ``open_mtcolor(...)``, the Engine the pipelines call

Nothing heavy is imported here; the preset loader imports ``restorer.models.mtcolor.engine``.
"""
