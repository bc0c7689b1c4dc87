"""Check promptgen's StyleNeRF against facebookresearch/StyleNeRF's own code, on the CPU, with random weights.

Needs a checkout of the official repository (not shipped with promptgen; its
code is imported from the path you give, never copied), scipy, and einops
(which the official code imports; give its folder with ``--deps`` if it is not
installed):

    git clone https://github.com/facebookresearch/StyleNeRF
    python scripts/conformance.py --official StyleNeRF [--deps /tmp/snf-deps]

The official ``Generator`` is built with the FFHQ configuration
(``conf/model/stylenerf_ffhq.yaml``) at a reduced size (volume 8², image 32²,
narrow fields and blocks), every parameter and buffer set to random numbers
(and the progressive-growing state to "finished"), and written as a training
snapshot with the official ``torch_utils.persistence`` pickling. promptgen
reads it with its allow-listed unpickler (no stored code runs); both make
images from the same z, the same camera mode and the same background code,
for ψ 1 and 0.7. Then the other way (``fixture_to_official``): promptgen's
fixture writer (:func:`promptgen_plugin_stylenerf.testing.write_stylenerf_pickle`,
here storing the official module source) writes a random model, the official
unpickling rebuilds it (running that source) and both make images. On the CPU the official custom ops (``bias_act``,
``upfirdn2d``) run their reference implementations, and the upper blocks run
in float32 (``force_fp32``). Prints one JSON line per case and the globals the
official pickle needs.

The official code targets numpy 1 and Python ≤ 3.11: two modules it imports
names from (``numpy.lib.arraysetops``, ``numpy.lib.function_base``) are gone
in numpy 2, and stand-ins with those names (numpy's own functions) are put in
place when they are missing.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

TINY = {
    "z_dim": 16,
    "w_dim": 16,
    "c_dim": 0,
    "img_resolution": 32,
    "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2},
}
SYNTHESIS = {
    "num_fp16_res": 0,
    "channel_base": 1 / 128,
    "channel_max": 32,
    "conv_clamp": 256,
    "kernel_size": 1,
    "architecture": "skip",
    "upsample_mode": "nn_cat",
    "z_dim_bg": 8,
    "z_dim": 0,
    "resolution_vol": 8,
    "resolution_start": 8,
    "rgb_out_dim": 16,
    "use_noise": False,
    "module_name": "training.stylenerf.NeRFSynthesisNetwork",
    "no_bbox": True,
    "margin": 0,
    "magnitude_ema_beta": 0.999,
    "camera_kwargs": {
        "range_v": [1.4157963267948965, 1.7257963267948966],
        "range_u": [-0.3, 0.3],
        "range_radius": [1.0, 1.0],
        "depth_range": [0.88, 1.12],
        "fov": 12,
        "gaussian_camera": True,
        "angular_camera": True,
        "depth_transform": None,
        "dists_normalized": False,
        "ray_align_corner": False,
        "bg_start": 0.5,
    },
    "renderer_kwargs": {
        "n_bg_samples": 3,
        "n_ray_samples": 6,
        "abs_sigma": False,
        "hierarchical": True,
        "no_background": False,
    },
    "foreground_kwargs": {
        "positional_encoding": "normal",
        "downscale_p_by": 1,
        "use_style": "StyleGAN2",
        "predict_rgb": True,
        "use_viewdirs": False,
        "hidden_size": 16,
        "n_blocks": 3,
        "n_freq_posenc": 4,
    },
    "background_kwargs": {
        "positional_encoding": "normal",
        "hidden_size": 8,
        "n_blocks": 2,
        "downscale_p_by": 1,
        "skips": [],
        "inverse_sphere": True,
        "use_style": "StyleGAN2",
        "predict_rgb": True,
        "use_viewdirs": False,
        "n_freq_posenc": 4,
    },
    "upsampler_kwargs": {
        "channel_base": 1 / 128,
        "channel_max": 32,
        "no_2d_renderer": False,
        "no_residual_img": False,
        "block_reses": None,
        "shared_rgb_style": False,
        "upsample_type": "bilinear",
    },
    "progressive": True,
    "n_reg_samples": 16,
    "reg_full": True,
}


def import_official(root: Path, deps: list[str]) -> types.ModuleType:
    sys.path[:0] = [str(root), *deps]

    for name, attrs in (("numpy.lib.arraysetops", {"isin": np.isin}), ("numpy.lib.function_base", {"angle": np.angle})):
        try:
            __import__(name)
        except ImportError:
            stand_in = types.ModuleType(name)
            stand_in.__dict__.update(attrs)
            sys.modules[name] = stand_in
    from training import (
        networks,
        stylenerf,  # noqa: F401
    )

    return networks


def randomize(g: torch.nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in list(g.named_parameters()) + list(g.named_buffers()):
            if name.endswith("resample_filter"):
                continue
            if name.endswith("alpha"):
                p.fill_(1.0)
            elif name.endswith("w_avg") and p.ndim == 0:  # a magnitude EMA: a positive mean square
                p.copy_(torch.rand(()) + 0.5)
            else:
                p.copy_(torch.randn_like(p) * (0.3 if p.ndim <= 1 else 1.0))


def official_pickle(networks: types.ModuleType, seed: int) -> tuple[Any, bytes]:
    g = (
        networks.Generator(**copy.deepcopy(TINY), synthesis_kwargs=copy.deepcopy(SYNTHESIS))
        .eval()
        .requires_grad_(False)
    )
    randomize(g, seed)
    snapshot = {
        "G": copy.deepcopy(g),
        "D": None,
        "G_ema": copy.deepcopy(g),
        "augment_pipe": None,
        "training_set_kwargs": {
            "class_name": "training.dataset.ImageFolderDataset",
            "path": "ffhq.zip",
            "resolution": 32,
        },
    }
    return g, pickle.dumps(snapshot)


def pickle_globals(data: bytes) -> list[str]:
    seen: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            seen.add(f"{module}.{name}")
            return super().find_class(module, name)

    Recorder(__import__("io").BytesIO(data)).load()
    return sorted(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="a checkout of facebookresearch/StyleNeRF")
    ap.add_argument(
        "--deps", action="append", default=[], help="a folder to import the official code's dependencies from"
    )
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    networks = import_official(args.official.resolve(), args.deps)

    import tempfile

    from promptgen_plugin_stylenerf.checkpoints import load_stylenerf

    for seed in args.seeds:
        g, data = official_pickle(networks, seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stylenerf.pkl"
            path.write_bytes(data)
            ours = load_stylenerf(path)
        gen = torch.Generator().manual_seed(100 + seed)
        z = torch.randn(args.batch, TINY["z_dim"], generator=gen)
        mode = torch.randn(args.batch, 2, generator=gen)
        z_bg = torch.randn(args.batch, SYNTHESIS["z_dim_bg"], generator=gen)
        empty = torch.zeros(args.batch, 0)
        for psi in (1.0, 0.7):
            with torch.no_grad():
                out = g(
                    z=z,
                    c=None,
                    truncation_psi=psi,
                    camera_mode=mode,
                    latent_codes=(empty, empty, z_bg, z_bg.clone()),
                    force_fp32=True,
                    noise_mode="const",
                )
                ref = out["img"]
                world_ref = out["camera_matrices"][1]
                img = ours(z, mode, z_bg, psi=psi)
                world = ours.cfg.camera.world_matrix(mode)
            print(
                json.dumps(
                    {
                        "case": "official_pickle_to_promptgen",
                        "seed": seed,
                        "psi": psi,
                        "shape": list(img.shape),
                        "image_max_abs_diff": float((img - ref).abs().max()),
                        "image_range": [float(ref.min()), float(ref.max())],
                        "camera_max_abs_diff": float((world - world_ref).abs().max()),
                    }
                )
            )
    print(json.dumps({"case": "official_pickle_globals", "globals": pickle_globals(data)}))

    # The other direction: promptgen's fixture writer, with the official module sources stored in it, read by the
    # official code (which runs those sources), and both make images.
    from promptgen_plugin_stylenerf.testing import random_stylenerf, write_stylenerf_pickle

    sources = {}
    for module, names in (
        (
            "networks",
            (
                "Generator",
                "MappingNetwork",
                "FullyConnectedLayer",
                "Conv2dLayer",
                "SynthesisLayer",
                "ToRGBLayer",
                "SynthesisBlock",
                "Discriminator",
            ),
        ),
        ("stylenerf", ("NeRFSynthesisNetwork", "CameraRay", "VolumeRenderer", "Upsampler", "NeRFBlock", "Style2Layer")),
    ):
        text = (args.official / "training" / f"{module}.py").read_text(encoding="utf-8")
        sources.update({n: text for n in names})
    for seed in args.seeds:
        ours = random_stylenerf(seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = write_stylenerf_pickle(ours, Path(tmp) / "fixture.pkl", sources=sources)
            fixture_globals = pickle_globals(path.read_bytes())
            official = pickle.loads(path.read_bytes())["G_ema"]
        gen = torch.Generator().manual_seed(200 + seed)
        z = torch.randn(args.batch, ours.cfg.z_dim, generator=gen)
        mode = torch.randn(args.batch, 2, generator=gen)
        z_bg = torch.randn(args.batch, ours.cfg.z_dim_bg, generator=gen)
        empty = torch.zeros(args.batch, 0)
        with torch.no_grad():
            ref = official(
                z=z,
                c=None,
                camera_mode=mode,
                latent_codes=(empty, empty, z_bg, z_bg),
                force_fp32=True,
                noise_mode="const",
            )["img"]
            img = ours(z, mode, z_bg)
        print(
            json.dumps(
                {
                    "case": "fixture_to_official",
                    "seed": seed,
                    "shape": list(img.shape),
                    "image_max_abs_diff": float((img - ref).abs().max()),
                    "image_range": [float(ref.min()), float(ref.max())],
                    "same_globals_as_official": fixture_globals == pickle_globals(data),
                }
            )
        )


if __name__ == "__main__":
    main()
