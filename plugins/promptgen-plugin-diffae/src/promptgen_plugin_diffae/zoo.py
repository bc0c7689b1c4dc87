"""phizaz/diffae's published samplers: the "DiffAE (with latent DPM, can sample)" checkpoints of its README.

Each is one ``last.ckpt`` (the autoencoder, its latent DDIM and the latent statistics) in a Google Drive
folder, with no direct link, size or checksum, so it is downloaded by hand (``page``) and given with
``path=`` or put in the cache under ``filename``. The code and weights are under the MIT licence
(VISTEC); the images they were trained on carry their own terms (below).
"""

from __future__ import annotations

from dataclasses import dataclass

from promptgen import plugin

from .checkpoints import FFHQ128, FFHQ256, LSUN128, Preset

MIT = "MIT (phizaz/diffae, VISTEC)"
DRIVE = "https://drive.google.com/drive/folders/"


@dataclass(frozen=True)
class ZooModel:
    """One published DiffAE: what users type, a line, its terms, its file and its configuration."""

    name: str
    description: str
    licence: str
    weights: plugin.Published
    preset: Preset

    @property
    def resolution(self) -> int:
        return self.preset.unet.image_size


def _model(name: str, folder: str, drive_id: str, what: str, terms: str, preset: Preset) -> ZooModel:
    file = plugin.Published(f"{folder}-last.ckpt", page=DRIVE + drive_id)
    return ZooModel(name, what, f"{MIT}; {terms}", file, preset)


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        _model("diffae-ffhq-256", "ffhq256_autoenc_latent", "1-H8WzKc65dEONN-DQ87TnXc23nTXDTYb", "FFHQ faces",
               "FFHQ images: CC BY-NC-SA 4.0", FFHQ256),
        _model("diffae-ffhq-128", "ffhq128_autoenc_latent", "11pdjMQ6NS8GFFiGOq3fziNJxzXU1Mw3l", "FFHQ faces",
               "FFHQ images: CC BY-NC-SA 4.0", FFHQ128),
        _model("diffae-bedroom-128", "bedroom128_autoenc_latent", "11mdxv2lVX5Em8TuhNJt-Wt2XKt25y8zU", "LSUN bedrooms",
               "LSUN: see the dataset's terms", LSUN128),
        _model("diffae-horse-128", "horse128_autoenc_latent", "11k8XNDK3ENxiRnPSUdJ4rnagJYo4uKEo", "LSUN horses",
               "LSUN: see the dataset's terms", LSUN128),
    ]
}
