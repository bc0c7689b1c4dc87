"""The published NVAE checkpoints (NVlabs/NVAE README, "Checkpoints").

NVIDIA publishes them in one Google Drive folder, with no direct link, size or
checksum per file, so every model here is downloaded by hand (``weights.page``)
and given with ``path=`` or put in the cache under ``weights.filename``. The
weights are under the NVIDIA Source Code License for NVAE: non-commercial use only.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptgen import plugin

DRIVE = "https://drive.google.com/drive/folders/1KVpw12AzdVjvbfEYM_6_3sxTy93wWkbe"
TERMS = "NVIDIA Source Code License for NVAE (non-commercial use only), https://github.com/NVlabs/NVAE/blob/master/LICENSE"


@dataclass(frozen=True)
class ZooModel:
    """One published NVAE.

    Attributes:
        name: what users type after ``--gen``.
        resolution: output size in pixels.
        description: one line.
        weights: the checkpoint, cached in ``$PROMPTGEN_HOME/nvae/``; no direct link for any of NVIDIA's (a
            Google Drive folder), nor a published size or checksum.
        licence: terms of the weights (and of the data they were trained on).
        which: which of the Drive folder's checkpoints it is.
        top: the top latent group's shape (what the flow controls by default) for the published configuration.
        groups: the number of latent groups of the published configuration.
        decoder_parameters: the decoder's size, in millions of parameters (measured on the published
            configuration: ``benchmarks/nvae_speed.py``); the file's size in bytes is not published.
    """

    name: str
    resolution: int
    description: str
    weights: plugin.Published
    licence: str
    which: str
    top: tuple[int, int, int] = (20, 8, 8)
    groups: int = 0
    decoder_parameters: float = 0.0

    @property
    def filename(self) -> str:
        """The checkpoint's name in the cache."""
        return self.weights.filename



MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel(
            "nvae-ffhq-256", 256, "FFHQ faces", plugin.Published("nvae-ffhq-256.pt", page=DRIVE),
            TERMS + "; FFHQ images: CC BY-NC-SA 4.0", "the FFHQ checkpoint",
            top=(20, 8, 8), groups=36, decoder_parameters=119.5,
        ),
        ZooModel(
            "nvae-celebahq-256", 256, "CelebA-HQ faces", plugin.Published("nvae-celebahq-256.pt", page=DRIVE),
            TERMS + "; CelebA-HQ: non-commercial research",
            "a CelebA HQ 256 checkpoint (two are published: the README notes the earlier one samples better at low "
            "temperature)",
            top=(20, 8, 8), groups=36, decoder_parameters=119.5,
        ),
        ZooModel(
            "nvae-celeba-64", 64, "CelebA faces", plugin.Published("nvae-celeba-64.pt", page=DRIVE),
            TERMS + "; CelebA: non-commercial research", "the CelebA 64 checkpoint",
            top=(20, 8, 8), groups=35, decoder_parameters=58.1,
        ),
        ZooModel(
            "nvae-cifar10", 32, "CIFAR-10", plugin.Published("nvae-cifar10.pt", page=DRIVE),
            TERMS + "; CIFAR-10 images: see cs.toronto.edu/~kriz/cifar.html",
            "a CIFAR-10 checkpoint (two are published: single-scale and multi-scale; the shapes here are the "
            "single-scale command's)",
            top=(20, 16, 16), groups=30, decoder_parameters=51.8,
        ),
        ZooModel(
            "nvae-mnist", 28, "dynamically binarised MNIST digits", plugin.Published("nvae-mnist.pt", page=DRIVE),
            TERMS + "; MNIST: CC BY-SA 3.0", "the MNIST checkpoint",
            top=(20, 4, 4), groups=15, decoder_parameters=12.7,
        ),
    ]
}
