"""Compare the plugin's DECA encoder and pose energy with DECA's own encoder code on the same weights.

DECA's ``decalib/models/encoders.py`` and ``decalib/models/resnet.py`` are read
from a DECA checkout (or its git directory) and imported on their own: the rest
of DECA (FLAME, the renderer, pytorch3d, face_alignment) is not needed for
the encoder. Its ``load_ResNet50Model`` would download torchvision's ImageNet
weights, which are overwritten anyway; the script replaces it, here only, by
the same ResNet built without them. Then, for random weights saved as DECA
saves them (``deca_model.tar``: E_flame, E_detail, D_detail):

1. ``params``: the 236 FLAME parameters of DECA's ``ResnetEncoder`` and of the plugin's
   encoder on the same 224×224 images (max absolute difference);
2. ``energy``: the PromptGen authors' pose energy, re-computed with DECA's encoder,
   torchvision's ``Resize(224, bicubic)`` and SciPy's rotations (target R(α)·R(canonical),
   Euler 'XYZ', squared relative angle), against ``deca-pose:path=...`` built by the
   registry, on 256 px and 1024 px images at random α.

    python plugins/promptgen-plugin-deca/scripts/conformance.py --deca /path/to/DECA [--batch 4] [--seeds 0 1]

``--deca`` is a DECA checkout or a bare git directory (read at HEAD). Prints JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from promptgen_plugin_deca.options import CANONICAL
from promptgen_plugin_deca.testing import random_encoder_state, write_deca_model
from scipy.spatial.transform import Rotation

from promptgen import plugin
from promptgen.core.registry import get_registry

FILES = ("decalib/models/encoders.py", "decalib/models/resnet.py")


def read_deca_file(deca: Path, name: str) -> str:
    if (deca / name).is_file():
        return (deca / name).read_text(encoding="utf-8")
    return subprocess.run(
        ["git", f"--git-dir={deca}", "show", f"HEAD:{name}"], check=True, capture_output=True, text=True
    ).stdout


def import_deca_encoder(deca: Path, into: Path) -> tuple[types.ModuleType, str]:
    """DECA's encoders module, from its own source, with ResNet-50 built without downloading ImageNet weights."""
    for name in FILES:
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(read_deca_file(deca, name), encoding="utf-8")
    for pkg in ("decalib", "decalib/models"):
        (into / pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(into))
    resnet = importlib.import_module("decalib.models.resnet")
    resnet.load_ResNet50Model = lambda: resnet.ResNet(resnet.Bottleneck, [3, 4, 6, 3])  # weights are loaded afterwards
    encoders = importlib.import_module("decalib.models.encoders")
    try:
        commit = subprocess.run(
            ["git", f"--git-dir={deca if (deca / 'HEAD').is_file() else deca / '.git'}", "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        commit = "unknown"
    return encoders, commit


def reference_energy(ref: torch.nn.Module, images: torch.Tensor, alpha: np.ndarray) -> np.ndarray:
    from torchvision.transforms import InterpolationMode, Resize

    x = Resize(224, interpolation=InterpolationMode.BICUBIC)(images)
    with torch.no_grad():
        rotvec = ref(x)[:, 200:203].double().numpy()  # shape 100, tex 50, exp 50, then pose: global rotation first
    canonical = Rotation.from_euler("XYZ", CANONICAL)
    out = []
    for r, a in zip(rotvec, alpha):
        target = Rotation.from_euler("XYZ", a) * canonical
        out.append((target.inv() * Rotation.from_rotvec(r)).magnitude() ** 2)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deca", type=Path, required=True, help="DECA checkout or git directory")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        encoders, commit = import_deca_encoder(args.deca, Path(tmp) / "deca")
        results = []
        for seed in args.seeds:
            state = random_encoder_state(seed)
            path = write_deca_model(Path(tmp) / f"deca_model_{seed}.tar", seed, encoder=state)
            ref = encoders.ResnetEncoder(outsize=236)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            ref.load_state_dict(ckpt["E_flame"], strict=True)
            ref.eval()
            energy = get_registry().build_energy(f"deca-pose:path={path}")
            g = torch.Generator().manual_seed(seed)
            x224 = torch.rand(args.batch, 3, 224, 224, generator=g)
            start = time.perf_counter()
            want = ref(x224)
            ref_s = time.perf_counter() - start
            start = time.perf_counter()
            got = energy.encoder(x224)
            ours_s = time.perf_counter() - start
            row = {
                "seed": seed,
                "params_shape": list(got.shape),
                "params_max_abs": float((got - want).abs().max()),
                "params_scale": float(want.abs().max()),
                "rotation_max_abs": float((got[:, 200:203] - want[:, 200:203]).abs().max()),
                "seconds_reference": round(ref_s, 3),
                "seconds_plugin": round(ours_s, 3),
            }
            for side in (256, 1024):
                images = torch.rand(args.batch, 3, side, side, generator=g)
                alpha = (torch.rand(args.batch, 3, generator=g) * 2 - 1) * (np.pi / 9)
                alpha[:, 2] = 0  # the paper's α = (α_x, α_y, 0)
                ref_e = reference_energy(ref, images, alpha.double().numpy())
                ctx = plugin.EnergyContext(condition=alpha[:, [1, 0]], condition_names=("yaw", "pitch"))
                ours_e = energy.context_energy(images, torch.zeros(args.batch, 1), ctx).double().numpy()
                row[f"energy_{side}px_max_abs"] = float(np.abs(ours_e - ref_e).max())
                row[f"energy_{side}px_values"] = [round(float(v), 6) for v in ref_e]
            results.append(row)
        print(
            json.dumps(
                {"deca_commit": commit, "torch": torch.__version__, "batch": args.batch, "results": results}, indent=1
            )
        )


if __name__ == "__main__":
    main()
