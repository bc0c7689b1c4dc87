"""Compare the plugin with csinva/gan-vae-pretrained-pytorch's own code on the same random weights.

The repository's modules are imported from a local copy (a checkout, or a git mirror whose files are read with
``git show``): ``mnist_gan_mlp/gan_mnist.py`` (its module-level ``G``), ``mnist_vae/vae.py`` (``VAE``) and
``mnist_classifier/lenet.py`` (``LeNet5``). Each gets random weights, is saved as the repository saves it
(``torch.save(model.state_dict(), ...)``, here in torch's legacy format like the published files), read back by
the plugin, and both are run on the same inputs; the largest absolute difference is printed as JSON. The
published weights cannot be downloaded on this machine; with ``--weights DIR`` (the published files) the real
weights are compared too.

    python plugins/promptgen-plugin-foreign-digits/scripts/conformance.py --repo PATH [--weights ../shared/foreign]

Needs torchvision and matplotlib (the repository's modules import them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from promptgen_plugin_foreign_digits.files import load_lenet, load_mlp_gan, load_vae_decoder

from promptgen.core.registry import get_registry

FILES = ("mnist_gan_mlp/gan_mnist.py", "mnist_vae/vae.py", "mnist_classifier/lenet.py")


def checkout(repo: Path, into: Path) -> Path:
    """The repository's three modules as files under ``into`` (read with git when ``repo`` has no work tree)."""
    for name in FILES:
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (repo / name).is_file():
            target.write_bytes((repo / name).read_bytes())
        else:
            target.write_bytes(subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{name}"], check=True, capture_output=True).stdout)
    return into


def module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


def randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5 if p.dim() > 1 else 10))
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, type=Path, help="a checkout or git mirror of csinva/gan-vae-pretrained-pytorch")
    ap.add_argument("--weights", type=Path, default=None, help="a folder with mlp-gan/G--300.ckpt, mlp-vae/vae_epoch_25.pth, lenet/*.pth")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = checkout(args.repo, Path(tmp) / "repo")
        gan = module(src / FILES[0], "gan_mnist")
        vae = module(src / FILES[1], "vae")
        lenet = module(src / FILES[2], "lenet")
        g = torch.Generator().manual_seed(0)
        z64, z20 = torch.randn(args.batch, 64, generator=g), torch.randn(args.batch, 20, generator=g)
        images = torch.rand(args.batch, 1, 28, 28, generator=g)
        cases = {
            "mlp-gan": (randomise(gan.G, 1), load_mlp_gan, lambda net: net(z64)),
            "mlp-vae": (randomise(vae.VAE(), 2), load_vae_decoder, lambda net: net.decode(z20) if hasattr(net, "decode") else net(z20)),
            "lenet": (randomise(lenet.LeNet5(), 3), load_lenet, lambda net: net(F.interpolate(images, size=(32, 32), mode="bilinear"))),
        }
        for name, (official, load, run) in cases.items():
            path = Path(tmp) / f"{name}.pt"
            torch.save(official.state_dict(), path, _use_new_zipfile_serialization=False)
            with torch.no_grad():
                diff = (run(official) - run(load(path))).abs().max()
            out[name] = {"max_abs_difference": float(diff), "parameters": sum(p.numel() for p in official.parameters())}
        # Through the registry as users call it: the GAN's images are the official output mapped to [0, 1].
        torch.save(gan.G.state_dict(), Path(tmp) / "G--300.ckpt", _use_new_zipfile_serialization=False)
        built = get_registry().build_generator(f"foreign-mlp-gan:path={Path(tmp) / 'G--300.ckpt'}")
        with torch.no_grad():
            out["foreign-mlp-gan images"] = {"max_abs_difference": float((built.decode(z64) - (gan.G(z64) + 1).view(-1, 1, 28, 28) / 2).abs().max())}
        if args.weights is not None:
            for name, file, official, load, run in (
                ("mlp-gan", "mlp-gan/G--300.ckpt", gan.G, load_mlp_gan, lambda net: net(z64)),
                ("mlp-vae", "mlp-vae/vae_epoch_25.pth", vae.VAE(), load_vae_decoder, lambda net: net.decode(z20) if hasattr(net, "decode") else net(z20)),
                ("lenet", "lenet/lenet_epoch=12_test_acc=0.991.pth", lenet.LeNet5(), load_lenet,
                 lambda net: net(F.interpolate(images, size=(32, 32), mode="bilinear"))),
            ):
                official.load_state_dict(torch.load(args.weights / file, weights_only=True, map_location="cpu"))
                with torch.no_grad():
                    out[f"{name} (published weights)"] = {"max_abs_difference": float((run(official.eval()) - run(load(args.weights / file))).abs().max())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
