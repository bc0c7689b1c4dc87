"""The one timing rule of the benchmarks (a warm-up call, then the best of ``repeats`` timed calls), and what the
speed benchmarks share around it: peak resident memory and a case process's memory limit, and the training step's
update and the flow's own step."""

from __future__ import annotations

import json
import resource
import subprocess
import time
from collections.abc import Callable

import torch


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn``, after one untimed warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux's ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def limit_address_space(gb: float) -> None:
    """Cap this process's address space at ``gb`` GiB (0: no cap), so a case too large for the machine fails alone."""
    if gb:
        limit = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward from ``loss`` and one optimiser step."""
    opt.zero_grad()
    loss.backward()
    opt.step()


def training_update(opt: torch.optim.Optimizer, z: torch.Tensor, log_det: torch.Tensor, energy: torch.Tensor) -> None:
    """What compose does per step once the energy is known: its loss (prior, 30 × energy, minus the flow's
    log-determinant), backward through all of it, and the Adam update."""
    update(opt, (0.5 * z.square().sum(1) + 30 * energy - log_det).mean())


def flow_step(flow: torch.nn.Module, opt: torch.optim.Optimizer, batch: int, features: int) -> Callable[[], None]:
    """The flow's own forward, backward and update, without the generator, as a call to time. Draws its fixed
    cotangent now (one ``torch.randn(batch, features)``), then a fresh input each call."""
    cot = torch.randn(batch, features)

    def step() -> None:
        z, log_det = flow(torch.randn(batch, features))
        update(opt, (z * cot).sum() - log_det.sum())  # the same backward shape as a real step, without the generator

    return step


def run_case(cmd: list[str], record: dict, limit_gb: float = 0.0) -> None:
    """Run one case in a fresh process (so its peak memory is its own) and print its last JSON line; when the
    process fails, print ``record`` with why (killed by a signal, out of memory under ``limit_gb``) and the tail
    of its standard error."""
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode == 0 and r.stdout.strip():
        print(r.stdout.strip().splitlines()[-1], flush=True)
        return
    why = f"killed by signal {-r.returncode} (SIGKILL: likely the OOM killer)" if r.returncode < 0 else f"exit status {r.returncode}"
    if limit_gb and any("memory" in line.lower() for line in r.stderr.splitlines()[-5:]):
        why += f" (out of memory under the {limit_gb:g} GB limit)"
    print(json.dumps({**record, "error": why, "stderr_tail": r.stderr.strip().splitlines()[-3:]}), flush=True)
