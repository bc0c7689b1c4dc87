"""A base class for attribute classifiers that are one frozen ``torch.nn.Module``, and
:func:`classify`, the one call energies make to a classifier."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from promptgen.core.protocols import AttributeClassifier


def adapt_images(images: Tensor, size: tuple[int, int], channels: int) -> Tensor:
    """Differentiably bring (B, C, H, W) images in [0, 1] to ``channels`` and ``size``.

    RGB -> grey uses ITU-R 601 luma weights; grey -> RGB repeats the channel;
    resizing is bilinear with antialiasing when shrinking.
    """
    c = images.shape[1]
    if c != channels:
        if c == 3 and channels == 1:
            w = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images * w).sum(1, keepdim=True)
        elif c == 1:
            images = images.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"cannot convert {c}-channel images to {channels} channels")
    if tuple(images.shape[-2:]) != tuple(size):
        shrink = images.shape[-1] > size[-1]
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return images


def classify(classifier: AttributeClassifier, images: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
    """Each attribute's class log-probabilities and, when the classifier knows its domain,
    ``log p(in domain | x)`` (B,), from one pass of the classifier.

    The second part comes from the optional ``log_probs_in_domain`` method (see
    :class:`~promptgen.core.protocols.AttributeClassifier`); None without it.
    """
    both = getattr(classifier, "log_probs_in_domain", None)
    if callable(both):
        logp, domain = both(images)
        return dict(logp), domain
    return dict(classifier.log_probs(images)), None


class ModuleClassifier:
    """Wraps a module ``images -> logits`` as an :class:`~promptgen.core.protocols.AttributeClassifier`.

    Args:
        module: maps (B, channels, *input_size) in [0, 1] to (B, L) logits.
        heads: attribute -> (class labels, slice of the logits they occupy).
        input_size: (H, W) the module expects; other sizes are resized.
        channels: channels the module expects; grey/RGB are converted.
        outside: ``(attribute, index)`` of a logit that means "not an image of
            this domain at all" (the built-in digit classifier's "not a digit"),
            trained in one softmax with that attribute's classes. The
            attribute's log-probabilities are then those of its classes given
            the image is in the domain, and :meth:`log_probs_in_domain` also
            gives ``log p(in domain | x)``.
        realism: for an evaluator, a module ``images -> (B,)`` realism score
            (>= 0: an image of the domain, < 0: junk), exposed as :meth:`realism`
            (after the same resizing); `promptgen eval` reports the share below 0.
    """

    def __init__(
        self,
        module: nn.Module,
        heads: Mapping[str, tuple[Sequence[str], slice]],
        input_size: tuple[int, int],
        channels: int,
        outside: tuple[str, int] | None = None,
        realism: nn.Module | None = None,
    ) -> None:
        self.module = module.eval().requires_grad_(False)
        self.heads = dict(heads)
        self.attributes = {name: list(labels) for name, (labels, _) in self.heads.items()}
        self.input_size: tuple[int, int] = (int(input_size[0]), int(input_size[1]))
        self.channels = channels
        if outside is not None and outside[0] not in self.heads:
            raise ValueError(f"outside= names attribute {outside[0]!r}, which is not one of the heads {sorted(self.heads)}")
        self.outside = outside
        self.realism_module = realism.eval().requires_grad_(False) if realism is not None else None

    @property
    def realism(self) -> Callable[[Tensor], Tensor]:
        """``realism(images) -> (B,)`` score, >= 0 for images of the domain; only with a ``realism`` module
        (``hasattr`` is False otherwise), as the optional evaluator method `promptgen eval` looks for."""
        module = self.realism_module
        if module is None:
            raise AttributeError("this classifier has no realism check")

        def realism(images: Tensor) -> Tensor:
            return module(adapt_images(images, self.input_size, self.channels))

        return realism

    @property
    def judge(self) -> Callable[[Tensor], tuple[dict[str, Tensor], Tensor]]:
        """``judge(images) -> (log_probs, realism scores)`` from one pass of the module, when the realism
        module takes the module's logits (``takes_logits``; the built-in digit evaluator's does); ``hasattr``
        is False otherwise. What the watch uses to read the digits and the junk of the same images."""
        module = self.realism_module
        if module is None or not getattr(module, "takes_logits", False):
            raise AttributeError("this classifier's realism check does not share its logits")

        def judge(images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
            adapted = adapt_images(images, self.input_size, self.channels)
            logits = self.module(adapted)
            return self._split(logits), module(adapted, logits=logits)

        return judge

    def _logits(self, images: Tensor) -> Tensor:
        return self.module(adapt_images(images, self.input_size, self.channels))

    def _split(self, logits: Tensor) -> dict[str, Tensor]:
        return {name: torch.log_softmax(logits[:, part], dim=1) for name, (_, part) in self.heads.items()}

    def log_probs(self, images: Tensor) -> dict[str, Tensor]:
        return self._split(self._logits(images))

    def log_probs_in_domain(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        """:meth:`log_probs`, and ``log p(in domain | x)`` (B,) when ``outside`` is set (else None)."""
        logits = self._logits(images)
        if self.outside is None:
            return self._split(logits), None
        name, index = self.outside
        inside = logits[:, self.heads[name][1]]
        every = torch.cat([inside, logits[:, index : index + 1]], 1)
        return self._split(logits), torch.logsumexp(inside, 1) - torch.logsumexp(every, 1)

    @property
    def features(self) -> Callable[[Tensor], Tensor]:
        """``features(images) -> (B, D)``: the module's own ``features``, after the same resizing.

        Only present when the module has a ``features`` method (``hasattr``
        is False otherwise), as the optional classifier method that
        `promptgen eval` uses for diversity and Fréchet distances.
        """
        fn = getattr(self.module, "features", None)
        if not callable(fn):
            raise AttributeError(f"{type(self.module).__name__} has no features() method")  # noqa: TRY004 - hasattr() must say False

        def features(images: Tensor) -> Tensor:
            return fn(adapt_images(images, self.input_size, self.channels)).flatten(1)

        return features

    def to(self, device: torch.device | str) -> ModuleClassifier:
        self.module.to(device)
        if self.realism_module is not None:
            self.realism_module.to(device)
        return self
