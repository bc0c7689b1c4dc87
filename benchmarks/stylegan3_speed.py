"""Issue 28 targets: StyleGAN3 speed and memory on this machine, at its smallest official resolution, random weights.

The network has the configuration of NVIDIA's ``stylegan3-t-ffhqu-256x256.pkl`` (docs/configs.md, "FFHQ-U
ablations at 256x256": ``--cfg=stylegan3-t --cbase=16384``; 14 layers, z and w of 512, two mapping layers,
``conv_clamp`` 256) or, with ``--configs R``, of ``stylegan3-r-ffhqu-256x256.pkl`` (``--cfg=stylegan3-r``: 1x1
convolutions, radial filters, channel base 32,768 and max 1,024). It is written as an NVIDIA network pickle
(``promptgen_plugin_stylegan2.testing``) and loaded through the registry (``stylegan3-t:path=FILE``), as a
download would be. Cases, each in a fresh process so its peak resident memory is its own:

- ``sampling``: decoding a batch without gradients: images per second and peak memory;
- ``training step``: what compose runs per step: the flow (affine couplings, promptgen's default) on z, the
  generator with gradients, a cheap stand-in energy, backward through both, the Adam update; images per second
  (batch / step time), peak memory, and the flow's own forward, backward and update timed alone, as a share of
  the step (target: at most 2 %).

A case whose process fails (killed for memory, say) prints a JSON object with its ``error``.

    python benchmarks/stylegan3_speed.py [--configs T R] [--sample-batch 4] [--train-batch 2] [--repeats 2]
    python benchmarks/stylegan3_speed.py --smoke      # a 16-pixel network, to check the script runs (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from timing import best_of, flow_step, limit_address_space, rss_mb, run_case, training_update

#: NVIDIA's stylegan3-{t,r}-ffhqu-256x256 configurations (train.py --cbase=16384; R doubles base and max).
PUBLISHED_256 = {"z_dim": 512, "w_dim": 512, "resolution": 256, "channel_base": 16384, "channel_max": 512}
#: --smoke: every kind of layer, at a size that runs in seconds.
SMOKE = {"z_dim": 16, "w_dim": 16, "resolution": 16, "channel_base": 128, "channel_max": 16, "num_layers": 4}


def generator(kind: str, smoke: bool, folder: Path):
    """The network as a promptgen generator, through its NVIDIA pickle and the registry; and its parameter count."""
    from promptgen_plugin_stylegan2.stylegan3 import StyleGAN3, StyleGAN3Config
    from promptgen_plugin_stylegan2.testing import write_nvidia_pickle

    from promptgen.core.registry import get_registry

    torch.manual_seed(0)
    net = StyleGAN3(StyleGAN3Config.preset(kind, **(SMOKE if smoke else PUBLISHED_256))).eval().requires_grad_(False)
    params = sum(p.numel() for p in net.parameters())
    path = write_nvidia_pickle(net, folder / f"stylegan3-{kind.lower()}.pkl")
    del net
    return get_registry().build_generator(f"stylegan3-{kind.lower()}:path={path}"), params


def case(name: str, kind: str, batch: int, repeats: int, smoke: bool) -> dict:
    from promptgen.training.flow import CouplingFlow, FlowConfig

    with tempfile.TemporaryDirectory() as tmp:
        g, params = generator(kind, smoke, Path(tmp))
    d = g.latent_shape[0]
    base = rss_mb()
    out = {
        "case": name,
        "config": f"smoke test, config {kind}" if smoke else f"stylegan3-{kind.lower()}-ffhqu-256 (random weights)",
        "resolution": g.info.resolution[0], "parameters_millions": round(params / 1e6, 2), "batch": batch,
    }  # fmt: skip
    if name == "sampling":
        z = torch.randn(batch, d)

        def sample() -> None:
            with torch.no_grad():
                g.decode(z)

        seconds = best_of(sample, repeats)
        out.update(images_per_second=round(batch / seconds, 3), seconds_per_batch=round(seconds, 3))
    else:
        flow = CouplingFlow(FlowConfig(features=d))
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

        def full_step() -> None:
            z, log_det = flow(torch.randn(batch, d))
            x = g.decode(z)
            energy = (x.mean(dim=(1, 2, 3)) - 0.3).square()  # cheap stand-in: the cost is the generator's
            training_update(opt, z, log_det, energy)

        flow_only = flow_step(flow, opt, batch, d)

        step, own = best_of(full_step, repeats), best_of(flow_only, max(repeats, 5))
        out.update(
            images_per_second=round(batch / step, 3), step_seconds=round(step, 3), flow_seconds=round(own, 4),
            flow_share_percent=round(100 * own / step, 3),
        )  # fmt: skip
    out.update(baseline_rss_mb=round(base), peak_rss_mb=round(rss_mb()), threads=torch.get_num_threads())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", choices=["T", "R"], default=["T"])
    ap.add_argument("--sample-batch", type=int, default=4)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--smoke", action="store_true", help="a 16-pixel network instead of the published 256 one")
    ap.add_argument(
        "--limit-gb",
        type=float,
        default=20.0,
        help="address-space limit of each case's process, so a case too large for the machine fails alone (0: none)",
    )
    ap.add_argument("--child", nargs=3, metavar=("CASE", "CONFIG", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        limit_address_space(args.limit_gb)
        name, kind, batch = args.child
        print(json.dumps(case(name, kind, int(batch), args.repeats, args.smoke)), flush=True)
        return
    for kind in args.configs:
        for name, batch in (("sampling", args.sample_batch), ("training step", args.train_batch)):
            cmd = [sys.executable, __file__, "--child", name, kind, str(batch), "--repeats", str(args.repeats),
                   "--threads", str(args.threads), "--limit-gb", str(args.limit_gb),
                   *(["--smoke"] if args.smoke else [])]  # fmt: skip
            run_case(cmd, {"case": name, "config": kind, "batch": batch}, args.limit_gb)

if __name__ == "__main__":
    main()
