"""Google's published unconditional DDPMs (Ho et al. 2020), as the diffusers team converted them to the Hub.

Each is a ``DDPMPipeline`` folder (``UNet2DModel`` + ``DDPMScheduler``, 1,000 training steps) fetched by
``huggingface_hub`` into its cache; the hub checks every weights file against its SHA-256 as it downloads.
The revision is not pinned here (it could not be looked up from this project's offline machine): pass
``revision=`` a commit to pin one. The model cards give the weights the Apache 2.0 licence; the images they
were trained on carry their own terms (below).
"""

from __future__ import annotations

from dataclasses import dataclass

APACHE = "Apache-2.0 (model card)"


@dataclass(frozen=True)
class ZooModel:
    """One published pipeline: what users type, its hub id, image size, a line, and its terms."""

    name: str
    repo: str
    resolution: int
    description: str
    licence: str


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("ddpm-cifar10-32", "google/ddpm-cifar10-32", 32, "CIFAR-10", f"{APACHE}; CIFAR-10 images: see cs.toronto.edu/~kriz/cifar.html"),
        ZooModel("ddpm-celebahq-256", "google/ddpm-celebahq-256", 256, "CelebA-HQ faces", f"{APACHE}; CelebA-HQ: non-commercial research only"),
        ZooModel("ddpm-ema-celebahq-256", "google/ddpm-ema-celebahq-256", 256, "CelebA-HQ faces (EMA weights)", f"{APACHE}; CelebA-HQ: non-commercial research only"),
        ZooModel("ddpm-church-256", "google/ddpm-church-256", 256, "LSUN churches", f"{APACHE}; LSUN: see the dataset's terms"),
        ZooModel("ddpm-ema-church-256", "google/ddpm-ema-church-256", 256, "LSUN churches (EMA weights)", f"{APACHE}; LSUN: see the dataset's terms"),
        ZooModel("ddpm-bedroom-256", "google/ddpm-bedroom-256", 256, "LSUN bedrooms", f"{APACHE}; LSUN: see the dataset's terms"),
        ZooModel("ddpm-ema-bedroom-256", "google/ddpm-ema-bedroom-256", 256, "LSUN bedrooms (EMA weights)", f"{APACHE}; LSUN: see the dataset's terms"),
        ZooModel("ddpm-cat-256", "google/ddpm-cat-256", 256, "LSUN cats", f"{APACHE}; LSUN: see the dataset's terms"),
        ZooModel("ddpm-ema-cat-256", "google/ddpm-ema-cat-256", 256, "LSUN cats (EMA weights)", f"{APACHE}; LSUN: see the dataset's terms"),
    ]
}
