"""StyleNeRF speed and memory on this machine, at the published FFHQ 256 architecture, random weights.

The network has the configuration of facebookresearch/StyleNeRF's ``ffhq_256.pkl`` (``conf/model/stylenerf_ffhq.yaml``
with ``conf/spec/paper256.yaml``): z and w of 512, an 8-layer mapping; a 32² volume rendered with 14 + 14
(hierarchical) foreground samples of an 8-layer, 128-wide field (10 frequencies, 256 features) and 4 background
samples of a 4-layer, 64-wide field driven by a 32-d code; then the "nn_cat" upsampler blocks b64 ... b256 of 1×1
convolutions, channel base 32,768 (``channel_base: 1``), max 1,024. It is built by
``promptgen_plugin_stylenerf.testing.random_stylenerf``, written as an official network pickle
(``write_stylenerf_pickle``) and loaded through the registry (``stylenerf:path=FILE,camera=...``), as a download
would be. ``--resolution`` 512 or 1024 adds upsampler blocks (the published 512 and 1024 models share the rest).
Cases, each in a fresh process so its peak resident memory is its own:

- ``sampling``: decoding a batch without gradients (batch 1 and 4): images per second and peak memory;
- ``training step``: what compose runs per step (batch 1 and 2): the flow (affine couplings, compose's default for
  one target; the camera seed passed through, with ``--camera condition`` conditioned on yaw and pitch) on the
  latent, the generator with gradients, a cheap stand-in energy, backward through both to the flow, the Adam
  update; seconds, peak memory, and the flow's own forward, backward and update timed alone, as a share of the step.

A case whose process fails (killed for memory, say) prints a JSON object with its ``error``.

    python benchmarks/stylenerf_speed.py [--resolution 256] [--camera prior|latent|condition] [--limit-gb 20]
    python benchmarks/stylenerf_speed.py --smoke      # the plugin's tiny test network, to check the script runs (seconds)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path

import torch
from timing import best_of, flow_step, limit_address_space, rss_mb, run_case, training_update

#: facebookresearch/StyleNeRF's FFHQ 256 generator (stylenerf_ffhq.yaml, paper256.yaml; the NeRFBlock defaults for
#: the foreground field's width, depth and frequencies). The image resolution is --resolution's.
PUBLISHED_256 = {
    "z_dim": 512, "w_dim": 512, "mapping_layers": 8, "resolution": 256, "resolution_vol": 32, "z_dim_bg": 32,
    "rgb_out_dim": 256, "rgb_out_dim_bg": 256, "fg_hidden": 128, "fg_blocks": 8, "bg_hidden": 64, "bg_blocks": 4,
    "n_freq": 10, "n_ray_samples": 14, "n_bg_samples": 4, "channel_base": 32768, "channel_max": 1024,
}  # fmt: skip


def generator(camera: str, resolution: int, smoke: bool, folder: Path):
    """The network as a promptgen generator, through its official pickle and the registry; its parameter count and
    configuration."""
    from promptgen_plugin_stylenerf.testing import random_stylenerf, write_stylenerf_pickle

    from promptgen.core.registry import get_registry

    net = random_stylenerf(0, **({} if smoke else {**PUBLISHED_256, "resolution": resolution}))
    params = sum(p.numel() for p in net.parameters())
    cfg = net.cfg.model_dump(exclude={"camera"})
    cfg["upsampler_channels"] = {f"b{r}": net.cfg.channels(r) for r in net.cfg.block_resolutions}
    path = write_stylenerf_pickle(net, folder / "stylenerf.pkl")
    del net
    return get_registry().build_generator(f"stylenerf:path={path},camera={camera}"), params, cfg


def case(name: str, batch: int, camera: str, resolution: int, repeats: int, smoke: bool) -> dict:
    from promptgen.composing.runs import default_flow_kind
    from promptgen.core.latents import condition_inputs, controlled_size, decode_at, noise_size
    from promptgen.training.flow import CouplingFlow, FlowConfig

    with tempfile.TemporaryDirectory() as tmp:
        g, params, cfg = generator(camera, resolution, smoke, Path(tmp))
    d = g.latent_shape[0]
    ranges = condition_inputs(g)  # camera=condition: yaw and pitch, set by the prompt
    names = list(ranges)
    lo, hi = torch.tensor([r[0] for r in ranges.values()]), torch.tensor([r[1] for r in ranges.values()])
    cond = lo + (hi - lo) * torch.rand(batch, len(names)) if names else None
    base = rss_mb()
    out = {
        "case": name,
        "config": "smoke test (the plugin's tiny network)" if smoke else f"stylenerf-ffhq-{resolution} (random weights)",
        "camera": camera, "resolution": g.info.resolution[0], "parameters_millions": round(params / 1e6, 2),
        "batch": batch, "latent": d, "controlled": controlled_size(g), "noise": noise_size(g), "conditions": names,
        "sizes": cfg,
    }  # fmt: skip
    if name == "sampling":
        z = torch.randn(batch, d)

        def sample() -> None:
            with torch.no_grad():
                decode_at(g, z, cond, names)

        seconds = best_of(sample, repeats)
        out.update(images_per_second=round(batch / seconds, 3), seconds_per_batch=round(seconds, 3))
    else:
        kind = default_flow_kind(0)
        flow = CouplingFlow(
            FlowConfig(kind=kind, features=controlled_size(g), passthrough=noise_size(g), conditions=len(names))
        )
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
        flow_call = functools.partial(flow, condition=cond) if names else flow

        def full_step() -> None:
            z, log_det = flow_call(torch.randn(batch, d))
            x = decode_at(g, z, cond, names)
            energy = (x.mean(dim=(1, 2, 3)) - 0.3).square()  # cheap stand-in: the cost is the generator's
            training_update(opt, z, log_det, energy)

        flow_only = flow_step(flow_call, opt, batch, d)

        step, own = best_of(full_step, repeats), best_of(flow_only, max(repeats, 5))
        out.update(
            flow=kind, images_per_second=round(batch / step, 3), step_seconds=round(step, 3),
            flow_seconds=round(own, 4), flow_share_percent=round(100 * own / step, 3),
        )  # fmt: skip
    out.update(baseline_rss_mb=round(base), peak_rss_mb=round(rss_mb()), threads=torch.get_num_threads())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, choices=[256, 512, 1024], default=256)
    ap.add_argument("--camera", choices=["prior", "latent", "condition"], default="prior")
    ap.add_argument("--sample-batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--train-batches", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--smoke", action="store_true", help="the plugin's tiny test network (volume 4², image 16²)")
    ap.add_argument(
        "--limit-gb",
        type=float,
        default=20.0,
        help="address-space limit of each case's process, so a case too large for the machine fails alone (0: none)",
    )
    ap.add_argument("--child", nargs=2, metavar=("CASE", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        limit_address_space(args.limit_gb)
        name, batch = args.child
        print(json.dumps(case(name, int(batch), args.camera, args.resolution, args.repeats, args.smoke)), flush=True)
        return
    cases = [("sampling", b) for b in args.sample_batches] + [("training step", b) for b in args.train_batches]
    for name, batch in cases:
        cmd = [sys.executable, __file__, "--child", name, str(batch), "--camera", args.camera,
               "--resolution", str(args.resolution), "--repeats", str(args.repeats), "--threads", str(args.threads),
               "--limit-gb", str(args.limit_gb), *(["--smoke"] if args.smoke else [])]  # fmt: skip
        run_case(cmd, {"case": name, "camera": args.camera, "resolution": args.resolution, "batch": batch}, args.limit_gb)

if __name__ == "__main__":
    main()
