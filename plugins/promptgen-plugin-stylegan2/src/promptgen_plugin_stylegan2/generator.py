"""StyleGAN2 and StyleGAN3 as promptgen :class:`~promptgen.plugin.Generator` s, with the options users set in specs."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from promptgen.plugin import GeneratorInfo, ModuleGenerator, Options, Spec, SpecError, local_file, seeded_noise
from promptgen_plugin_stylegan2.checkpoints import (
    BATCH_ELEMENTS,
    CheckpointError,
    Family,
    Generator,
    load_generator,
    mapping_width,
)
from promptgen_plugin_stylegan2.stylegan3 import StyleGAN3
from promptgen_plugin_stylegan2.zoo import ZooModel

#: Both families' files are cached here (``$PROMPTGEN_HOME/stylegan2/``).
CACHE_SUBDIR = "stylegan2"
#: The file ``path=`` gives, in errors.
CHECKPOINT = {"stylegan2": "an NVIDIA .pkl or a rosinality .pt", "stylegan3": "an NVIDIA stylegan3 .pkl"}
#: Latents behind the Gaussian fit of W (``space=w``).
W_FIT_SAMPLES = 10_000


class StyleGAN2Decoder(nn.Module):
    """latent (B, D) -> images (B, C, size, size) in [0, 1], with the chosen options baked in.

    ``net`` is a StyleGAN2 or a StyleGAN3 (whose synthesis network ignores ``noise``: it has none).
    """

    def __init__(
        self,
        net: Generator,
        *,
        psi: float = 1.0,
        noise: str = "const",
        space: str = "z",
        label: int | None = None,
        size: int | None = None,
        precision: str = "auto",
    ) -> None:
        super().__init__()
        self.net = net
        self.psi, self.noise, self.space, self.size, self.precision = psi, noise, space, size, precision
        c = torch.zeros(1, net.cfg.c_dim)
        if label is not None:
            c[0, label] = 1.0
        self.register_buffer("label", c)
        self.register_buffer("w_mean", torch.zeros(net.cfg.w_dim))
        self.register_buffer("w_std", torch.ones(net.cfg.w_dim))
        if space == "w":
            # In pieces of 1,000 latents, fewer for a very wide mapping network (a file's), so memory stays bounded.
            step = max(1, min(1000, BATCH_ELEMENTS // mapping_width(net.cfg)))
            with torch.no_grad():
                g = torch.Generator().manual_seed(0)
                pieces = (
                    net.mapping.w(torch.randn(min(step, W_FIT_SAMPLES - i), net.cfg.z_dim, generator=g), self._labels(min(step, W_FIT_SAMPLES - i)))
                    for i in range(0, W_FIT_SAMPLES, step)
                )
                if W_FIT_SAMPLES * net.cfg.w_dim <= BATCH_ELEMENTS:  # every published model
                    ws = torch.cat(list(pieces))
                    self.w_mean.copy_(ws.mean(0))
                    self.w_std.copy_(ws.std(0))
                else:  # the 10,000 w would not fit: their sums, in float64
                    s1 = torch.zeros(net.cfg.w_dim, dtype=torch.float64)
                    s2 = torch.zeros(net.cfg.w_dim, dtype=torch.float64)
                    for w in pieces:
                        s1 += w.sum(0, dtype=torch.float64)
                        s2 += w.double().square().sum(0)
                    mean = s1 / W_FIT_SAMPLES
                    self.w_mean.copy_(mean)
                    self.w_std.copy_(((s2 - W_FIT_SAMPLES * mean.square()) / (W_FIT_SAMPLES - 1)).clamp_min(0).sqrt())

    def _labels(self, n: int) -> Tensor | None:
        return self.label.expand(n, -1) if self.net.cfg.c_dim else None

    @property
    def latent_dim(self) -> int:
        return self.net.cfg.z_dim if self.space == "z" else self.net.cfg.w_dim

    def forward(self, latent: Tensor, noise: list[Tensor] | None = None) -> Tensor:
        """``noise``: one (B, 1, r, r) tensor per convolution (``net.synthesis.noise_shapes``), or None for ``self.noise``."""
        n = latent.shape[0]
        if self.space == "z":
            ws = self.net.mapping(latent, self._labels(n), psi=self.psi)
        else:
            w = self.w_mean + self.w_std * latent
            if self.psi != 1:
                w = self.net.mapping.w_avg.lerp(w, self.psi)
            ws = w.unsqueeze(1).repeat(1, self.net.num_ws, 1)
        half = self.precision == "fp16" or (self.precision == "auto" and latent.device.type == "cuda")
        img = self.net.synthesis(ws, noise_mode=self.noise, noise=noise, half=half).to(torch.float32)
        x = ((img + 1) / 2).clamp(0, 1)
        if self.size is not None and self.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=self.size < x.shape[-1])
        return x


def _class_index(spec: Spec, value: str, n: int, names: tuple[str, ...], model: str) -> int:
    if n == 0:
        raise SpecError(f"{spec.format()!r}: {model} is not class-conditional; drop class=")
    if value.isdigit() and int(value) < n:
        return int(value)
    lowered = [x.lower() for x in names]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    known = ", ".join(names) if names else f"0-{n - 1}"
    raise SpecError(f"{spec.format()!r}: class={value!r} is not one of {model}'s classes ({known})")


def build_generator(
    spec: Spec,
    options: Options,
    model: ZooModel | None = None,
    *,
    family: Family = "stylegan2",
    kind: str | None = None,
    progress: bool = True,
) -> ModuleGenerator:
    """A promptgen generator for ``stylegan2:path=FILE``, ``stylegan3-t:path=FILE`` or a zoo name, with its options.

    ``options``: a :data:`~promptgen_plugin_stylegan2.options.StyleGAN2Options` (or ``StyleGAN3Options``), checked by
    the core; ``class=`` is checked here, against the loaded model's classes, and a file of the other family, or of
    the other StyleGAN3 config than ``kind`` (or the zoo model's), is refused in one line.
    """
    weights = model.weights if model is not None else None
    what = CHECKPOINT[family]
    path = local_file(weights, path=options.path, subdir=CACHE_SUBDIR, spec=spec, what=what, progress=progress)
    net = load_generator(path, family)
    kind = model.kind if model is not None else kind
    if isinstance(net, StyleGAN3) and kind and net.cfg.kind != kind:
        other = (net.cfg.kind or "t").lower()
        raise CheckpointError(
            f"{str(path)!r} is a StyleGAN3 config {net.cfg.kind} network but {spec.name} is config {kind}; "
            f"use stylegan3-{other}:path=FILE or a stylegan3-{other}-... name"
        )
    label = None
    names = model.classes if model is not None else ()
    wanted = getattr(options, "class")  # a Python keyword: no attribute syntax
    if wanted is not None:
        label = _class_index(spec, wanted, net.cfg.c_dim, names, spec.name)
    elif net.cfg.c_dim:
        known = ", ".join(names) if names else f"0-{net.cfg.c_dim - 1}"
        raise SpecError(f"{spec.format()!r}: {spec.name} is class-conditional; add class=N ({known}), e.g. {spec.name}:class=3")
    moved = ""
    if isinstance(net, StyleGAN3):
        shift, angle = (options.translate_x, options.translate_y), options.rotate
        if shift != (0, 0) or angle:  # else the file's transform stays (NVIDIA's published files store none)
            net.set_transform(shift, angle)
            moved = f", moved by ({shift[0]:g}, {shift[1]:g}) and rotated {angle:g}°"
    noise = getattr(options, "noise", "const")
    size, space = options.size, options.space
    decoder = StyleGAN2Decoder(
        net, psi=options.psi, noise=noise, space=space, label=label, size=size, precision=options.precision
    )
    res = size or net.cfg.resolution
    kind = f"StyleGAN3 config {net.cfg.kind}" if isinstance(net, StyleGAN3) else "StyleGAN2"
    info = GeneratorInfo(
        name=spec.name,
        resolution=(res, res),
        channels=net.cfg.img_channels,
        licence=model.licence if model is not None else "see the checkpoint's source",
        source=(model.weights.url or model.weights.page) if model is not None else str(path),
        description=(model.description if model is not None else f"{kind} from {path.name}")
        + moved
        + f", latent {space} of size {decoder.latent_dim}",
    )
    if noise == "random" and net.synthesis.noise_shapes:
        return RandomNoiseGenerator(decoder, (decoder.latent_dim,), info)
    return ModuleGenerator(decoder, (decoder.latent_dim,), info)


class RandomNoiseGenerator(ModuleGenerator):
    """StyleGAN2 with ``noise=random``: per-pixel noise that a prompt does not control, drawn by promptgen.

    The noise inputs of a 1024² network hold 2.8 million numbers per image;
    as a latent they would swell every checkpoint. So the generator declares
    one standard normal number per image (``noise_shapes``), and its layers'
    noise is drawn from that number's seed (:func:`promptgen.plugin.seeded_noise`). promptgen
    draws the number with the latent, from the same seeded stream: ``sample
    --seed`` repeats the images, training sees fresh noise at every step and
    ``--resume`` draws what the uninterrupted run would have.
    """

    noise_shapes: ClassVar[dict[str, tuple[int, ...]]] = {"noise_seed": (1,)}

    def layer_noise(self, u: Tensor) -> list[Tensor]:
        """One (B, 1, r, r) tensor per convolution, each sample's from its own seed."""
        shapes = self.module.net.synthesis.noise_shapes
        noise = seeded_noise(u, {str(i): (1, r, r) for i, r in enumerate(shapes)})
        return [noise[str(i)] for i in range(len(shapes))]

    def decode(self, z: Tensor, noise: dict[str, Tensor] | None = None) -> Tensor:
        if noise is None:  # outside promptgen's sampling: the network draws its own
            return self.module(z)
        return self.module(z, self.layer_noise(noise["noise_seed"]))
