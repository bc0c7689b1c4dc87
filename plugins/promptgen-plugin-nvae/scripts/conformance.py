"""Check the plugin's NVAE decoder against NVlabs/NVAE's own code, on random weights, on the CPU.

Usage::

    python scripts/conformance.py PATH/TO/NVAE [--config small|mnist|mixture1|all] [--readjust 3]

Builds the official ``AutoEncoder`` (model.py of a checkout of
github.com/NVlabs/NVAE) with a small configuration, gives it random weights and
batch-norm statistics, saves ``checkpoint.pt`` exactly as the official
train.py does, loads that file with the plugin, and feeds both the same top
latent and lower-group noise at the same temperature. Prints JSON with the max
abs difference of the logits, of the mean images, of output samples drawn with
the same uniforms, and after ``--readjust`` passes of batch-norm re-estimation
(as evaluate.py's ``--readjust_bn``). It also checks that the plugin's module
names are exactly the official decoder's.

The official code assumes CUDA (``.cuda()`` calls, a fused BN+swish that
refuses CPU tensors) and logs to tensorboardX. THIS SCRIPT ONLY monkeypatches
those: ``Tensor.cuda`` returns the tensor, ``SyncBatchNormSwish.forward`` runs
the same batch norm and swish without the CUDA check, tensorboardX is a stub,
and ``distributions.sample_normal_jit`` takes its noise from a queue the
script fills (so both models see the same eps). Nothing of NVIDIA's code is
copied into the plugin; the checkout is only imported here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from collections import deque
from pathlib import Path

import torch
import torch.nn.functional as F

CONFIGS = {
    "small": {},
    "mnist": {"dataset": "mnist", "num_latent_scales": 2, "num_groups_per_scale": 3, "ada_groups": True},
    "mixture1": {"num_mixture_dec": 1, "arch_instance": "res_bnswish", "num_latent_scales": 1, "num_groups_per_scale": 3},
    "three-scales": {"dataset": "celeba_64", "num_latent_scales": 3, "num_groups_per_scale": 4, "ada_groups": True, "min_groups_per_scale": 1},
}


def import_official(root: Path):
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=object))
    sys.path.insert(0, str(root))
    torch.Tensor.cuda = lambda self, *a, **k: self  # CPU only: .cuda() is a no-op (script only)
    import distributions
    import model
    import utils
    from thirdparty import inplaced_sync_batchnorm as isb

    def bn_swish_forward(self, x):  # the fused layer's own fallback path, without its GPU-only check
        out = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps)
        return x.new_tensor(0) + out * torch.sigmoid(out)

    isb.SyncBatchNormSwish.forward = bn_swish_forward
    return model, distributions, utils


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nvae", type=Path, help="a checkout of github.com/NVlabs/NVAE")
    ap.add_argument("--config", default="all", choices=[*CONFIGS, "all"])
    ap.add_argument("--t", type=float, default=0.8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--readjust", type=int, default=3, help="batch-norm re-estimation passes to compare")
    opts = ap.parse_args()
    official, distributions, utils = import_official(opts.nvae.resolve())
    from promptgen_plugin_nvae.checkpoints import DECODER_PREFIXES, load_decoder
    from promptgen_plugin_nvae.generator import BN_BATCH, readjust_batch_norm
    from promptgen_plugin_nvae.testing import OTHER_ARGS, randomize, small_args

    queue: deque[torch.Tensor] = deque()

    def sample_from_queue(mu, sigma):
        eps = queue.popleft()
        return eps * sigma + mu, eps

    distributions.sample_normal_jit = sample_from_queue
    results = {}
    names = list(CONFIGS) if opts.config == "all" else [opts.config]
    for name in names:
        torch.manual_seed(0)
        args = argparse.Namespace(**{**OTHER_ARGS, **small_args(**CONFIGS[name])})
        arch = utils.get_arch_cells(args.arch_instance)
        net = official.AutoEncoder(args, None, arch)
        randomize(net, seed=1)
        net.eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "checkpoint.pt"
            torch.save({"epoch": 1, "state_dict": net.state_dict(), "optimizer": {}, "global_step": 0, "args": args,
                        "arch_instance": arch, "scheduler": {}, "grad_scalar": {}}, path)  # as train.py
            ours = load_decoder(path)
        theirs_keys = {k for k in net.state_dict() if k.startswith(DECODER_PREFIXES) and not k.endswith(".weight_normalized")}
        same_keys = theirs_keys == set(ours.state_dict())
        g = torch.Generator().manual_seed(2)
        eps = [torch.randn(opts.batch, *s, generator=g) for s in ours.group_shapes]

        def run_official(eps_list, t, n, net=net):
            queue.extend(eps_list)
            out = net.sample(n, t)
            assert not queue, "the official sampler used fewer groups than the plugin"
            return out

        with torch.no_grad():
            logits_o = run_official(eps, opts.t, opts.batch)
            logits_p = ours(eps, opts.t)
            dist = net.decoder_output(logits_o)
            if args.dataset in {"mnist", "omniglot"}:
                mean_o = dist.mean
                torch.manual_seed(3)
                u = torch.rand(logits_o.shape)
                sample_o = (u < dist.probs).float()
                sample_p = ours.sample(logits_p, (None, u))
            elif args.num_mixture_dec == 1:
                mean_o = (dist.dist.mu.clamp(-1, 1) + 1) / 2
                sample_o = sample_p = None  # the official NormalDecoder draws its own noise; not compared
            else:
                mean_o = dist.mean()
                torch.manual_seed(3)
                sample_o = dist.sample(1.0)
                torch.manual_seed(3)
                b, _, h, w = logits_p.shape
                u_mix = torch.Tensor(b, args.num_mixture_dec, h, w).uniform_(1e-5, 1.0 - 1e-5)
                u_val = torch.Tensor(b, 3, h, w).uniform_(1e-5, 1.0 - 1e-5)
                sample_p = ours.sample(logits_p, (u_mix, u_val))
            mean_p = ours.mean(logits_p)
            # Batch-norm re-estimation, as evaluate.py's set_bn: train mode, sample, eval mode.
            gb = torch.Generator().manual_seed(0)
            passes = [[torch.randn(BN_BATCH, *s, generator=gb) for s in ours.group_shapes] for _ in range(opts.readjust)]
            net.train()
            for p in passes:
                run_official(p, opts.t, BN_BATCH)
            net.eval()
            readjust_batch_norm(ours, opts.readjust, opts.t, seed=0)
            after_o = net.decoder_output(run_official(eps, opts.t, opts.batch))
            after_o = after_o.mean if args.dataset in {"mnist", "omniglot"} else (after_o.mean() if args.num_mixture_dec > 1 else (after_o.dist.mu.clamp(-1, 1) + 1) / 2)
            after_p = ours.mean(ours(eps, opts.t))
        stats_o = {k: v for k, v in net.state_dict().items() if k.startswith(DECODER_PREFIXES) and "running" in k}
        stats_p = ours.state_dict()
        results[name] = {
            "dataset": args.dataset, "groups": len(ours.group_shapes), "group_shapes": " ".join("x".join(map(str, s)) for s in ours.group_shapes),
            "image": list(mean_p.shape[1:]), "decoder_parameters": sum(p.numel() for p in ours.parameters()),
            "same_decoder_keys": same_keys,
            "max_abs_diff_logits": float((logits_o - logits_p).abs().max()),
            "max_abs_diff_mean_image": float((mean_o - mean_p).abs().max()),
            "max_abs_diff_sample_image": None if sample_o is None else float((sample_o - sample_p).abs().max()),
            "max_abs_diff_bn_stats_after_readjust": max(float((stats_o[k] - stats_p[k]).abs().max()) for k in stats_o),
            "max_abs_diff_mean_image_after_readjust": float((after_o - after_p).abs().max()),
        }
    print(json.dumps({"nvae_checkout": str(opts.nvae), "t": opts.t, "batch": opts.batch, "readjust_passes": opts.readjust, "results": results}, indent=2))


if __name__ == "__main__":
    main()
