"""Latents in named parts, and randomness of a generator's own that a prompt does not control.

A generator may declare either or both of these (see
:class:`~promptgen.core.protocols.HasLatentParts` and
:class:`~promptgen.core.protocols.HasNoise`):

- ``latent_parts``: name -> shape, in order. ``decode`` then receives ``z`` as
  a dict of those parts (BigGAN: ``{"z": (B, 128), "class": (B, 128)}``).
- ``noise_shapes``: name -> shape of standard normal noise the prompt must not
  control (NVAE's lower groups, StyleGAN's noise inputs, a diffusion model's
  x_T, a NeRF's camera). ``decode(z, noise=...)`` then receives a dict of it;
  called with ``noise=None`` the generator draws its own.

promptgen works with one flat latent per sample: the parts flattened in order,
then the noise. :func:`bind` wraps such a generator so it looks like any other
(``latent_shape = (controlled + noise,)``, ``decode(flat)``), and a prompt's
flow changes only the first ``controlled`` coordinates and passes the noise
through. The noise is therefore drawn with the latent, from the same seeded
random stream: ``sample --seed`` repeats, training draws fresh noise at every
step, and ``--resume`` restores the stream exactly. Generators with neither
are returned unchanged, so their prompts and manifests are as before.

>>> import torch
>>> class Toy:
...     info = None; device = torch.device("cpu"); dtype = torch.float32
...     latent_shape = (5,)
...     latent_parts = {"z": (2,), "label": (3,)}
...     noise_shapes = {"grain": (1, 2, 2)}
...     def decode(self, z, noise=None):
...         return torch.cat([z["z"], z["label"], noise["grain"].flatten(1)], 1)
...     def to(self, device): return self
>>> g = bind(Toy())
>>> g.latent_shape, g.noise_size, g.controlled_size
((9,), 4, 5)
>>> g.decode(torch.arange(9.0)[None]).tolist()
[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from promptgen.core.errors import PromptgenError

__all__ = [
    "BoundGenerator", "bind", "condition_inputs", "controlled_size", "decode_at", "noise_size", "seed_of", "seeded_noise",
    "split_latent",
]


def _shapes(generator: Any, attribute: str) -> dict[str, tuple[int, ...]]:
    raw = getattr(generator, attribute, None)
    if raw is None:
        return {}
    name = getattr(getattr(generator, "info", None), "name", type(generator).__name__)
    if not isinstance(raw, Mapping) or not raw:
        raise PromptgenError(f"generator {name!r}: {attribute} must be a non-empty mapping of name -> shape, not {raw!r}")
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in raw.items():
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            shape = ()
        if not isinstance(key, str) or not shape or any(s < 1 for s in shape):
            raise PromptgenError(f"generator {name!r}: {attribute}[{key!r}] = {raw[key]!r} is not a shape of positive sizes")
        out[key] = shape
    return out


def split_latent(flat: Tensor, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """``flat`` (B, Σ sizes) cut into the named parts, each reshaped to (B, *shape)."""
    sizes = [math.prod(s) for s in shapes.values()]
    pieces = flat.split(sizes, dim=1)
    return {name: p.reshape(flat.shape[0], *shape) for (name, shape), p in zip(shapes.items(), pieces, strict=True)}


class BoundGenerator:
    """A generator with latent parts or noise of its own, seen as one flat latent (parts, then noise).

    Attributes:
        inner: the plugin's generator.
        parts: name -> shape of the controlled latent's parts (one part, ``"z"``, for a plain latent).
        noise: name -> shape of the noise the prompt does not control.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.info = inner.info
        parts = _shapes(inner, "latent_parts")
        self._split_parts = bool(parts)
        self.parts = parts or {"z": tuple(int(s) for s in inner.latent_shape)}
        self.noise = _shapes(inner, "noise_shapes")
        clash = set(self.parts) & set(self.noise) if self._split_parts else set()
        if clash:
            raise PromptgenError(f"generator {self.info.name!r}: {sorted(clash)} is both a latent part and noise; rename one")
        self.controlled_size = sum(math.prod(s) for s in self.parts.values())
        self.noise_size = sum(math.prod(s) for s in self.noise.values())
        if self._split_parts and tuple(inner.latent_shape) != (self.controlled_size,):
            raise PromptgenError(
                f"generator {self.info.name!r}: latent_shape {tuple(inner.latent_shape)} must be ({self.controlled_size},), "
                "the flattened size of its latent_parts"
            )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.controlled_size + self.noise_size,)

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def split(self, flat: Tensor) -> tuple[Tensor | dict[str, Tensor], dict[str, Tensor] | None]:
        """The generator's own inputs for flat latents: ``z`` (a tensor, or a dict of parts) and the noise (or None)."""
        flat = flat.flatten(1)
        controlled, rest = flat[:, : self.controlled_size], flat[:, self.controlled_size :]
        if self._split_parts:
            z: Tensor | dict[str, Tensor] = split_latent(controlled, self.parts)
        else:
            z = controlled.reshape(flat.shape[0], *self.parts["z"])
        return z, (split_latent(rest, self.noise) if self.noise else None)

    @property
    def condition_inputs(self) -> dict[str, tuple[float, float]]:
        return condition_inputs(self.inner)

    def decode(self, z: Tensor, condition: Mapping[str, Tensor] | None = None) -> Tensor:
        latent, noise = self.split(z)
        extra: dict[str, Any] = {} if condition is None else {"condition": condition}
        if noise is None:
            return self.inner.decode(latent, **extra)
        return self.inner.decode(latent, noise=noise, **extra)

    def to(self, device: torch.device | str) -> BoundGenerator:
        self.inner.to(device)
        return self

    def __repr__(self) -> str:
        return f"BoundGenerator({self.inner!r}, parts={self.parts}, noise={self.noise})"


def condition_inputs(generator: Any) -> dict[str, tuple[float, float]]:
    """The inputs a conditional prompt may set on ``generator`` (:class:`~promptgen.core.protocols.ReadsConditions`:
    a 3D-aware generator's camera), name -> the range it is defined on; ``{}`` for a generator that reads none."""
    found = getattr(generator, "condition_inputs", None)
    return {str(k): (float(v[0]), float(v[1])) for k, v in found.items()} if found else {}


def decode_at(generator: Any, z: Tensor, condition: Tensor | None, names: Sequence[str]) -> Tensor:
    """``generator.decode(z)``; a generator that reads conditions also gets the columns of ``condition`` (B, C),
    named by ``names``, that it reads (the others it sets itself, e.g. from its prior).

    >>> class Lit:
    ...     condition_inputs = {"yaw": (-1.0, 1.0)}
    ...     def decode(self, z, condition=None):
    ...         return z if condition is None else z + condition["yaw"][:, None]
    >>> decode_at(Lit(), torch.zeros(2, 1), torch.tensor([[0.5, 9.0], [-0.5, 9.0]]), ["yaw", "slant"]).tolist()
    [[0.5], [-0.5]]
    """
    reads = condition_inputs(generator)
    if condition is None or not reads:
        return generator.decode(z)
    named = {n: condition[:, i] for i, n in enumerate(names) if n in reads}
    return generator.decode(z, condition=named) if named else generator.decode(z)


def bind(generator: Any) -> Any:
    """``generator`` as one flat latent if it declares latent parts or noise (a :class:`BoundGenerator`), else itself."""
    if isinstance(generator, BoundGenerator):
        return generator
    if getattr(generator, "latent_parts", None) is None and getattr(generator, "noise_shapes", None) is None:
        return generator
    return BoundGenerator(generator)


def seed_of(u: Tensor) -> list[int]:
    """A 64-bit seed for each value of ``u`` (any shape, one value per sample): its float64 bits.

    Equal values give equal seeds. For noise too large to be part of the latent:
    declare one number per image (``noise_shapes = {"noise_seed": (1,)}``), which
    promptgen draws with the latent, and draw the real noise from its seed
    (:func:`seeded_noise`): ``--seed`` still repeats it, training still sees fresh
    noise at every step, and checkpoints stay small.
    """
    bits = u.detach().reshape(-1).to(torch.float64).cpu().view(torch.int64)
    return [int(b) & (2**64 - 1) for b in bits.tolist()]


def seeded_noise(
    u: Tensor,
    shapes: Mapping[str, tuple[int, ...]],
    *,
    distribution: str = "normal",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """Noise of ``shapes`` for each sample, drawn from that sample's seed (:func:`seed_of` of ``u``).

    The draws use NumPy's PCG64 seeded with all 64 bits (torch's CPU generator
    keeps only 32 bits of a seed, and the low bits of a float32 number widened
    to float64 are zeros: nearly every image would get the same noise).

    Args:
        u: (B,) or (B, 1): one number per sample, e.g. a ``noise_seed`` the generator declared as noise.
        shapes: name -> shape of one sample's noise; drawn in this order.
        distribution: ``"normal"`` (standard normal) or ``"uniform"`` (in [0, 1)).

    Returns:
        name -> (B, *shape), on ``device`` (default ``u``'s) in ``dtype`` (default float32).

    >>> u = torch.tensor([[0.5], [-1.0], [0.5]])  # float32, as promptgen draws them
    >>> n = seeded_noise(u, {"a": (2,), "b": (1, 2)})
    >>> n["a"].shape, n["b"].shape, bool(torch.equal(n["a"][0], n["a"][2])), bool(torch.equal(n["a"][0], n["a"][1]))
    (torch.Size([3, 2]), torch.Size([3, 1, 2]), True, False)
    """
    import numpy as np

    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution must be 'normal' or 'uniform', not {distribution!r}")
    per_sample: dict[str, list[np.ndarray]] = {name: [] for name in shapes}
    for seed in seed_of(u):
        rng = np.random.Generator(np.random.PCG64(seed))
        for name, shape in shapes.items():
            draw = rng.standard_normal if distribution == "normal" else rng.random
            per_sample[name].append(draw(tuple(shape), dtype=np.float32))
    device = u.device if device is None else device
    return {
        name: torch.from_numpy(np.stack(xs)).to(device=device, dtype=dtype or torch.float32) for name, xs in per_sample.items()
    }


def noise_size(generator: Any) -> int:
    """How many trailing coordinates of ``generator``'s flat latent are noise a prompt passes through (0 for most).

    A prompt (:class:`~promptgen.artifacts.prompt.Prompt`) says the same of the generator it controls.
    """
    n = getattr(generator, "noise_size", 0)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0


def controlled_size(generator: Any) -> int:
    """How many coordinates of ``generator``'s latent a prompt's flow controls."""
    return math.prod(tuple(generator.latent_shape)) - noise_size(generator)
