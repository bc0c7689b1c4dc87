"""Where ``model_ir_se50.pth`` comes from, and under which terms.

TreB1eN/InsightFace_Pytorch (README, "Pretrained Models & Performance") publishes
its IR-SE50 on OneDrive and Baidu Netdisk only: share pages, no direct link, no
size and no checksum. The PromptGen authors' README (ChenWu98/Generative-Visual-Prompt,
"Pre-trained off-the-shelf models") fetches the same file name from a Dropbox copy
made for StyleCLIP's Colab demo. Neither publishes a checksum, so the file is
downloaded by hand and given with ``path=`` or put in the cache at
``$PROMPTGEN_HOME/arcface/model_ir_se50.pth``; its keys and shapes are checked
when it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptgen import plugin

CACHE_SUBDIR = "arcface"


@dataclass(frozen=True)
class ZooModel:
    """The published IR-SE50: its name in the cache, where a person downloads it, and its terms."""

    name: str
    weights: plugin.Published
    description: str
    licence: str
    source: str

    @property
    def filename(self) -> str:
        """The weights' name in the cache."""
        return self.weights.filename


IR_SE50 = ZooModel(
    name="ir-se50",
    weights=plugin.Published(
        "model_ir_se50.pth",
        # TreB1eN's README: IR-SE50 @ OneDrive (or @ BaiduNetdisk: https://pan.baidu.com/s/12BUjjwy1uUTEF9HCx5qvoQ);
        # the Dropbox copy is the PromptGen README's (StyleCLIP's Colab).
        page="https://1drv.ms/u/s!AhMqVPD44cDOhkPsOU2S_HFpY9dC (TreB1eN's README; "
        "or https://www.dropbox.com/s/qg7co4azsv5sacm/model_ir_se50.pth)",
    ),
    description="ArcFace IR-SE50 (TreB1eN/InsightFace_Pytorch), 512-d face embeddings of 112×112 aligned faces; LFW 99.52 % (its README)",
    licence=(
        "code: MIT (TreB1eN/InsightFace_Pytorch); the weights come with no terms of their own; they were trained on "
        "MS1M (InsightFace's faces_ms1m-refine-v2 'emore' release of MS-Celeb-1M, which Microsoft withdrew in 2019 and "
        "InsightFace distributes for non-commercial research only): treat them as non-commercial research use"
    ),
    source="https://github.com/TreB1eN/InsightFace_Pytorch (README: IR-SE50 @ OneDrive / BaiduNetdisk)",
)
