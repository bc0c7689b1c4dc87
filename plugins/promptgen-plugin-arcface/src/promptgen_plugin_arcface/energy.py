"""The ``arcface-id`` energy: keep a face's identity across the conditions of a conditional prompt.

For each image x_α, drawn at condition α, the core gives the image of its twin
x_ref, drawn from the same ε at the reference condition
(:attr:`promptgen.plugin.EnergyContext.reference`). The energy is

    E(x_α) = 1 − cos(ArcFace(x_α), ArcFace(x_ref))          in [0, 2]

with ArcFace the IR-SE50 of TreB1eN/InsightFace_Pytorch on the face crop of the
PromptGen authors' code (``model/energy/id.py``, from StyleCLIP's ID loss): the
image in [-1, 1] is average-pooled to 256×256 (when it is not that size
already), rows 35–222 and columns 32–219 are kept (the face of an FFHQ-aligned
image) and the 188×188 crop is average-pooled to 112×112. Every step is
differentiable, so gradients reach both images.

Called as a plain energy, ``energy(images, latents)``, there is no twin to
compare with: it raises a one-line :class:`~promptgen.plugin.PromptgenError`
rather than return zeros, which would train an unconditional prompt with an
energy that silently does nothing.

``promptgen compose --cond NAME=LOW:HIGH`` composes conditional prompts and
gives the twin; without ``--cond`` the core refuses a prompt with this energy
before training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from promptgen import plugin
from promptgen_plugin_arcface.checkpoints import load_network
from promptgen_plugin_arcface.network import INPUT_SIZE, IRSE50
from promptgen_plugin_arcface.options import ArcFaceOptions
from promptgen_plugin_arcface.zoo import CACHE_SUBDIR, IR_SE50

#: The FFHQ crop of the authors' code, at 256×256: rows [35, 223), columns [32, 220).
FFHQ_SIZE = 256
FFHQ_ROWS = (35, 223)
FFHQ_COLS = (32, 220)

NEEDS_CONTEXT = (
    "{label!r} compares each image with its twin drawn from the same ε at the reference condition, so it needs a "
    "conditional prompt: compose with a condition next to an energy that reads it (e.g. --energy deca-pose "
    "--cond yaw=-0.35:0.35), and leave arcface-id out of unconditional prompts"
)


def face_crop(images: Tensor, crop: str = "ffhq") -> Tensor:
    """(B, C, H, W) images in [0, 1] -> (B, 3, 112, 112) in [-1, 1], the input of IR-SE50; differentiable.

    ``crop="ffhq"``: average-pool to 256×256 unless already that size, keep rows 35–222 and
    columns 32–219, average-pool to 112×112 (the authors' ``extract_feats``). ``crop="none"``:
    average-pool the whole image to 112×112. A grey image (C = 1) is repeated into three channels.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise plugin.PromptgenError(f"arcface-id takes (B, 3, H, W) or (B, 1, H, W) images, not {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    x = images * 2 - 1
    if crop == "ffhq":
        if tuple(x.shape[-2:]) != (FFHQ_SIZE, FFHQ_SIZE):
            x = F.adaptive_avg_pool2d(x, FFHQ_SIZE)
        x = x[:, :, FFHQ_ROWS[0] : FFHQ_ROWS[1], FFHQ_COLS[0] : FFHQ_COLS[1]]
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.adaptive_avg_pool2d(x, INPUT_SIZE)
    return x


class ArcFaceIdEnergy(plugin.EnergyBase):
    """``1 − cos(ArcFace(x), ArcFace(x_ref))`` with x_ref the twin at the reference condition (:class:`plugin.Contextual`)."""

    #: It compares each image with its twin at the reference condition: the prompt needs a condition.
    needs_reference = True

    def __init__(self, net: IRSE50, crop: str = "ffhq", label: str = "arcface-id") -> None:
        super().__init__(label)
        self.net = net.eval().requires_grad_(False)
        self.crop = crop

    def embed(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images in [0, 1] -> (B, 512) unit-length ArcFace embeddings."""
        return self.net(face_crop(images, self.crop))

    def pair_energy(self, images: Tensor, reference: Tensor) -> Tensor:
        """(B,) ``1 − cos`` between each image and its reference; one network pass for both."""
        if reference.shape[0] != images.shape[0]:
            raise plugin.PromptgenError(
                f"{self.label!r}: {images.shape[0]} images but {reference.shape[0]} reference images; the core gives one twin per image"
            )
        b = images.shape[0]
        faces = torch.cat([face_crop(images, self.crop), face_crop(reference.to(images), self.crop)])
        e = self.net(faces)
        return 1 - (e[:b] * e[b:]).sum(1)

    def context_energy(self, images: Tensor, latents: Tensor, context: plugin.EnergyContext) -> Tensor:
        if context.reference is None:
            raise plugin.PromptgenError(NEEDS_CONTEXT.format(label=self.label))
        return self.pair_energy(images, context.reference)

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        raise plugin.PromptgenError(NEEDS_CONTEXT.format(label=self.label))

    def lower_bound(self) -> float:
        return 0.0


def build_energy(spec: plugin.Spec, options: ArcFaceOptions, registry: plugin.Registry) -> ArcFaceIdEnergy:
    path = plugin.local_file(IR_SE50.weights, path=options.path, subdir=CACHE_SUBDIR, spec=spec, what=IR_SE50.filename)
    net = load_network(path)
    return ArcFaceIdEnergy(net, options.crop, label=spec.with_weight(None).format())
