"""A trained prompt: the generator composed with its flow, ``x = G(f(ε))``.

A :class:`Prompt` is itself a :class:`~promptgen.core.protocols.Generator` whose
latent is the flow's Gaussian noise ε, so it can be sampled exactly like a
base generator (and, later, controlled again).

A *mixture* prompt (``debias:...,mode=mixture``) has a class-conditional flow
and component weights π. Its latent is ε with one more Gaussian coordinate
``u``, flattened: ``(ε, u)``, and ``u`` picks the component ``c`` with
``Φ(u)`` against the cumulative weights (so ``c ~ π`` exactly), then
``x = G(f(ε; c))``. Sampling and chaining need nothing else: a prompt trained
on a mixture prompt sees a Gaussian latent like any other.

A generator's own noise (:mod:`promptgen.core.latents`) stays the last
coordinates of a prompt's latent, after ``u``: the flow passes it through, and
a prompt trained on this one passes it through again (:attr:`Prompt.noise_size`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor

from promptgen.artifacts import chaining
from promptgen.artifacts.manifest import LineageRecord, PromptManifest, file_sha256, load_flow, read_manifest
from promptgen.core.errors import ArtifactError, UnknownNameError, one_line
from promptgen.core.generators import check_images
from promptgen.core.latents import noise_size
from promptgen.core.protocols import Generator, GeneratorInfo
from promptgen.core.registry import Registry, get_registry
from promptgen.training.flow import CouplingFlow


def build_generator(spec: str, registry: Registry | None = None) -> Generator:
    """The generator for a spec such as ``mnist`` or ``stylegan2:path=ffhq.pkl`` (see :meth:`Registry.build_generator`)."""
    return (registry or get_registry()).build_generator(spec)


class Prompt:
    """A generator followed by a trained flow.

    Args:
        manifest: the prompt's manifest.
        generator: the base generator the manifest names.
        flow: the trained flow.
        path: the folder it was loaded from, if any.
    """

    def __init__(self, manifest: PromptManifest, generator: Generator, flow: CouplingFlow, path: Path | None = None) -> None:
        self.manifest = manifest
        self.generator = generator
        self.flow = flow.eval().requires_grad_(False)
        self.path = path
        mixture = manifest.mixture
        # Cumulative weights of the components, ending exactly at 1 so every u finds one.
        self._cumulative = None if mixture is None else torch.tensor(mixture.weights, dtype=torch.float64).cumsum(0)
        if self._cumulative is not None:
            self._cumulative /= self._cumulative[-1].clone()
        # Read once here: asking the parent each time would recurse down a long chain.
        parent_shape = tuple(generator.latent_shape)
        self._latent_shape = parent_shape if self._cumulative is None else (math.prod(parent_shape) + 1,)
        #: Trailing coordinates of the latent that are the base generator's own noise.
        self.noise_size = noise_size(generator)
        self._u = math.prod(parent_shape) - self.noise_size  # where a mixture's u sits: before the noise
        name = f"prompt:{path}" if path is not None else "prompt"
        description = " + ".join(e.spec for e in manifest.energies) or "no energies"
        if isinstance(generator, Prompt):  # a chain: say what it controls further
            description += f" on {generator.info.name}"
        self.info = GeneratorInfo(
            name=name,
            resolution=generator.info.resolution,
            channels=generator.info.channels,
            licence=generator.info.licence,
            source=generator.info.source,
            description=description,
        )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._latent_shape

    def components(self, eps: Tensor) -> Tensor | None:
        """Each sample's mixture component, (B,) integers; None for a prompt that is no mixture."""
        if self._cumulative is None:
            return None
        u = eps.flatten(1)[:, self._u].double().cpu()
        p = 0.5 * torch.special.erfc(-u / math.sqrt(2))  # Φ(u), accurate in both tails
        c = torch.searchsorted(self._cumulative, p, right=True).clamp_max(len(self._cumulative) - 1)
        return c.to(eps.device)

    def noise(self, eps: Tensor) -> Tensor:
        """The flow's input ε in ``eps``: ``eps`` itself, or without the component coordinate of a mixture."""
        if self._cumulative is None:
            return eps
        flat = eps.flatten(1)
        return torch.cat([flat[:, : self._u], flat[:, self._u + 1 :]], 1).reshape(eps.shape[0], *self.generator.latent_shape)

    def chain(self) -> list[Prompt]:
        """This prompt, then the prompt it was trained on, and so on (a loop, not recursion: chains may be long)."""
        out: list[Prompt] = [self]
        while isinstance(out[-1].generator, Prompt):
            out.append(out[-1].generator)
        return out

    @property
    def base(self) -> Generator:
        """The generator at the root of the chain."""
        return self.chain()[-1].generator

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def latents(self, eps: Tensor) -> Tensor:
        """``z = f(ε)``: (B, *latent_shape) -> (B, *generator.latent_shape); ``f(ε; c)`` for a mixture."""
        return self.flow(self.noise(eps), self.components(eps))[0]

    def decode(self, eps: Tensor) -> Tensor:
        """Images ``G(f(ε))``, (B, C, H, W) in [0, 1]; through every flow of a chain, nearest first."""
        chain = self.chain()
        for prompt in chain:
            eps = prompt.latents(eps)
        return chain[-1].generator.decode(eps)

    def to(self, device: torch.device | str) -> Prompt:
        chain = self.chain()
        chain[-1].generator.to(device)
        for prompt in chain:
            prompt.flow.to(device)
        return self

    def __repr__(self) -> str:
        if isinstance(self.generator, Prompt):  # the description already names the parent
            return f"Prompt({self.info.description!r})"
        return f"Prompt({self.info.description!r} on {self.manifest.generator.spec!r})"


def load_prompt(path: str | Path, registry: Registry | None = None) -> Prompt:
    """Load a prompt folder. Needs the generator's plugin, none of the energies'.

    A prompt trained on another prompt (``--gen prompt:PATH``) loads its parent
    the same way, through the ``prompt`` generator (see :mod:`promptgen.artifacts.chaining`).
    A chain of any length loads without recursion: its folders are found first,
    then loaded from the root up, each finding its parent already loaded.
    """
    path = Path(path)
    try:
        path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise ArtifactError(f"cannot use {str(path)!r} as a prompt folder ({one_line(str(exc))}); give the folder made by `promptgen compose`") from None
    if chaining.preloading():
        return _load_one(path, registry)
    with chaining.preloaded() as cache:
        for parent in reversed(chaining.parent_folders(path)):
            cache[parent.resolve()] = _load_one(parent, registry)
        return _load_one(path, registry)


def _load_one(path: Path, registry: Registry | None) -> Prompt:
    with chaining.loading(path):
        manifest = read_manifest(path)
        flow = load_flow(path, manifest)
        spec = chaining.resolve_parent_spec(path, manifest)
        try:
            generator = build_generator(spec, registry)
        except UnknownNameError as exc:
            if "needs the plugin that provides it" in str(exc):  # already said by a parent prompt
                raise
            raise UnknownNameError(f"{exc} — the prompt {str(path)!r} needs the plugin that provides it") from None
    if tuple(generator.latent_shape) != tuple(manifest.generator.latent_shape):
        raise ArtifactError(
            f"generator {manifest.generator.spec!r} now has latent shape {generator.latent_shape}, "
            f"the prompt was trained for {tuple(manifest.generator.latent_shape)}; install the matching plugin version"
        )
    return Prompt(manifest, generator, flow, path)


@torch.no_grad()
def sample_images(
    generator: Generator, n: int, seed: int = 0, device: torch.device | None = None, batch_size: int = 500
) -> Tensor:
    """``n`` images from any generator (a base one or a :class:`Prompt`).

    The noise is drawn on the CPU from ``seed`` so results repeat across devices.

    Returns:
        (n, C, H, W) float in [0, 1], on the CPU.
    """
    g = torch.Generator().manual_seed(seed)
    device = device or generator.device
    generator.to(device)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn((m, *generator.latent_shape), generator=g).to(device)
        out.append(check_images(generator.decode(z), generator, m).clamp(0, 1).cpu())
    return torch.cat(out) if out else torch.empty(0)


def lineage_for(generator: Generator, out: Path) -> list[LineageRecord]:
    """The lineage of a prompt trained on ``generator`` into ``out`` (empty for a base generator).

    Refuses an ``out`` that is the parent prompt or one of its ancestors: the
    new prompt would be trained on itself.
    """
    try:
        target = Path(out).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise ArtifactError(f"cannot use --out {str(out)!r} ({one_line(str(exc))}); choose another folder") from None
    records: list[LineageRecord] = []
    g = generator
    while isinstance(g, Prompt) and g.path is not None:
        folder = Path(g.path).resolve()
        if folder == target:
            which = "the prompt it is trained on" if not records else "an ancestor of the prompt it is trained on"
            raise ArtifactError(
                f"--out {str(out)!r} is {which} ({chaining.prompt_spec(folder)}); overwriting it would make the chain loop: "
                "choose a new --out folder"
            )
        try:
            relative: str | None = os.path.relpath(folder, target)
        except ValueError:  # another drive on Windows
            relative = None
        records.append(
            LineageRecord(
                path=str(folder),
                relative=relative,
                generator=g.manifest.generator.spec,
                energies=[e.spec for e in g.manifest.energies],
                created=g.manifest.created,
                # Checked against the file when the prompt was loaded; hashed here for prompts saved without it.
                weights_sha256=g.manifest.weights_sha256 or file_sha256(folder / g.manifest.weights_file),
            )
        )
        g = g.generator
    return records
