"""The published NVAE checkpoints (NVlabs/NVAE README, "Checkpoints").

NVIDIA publishes them in one Google Drive folder, with no direct link, size or
checksum per file, so every model here is downloaded by hand (``page``) and
given with ``path=`` or put in the cache under ``filename``. The weights are
under the NVIDIA Source Code License for NVAE: non-commercial use only.
"""

from __future__ import annotations

from dataclasses import dataclass

DRIVE = "https://drive.google.com/drive/folders/1KVpw12AzdVjvbfEYM_6_3sxTy93wWkbe"
TERMS = "NVIDIA Source Code License for NVAE (non-commercial use only), https://github.com/NVlabs/NVAE/blob/master/LICENSE"


@dataclass(frozen=True)
class ZooModel:
    """One published NVAE.

    Attributes:
        name: what users type after ``--gen``.
        resolution: output size in pixels.
        description: one line.
        url: a direct link to the file; None for all of NVIDIA's (a Google Drive folder).
        filename: its name in the cache (``$PROMPTGEN_HOME/nvae/``).
        licence: terms of the weights (and of the data they were trained on).
        page: where a person downloads it by hand.
        which: which of the Drive folder's checkpoints it is.
        size: the file's size as published (None: not published).
        sha256: published checksum, when there is one.
        top: the top latent group's shape (what the flow controls by default) for the published configuration.
        groups: the number of latent groups of the published configuration.
        decoder_parameters: the decoder's size, in millions of parameters (measured on the published
            configuration: ``benchmarks/nvae_speed.py``); the file's size in bytes is not published.
    """

    name: str
    resolution: int
    description: str
    url: str | None
    filename: str
    licence: str
    page: str
    which: str
    size: int | None = None
    sha256: str | None = None
    top: tuple[int, int, int] = (20, 8, 8)
    groups: int = 0
    decoder_parameters: float = 0.0


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("nvae-ffhq-256", 256, "FFHQ faces", None, "nvae-ffhq-256.pt", TERMS + "; FFHQ images: CC BY-NC-SA 4.0", DRIVE, "the FFHQ checkpoint", top=(20, 8, 8), groups=36, decoder_parameters=119.5),
        ZooModel("nvae-celebahq-256", 256, "CelebA-HQ faces", None, "nvae-celebahq-256.pt", TERMS + "; CelebA-HQ: non-commercial research", DRIVE, "a CelebA HQ 256 checkpoint (two are published: the README notes the earlier one samples better at low temperature)", top=(20, 8, 8), groups=36, decoder_parameters=119.5),
        ZooModel("nvae-celeba-64", 64, "CelebA faces", None, "nvae-celeba-64.pt", TERMS + "; CelebA: non-commercial research", DRIVE, "the CelebA 64 checkpoint", top=(20, 8, 8), groups=35, decoder_parameters=58.1),
        ZooModel("nvae-cifar10", 32, "CIFAR-10", None, "nvae-cifar10.pt", TERMS + "; CIFAR-10 images: see cs.toronto.edu/~kriz/cifar.html", DRIVE, "a CIFAR-10 checkpoint (two are published: single-scale and multi-scale; the shapes here are the single-scale command's)", top=(20, 16, 16), groups=30, decoder_parameters=51.8),
        ZooModel("nvae-mnist", 28, "dynamically binarised MNIST digits", None, "nvae-mnist.pt", TERMS + "; MNIST: CC BY-SA 3.0", DRIVE, "the MNIST checkpoint", top=(20, 4, 4), groups=15, decoder_parameters=12.7),
    ]
}
