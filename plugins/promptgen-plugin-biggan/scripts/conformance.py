"""Compare the plugin's BigGAN-deep with the reference implementation (pytorch-pretrained-BigGAN) on the same weights.

For each official configuration (128, 256, 512): build the reference model,
give it random, well-conditioned weights (the real ones cannot be downloaded
here), save it in the official format (``torch.save(model.state_dict())`` +
``config.to_json_string()``), load that folder with the plugin
(``biggan:path=FOLDER``), feed both the same z, class vector and truncation,
and print the max absolute difference of the images (in [0, 1]) as JSON.

    pip install pytorch-pretrained-biggan scipy
    python plugins/promptgen-plugin-biggan/scripts/conformance.py [--sizes 128 256 512] [--batch 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pytorch_pretrained_biggan as reference
import torch
from promptgen_plugin_biggan.config import OFFICIAL
from promptgen_plugin_biggan.testing import random_state_dict

from promptgen.core.registry import get_registry


def compare(res: int, batch: int, truncations: list[float], folder: Path) -> dict:
    cfg = OFFICIAL[res]
    ref = reference.BigGAN(reference.BigGANConfig(**{**cfg.model_dump(), "layers": [list(x) for x in cfg.layers]}))
    ref.load_state_dict(random_state_dict(cfg, seed=res))
    ref.eval()
    torch.save(ref.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(ref.config.to_json_string(), encoding="utf-8")
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(batch, 2 * cfg.z_dim, generator=g)
    classes = torch.softmax(3 * torch.randn(batch, cfg.num_classes, generator=g), 1)  # a mixture of classes
    one_hot = torch.zeros(batch, cfg.num_classes)
    one_hot[:, 207] = 1
    out: dict = {"resolution": res, "batch": batch, "parameters": sum(p.numel() for p in ref.parameters())}
    for t in truncations:
        # The class embedding as a latent part (what a prompt learns) and a fixed class (class=207).
        gen = get_registry().build_generator(f"biggan:path={folder},truncation={t}")
        fixed = get_registry().build_generator(f"biggan:path={folder},truncation={t},class=207")
        scale = gen.inner.module.class_scale
        z = t * eps[:, : cfg.z_dim].clamp(-2, 2)
        start = time.perf_counter()
        with torch.no_grad():
            want_part = (ref.generator(torch.cat([z, scale * eps[:, cfg.z_dim :]], 1), t) + 1) / 2
            want_fixed = (ref(z, one_hot, t) + 1) / 2
            want_mixture = (ref(z, classes, t) + 1) / 2
        ref_s = time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            got_part = gen.decode(eps)
            got_fixed = fixed.decode(eps[:, : cfg.z_dim])
            got_mixture = (gen.inner.module.net(z, classes, t) + 1) / 2
        ours_s = time.perf_counter() - start
        out[f"truncation={t}"] = {
            "max_abs_diff_class_part": float((got_part - want_part).abs().max()),
            "max_abs_diff_class_207": float((got_fixed - want_fixed).abs().max()),
            "max_abs_diff_class_mixture": float((got_mixture - want_mixture).abs().max()),
            "image_std": float(want_part.std()),
            "reference_s": round(ref_s, 2),
            "plugin_s": round(ours_s, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], choices=sorted(OFFICIAL))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--truncations", type=float, nargs="+", default=[0.4, 1.0, 0.137])
    args = parser.parse_args()
    results = []
    for res in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(compare(res, args.batch, args.truncations, Path(tmp)))
        print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
