"""Random-weight BigGAN-deep models in the official file format, for tests, the conformance script and benchmarks.

:func:`write_model` writes ``config.json`` (as pytorch-pretrained-BigGAN's
``BigGANConfig.to_json_string`` does) and ``pytorch_model.bin``
(``torch.save(state_dict)``, the keys of the official files). The weights are
random but well-conditioned: the spectral-norm vectors ``u``, ``v`` are the
leading singular vectors (as after the converter's power iteration), the
standing statistics differ per truncation, and the attention's ``gamma`` is
not zero, so every part of the network shows in the images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from promptgen_plugin_biggan.config import BigGANConfig, to_json
from promptgen_plugin_biggan.network import BigGAN, SNLinear

#: A small BigGAN-deep: 32 px, 4 blocks (3 upsampling), attention before the third, channel width 4, z of 16, ImageNet's 1,000 classes.
TINY = BigGANConfig(
    output_dim=32, z_dim=16, class_embed_dim=16, channel_width=4, num_classes=1000,
    layers=((True, 16, 8), (True, 8, 4), (True, 4, 2), (False, 2, 1)), attention_layer_position=2, eps=1e-4, n_stats=51,
)


def random_state_dict(cfg: BigGANConfig, seed: int = 0) -> dict[str, Tensor]:
    """A state dict with the official keys for ``cfg``, random values drawn with ``seed``."""
    net = BigGAN(cfg)
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g)

    with torch.no_grad():
        net.embeddings.weight.copy_(0.5 * randn(*net.embeddings.weight.shape))
        for m in net.modules():
            if isinstance(m, SNLinear):
                w = m.weight_orig
                w.copy_(randn(*w.shape) / w[0].numel() ** 0.5)
                mat = w.reshape(w.shape[0], -1)
                v = torch.nn.functional.normalize(randn(mat.shape[1]), dim=0)
                for _ in range(30):
                    u = torch.nn.functional.normalize(mat @ v, dim=0)
                    v = torch.nn.functional.normalize(mat.t() @ u, dim=0)
                m.weight_u.copy_(torch.nn.functional.normalize(mat @ v, dim=0))
                m.weight_v.copy_(v)
                if m.bias is not None:
                    m.bias.copy_(0.1 * randn(*m.bias.shape))
        for name, buf in net.named_buffers():
            if name.endswith("running_means"):
                buf.copy_(0.2 * randn(*buf.shape))
            elif name.endswith("running_vars"):
                buf.copy_(0.5 + torch.rand(*buf.shape, generator=g))
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
        net.generator.bn.weight.copy_(1 + 0.1 * randn(cfg.channel_width))
        net.generator.bn.bias.copy_(0.1 * randn(cfg.channel_width))
    return {k: v.clone() for k, v in net.state_dict().items()}


def write_model(folder: str | Path, cfg: BigGANConfig = TINY, seed: int = 0, state: dict[str, Tensor] | None = None) -> Path:
    """Write ``config.json`` and ``pytorch_model.bin`` into ``folder`` (created); return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(to_json(cfg), encoding="utf-8")
    torch.save(state if state is not None else random_state_dict(cfg, seed), folder / "pytorch_model.bin")
    return folder
