"""The four things promptgen composes, as typed protocols.

Conventions used throughout:

- Images are float tensors in [0, 1], shape (B, C, H, W) (NCHW).
- Latents are float tensors of shape (B, *latent_shape), standard normal under
  the generator's own prior.
- An energy returns one value per sample, shape (B,); lower means "more of
  what was asked for".

Any object with these attributes and methods fits; nothing needs to inherit
from a promptgen class. :class:`promptgen.core.generators.ModuleGenerator` is a
convenient base for generators that are a single ``torch.nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class GeneratorInfo:
    """What a user needs to know about a generator before trusting its images.

    Attributes:
        name: registry name, e.g. ``"mnist"`` or ``"stylegan2-ffhq"``.
        resolution: (height, width) of decoded images in pixels.
        channels: 1 for greyscale, 3 for RGB.
        licence: licence of the weights, e.g. ``"CC BY-SA 3.0"``.
        source: where the weights come from (URL or "trained by promptgen").
        description: one line for ``promptgen list``.
    """

    name: str
    resolution: tuple[int, int]
    channels: int
    licence: str = "unknown"
    source: str = ""
    description: str = ""


@runtime_checkable
class Generator(Protocol):
    """A frozen, pretrained map from Gaussian latents to images."""

    info: GeneratorInfo

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent, without the batch dimension, e.g. ``(512,)``."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def decode(self, z: Tensor) -> Tensor:
        """Images for latents.

        Args:
            z: (B, *latent_shape) on ``self.device``.

        Returns:
            (B, C, H, W) float in [0, 1]. Differentiable with respect to ``z``.
        """
        ...

    def to(self, device: torch.device | str) -> Generator:
        """Move to ``device`` in place and return ``self`` (the core may ignore the return value)."""
        ...


@runtime_checkable
class HasLatentParts(Protocol):
    """A generator whose latent comes in named parts (BigGAN: z and a class embedding).

    ``latent_parts`` maps each part's name to its shape, in order;
    ``latent_shape`` is then ``(Σ sizes,)`` and ``decode`` receives a dict
    name -> (B, *shape). The flow sees the parts flattened, in this order.
    See :mod:`promptgen.core.latents`.
    """

    latent_parts: Mapping[str, tuple[int, ...]]


@runtime_checkable
class HasNoise(Protocol):
    """A generator with randomness of its own that a prompt does not control.

    ``noise_shapes`` maps each noise input's name to its shape (standard
    normal). ``decode(z, noise=...)`` receives a dict name -> (B, *shape),
    drawn by promptgen from the same seeded stream as the latent; with
    ``noise=None`` the generator draws its own. See :mod:`promptgen.core.latents`.
    """

    noise_shapes: Mapping[str, tuple[int, ...]]

    def decode(self, z: Any, noise: Mapping[str, Tensor] | None = None) -> Tensor: ...


@runtime_checkable
class ReadsConditions(Protocol):
    """A generator with inputs a conditional prompt sets: a 3D-aware generator's camera (yaw, pitch).

    ``condition_inputs`` maps each input's name to the range it is defined on; a prompt's ``--cond`` of that
    name must lie inside it. ``decode(z, ..., condition=...)`` receives a dict name -> (B,) values for the inputs
    the prompt sets; an input it does not set (or ``condition=None``) the generator chooses itself, as it would
    without a prompt (for a camera: from its prior). The flow is conditioned on the same values, so a prompt
    trained with ``--cond yaw=-0.5:0.5`` learns one ``f(ε; yaw)`` whose images the renderer shows at that yaw.
    See :mod:`promptgen.core.latents` (:func:`~promptgen.core.latents.decode_at`).
    """

    condition_inputs: Mapping[str, tuple[float, float]]

    def decode(self, z: Any, noise: Mapping[str, Tensor] | None = None, condition: Mapping[str, Tensor] | None = None) -> Tensor: ...


class BaseSample:
    """Samples of the base distribution (or of a flow), handed to energies that fit or adapt.

    The images are decoded a chunk at a time on request, so a fit on thousands
    of 1024² images never holds them all: use :meth:`map_images` (or
    :meth:`image_chunks`) to reduce them to the features you need.

    Args:
        latents: (N, *latent_shape).
        images: (N, C, H, W) in [0, 1], when they are already in memory.
        decode: latents -> images, used chunk by chunk when ``images`` is not given.
        chunk: images per chunk.

    >>> s = BaseSample(torch.zeros(5, 2), decode=lambda z: z[:, :1, None, None].expand(-1, 1, 4, 4), chunk=2)
    >>> s.map_images(lambda x: x.mean((1, 2, 3))).shape, len(list(s.image_chunks()))
    (torch.Size([5]), 3)
    """

    def __init__(
        self,
        latents: Tensor,
        images: Tensor | None = None,
        *,
        decode: Callable[[Tensor], Tensor] | None = None,
        chunk: int = 256,
    ) -> None:
        if images is None and decode is None:
            raise ValueError("BaseSample needs images or a decode function")
        self.latents = latents
        self._images = images
        self.decode = decode
        self.chunk = chunk

    def __len__(self) -> int:
        return self.latents.shape[0]

    def image_chunks(self) -> Iterator[Tensor]:
        """The images, ``chunk`` at a time, decoded without gradients."""
        if self._images is not None:
            yield from self._images.split(self.chunk)
            return
        decode = self.decode
        assert decode is not None  # __init__ asks for images or a decode function
        with torch.no_grad():
            for z in self.latents.split(self.chunk):
                yield decode(z)

    def map_images(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn`` applied to each chunk of images (without gradients), concatenated along dimension 0."""
        with torch.no_grad():
            return torch.cat([fn(x) for x in self.image_chunks()])

    @property
    def images(self) -> Tensor:
        """All images at once (N, C, H, W). Memory grows with N × image size: prefer :meth:`map_images`."""
        if self._images is None:
            self._images = torch.cat(list(self.image_chunks()))
        return self._images


@runtime_checkable
class Energy(Protocol):
    """A control: one scalar per sample, low where the user's wish is met.

    Attributes:
        label: short text naming this energy in logs and progress bars.

    Its default weight is declared once, by its
    :class:`~promptgen.core.entries.EnergyEntry`. What an energy can do beyond
    this (be fitted, keep a state, name its targets, be a mixture...) is a set
    of small protocols in :mod:`promptgen.core.capabilities`, checked once
    when it is built.
    """

    label: str

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        """Energy per sample.

        Args:
            images: (B, C, H, W) in [0, 1], the generator's output for ``latents``.
            latents: (B, *latent_shape).

        Returns:
            (B,) float. Must be differentiable with respect to both inputs.
        """
        ...

    def to(self, device: torch.device | str) -> Energy:
        """Move to ``device`` in place and return ``self`` (the core may ignore the return value)."""
        ...


@dataclass(frozen=True)
class AttributeTarget:
    """What an energy asks of one attribute, so results can be judged against it.

    Attributes:
        attribute: attribute name, e.g. ``"digit"``; a joint attribute joins its
            parts with ``*``, e.g. ``"digit*thickness"`` (classes: every
            combination, first part slowest, labels joined with ``/``).
        labels: class labels in order.
        target: the class distribution aimed for (sums to 1), or None when the
            energy asks for classes rather than a distribution.
        asked: classes asked for (``classifier:digit=3`` asks ``("3",)``).
        avoided: classes asked against (``classifier:digit!=1``).
    """

    attribute: str
    labels: tuple[str, ...]
    target: tuple[float, ...] | None = None
    asked: tuple[str, ...] = ()
    avoided: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        """The plain attributes of a joint one (``("digit", "thickness")``), or ``(attribute,)``."""
        return tuple(self.attribute.split("*"))


@runtime_checkable
class AttributeClassifier(Protocol):
    """Class probabilities of named attributes, e.g. ``digit`` with classes 0–9.

    Attributes:
        attributes: attribute name -> its class labels, in output order.
    """

    attributes: Mapping[str, Sequence[str]]

    def log_probs(self, images: Tensor) -> Mapping[str, Tensor]:
        """Log class probabilities.

        Args:
            images: (B, C, H, W) in [0, 1]; the classifier resizes or converts
                channels itself, differentiably, if it needs to.

        Returns:
            attribute name -> (B, K) log-probabilities (each row logsumexp's to 0).
            Differentiable with respect to ``images``.
        """
        ...

    def to(self, device: torch.device | str) -> AttributeClassifier:
        """Move to ``device`` in place and return ``self`` (the core may ignore the return value)."""
        ...


# Optional classifier members. The core checks with ``getattr`` and works without them.
#
# ``log_probs_in_domain(images) -> (dict[str, Tensor], Tensor | None)``
#     :meth:`AttributeClassifier.log_probs`, and from the same pass ``log p(in
#     domain | x)`` (B,): the log-probability that the image is one of the
#     classifier's domain at all (a digit, a face), from a "none of these" class
#     trained on junk. The class log-probabilities are then those *given* the
#     image is in the domain. The classifier and debias energies add
#     ``realism · −log p(in domain | x)`` (``realism=`` in their specs, default
#     1), so a flow gains nothing by drawing images the classifier cannot place.
#     :class:`promptgen.core.classifiers.ModuleClassifier` has it with ``outside=``.
# ``features(images) -> Tensor``
#     (B, D) features; `promptgen eval` measures diversity and Fréchet
#     distances in them (an evaluator's, preferably).
# ``realism(images) -> Tensor``
#     (B,) realism score of an *evaluator*: >= 0 for an image of its domain, < 0
#     for junk. `promptgen eval` reports the share below 0 (the junk rate) for
#     the base and the prompt, and warns when the prompt's is higher.


@runtime_checkable
class Sampler(Protocol):
    """The trained invertible map ``z = f(ε)`` from noise to latents."""

    @property
    def latent_shape(self) -> tuple[int, ...]: ...

    def forward(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Latents and ``log |det ∂f/∂ε|``.

        A class-conditional sampler (a mixture prompt's flow) also takes
        ``classes``, (B,) component indices, as a second argument; a
        conditional prompt's flow takes its condition, (B, C), as the third
        (``forward(eps, classes_or_None, condition)``).

        Args:
            eps: (B, *latent_shape) standard normal noise.

        Returns:
            (z, log_det): z of shape (B, *latent_shape), log_det of shape (B,).
        """
        ...

    def inverse(self, z: Tensor) -> Tensor:
        """The noise that maps to ``z``: (B, *latent_shape) -> (B, *latent_shape)."""
        ...


__all__ = [
    "AttributeClassifier",
    "AttributeTarget",
    "BaseSample",
    "Energy",
    "Generator",
    "GeneratorInfo",
    "HasLatentParts",
    "HasNoise",
    "ReadsConditions",
    "Sampler",
]
