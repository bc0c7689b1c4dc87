"""Reading DECA's ``deca_model.tar`` without running code from it, and finding it.

DECA saves its model with ``torch.save`` as a dict of state dicts (``E_flame``:
the coarse encoder; ``E_detail``, ``D_detail``: the detail encoder and decoder;
a training run's file may add the optimiser's state and counters). Only
``E_flame`` is read, strictly: every key of the encoder, nothing else, each of
the right shape. The file is read with ``torch.load(weights_only=True)``
(``plugin.load_torch_file``): a pickle that asks to import or call anything
beyond tensors is refused before anything in it runs. Every failure is one
line (:class:`CheckpointError`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from promptgen import plugin
from promptgen_plugin_deca.network import FlameEncoder
from promptgen_plugin_deca.zoo import DECA_MODEL, ZooModel

WHAT = "DECA's deca_model.tar"
CACHE_SUBDIR = "deca"
#: Batch-norm counters: used in training only; a file saved without them (torch < 0.4.1) is still complete.
OPTIONAL_SUFFIX = ".num_batches_tracked"


class CheckpointError(plugin.PromptgenError):
    """A deca_model.tar that cannot be used."""


def checkpoint_path(path: str | None, spec: plugin.Spec, model: ZooModel = DECA_MODEL) -> Path:
    """The local ``deca_model.tar``: ``path=`` if given, else the cached copy, else a one-line how-to."""
    if path is not None:
        given = Path(path).expanduser()
        if not given.is_file():
            raise plugin.SpecError(f"{spec.format()!r}: path={path!r} is not a file; give {WHAT}")
        return given
    target = plugin.cache_root() / CACHE_SUBDIR / model.filename
    if target.is_file():
        return target
    raise plugin.DownloadError(
        f"{spec.name} needs {WHAT}, which has no direct download link: download it by hand from {model.page} "
        f"(non-commercial licence), put it at {target}, or pass path="
    )


def _examples(keys: list[str], n: int = 2) -> str:
    return ", ".join(repr(k) for k in sorted(keys)[:n]) + (", ..." if len(keys) > n else "")


def read_encoder_state(path: str | Path) -> dict[str, Tensor]:
    """``E_flame``'s state dict from a deca_model.tar."""
    path = Path(path)
    source = repr(path.name)
    try:
        ckpt = plugin.load_torch_file(path, what=WHAT, mmap=True)
    except plugin.WeightsFileError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source} holds {type(ckpt).__name__}, not a dict of state dicts; give {WHAT}")
    if "E_flame" not in ckpt:
        keys = [str(k) for k in ckpt]
        hint = " (it looks like a bare state dict)" if keys and all("." in k for k in keys[:5]) else ""
        raise CheckpointError(
            plugin.one_line(
                f"{source} has no 'E_flame' (it holds {_examples(keys, 3) or 'nothing'}){hint}; give {WHAT}"
            )
        )
    state = ckpt["E_flame"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: 'E_flame' holds {type(state).__name__}, not a state dict; give {WHAT}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{source}: 'E_flame' is not a state dict of tensors (e.g. entry {str(bad[0])[:60]!r}); give {WHAT}"
        )
    return state


def load_encoder(path: str | Path) -> FlameEncoder:
    """DECA's coarse encoder with the weights of ``path``, float32, frozen, in eval mode."""
    state = read_encoder_state(path)
    source = repr(Path(path).name)
    net = FlameEncoder()
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = (
            f"{len(missing)} of its {len(expected)} keys {'is' if len(missing) == 1 else 'are'} missing ({_examples(missing)})"
            if missing
            else ""
        )
        if unexpected:
            what += (
                ("; " if what else "")
                + f"{len(unexpected)} {'is' if len(unexpected) == 1 else 'are'} not DECA's ResNet-50 encoder's ({_examples(unexpected)})"
            )
        raise CheckpointError(plugin.one_line(f"{source}: 'E_flame' is not DECA's coarse encoder: {what}"))
    for key, want in expected.items():
        if key not in state:
            continue
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source}: 'E_flame' {key!r} has shape {tuple(got.shape)}, DECA's encoder has {tuple(want.shape)}; "
                "another architecture or parameter count (DECA regresses 236 FLAME parameters)"
            )
        if key.endswith(OPTIONAL_SUFFIX):
            continue
        if not got.is_floating_point():
            raise CheckpointError(
                f"{source}: 'E_flame' {key!r} holds {got.dtype} values, not floating point; give {WHAT}"
            )
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(
                f"{source}: 'E_flame' {key!r} holds non-finite values; the file is damaged, download it again"
            )
    full = {k: (state[k].to(v.dtype) if k in state else v) for k, v in expected.items()}
    net.load_state_dict(full, strict=True)
    return net.eval().requires_grad_(False)
