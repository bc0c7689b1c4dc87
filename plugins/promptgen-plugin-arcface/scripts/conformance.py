"""Compare the plugin's IR-SE50 and ``arcface-id`` with the reference code on the same random weights.

1. The network: TreB1eN/InsightFace_Pytorch ``model.py`` (imported alone; it needs only torch)
   builds ``Backbone(50, 0.6, 'ir_se')``; it loads the random-weight
   ``model_ir_se50.pth`` written by :func:`promptgen_plugin_arcface.testing.write_weights`
   (strictly), and both networks embed the same 112×112 faces: max |Δ| of the 512-d embeddings.
2. The energy: the PromptGen authors' ``model/energy/id.py`` (ChenWu98/Generative-Visual-Prompt;
   its two relative imports are stubbed here: ``requires_grad`` and a ``Backbone(input_size,
   num_layers, drop_ratio, mode)`` that is TreB1eN's) loads the same file with its own
   ``torch.load`` and gives ``1 − cos`` of image pairs (in [-1, 1], as its StyleGAN2 returns them)
   at 256 and 1024 px; the plugin's ``context_energy`` gets the same images in [0, 1].

Both repositories are read from local git mirrors (``--treb1en``, ``--gvp``: a bare git
directory or a checkout). Prints JSON.

    python plugins/promptgen-plugin-arcface/scripts/conformance.py --treb1en DIR --gvp DIR
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from promptgen_plugin_arcface.energy import face_crop
from promptgen_plugin_arcface.testing import smooth_images, write_weights

from promptgen.core.capabilities import EnergyContext
from promptgen.core.registry import get_registry

MIRRORS = Path("/work/.mirror")


def read_source(repo: Path, path: str) -> str:
    """``path`` at HEAD of ``repo`` (a bare git directory), or the file in a checkout."""
    if (repo / path).is_file():
        return (repo / path).read_text(encoding="utf-8")
    return subprocess.run(["git", f"--git-dir={repo}", "show", f"HEAD:{path}"], check=True, capture_output=True, text=True).stdout


def import_source(name: str, source: str, folder: Path) -> types.ModuleType:
    file = folder / f"{name}.py"
    file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def authors_id_module(gvp: Path, treb1en_model: types.ModuleType, folder: Path) -> types.ModuleType:
    """The authors' ``model/energy/id.py`` with its two relative imports replaced by stubs."""
    source = read_source(gvp, "model/energy/id.py")
    stubbed = source.replace("from ..model_utils import requires_grad", "from gvp_stubs import requires_grad").replace(
        "from ..lib.id_recognition.model_irse import Backbone", "from gvp_stubs import Backbone"
    )
    assert stubbed.count("gvp_stubs") == 2, "the authors' id.py imports changed; update the stubs"
    stubs = types.ModuleType("gvp_stubs")

    def requires_grad(model: torch.nn.Module, flag: bool = True) -> None:
        for p in model.parameters():
            p.requires_grad = flag

    def backbone(input_size: int, num_layers: int, drop_ratio: float, mode: str) -> torch.nn.Module:
        assert input_size == 112
        return treb1en_model.Backbone(num_layers, drop_ratio, mode)

    stubs.requires_grad, stubs.Backbone = requires_grad, backbone
    sys.modules["gvp_stubs"] = stubs
    return import_source("gvp_id", stubbed, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--treb1en", type=Path, default=MIRRORS / "TreB1eN+InsightFace_Pytorch" / "repo")
    parser.add_argument("--gvp", type=Path, default=MIRRORS / "ChenWu98+Generative-Visual-Prompt" / "repo")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    out: dict = {"seed": args.seed, "batch": args.batch, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = write_weights(folder / "model_ir_se50.pth", seed=args.seed)
        ref_model = import_source("treb1en_model", read_source(args.treb1en, "model.py"), folder)
        ref = ref_model.Backbone(50, 0.6, "ir_se")
        ref.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        ref.eval()
        out["parameters"] = sum(p.numel() for p in ref.parameters())

        energy = get_registry().build_energy(f"arcface-id:path={weights}")
        faces = smooth_images(args.batch, 112, seed=args.seed + 10) * 2 - 1
        start = time.perf_counter()
        want = ref(faces)
        ref_s = time.perf_counter() - start
        start = time.perf_counter()
        got = energy.net(faces)
        ours_s = time.perf_counter() - start
        out["embedding"] = {
            "max_abs_diff": float((got - want).abs().max()),
            "min_cos": float((got * want).sum(1).min()),
            "spread": float(want.std(0).mean()),  # embeddings of different faces differ: the comparison means something
            "reference_s": round(ref_s, 3),
            "plugin_s": round(ours_s, 3),
        }

        with contextlib.redirect_stdout(sys.stderr):  # it prints 'Loading ResNet ArcFace'
            authors = authors_id_module(args.gvp, ref_model, folder).IDLoss(str(weights)).eval()
        out["energy"] = {}
        for size in (256, 1024):
            x = smooth_images(args.batch, size, seed=args.seed + size)
            twin = smooth_images(args.batch, size, seed=args.seed + size + 1)
            twin = 0.5 * twin + 0.5 * x  # partly the same image: energies between 0 and 1
            want_e = authors(x * 2 - 1, twin * 2 - 1)  # the authors' StyleGAN2 images are in [-1, 1]
            got_e = energy.context_energy(x, None, EnergyContext(reference=twin))
            crop = face_crop(x)
            out["energy"][str(size)] = {
                "max_abs_diff": float((got_e - want_e).abs().max()),
                "reference": [round(float(v), 6) for v in want_e],
                "plugin": [round(float(v), 6) for v in got_e],
                "crop_shape": list(crop.shape),
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
