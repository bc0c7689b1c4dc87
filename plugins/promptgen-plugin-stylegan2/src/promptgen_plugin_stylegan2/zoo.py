"""Named official StyleGAN2 and StyleGAN3 checkpoints: where they are published and under which terms.

NVIDIA publishes no checksums for these files, so downloads are checked by
size only (``sha256=None``); set one here when a trusted hash is known.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptgen import plugin

ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
SG3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
#: NVlabs/stylegan3's own models (configs T and R), listed in its README ("Pretrained networks").
STYLEGAN3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
ADA_TERMS = "NVIDIA Source Code License (non-commercial), https://nvlabs.github.io/stylegan2-ada-pytorch/license.html"
SG3_TERMS = "NVIDIA Source Code License (non-commercial), https://github.com/NVlabs/stylegan3/blob/main/LICENSE.txt"
FFHQ = "; FFHQ images: CC BY-NC-SA 4.0"


@dataclass(frozen=True)
class ZooModel:
    """One published generator.

    Attributes:
        name: what users type after ``--gen``.
        resolution: output size in pixels.
        description: one line.
        weights: the checkpoint, cached in ``$PROMPTGEN_HOME/stylegan2/`` (``url`` None: no direct link).
        licence: terms of the weights (and of the data they were trained on).
        classes: class labels of a class-conditional model, else empty.
        kind: StyleGAN3's configuration, "T" or "R" (None for StyleGAN2).
    """

    name: str
    resolution: int
    description: str
    weights: plugin.Published
    licence: str
    classes: tuple[str, ...] = ()
    kind: str | None = None

    @property
    def filename(self) -> str:
        """The checkpoint's name in the cache."""
        return self.weights.filename


CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _ada(name: str, file: str, res: int, what: str, licence: str, classes: tuple[str, ...] = ()) -> ZooModel:
    page = "https://github.com/NVlabs/stylegan2-ada-pytorch#data-repository"
    return ZooModel(name, res, what, plugin.Published(f"ada-{file}", ADA + file, page=page), ADA_TERMS + licence, classes)


def _sg3(name: str, file: str, res: int, what: str, licence: str) -> ZooModel:
    page = "https://catalog.ngc.nvidia.com/orgs/nvidia/teams/research/models/stylegan2"
    return ZooModel(name, res, what, plugin.Published(file, SG3 + file, page=page), SG3_TERMS + licence)


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        _ada("stylegan2-ffhq", "ffhq.pkl", 1024, "FFHQ faces (original StyleGAN2 training)", FFHQ),
        _ada("stylegan2-metfaces", "metfaces.pkl", 1024, "MetFaces portraits (ADA, transfer from FFHQ)", "; MetFaces images: CC BY-NC 2.0"),
        _ada("stylegan2-afhqcat", "afhqcat.pkl", 512, "AFHQ cats (ADA)", "; AFHQ images: CC BY-NC 4.0"),
        _ada("stylegan2-afhqdog", "afhqdog.pkl", 512, "AFHQ dogs (ADA)", "; AFHQ images: CC BY-NC 4.0"),
        _ada("stylegan2-afhqwild", "afhqwild.pkl", 512, "AFHQ wild animals (ADA)", "; AFHQ images: CC BY-NC 4.0"),
        _ada("stylegan2-brecahad", "brecahad.pkl", 512, "BreCaHAD histology (ADA)", "; BreCaHAD images: CC BY 4.0"),
        _ada("stylegan2-cifar10", "cifar10.pkl", 32, "CIFAR-10, class-conditional (ADA)", "; CIFAR-10 images: see cs.toronto.edu/~kriz/cifar.html", CIFAR10),
        _sg3("stylegan2-ffhq-1024", "stylegan2-ffhq-1024x1024.pkl", 1024, "FFHQ faces (stylegan3 release)", FFHQ),
        _sg3("stylegan2-ffhq-512", "stylegan2-ffhq-512x512.pkl", 512, "FFHQ faces (stylegan3 release)", FFHQ),
        _sg3("stylegan2-ffhq-256", "stylegan2-ffhq-256x256.pkl", 256, "FFHQ faces (stylegan3 release)", FFHQ),
        _sg3("stylegan2-ffhqu-1024", "stylegan2-ffhqu-1024x1024.pkl", 1024, "FFHQ-U, unaligned faces (stylegan3 release)", FFHQ),
        _sg3("stylegan2-ffhqu-256", "stylegan2-ffhqu-256x256.pkl", 256, "FFHQ-U, unaligned faces (stylegan3 release)", FFHQ),
        _sg3("stylegan2-metfaces-1024", "stylegan2-metfaces-1024x1024.pkl", 1024, "MetFaces (stylegan3 release)", "; MetFaces images: CC BY-NC 2.0"),
        _sg3("stylegan2-metfacesu-1024", "stylegan2-metfacesu-1024x1024.pkl", 1024, "MetFaces-U (stylegan3 release)", "; MetFaces images: CC BY-NC 2.0"),
        _sg3("stylegan2-afhqv2-512", "stylegan2-afhqv2-512x512.pkl", 512, "AFHQv2 animals (stylegan3 release)", "; AFHQ images: CC BY-NC 4.0"),
        _sg3("stylegan2-celebahq-256", "stylegan2-celebahq-256x256.pkl", 256, "CelebA-HQ faces (stylegan3 release)", "; CelebA-HQ: non-commercial research"),
        _sg3("stylegan2-lsundog-256", "stylegan2-lsundog-256x256.pkl", 256, "LSUN dogs (stylegan3 release)", "; LSUN: see the LSUN terms"),
        ZooModel(
            "stylegan2-ffhq-256-rosinality",
            256,
            "FFHQ faces, rosinality's port trained 550k iterations (.pt)",
            plugin.Published(
                "550000.pt",
                page="https://github.com/rosinality/stylegan2-pytorch#pretrained-checkpoints (Google Drive folder)",
            ),
            "MIT (rosinality/stylegan2-pytorch); NVIDIA ops under the NVIDIA Source Code License" + FFHQ,
        ),
    ]
}


def _stylegan3(kind: str, data: str, res: int, what: str, licence: str) -> ZooModel:
    file = f"stylegan3-{kind.lower()}-{data}-{res}x{res}.pkl"
    page = "https://catalog.ngc.nvidia.com/orgs/nvidia/teams/research/models/stylegan3"
    name = f"stylegan3-{kind.lower()}-{data}-{res}"
    weights = plugin.Published(file, STYLEGAN3 + file, page=page)
    return ZooModel(name, res, f"{what}, StyleGAN3-{kind}", weights, SG3_TERMS + licence, kind=kind)


#: Every network NVlabs/stylegan3 publishes, both configurations of each: ``--gen stylegan3-t-ffhq-1024`` ...
STYLEGAN3_MODELS: dict[str, ZooModel] = {
    m.name: m
    for kind in ("T", "R")
    for m in [
        _stylegan3(kind, "ffhq", 1024, "FFHQ faces", FFHQ),
        _stylegan3(kind, "ffhqu", 1024, "FFHQ-U, unaligned faces", FFHQ),
        _stylegan3(kind, "ffhqu", 256, "FFHQ-U, unaligned faces", FFHQ),
        _stylegan3(kind, "afhqv2", 512, "AFHQv2 animals", "; AFHQ images: CC BY-NC 4.0"),
        _stylegan3(kind, "metfaces", 1024, "MetFaces portraits", "; MetFaces images: CC BY-NC 2.0"),
        _stylegan3(kind, "metfacesu", 1024, "MetFaces-U, unaligned portraits", "; MetFaces images: CC BY-NC 2.0"),
    ]
}
