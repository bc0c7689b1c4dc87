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

A *conditional* prompt (``compose --cond``) has a flow ``f(ε; α)`` that takes
conditions α. As a generator it decodes at :attr:`Prompt.condition` (each
condition's reference value unless set with :meth:`Prompt.at`);
:func:`sample_images` takes a condition and :func:`sweep_images` sweeps one.

A generator's own noise (:mod:`promptgen.core.latents`) stays the last
coordinates of a prompt's latent, after ``u``: the flow passes it through, and
a prompt trained on this one passes it through again (:attr:`Prompt.noise_size`).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from promptgen.artifacts import chaining
from promptgen.artifacts.manifest import LineageRecord, PromptManifest, file_sha256, load_flow, read_manifest
from promptgen.core.conditions import ConditionRange, ConditionWarning, condition_tensor, outside
from promptgen.core.errors import ArtifactError, SpecError, UnknownNameError, closest, one_line
from promptgen.core.generators import check_images
from promptgen.core.latents import decode_at, noise_size
from promptgen.core.protocols import Generator, GeneratorInfo
from promptgen.core.registry import Registry, get_registry
from promptgen.training.flow import CouplingFlow


def build_generator(spec: str, registry: Registry | None = None) -> Generator:
    """The generator for a spec such as ``mnist`` or ``stylegan2:path=ffhq.pkl`` (see :meth:`Registry.build_generator`)."""
    return (registry or get_registry()).build_generator(spec)


def is_generator_spec(text: str, registry: Registry | None = None) -> bool:
    """Whether ``text`` is a generator spec rather than a prompt folder: the one rule ``promptgen.sample`` and
    the command line share.

    - ``prompt:PATH`` is a spec (a prompt used as a generator);
    - an existing folder is a prompt folder (even one named like a generator);
    - text that parses as a spec whose name a plugin registers is a spec, whatever its options hold
      (``biggan:path=/abs/dir``, ``mnist``);
    - anything else is taken for a prompt folder (missing: its error says so).
    """
    if text.startswith("prompt:"):
        return True
    try:
        if Path(text).is_dir():
            return False
    except (OSError, ValueError):  # a NUL byte, a name too long
        pass
    from promptgen.core.spec import parse_spec

    try:
        name = parse_spec(text).name
    except SpecError:
        return False
    return name in (registry or get_registry()).generators


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
        #: A conditional prompt's conditions (empty for others), and the values it decodes at.
        self.conditions: list[ConditionRange] = manifest.condition_ranges()
        self.condition: dict[str, float] = {c.name: c.reference for c in self.conditions}
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

    def with_component(self, noise: Tensor, u: Tensor) -> Tensor:
        """The prompt's latent ``eps`` made of the flow's input ``noise`` (B, *generator.latent_shape) and a mixture's
        component coordinate ``u`` (B,), the inverse of :meth:`noise`; ``noise`` itself for a prompt that is no mixture."""
        if self._cumulative is None:
            return noise
        flat = noise.flatten(1)
        return torch.cat([flat[:, : self._u], u.reshape(-1, 1).to(flat), flat[:, self._u :]], 1)

    def noise(self, eps: Tensor) -> Tensor:
        """The flow's input ε in ``eps``: ``eps`` itself, or without the component coordinate of a mixture."""
        if self._cumulative is None:
            return eps
        flat = eps.flatten(1)
        return torch.cat([flat[:, : self._u], flat[:, self._u + 1 :]], 1).reshape(eps.shape[0], *self.generator.latent_shape)

    def at(self, values: Mapping[str, float]) -> Prompt:
        """This prompt decoding at the conditions ``values`` (the others at their current values); shares the weights.

        Warns (:class:`~promptgen.core.conditions.ConditionWarning`) for a value outside its training range.

        Raises:
            SpecError: the prompt has no conditions, or none of that name (one line, with the names it has).
        """
        if values and not self.conditions:
            raise SpecError(
                f"the prompt {self.info.name.removeprefix('prompt:')!r} was trained without conditions, so it takes no --cond or --sweep; "
                "sample it without them, or compose one with --cond NAME=LOW:HIGH"
            )
        names = [c.name for c in self.conditions]
        for name in values:
            if name not in names:
                near = closest(name, names)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise SpecError(f"the prompt has no condition {name!r}; {hint}it was trained with {', '.join(names)}")
        far = outside(self.conditions, values)
        if far:
            warnings.warn(far, ConditionWarning, stacklevel=2)
        other = copy.copy(self)
        other.condition = {**self.condition, **{k: float(v) for k, v in values.items()}}
        return other

    def condition_input(self, n: int, device: torch.device) -> Tensor | None:
        """(n, C) the flow's condition input at :attr:`condition`; None for a prompt without conditions."""
        if not self.conditions:
            return None
        return condition_tensor(self.conditions, self.condition, n).to(device)

    def reference_input(self, n: int, device: torch.device) -> Tensor | None:
        """(n, C) the flow's condition input at every condition's reference; None for a prompt without conditions."""
        if not self.conditions:
            return None
        return condition_tensor(self.conditions, {}, n).to(device)

    def latents_at(self, eps: Tensor, condition: Tensor | None) -> Tensor:
        """``f(ε; α)`` with ``condition`` (B, C) per sample (None: a prompt without conditions)."""
        return self.flow(self.noise(eps), self.components(eps), condition)[0]

    def decode_latents(self, z: Tensor, condition: Tensor | None) -> Tensor:
        """The generator's images of latents ``z`` made at ``condition`` (B, C); a generator that reads conditions
        (a camera, :class:`~promptgen.core.protocols.ReadsConditions`) is set to them too."""
        return decode_at(self.generator, z, condition, [c.name for c in self.conditions])

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
        """``z = f(ε)``: (B, *latent_shape) -> (B, *generator.latent_shape); ``f(ε; c)`` for a mixture,
        ``f(ε; α)`` at :attr:`condition` for a conditional prompt."""
        return self.latents_at(eps, self.condition_input(eps.shape[0], eps.device))

    def decode(self, eps: Tensor) -> Tensor:
        """Images ``G(f(ε))``, (B, C, H, W) in [0, 1]; through every flow of a chain, nearest first."""
        chain = self.chain()
        for prompt in chain:
            eps = prompt.latents(eps)
        root = chain[-1]
        return root.decode_latents(eps, root.condition_input(eps.shape[0], eps.device))

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

    ``hf://OWNER/NAME[@REVISION]`` loads a prompt from the Hugging Face Hub
    (:mod:`promptgen.artifacts.hub`; needs ``huggingface_hub``: the ``hub`` extra).
    """
    if _names_hub(path):
        return _load_from_hub(str(path), registry)
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


def _names_hub(path: str | Path) -> bool:
    """``hf://...``, also as a :class:`Path`, which turns it into ``hf:/...`` (unless such a local folder exists)."""
    if isinstance(path, str):
        return path.startswith("hf://")
    return str(path).startswith("hf:/") and not str(path).startswith("hf://") and not path.exists()


def _load_from_hub(text: str, registry: Registry | None) -> Prompt:
    from dataclasses import replace

    from promptgen.artifacts.hub import download_prompt, parse_hub_ref
    from promptgen.core.errors import PromptgenError

    if not text.startswith("hf://"):  # a Path made hf://a/b into hf:/a/b
        text = "hf://" + text[len("hf:/"):]
    ref = parse_hub_ref(text)
    folder = download_prompt(ref)
    try:
        prompt = load_prompt(folder, registry)
    except PromptgenError as exc:  # said of the downloaded copy: name the repo it came from
        raise type(exc)(f"{ref}: {exc}") from None
    prompt.info = replace(prompt.info, name=f"prompt:{ref}")
    return prompt


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
            from promptgen.core.spec import parse_spec
            from promptgen.core.zoo import recorded_hint

            name = parse_spec(spec).name if isinstance(spec, str) else spec.name
            known = (registry or get_registry()).generators
            hint = recorded_hint("generator", name, manifest.generator.plugin) if name not in known else None
            if hint is not None:
                raise UnknownNameError(
                    f"unknown generator {name!r}; {hint} — the prompt {str(path)!r} needs the plugin that provides it"
                ) from None
            raise UnknownNameError(f"{exc} — the prompt {str(path)!r} needs the plugin that provides it") from None
    if tuple(generator.latent_shape) != tuple(manifest.generator.latent_shape):
        raise ArtifactError(
            f"generator {manifest.generator.spec!r} now has latent shape {generator.latent_shape}, "
            f"the prompt was trained for {tuple(manifest.generator.latent_shape)}; install the matching plugin version"
        )
    return Prompt(manifest, generator, flow, path)


def at_condition(generator: Generator, condition: Mapping[str, float] | None) -> Generator:
    """``generator`` decoding at ``condition`` (:meth:`Prompt.at`); refuses a condition for anything but a conditional prompt."""
    if not condition:
        return generator
    if not isinstance(generator, Prompt):
        raise SpecError(f"{generator.info.name!r} is a base generator and takes no condition; give a conditional prompt folder")
    return generator.at(condition)


@torch.no_grad()
def sample_images(
    generator: Generator,
    n: int,
    seed: int = 0,
    device: torch.device | None = None,
    batch_size: int = 500,
    condition: Mapping[str, float] | None = None,
) -> Tensor:
    """``n`` images from any generator (a base one or a :class:`Prompt`).

    The noise is drawn on the CPU from ``seed`` so results repeat across devices.
    ``condition``: values of a conditional prompt's conditions (``{"yaw": 0.2}``); the others at their references.

    Returns:
        (n, C, H, W) float in [0, 1], on the CPU.
    """
    generator = at_condition(generator, condition)
    g = torch.Generator().manual_seed(seed)
    device = device or generator.device
    generator.to(device)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn((m, *generator.latent_shape), generator=g).to(device)
        out.append(check_images(generator.decode(z), generator, m).clamp(0, 1).cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def sweep_images(
    prompt: Prompt,
    n: int,
    name: str,
    values: Sequence[float],
    seed: int = 0,
    condition: Mapping[str, float] | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """The same ``n`` noises ε decoded at each of ``values`` of condition ``name`` (others at ``condition`` or their references).

    Returns:
        (n, len(values), C, H, W) float in [0, 1] on the CPU: one row per ε, one column per value.
    """
    if name in (condition or {}):
        raise SpecError(f"--sweep {name} and --cond {name} both set {name}; give it once")
    base = at_condition(prompt, dict(condition or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConditionWarning)
        # Refuses, in one line and before any work, a base generator, a prompt without conditions, an unknown name.
        at_condition(base, {name: values[0]})
    trained = next(c for c in base.conditions if c.name == name)
    beyond = [f"{v:g}" for v in values if not trained.contains(v)]
    if beyond:
        warnings.warn(
            f"--sweep {name}: {', '.join(beyond)} outside the training range {trained.low:g}:{trained.high:g}: "
            "the prompt extrapolates there and may not follow the condition",
            ConditionWarning,
            stacklevel=2,
        )
    g = torch.Generator().manual_seed(seed)
    device = device or base.device
    base.to(device)
    eps = torch.randn((n, *base.latent_shape), generator=g).to(device)
    columns = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConditionWarning)  # said once above
        for v in values:
            columns.append(check_images(base.at({name: v}).decode(eps), base, n).clamp(0, 1).cpu())
    return torch.stack(columns, 1)


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
