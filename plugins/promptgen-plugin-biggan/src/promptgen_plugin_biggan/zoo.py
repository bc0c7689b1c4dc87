"""The published BigGAN-deep models in pytorch-pretrained-BigGAN's format, and under which terms.

The URLs are pytorch-pretrained-BigGAN's ``PRETRAINED_MODEL_ARCHIVE_MAP`` and
``PRETRAINED_CONFIG_ARCHIVE_MAP``. Hugging Face publishes no checksums and no
exact sizes for these files (its README gives 201, 224 and 225 MB), so the
downloads are not checked (``sha256=None``, ``size=None``); set them here when
trusted values are known.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptgen import plugin

BASE = "https://s3.amazonaws.com/models.huggingface.co/biggan/"
LICENCE = (
    "Apache-2.0 (DeepMind's BigGAN-deep TF-Hub modules, tfhub.dev/deepmind/biggan-deep-{res}/1, converted to PyTorch by "
    "Hugging Face's pytorch-pretrained-BigGAN, Apache-2.0, whose README states no other terms for the weights); "
    "trained on ImageNet ILSVRC 2012: see image-net.org's terms of access"
)


@dataclass(frozen=True)
class ZooModel:
    """One published generator: ``name`` (after ``--gen``), output ``resolution``, the two files and their terms."""

    name: str
    resolution: int
    description: str
    config: plugin.Published
    weights: plugin.Published
    licence: str
    source: str

    @property
    def config_filename(self) -> str:
        return self.config.filename

    @property
    def weights_filename(self) -> str:
        return self.weights.filename


def _deep(res: int, params: str, megabytes: int) -> ZooModel:
    name = f"biggan-deep-{res}"
    return ZooModel(
        name,
        res,
        f"BigGAN-deep {res}×{res}, ImageNet, {params} parameters (~{megabytes} MB)",
        plugin.Published(f"{name}-config.json", BASE + f"{name}-config.json"),
        plugin.Published(f"{name}-pytorch_model.bin", BASE + f"{name}-pytorch_model.bin"),
        LICENCE.format(res=res),
        f"{BASE}{name}-pytorch_model.bin (pytorch-pretrained-BigGAN; https://tfhub.dev/deepmind/biggan-deep-{res}/1)",
    )


MODELS: dict[str, ZooModel] = {m.name: m for m in (_deep(128, "50.4 M", 201), _deep(256, "55.9 M", 224), _deep(512, "56.2 M", 225))}
