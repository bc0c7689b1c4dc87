"""Check promptgen's StyleGAN2 against the official code, on checkpoints the official code writes.

Needs checkouts of the official repositories (not shipped with promptgen; their
code is only imported from the paths you give, never copied):

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch
    git clone https://github.com/NVlabs/stylegan3
    git clone https://github.com/rosinality/stylegan2-pytorch
    python scripts/check_against_official.py --ada stylegan2-ada-pytorch --sg3 stylegan3 --rosinality stylegan2-pytorch

For each NVIDIA codebase it builds small random generators (skip / resnet
outputs, clamping, a class-conditional one), writes training snapshots with
the official ``pickle.dump`` (G, D, G_ema, augment_pipe, training_set_kwargs),
loads them with promptgen's allow-listed unpickler and compares images for the
same z (noise_mode const, ψ 1 and 0.5; and, for stylegan2-ada-pytorch, which
runs its float16 blocks in float16 on the CPU too, with ``half=True``), and
records the pickle's globals. For
rosinality it saves ``{"g_ema", "latent_avg", "args"}`` with ``torch.save`` and
compares likewise. Prints one JSON line per case.

The official CUDA extensions are not needed: on the CPU both codebases use
their reference ops (rosinality's ``op`` package compiles at import, so its
``load`` is stubbed out; its CPU paths never call it). stylegan3 imports
``pkg_resources``; install setuptools<81 or give ``--shim`` a folder with a
``pkg_resources.py`` that provides ``parse_version``. ``training/augment.py``
needs scipy.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
import tempfile
from pathlib import Path

import torch
from promptgen_plugin_stylegan2.checkpoints import ALLOWED_GLOBALS, load_generator


class _Recorder(pickle.Unpickler):
    def __init__(self, f) -> None:
        super().__init__(f)
        self.seen: set[tuple[str, str]] = set()

    def find_class(self, module: str, name: str):
        self.seen.add((module, name))
        return ALLOWED_GLOBALS[(module, name)]


def nvidia(repo: Path, which: str, tmp: Path) -> None:
    sys.path.insert(0, str(repo))
    try:
        import dnnlib
        from training.augment import AugmentPipe

        if which == "stylegan3":
            from training.networks_stylegan2 import Discriminator, Generator
        else:
            from training.networks import Discriminator, Generator
        for res, arch, clamp, c_dim in [(32, "skip", None, 0), (64, "skip", 256, 0), (32, "resnet", None, 10), (32, "orig", 8, 0)]:
            torch.manual_seed(res + c_dim)
            sk = {"channel_base": 1024, "channel_max": 64, "architecture": arch, "conv_clamp": clamp, "num_fp16_res": 2}
            kw = {"z_dim": 16, "c_dim": c_dim, "w_dim": 24, "img_resolution": res, "img_channels": 3, "mapping_kwargs": {"num_layers": 2}}
            G = Generator(**kw, **sk) if which == "stylegan3" else Generator(**kw, synthesis_kwargs=sk)
            with torch.no_grad():
                for p in G.parameters():
                    p.copy_(torch.randn_like(p) * 0.5)
                G.mapping.w_avg.copy_(torch.randn(24))
            D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, channel_base=1024, channel_max=64)
            snap = {k: copy.deepcopy(m).eval().requires_grad_(False).cpu() for k, m in (("G", G), ("D", D), ("G_ema", G), ("augment_pipe", AugmentPipe(xflip=1)))}
            snap["training_set_kwargs"] = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="x.zip", resolution=res)
            path = tmp / f"{which}-{res}-{arch}.pkl"
            with open(path, "wb") as f:
                pickle.dump(snap, f)
            with open(path, "rb") as f:
                rec = _Recorder(f)
                rec.load()
            ours = load_generator(path)
            z = torch.randn(4, 16)
            c = torch.eye(c_dim)[:4] if c_dim else torch.zeros(4, 0)
            diffs = []
            with torch.no_grad():
                for psi in (1.0, 0.5):
                    a = snap["G_ema"](z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)
                    b = ours(z, c if c_dim else None, psi=psi, noise_mode="const")
                    diffs.append(float((a - b).abs().max()))
            half = None
            if which == "stylegan2-ada-pytorch":  # it runs the fp16 blocks in float16 on the CPU too (stylegan3 forces float32 there)
                with torch.no_grad():
                    a16 = snap["G_ema"](z, c, noise_mode="const")
                    half = float((a16 - ours(z, c if c_dim else None, noise_mode="const", half=True)).abs().max())
            print(json.dumps({"code": which, "resolution": res, "architecture": arch, "conv_clamp": clamp, "c_dim": c_dim,
                              "max_abs_diff": max(diffs), "max_abs_diff_float16_blocks": half, "image_scale": float(a.abs().max()), "pickle_globals": sorted(".".join(g) for g in rec.seen)}), flush=True)
    finally:
        sys.path.remove(str(repo))
        for name in [m for m in sys.modules if m.split(".")[0] in ("training", "torch_utils", "dnnlib")]:
            del sys.modules[name]


def rosinality(repo: Path, tmp: Path) -> None:
    import torch.utils.cpp_extension as ce

    ce.load = lambda *a, **k: None
    sys.path.insert(0, str(repo))
    from model import Generator

    torch.manual_seed(0)
    g = Generator(32, 24, 3, channel_multiplier=1).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        for _, b in g.noises.named_buffers():
            b.copy_(torch.randn_like(b))
        mean = g.mean_latent(4096)
    path = tmp / "rosinality-32.pt"
    torch.save({"g_ema": g.state_dict(), "latent_avg": mean[0], "args": argparse.Namespace(size=32)}, path)
    ours = load_generator(path)
    z = torch.randn(4, 24)
    diffs = []
    with torch.no_grad():
        for psi in (1.0, 0.5):
            a, _ = g([z], truncation=psi, truncation_latent=mean, randomize_noise=False)
            diffs.append(float((a - ours(z, psi=psi, noise_mode="const")).abs().max()))
    print(json.dumps({"code": "rosinality", "resolution": 32, "max_abs_diff": max(diffs), "image_scale": float(a.abs().max())}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ada", type=Path)
    ap.add_argument("--sg3", type=Path)
    ap.add_argument("--rosinality", type=Path)
    ap.add_argument("--shim", type=Path, help="folder prepended to sys.path (e.g. with a pkg_resources.py)")
    args = ap.parse_args()
    if args.shim:
        sys.path.insert(0, str(args.shim))
    with tempfile.TemporaryDirectory() as d:
        if args.ada:
            nvidia(args.ada, "stylegan2-ada-pytorch", Path(d))
        if args.sg3:
            nvidia(args.sg3, "stylegan3", Path(d))
        if args.rosinality:
            rosinality(args.rosinality, Path(d))


if __name__ == "__main__":
    main()
