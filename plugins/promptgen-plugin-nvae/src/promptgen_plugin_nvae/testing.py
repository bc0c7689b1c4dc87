"""Random-weight NVAE checkpoints in the official format, for tests (no downloads).

:func:`write_checkpoint` saves what NVlabs/NVAE's train.py saves: a dict with
``epoch``, ``state_dict`` (the decoder's weights under the official names, and
stand-ins for the encoder's, which the plugin must skip), ``optimizer``,
``global_step``, ``args`` (an ``argparse.Namespace`` with every training
argument), ``arch_instance``, ``scheduler`` and ``grad_scalar``.
scripts/conformance.py checks the key names and the images against the
official code itself.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from promptgen_plugin_nvae.network import ARCH_DECODER_CELLS, NVAEConfig, NVAEDecoder

#: A small NVAE: 2 scales of 2 groups of 4×8×8 and 4×16×16 latents, 32×32 RGB, 3 logistics.
SMALL_ARGS: dict[str, Any] = {
    "dataset": "cifar10", "num_latent_scales": 2, "num_groups_per_scale": 2, "num_latent_per_group": 4,
    "num_channels_enc": 8, "num_channels_dec": 8, "num_preprocess_blocks": 1, "num_preprocess_cells": 2,
    "num_postprocess_blocks": 1, "num_postprocess_cells": 2, "num_cell_per_cond_enc": 1, "num_cell_per_cond_dec": 1,
    "num_mixture_dec": 3, "use_se": True, "res_dist": True, "ada_groups": False, "min_groups_per_scale": 1,
    "num_nf": 0, "num_x_bits": 8, "arch_instance": "res_mbconv",
}
#: Every other argument of train.py, with its default (they are in a real checkpoint's Namespace too).
OTHER_ARGS: dict[str, Any] = {
    "root": "/tmp/nasvae/expr", "save": "/tmp/nasvae/expr/eval-exp", "data": "/tmp/nasvae/data", "batch_size": 200,
    "learning_rate": 1e-2, "learning_rate_min": 1e-4, "weight_decay": 3e-4, "weight_decay_norm": 0.0,
    "weight_decay_norm_init": 10.0, "weight_decay_norm_anneal": False, "epochs": 200, "warmup_epochs": 5,
    "fast_adamax": False, "kl_anneal_portion": 0.3, "kl_const_portion": 1e-4, "kl_const_coeff": 1e-4,
    "cont_training": False, "num_proc_node": 1, "node_rank": 0, "local_rank": 0, "global_rank": 0,
    "num_process_per_node": 1, "master_address": "127.0.0.1", "seed": 1, "distributed": True, "num_total_iter": 1000,
}


def small_args(**changes: Any) -> dict[str, Any]:
    return {**SMALL_ARGS, **changes}


def config_of(args: dict[str, Any]) -> NVAEConfig:
    keys = NVAEConfig.__dataclass_fields__
    return NVAEConfig(**{k: v for k, v in args.items() if k in keys})


@torch.no_grad()
def randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights and batch-norm statistics that give varied, finite images (not the identity-like init)."""
    g = torch.Generator().manual_seed(seed)
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            t.fill_(100)
        elif name.endswith("running_var"):
            t.copy_(1 + 0.2 * torch.rand(t.shape, generator=g))
        elif name.endswith("running_mean"):
            t.copy_(0.1 * torch.randn(t.shape, generator=g))
        elif name.endswith("log_weight_norm"):
            t.copy_(0.2 * torch.randn(t.shape, generator=g))
        elif name == "prior_ftr0":
            t.copy_(torch.rand(t.shape, generator=g))
        elif t.dim() == 1 and ("bn" in name or ".conv.1." in name or "bn_act" in name) and name.endswith("weight"):
            t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
        else:
            fan_in = max(1, t[0].numel()) if t.dim() > 1 else 1
            t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5 if t.dim() > 1 else 0.1 * torch.randn(t.shape, generator=g))
    return net


def random_decoder(seed: int = 0, **changes: Any) -> tuple[NVAEDecoder, dict[str, Any]]:
    args = small_args(**changes)
    return randomize(NVAEDecoder(config_of(args)), seed).eval(), args


def _arch_instance(name: str) -> dict[str, list[str]]:
    """The ``arch_instance`` dict train.py stores (the decoder's cells; the encoder's as in res_mbconv)."""
    dec = ARCH_DECODER_CELLS[name]
    enc = ["res_bnswish", "res_bnswish"]
    return {"normal_enc": enc, "down_enc": enc, "normal_pre": enc, "down_pre": enc, **{k: list(v) for k, v in dec.items()}, "ar_nn": [""]}


def write_checkpoint(decoder: NVAEDecoder, args: dict[str, Any], path: str | Path, *, epoch: int = 3) -> Path:
    """``decoder``'s weights saved as NVAE's train.py saves checkpoint.pt (with stand-in encoder weights)."""
    path = Path(path)
    g = torch.Generator().manual_seed(1)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    c = args["num_channels_enc"]
    # The encoder's first modules, as in the official state dict (the plugin must not need them).
    state["stem.weight"] = torch.randn(c, 3, 3, 3, generator=g)
    state["stem.bias"] = torch.zeros(c)
    state["stem.log_weight_norm"] = torch.zeros(c, 1, 1, 1)
    state["enc_sampler.0.weight"] = torch.randn(2 * args["num_latent_per_group"], c, 3, 3, generator=g)
    for k, v in decoder.state_dict().items():
        state[k] = v.clone()
        # NVAE's Conv2D without weight normalisation registers its weight a second time, as
        # ``weight_normalized``: official state dicts hold both names.
        prefix = k.removesuffix(".weight")
        if k.endswith(".weight") and v.dim() == 4 and f"{prefix}.log_weight_norm" not in decoder.state_dict():
            state[f"{prefix}.weight_normalized"] = state[k]
    state["enc0.1.weight"] = torch.randn(c, c, 1, 1, generator=g)
    ns = argparse.Namespace(**{**OTHER_ARGS, **args})
    params = [v for v in state.values() if v.is_floating_point()]
    torch.save(
        {
            "epoch": epoch, "state_dict": state,
            "optimizer": {"state": {i: {"step": 10, "exp_avg": torch.zeros_like(p), "exp_inf": torch.zeros_like(p)} for i, p in enumerate(params[:3])},
                          "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-3, "weight_decay": 3e-4, "params": list(range(len(params)))}]},
            "global_step": 1234, "args": ns, "arch_instance": _arch_instance(args["arch_instance"]),
            "scheduler": {"T_max": 194.0, "eta_min": 1e-4, "base_lrs": [0.01], "last_epoch": 2, "_step_count": 3, "verbose": False,
                          "_get_lr_called_within_step": False, "_last_lr": [0.01]},
            "grad_scalar": {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0},
        },
        path,
    )
    return path
