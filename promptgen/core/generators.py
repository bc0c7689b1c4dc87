"""A base class for generators that are one frozen ``torch.nn.Module``, and the check of what
any generator decodes."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from promptgen.core.errors import PromptgenError, one_line
from promptgen.core.protocols import Generator, GeneratorInfo

#: How far outside [0, 1] decoded pixels may stray (rounding) before the generator is refused.
RANGE_TOLERANCE = 1e-3


class GeneratorOutputError(PromptgenError):
    """A generator's ``decode`` returned something that is not (B, C, H, W) floats in [0, 1] as its info promises."""


def check_images(images: object, generator: Generator, n: int, plugin: str | None = None) -> Tensor:
    """``images`` if they are what ``generator.decode`` must return for ``n`` latents, else a one-line error.

    What is checked: a float tensor of shape ``(n, channels, *resolution)`` from
    the generator's :class:`~promptgen.core.protocols.GeneratorInfo`, with finite
    values in [0, 1] (:data:`RANGE_TOLERANCE` allowed for rounding).

    Args:
        plugin: the distribution that provides the generator, named in the error.

    Raises:
        GeneratorOutputError: naming the generator, its plugin and what was wrong.
    """
    info = generator.info
    who = f"generator {info.name!r}" + (f" (from {plugin})" if plugin else "")
    expected = (n, info.channels, *info.resolution)
    if not isinstance(images, Tensor):
        raise GeneratorOutputError(f"{who} returned {type(images).__name__} from decode(); a plugin's decode() must return a torch.Tensor {expected}")
    if tuple(images.shape) != expected:
        raise GeneratorOutputError(
            f"{who} returned images of shape {tuple(images.shape)} for {n} latents, but its info promises {expected} "
            "(batch, channels, height, width); the plugin's decode() or GeneratorInfo is wrong"
        )
    if not images.is_floating_point():
        raise GeneratorOutputError(f"{who} returned {images.dtype} images; decode() must return floats in [0, 1] (divide 8-bit pixels by 255)")
    if images.numel():
        lo, hi = (float(v) for v in torch.aminmax(images.detach()))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise GeneratorOutputError(f"{who} returned images with non-finite values; decode() must return floats in [0, 1]")
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise GeneratorOutputError(
                f"{who} returned pixel values from {lo:.3g} to {hi:.3g}; decode() must return floats in [0, 1] "
                "(for outputs in [-1, 1], return (x + 1) / 2)"
            )
    return images


def probe_generator(generator: Generator, plugin: str | None = None, n: int = 2, seed: int = 0) -> Tensor:
    """Decode ``n`` latents (seeded, on the generator's device) and :func:`check_images` them; returns the images."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, *generator.latent_shape), generator=g).to(generator.device)
    with torch.no_grad():
        try:
            images = generator.decode(z)
        except PromptgenError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's decode that fails: one line naming it
            who = f"generator {generator.info.name!r}" + (f" (from {plugin})" if plugin else "")
            raise GeneratorOutputError(f"{who} failed to decode {n} latents: {one_line(str(exc)) or type(exc).__name__}") from None
        return check_images(images, generator, n, plugin)


class ModuleGenerator:
    """Wraps a module ``z -> images in [0, 1]`` as a :class:`~promptgen.core.protocols.Generator`.

    The module is put in eval mode and its parameters frozen: promptgen never
    changes a generator's weights.

    Args:
        module: maps (B, *latent_shape) to (B, C, H, W) in [0, 1].
        latent_shape: shape of one latent, e.g. ``(32,)``.
        info: name, resolution, licence and source of the weights.
    """

    def __init__(self, module: nn.Module, latent_shape: tuple[int, ...], info: GeneratorInfo) -> None:
        self.module = module.eval().requires_grad_(False)
        self._latent_shape = tuple(latent_shape)
        self.info = info

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._latent_shape

    def _tensor(self) -> Tensor | None:
        for t in self.module.parameters():
            return t
        return next(iter(self.module.buffers()), None)

    @property
    def device(self) -> torch.device:
        t = self._tensor()
        return t.device if t is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        t = self._tensor()
        return t.dtype if t is not None else torch.get_default_dtype()

    def decode(self, z: Tensor) -> Tensor:
        return self.module(z)

    def to(self, device: torch.device | str) -> ModuleGenerator:
        self.module.to(device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name!r}, latent_shape={self.latent_shape})"
