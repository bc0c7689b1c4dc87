"""facebookresearch/StyleNeRF's published FFHQ generators (its README's "Pretrained Checkpoints").

Each is one network pickle on the Hugging Face Hub (``facebook/stylenerf-ffhq-config-basic``), downloaded on first
use into the cache (``$PROMPTGEN_HOME/stylenerf``), or given with ``path=``. No checksum or size is published. The
code and the weights are under CC BY-NC 4.0 (Facebook), the parts from stylegan2-ada-pytorch under the NVIDIA Source
Code License; the FFHQ images carry their own terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptgen import plugin

LICENCE = (
    "CC BY-NC 4.0 (facebookresearch/StyleNeRF; its stylegan2-ada-pytorch parts: NVIDIA Source Code License); "
    "FFHQ: CC BY-NC-SA 4.0"
)
HUB = "https://huggingface.co/facebook/stylenerf-ffhq-config-basic"


@dataclass(frozen=True)
class ZooModel:
    """One published StyleNeRF: what users type, its resolution, its terms and its file."""

    name: str
    resolution: int
    licence: str
    weights: plugin.Published


def _model(resolution: int) -> ZooModel:
    filename = f"ffhq_{resolution}.pkl"
    file = plugin.Published(filename, url=f"{HUB}/resolve/main/{filename}", page=f"{HUB}/blob/main/{filename}")
    return ZooModel(f"stylenerf-ffhq-{resolution}", resolution, LICENCE, file)


MODELS: dict[str, ZooModel] = {m.name: m for m in (_model(256), _model(512), _model(1024))}
