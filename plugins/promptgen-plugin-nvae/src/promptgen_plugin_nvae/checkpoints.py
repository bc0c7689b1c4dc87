"""Reading official NVAE checkpoints without running code from them.

NVlabs/NVAE's ``train.py`` saves ``checkpoint.pt`` as::

    torch.save({"epoch": ..., "state_dict": model.state_dict(), "optimizer": ..., "global_step": ...,
                "args": args, "arch_instance": arch_instance, "scheduler": ..., "grad_scalar": ...}, path)

``args`` is the ``argparse.Namespace`` of the training command (the
architecture: scales, groups, channels, cells, dataset) and ``arch_instance``
the dict of cell operations it picked. The file is read with
``torch.load(weights_only=True)``: torch's restricted unpickler, which rebuilds
tensors, storages and plain containers (dict, list, OrderedDict, numbers,
strings) and refuses every other global; ``argparse.Namespace`` is the one
class added, for that call only (``torch.serialization.safe_globals``). A
pickle that asks for anything else (``posix.system``, ``builtins.eval``...) is
refused before anything is called.

Only the decoder's weights are taken (:data:`DECODER_PREFIXES`), key by key and
shape by shape against :class:`~promptgen_plugin_nvae.network.NVAEDecoder`; the
encoder, its flows and the optimiser state are ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from promptgen import plugin
from promptgen.plugin import PromptgenError, WeightsFileError, load_torch_file
from promptgen_plugin_nvae.network import ARCH_DECODER_CELLS, OPERATIONS, NVAEConfig, NVAEDecoder, dataset_size

#: State-dict names of the generative path; everything else in the file is the encoder or training state.
DECODER_PREFIXES = ("prior_ftr0", "dec_sampler.", "dec_tower.", "post_process.", "image_conditional.", "stem_decoder.")
#: Training arguments the decoder's shape depends on, with the defaults NVAE's evaluate.py assumes for old checkpoints.
REQUIRED_ARGS = (
    "dataset", "num_latent_scales", "num_groups_per_scale", "num_latent_per_group", "num_channels_enc", "num_channels_dec",
    "num_preprocess_blocks", "num_postprocess_blocks", "num_postprocess_cells", "num_cell_per_cond_dec", "use_se",
)
DEFAULT_ARGS = {"ada_groups": False, "min_groups_per_scale": 1, "num_mixture_dec": 10, "num_x_bits": 8, "arch_instance": "res_mbconv"}
#: The most each training argument that sets how many modules (or how wide a tensor) the decoder has may ask
#: for: far above NVAE's published models (5 scales, 20 groups a scale, 2 blocks or cells, 128 channels,
#: 20 latents a group, 10 mixtures), small enough that a checkpoint's arguments are built at once. The sizes
#: themselves are then held to the weights the file holds (promptgen.plugin.build_matching).
BOUNDS = {
    "num_latent_scales": (1, 8), "num_groups_per_scale": (1, 64), "min_groups_per_scale": (1, 64), "num_latent_per_group": (1, 1024),
    "num_channels_enc": (1, 4096), "num_channels_dec": (1, 4096), "num_preprocess_blocks": (0, 8), "num_postprocess_blocks": (0, 8),
    "num_postprocess_cells": (1, 16), "num_cell_per_cond_dec": (1, 16), "num_mixture_dec": (1, 64), "num_x_bits": (1, 16),
}


class CheckpointError(PromptgenError):
    """A file that cannot be read safely or does not hold an NVAE checkpoint."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict ``torch.save``d by NVAE's train.py, read with torch's weights-only unpickler (plus ``argparse.Namespace``)."""
    name = Path(path).name
    try:
        data = load_torch_file(path, what="an NVAE checkpoint.pt", allow=[argparse.Namespace], mmap=True)  # the encoder and optimiser state stay on disk
    except WeightsFileError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(data, Mapping) or "state_dict" not in data or "args" not in data:
        what = f"a dict with keys {sorted(map(str, data))[:6]}" if isinstance(data, Mapping) else f"a {type(data).__name__}"
        raise CheckpointError(
            f"{name} holds {what}, not an NVAE checkpoint (NVlabs/NVAE train.py saves 'args' and 'state_dict'); give an official checkpoint.pt"
        )
    return dict(data)


def _arg(args: Any, key: str) -> Any:
    return args.get(key) if isinstance(args, Mapping) else getattr(args, key, None)


def config_from_checkpoint(ckpt: Mapping[str, Any], name: str = "checkpoint") -> NVAEConfig:
    """The decoder's architecture from the checkpoint's training arguments (and its ``arch_instance``)."""
    args = ckpt["args"]
    if not isinstance(args, (argparse.Namespace, Mapping)):
        raise CheckpointError(f"{name}: 'args' is a {type(args).__name__}, not the training arguments; not an NVAE checkpoint")
    missing = [k for k in REQUIRED_ARGS if _arg(args, k) is None]
    if missing:
        raise CheckpointError(f"{name}: the training arguments lack {', '.join(missing)}; not an NVAE checkpoint")
    values = {k: _arg(args, k) for k in REQUIRED_ARGS}
    values.update({k: (_arg(args, k) if _arg(args, k) is not None else d) for k, d in DEFAULT_ARGS.items()})
    for k, v in values.items():
        want = str if k in ("dataset", "arch_instance") else bool if k in ("use_se", "ada_groups") else int
        if want is int and isinstance(v, bool) or not isinstance(v, want):
            kind = {"int": "a whole number", "bool": "true or false", "str": "text"}[want.__name__]
            raise CheckpointError(f"{name}: training argument {k}={v!r} is not {kind}; the file is damaged")
    for k, (low, high) in BOUNDS.items():
        if not low <= values[k] <= high:
            raise CheckpointError(
                f"{name}: training argument {k}={values[k]!r} is outside {low}..{high}, what promptgen builds an NVAE decoder "
                "from (NVAE's own models stay far inside); the file is damaged or not an NVAE checkpoint"
            )
    if dataset_size(values["dataset"]) is None:
        raise CheckpointError(f"{name}: dataset {values['dataset']!r} is not one NVAE's code knows; the file is damaged")
    cells = ckpt.get("arch_instance")
    if isinstance(cells, Mapping) and all(isinstance(cells.get(k), (list, tuple)) for k in ("normal_dec", "up_dec", "normal_post", "up_post")):
        arch = {k: tuple(str(op) for op in cells[k]) for k in ("normal_dec", "up_dec", "normal_post", "up_post")}
    elif values["arch_instance"] in ARCH_DECODER_CELLS:
        arch = ARCH_DECODER_CELLS[values["arch_instance"]]
    else:
        raise CheckpointError(f"{name}: arch_instance {values['arch_instance']!r} is not one of NVAE's ({', '.join(ARCH_DECODER_CELLS)})")
    unknown = sorted({op for ops in arch.values() for op in ops} - OPERATIONS)
    if unknown:
        raise CheckpointError(f"{name}: decoder operations {unknown} are not supported (known: {', '.join(sorted(OPERATIONS))})")
    values["arch_instance"] = arch  # type: ignore[assignment]
    return NVAEConfig(**values)


def decoder_state(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The decoder's entries of an official state dict.

    Skipped: ``*.weight_normalized``, which NVAE's ``Conv2D`` registers as a second name of
    ``weight`` in its convolutions without weight normalisation (so the official state dicts
    hold it; evaluate.py loads with ``strict=False`` for it).
    """
    out = {}
    for key, value in state.items():
        k = key.removeprefix("module.") if isinstance(key, str) else key
        if isinstance(k, str) and k.startswith(DECODER_PREFIXES) and not k.endswith(".weight_normalized"):
            out[k] = value
    return out


def load_decoder(path: str | Path) -> NVAEDecoder:
    """An :class:`NVAEDecoder` with the decoder weights of the NVAE checkpoint at ``path`` (in eval mode, on the CPU)."""
    name = Path(path).name
    ckpt = read_checkpoint(path)
    cfg = config_from_checkpoint(ckpt, name)
    state = ckpt["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{name}: 'state_dict' is a {type(state).__name__}, not a state dict; the file is damaged")
    theirs = decoder_state(state)
    try:
        with torch.device("meta"):  # nothing allocated until the file's weights are known to fill it
            ours = NVAEDecoder(cfg).state_dict()
    except (ValueError, ZeroDivisionError, RuntimeError) as e:
        raise CheckpointError(f"{name}: the training arguments describe no buildable NVAE decoder ({e})") from None
    optional = {k for k in ours if k.endswith("num_batches_tracked")}
    missing = [k for k in ours if k not in theirs and k not in optional]
    extra = [k for k in theirs if k not in ours]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} decoder weights are missing (first: {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} are unexpected (first: {extra[0]})")
        raise CheckpointError(
            f"{name}: {' and '.join(parts)}; the file does not match the architecture its own arguments describe, or is not an NVAE checkpoint"
        )
    for k, v in theirs.items():
        if not isinstance(v, Tensor):
            raise CheckpointError(f"{name}: {k} is a {type(v).__name__}, not a tensor; the file is damaged")
        if tuple(v.shape) != tuple(ours[k].shape):
            raise CheckpointError(f"{name}: {k} has shape {tuple(v.shape)}, the architecture needs {tuple(ours[k].shape)}; the file is damaged")
        if not (v.is_floating_point() or k.endswith("num_batches_tracked")) or (v.is_floating_point() and not torch.isfinite(v).all()):
            raise CheckpointError(f"{name}: {k} holds non-finite or non-float values; the file is damaged")
    decoder = plugin.build_matching(lambda: NVAEDecoder(cfg), theirs, repr(name))
    decoder.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in theirs.items()}, strict=False)
    return decoder.eval()
