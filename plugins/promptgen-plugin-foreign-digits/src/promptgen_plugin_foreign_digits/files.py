"""Where the three published files are, and reading them without running code from them.

The files are csinva/gan-vae-pretrained-pytorch's (MIT licence), at a fixed commit, checked by SHA-256 after
the download. Each is a plain state dict saved by ``torch.save`` in the legacy (non-zip) format; it is read
with :func:`promptgen.plugin.load_torch_file` (``weights_only=True``) and its keys and shapes checked strictly
(:func:`promptgen.plugin.check_state_dict`) before any weight is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from promptgen import plugin
from promptgen_plugin_foreign_digits.networks import LeNet5, VAEDecoder, VAEEncoder, mlp_gan

#: The repository and the commit the files are taken from.
REPOSITORY = "csinva/gan-vae-pretrained-pytorch"
COMMIT = "9b6401e122fa186a3a57f97c5df57e3603121fba"
CACHE = "foreign-digits"


def _url(path: str) -> str:
    return f"https://github.com/{REPOSITORY}/raw/{COMMIT}/{path}"


@dataclass(frozen=True)
class Published:
    """One published file: where it is, what it is, and how big."""

    remote: plugin.RemoteFile
    what: str
    repo_path: str


FILES: dict[str, Published] = {
    "mlp-gan": Published(
        plugin.RemoteFile(
            _url("mnist_gan_mlp/weights/G--300.ckpt"), "G--300.ckpt",
            sha256="3163c6503c144d35fe44bb0247bbc61cd8e49c50ea3d84c1b7c080dc18fbf84c", size=1136812,
        ),
        "the MLP GAN's G--300.ckpt (a state dict of Linear(64, 256), Linear(256, 256), Linear(256, 784))",
        "mnist_gan_mlp/weights/G--300.ckpt",
    ),
    "mlp-vae": Published(
        plugin.RemoteFile(
            _url("mnist_vae/weights/vae_epoch_25.pth"), "vae_epoch_25.pth",
            sha256="233916a8095759cf732f4dc19c381bc8de03d97040e68f4252a257a5502a9c70", size=2612828,
        ),
        "the MLP VAE's vae_epoch_25.pth (a state dict of fc1, fc21, fc22, fc3, fc4)",
        "mnist_vae/weights/vae_epoch_25.pth",
    ),
    "lenet": Published(
        plugin.RemoteFile(
            _url("mnist_classifier/weights/lenet_epoch=12_test_acc=0.991.pth"), "lenet_epoch=12_test_acc=0.991.pth",
            sha256="7b3591ba5a63752a7e728d7f7e511266556a2ec66844810da9f475e07019b85e", size=248652,
        ),
        "the LeNet-5 lenet_epoch=12_test_acc=0.991.pth (a state dict of convnet.c1/c3/c5 and fc.f6/f7)",
        "mnist_classifier/weights/lenet_epoch=12_test_acc=0.991.pth",
    ),
}


def locate(name: str, path: str | Path | None = None, *, progress: bool = True) -> Path:
    """The local file of ``name`` (a key of :data:`FILES`): ``path`` if given, else the cached download."""
    return plugin.fetch(FILES[name].remote, subdir=CACHE, path=path, progress=progress)


def _load_into(module: nn.Module, file: Path, what: str) -> None:
    """Check ``file``'s state dict strictly against ``module``'s and load it."""
    state = plugin.load_torch_file(file, what=what)
    module.load_state_dict(plugin.check_state_dict(state, module.state_dict(), source=repr(Path(file).name), what=what), strict=True)


def load_mlp_gan(file: str | Path) -> nn.Sequential:
    """The MLP GAN's generator with the weights in ``file``, frozen, in eval mode."""
    net = mlp_gan()
    _load_into(net, Path(file), FILES["mlp-gan"].what)
    return net.eval().requires_grad_(False)


class _WholeVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = VAEEncoder()
        self.decoder = VAEDecoder()

    def state_dict(self, *args, **kwargs):  # the file's flat keys: fc1..fc22 (encoder), fc3, fc4 (decoder)
        return {**self.encoder.state_dict(), **self.decoder.state_dict()}


def load_vae_decoder(file: str | Path) -> VAEDecoder:
    """The MLP VAE's decoder with the weights in ``file`` (whose encoder is checked and dropped), frozen."""
    what = FILES["mlp-vae"].what
    source = repr(Path(file).name)
    expected = _WholeVAE().state_dict()
    checked = plugin.check_state_dict(plugin.load_torch_file(Path(file), what=what), expected, source=source, what=what)
    decoder = VAEDecoder()
    decoder.load_state_dict({k: v for k, v in checked.items() if k.startswith(("fc3.", "fc4."))}, strict=True)
    return decoder.eval().requires_grad_(False)


def load_lenet(file: str | Path) -> LeNet5:
    """The LeNet-5 classifier with the weights in ``file``, frozen, in eval mode."""
    net = LeNet5()
    _load_into(net, Path(file), FILES["lenet"].what)
    return net.eval().requires_grad_(False)


__all__ = ["CACHE", "COMMIT", "FILES", "REPOSITORY", "Published", "load_lenet", "load_mlp_gan", "load_vae_decoder", "locate"]
