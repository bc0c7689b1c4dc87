"""Check promptgen's StyleGAN3 against NVlabs/stylegan3's own code, on the CPU, with random weights.

Needs a checkout of the official repository (not shipped with promptgen; its
code is imported from the path you give, never copied), and scipy (its
filter design and ``training/augment.py`` import it):

    git clone https://github.com/NVlabs/stylegan3
    python scripts/check_stylegan3.py --sg3 stylegan3

For configs T and R, at two sizes (6 layers at 32 px; the published 14-layer
geometry at 64 px, one of them class-conditional and one with a tight
``conv_clamp``), it checks both directions, for ψ 1 and 0.7, with and without
a translate/rotate input transform (``G.synthesis.input.transform``, as
``gen_images.py --translate --rotate`` sets it):

1. ``official_to_promptgen``: NVIDIA's ``Generator`` with random weights (and
   random ``w_avg``, ``magnitude_ema``, a stored non-identity transform) is
   written as a training snapshot with NVIDIA's ``pickle.dump`` (G, D, G_ema,
   augment_pipe, training_set_kwargs), loaded by promptgen's allow-listed
   unpickler, and both make images from the same z.
2. ``fixture_to_official``: promptgen's fixture writer
   (:func:`promptgen_plugin_stylegan2.testing.write_nvidia_pickle`, here with
   NVIDIA's module source, read from the checkout, stored in it) writes a random
   :func:`~promptgen_plugin_stylegan2.testing.random_stylegan3`; NVIDIA's own
   unpickling rebuilds it (running that source) and both make images.
3. ``fixture_format``: the objects of both pickles, read without running
   anything, have the same classes, attributes, attribute types and constructor
   arguments; and the pickles need the same globals.

Also ``filter_design``: the largest difference between the filters promptgen
designs (:func:`~promptgen_plugin_stylegan2.stylegan3.lowpass_filter`, numpy
and torch only) and those NVIDIA's code designs with scipy. Prints one JSON
line per case. stylegan3 imports ``pkg_resources`` (gone from setuptools 81):
when it is missing, a stand-in providing ``parse_version`` is put in its place.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import torch
from promptgen_plugin_stylegan2.checkpoints import load_generator
from promptgen_plugin_stylegan2.stored import PersistentObject, load_nvidia_pickle
from promptgen_plugin_stylegan2.stylegan3 import input_transform
from promptgen_plugin_stylegan2.testing import (
    MAGNITUDE_EMA_BETA,
    official_modules,
    persistent_state,
    pickle_globals,
    random_stylegan3,
    randomize_stylegan3,
    write_nvidia_pickle,
)

CASES = [
    # (config, resolution, synthesis layers, c_dim, conv_clamp)
    ("T", 32, 6, 0, 256),
    ("R", 32, 6, 0, 256),
    ("T", 64, 14, 3, 256),
    ("R", 64, 14, 0, 0.5),
]
TRANSFORMS = {"none": ((0.0, 0.0), 0.0), "translate+rotate": ((0.1, -0.15), 12.0)}
PSIS = (1.0, 0.7)
Z_DIM, W_DIM = 16, 24


def shim_pkg_resources() -> None:
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from packaging.version import Version

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=Version)  # type: ignore[assignment]


def shape_of(obj: PersistentObject, path: str = "G_ema") -> dict[str, Any]:
    """Class, attribute names and types of every object under ``obj``, and of their constructor arguments."""
    out: dict[str, Any] = {}

    def kind(v: Any) -> str:
        return (
            type(v).__name__
            if not isinstance(v, (list, tuple))
            else f"{type(v).__name__}[{','.join(sorted({kind(x) for x in v}))}]"
        )

    def walk(o: PersistentObject, p: str) -> None:
        attrs = {k: kind(v) for k, v in o.state.items() if k in ("training",) or not k.startswith("_")}
        kwargs = o.state.get("_init_kwargs") or {}
        out[p] = {
            "class": o.class_name,
            "keys": sorted(o.state),
            "attrs": attrs,
            "init_args": [kind(a) for a in o.state.get("_init_args") or ()],
            "init_kwargs": {k: kind(v) for k, v in kwargs.items()},
            "buffers": sorted(k for k, v in (o.state.get("_buffers") or {}).items() if v is not None),
        }
        for name, child in (o.state.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                walk(child, f"{p}.{name}")

    walk(obj, path)
    return out


def format_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    diffs = [f"{p}: only in the official pickle" for p in sorted(set(a) - set(b))]
    diffs += [f"{p}: only in promptgen's fixture" for p in sorted(set(b) - set(a))]
    for p in sorted(set(a) & set(b)):
        for key in a[p]:
            if a[p][key] != b[p][key]:
                diffs.append(f"{p}.{key}: official {a[p][key]} / fixture {b[p][key]}")
    return diffs


def images(G: Any, z: torch.Tensor, c: torch.Tensor, psi: float) -> torch.Tensor:
    with torch.no_grad():
        return G(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)


def ours_images(g: Any, z: torch.Tensor, c: torch.Tensor | None, psi: float) -> torch.Tensor:
    with torch.no_grad():
        return g(z, c, psi=psi)


def compare(official: Any, ours: Any, z: torch.Tensor, c: torch.Tensor, c_dim: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tname, (translate, rotate) in TRANSFORMS.items():
        m = input_transform(translate, rotate)
        with torch.no_grad():
            official.synthesis.input.transform.copy_(m)
            ours.synthesis.input.transform.copy_(m)
        for psi in PSIS:
            a = images(official, z, c, psi)
            b = ours_images(ours, z, c if c_dim else None, psi)
            diff = float((a - b).abs().max())
            out[f"psi={psi:g},transform={tname}"] = {"max_abs_diff": diff, "max_rel_diff": diff / float(a.abs().max())}
    return out


def run_case(kind: str, res: int, layers: int, c_dim: int, clamp: float, tmp: Path) -> dict[str, Any]:
    import dnnlib
    from training import networks_stylegan3
    from training.augment import AugmentPipe
    from training.networks_stylegan2 import Discriminator

    torch.manual_seed(res + layers + c_dim)
    cbase, cmax = 512, 16
    r_kwargs = (
        {"conv_kernel": 1, "use_radial_filters": True, "channel_base": 2 * cbase, "channel_max": 2 * cmax}
        if kind == "R"
        else {}
    )
    kwargs: dict[str, Any] = {
        "z_dim": Z_DIM, "w_dim": W_DIM, "mapping_kwargs": dnnlib.EasyDict(num_layers=2),
        "channel_base": cbase, "channel_max": cmax, "magnitude_ema_beta": MAGNITUDE_EMA_BETA, **r_kwargs,
        **({"num_layers": layers} if layers != 14 else {}), **({"conv_clamp": clamp} if clamp != 256 else {}),
        "c_dim": c_dim, "img_resolution": res, "img_channels": 3,
    }  # fmt: skip
    G = networks_stylegan3.Generator(**kwargs).eval()
    randomize_stylegan3(G)
    with torch.no_grad():
        G.synthesis.input.transform.copy_(input_transform((0.05, 0.02), -7.0))  # stored with the network
    D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, channel_base=cbase, channel_max=cmax)
    snap = {
        k: copy.deepcopy(m).eval().requires_grad_(False)
        for k, m in (("G", G), ("D", D), ("G_ema", G), ("augment_pipe", AugmentPipe(xflip=1)))
    }
    snap["training_set_kwargs"] = dnnlib.EasyDict(
        class_name="training.dataset.ImageFolderDataset", path="x.zip", resolution=res
    )
    path = tmp / f"stylegan3-{kind}-{res}.pkl"
    with open(path, "wb") as f:
        pickle.dump(snap, f)
    official_globals = pickle_globals(path.read_bytes())
    ours = load_generator(path, "stylegan3")
    z = torch.randn(4, Z_DIM)
    c = torch.eye(c_dim)[torch.arange(4) % c_dim] if c_dim else torch.zeros(4, 0)
    result: dict[str, Any] = {
        "config": kind, "resolution": res, "num_layers": layers, "c_dim": c_dim, "conv_clamp": clamp,
        "stored_transform_loaded": torch.equal(ours.synthesis.input.transform, snap["G_ema"].synthesis.input.transform),
    }  # fmt: skip
    result["official_to_promptgen"] = compare(snap["G_ema"], ours, z, c, c_dim)
    filters = [(n, b) for n, b in snap["G_ema"].named_buffers() if n.endswith("_filter")]
    same = {"z_dim": Z_DIM, "w_dim": W_DIM, "resolution": res, "channel_base": cbase, "channel_max": cmax}
    same.update(num_layers=layers, c_dim=c_dim, conv_clamp=clamp)
    designed = dict(random_stylegan3(0, kind, **same).named_buffers())
    result["filter_design_max_abs_diff"] = max(float((designed[n] - b).abs().max()) for n, b in filters)

    # promptgen's fixture, with NVIDIA's module source stored in it, rebuilt by NVIDIA's own unpickling.
    g = random_stylegan3(7, kind, **same)
    source = inspect.getsource(networks_stylegan3)
    fixture = write_nvidia_pickle(g, tmp / f"fixture-{kind}-{res}.pkl")
    with official_modules():
        blob = pickle.dumps({"G_ema": persistent_state(g, source)}, protocol=4)
    rebuilt = pickle.loads(blob)["G_ema"].eval()
    result["fixture_to_official"] = compare(rebuilt, g, z, c, c_dim)
    fixture_globals = pickle_globals(fixture.read_bytes())
    result["fixture_format"] = {
        "differences": format_differences(
            shape_of(load_nvidia_pickle(path.read_bytes())["G_ema"]),
            shape_of(load_nvidia_pickle(fixture.read_bytes())["G_ema"]),
        ),
        "globals_only_official": sorted(".".join(x) for x in official_globals - fixture_globals),
        "globals_only_fixture": sorted(".".join(x) for x in fixture_globals - official_globals),
    }
    result["pickle_globals"] = sorted(".".join(x) for x in official_globals)
    result["image_scale"] = float(images(snap["G_ema"], z, c, 1.0).abs().max())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sg3", type=Path, required=True, help="a checkout of NVlabs/stylegan3")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the pickles (default: a temporary one)")
    args = ap.parse_args()
    shim_pkg_resources()
    sys.path.insert(0, str(args.sg3.resolve()))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tmp = args.tmp or Path(d)
        tmp.mkdir(parents=True, exist_ok=True)
        for case in CASES:
            print(json.dumps(run_case(*case, tmp)), flush=True)


if __name__ == "__main__":
    main()
