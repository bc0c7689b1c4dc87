"""Reading a BigGAN-deep checkpoint (``config.json`` + ``pytorch_model.bin``) without running code from it.

``pytorch_model.bin`` is a torch state dict (``torch.save(model.state_dict())``
in pytorch-pretrained-BigGAN's converter). It is read with
``torch.load(weights_only=True)``: a pickle that would import or call anything
beyond tensors is refused before anything in it runs. Every failure (an
unreadable, truncated or foreign file, keys or shapes that do not match
``config.json``) is a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from promptgen import plugin
from promptgen.plugin import WeightsFileError, load_torch_file
from promptgen_plugin_biggan.config import BigGANConfig, read_config
from promptgen_plugin_biggan.network import BigGAN

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"


class CheckpointError(plugin.PromptgenError):
    """A BigGAN checkpoint that cannot be used."""


def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """``(config.json, pytorch_model.bin)`` for a folder holding both, or for the ``.bin`` with its config beside it.

    Beside a ``.bin``, ``config.json`` is looked for first, then the name of the
    cached download (``biggan-deep-128-pytorch_model.bin`` -> ``biggan-deep-128-config.json``).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        config, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        missing = [p.name for p in (config, weights) if not p.is_file()]
        if missing:
            raise CheckpointError(f"{str(path)!r} has no {' and no '.join(missing)}; a BigGAN folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
        return config, weights
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist; give a folder with {CONFIG_NAME} and {WEIGHTS_NAME}, or the .bin")
    candidates = [path.with_name(CONFIG_NAME)]
    if path.name.endswith(WEIGHTS_NAME) and path.name != WEIGHTS_NAME:
        candidates.append(path.with_name(path.name[: -len(WEIGHTS_NAME)] + "config.json"))
    for config in candidates:
        if config.is_file():
            return config, path
    raise CheckpointError(f"no {CONFIG_NAME} beside {str(path)!r}; put the model's config.json next to it")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path``, read with ``weights_only=True``."""
    path = Path(path)
    source = repr(str(path))
    try:
        state = load_torch_file(path, what="a BigGAN-deep pytorch_model.bin", mmap=True)  # mapped: the file is not held twice
    except WeightsFileError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source} does not hold a state dict (it holds {type(state).__name__}); give pytorch_model.bin of a BigGAN-deep model")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source} is not a state dict of tensors (e.g. entry {str(bad[0])[:60]!r}); give pytorch_model.bin of a BigGAN-deep model")
    return state


def _examples(keys: list[str], n: int = 2) -> str:
    return ", ".join(repr(k) for k in sorted(keys)[:n]) + (", ..." if len(keys) > n else "")


def load_biggan(config_path: str | Path, weights_path: str | Path) -> BigGAN:
    """The network of ``config.json`` with the weights of ``pytorch_model.bin``, frozen, in eval mode."""
    cfg: BigGANConfig = read_config(config_path)
    state = read_state_dict(weights_path)
    source = repr(str(weights_path))
    # Built on the meta device first and held to the file's tensors: a config.json that claims a huge network
    # is refused before anything is allocated (promptgen.plugin.build_matching).
    with torch.device("meta"):
        expected = BigGAN(cfg).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"{len(missing)} of its {len(expected)} keys are missing ({_examples(missing)})" if missing else ""
        if unexpected:
            what += ("; " if what else "") + f"{len(unexpected)} are not BigGAN-deep's ({_examples(unexpected)})"
        raise CheckpointError(plugin.one_line(f"{source} is not the BigGAN-deep of {Path(config_path).name}: {what}"))
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source} does not match {Path(config_path).name}: {key!r} has shape {tuple(got.shape)}, "
                f"the config says {tuple(want.shape)}; are they of the same model?"
            )
        if not got.is_floating_point():
            raise CheckpointError(f"{source}: {key!r} holds {got.dtype} values, not floating point; not a BigGAN checkpoint")
    net = plugin.build_matching(lambda: BigGAN(cfg), state, source)
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    net.refresh()
    if not all(bool(torch.isfinite(t).all()) for t in net.state_dict(keep_vars=False).values()) or not all(
        bool(torch.isfinite(b).all()) for b in net.buffers()
    ):
        raise CheckpointError(f"{source} holds non-finite weights (or spectral-norm vectors that give σ = 0); download it again")
    return net.eval().requires_grad_(False)
