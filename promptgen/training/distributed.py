"""Several training processes on PyTorch's own distributed engine (``torchrun``).

``torchrun --nproc_per_node N -m promptgen compose ...`` (or ``compose --nproc
N``) starts N processes; each reads its rank from the environment torchrun
sets. They train one flow: each draws the same global batch of noise from the
same seeded generator and keeps its own slice of it, gradients are averaged
by :class:`torch.nn.parallel.DistributedDataParallel` (gloo on the CPU, NCCL
on CUDA), and only rank 0 writes checkpoints, logs and the artifact. So N
processes with a global batch B take the same steps as one process with batch
B, up to the order of floating-point sums.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

T = TypeVar("T")

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that use it: the command line reads the rank from
# here before it knows whether it will train, and `promptgen --help` should not wait for torch.


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """The rank and world size torchrun put in the environment (one process if none)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return Dist()
    return Dist(rank, world, local) if world > 1 else Dist()


#: What a process of several needs in its environment to find the others (torchrun sets them all).
RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT")


def check_env(environ: dict[str, str] | None = None) -> Dist:
    """:func:`from_env`, refusing an environment that names several processes but cannot start them.

    ``WORLD_SIZE=2 RANK=1`` inherited from a cluster job's environment, without torchrun's rendezvous
    variables, would otherwise fail deep inside torch ("MASTER_ADDR expected"), or wait for processes that
    never come. Raises a one-line :class:`~promptgen.core.errors.SpecError`.
    """
    from promptgen.core.errors import SpecError

    env = os.environ if environ is None else environ
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    values: dict[str, int] = {}
    for name in names:
        if name in env:
            try:
                values[name] = int(env[name])
            except ValueError:
                raise SpecError(f"{name}={env[name][:40]!r} in the environment is not a whole number; unset it, or start "
                                f"several processes with `promptgen compose --nproc N`") from None
    world = values.get("WORLD_SIZE", 1)
    rank = values.get("RANK", 0)
    fix = "unset WORLD_SIZE, RANK and LOCAL_RANK to train in one process, or use `promptgen compose --nproc N`"
    if world < 1:
        raise SpecError(f"WORLD_SIZE={world} in the environment: it counts processes, at least 1; {fix}")
    if not 0 <= rank < world or not 0 <= values.get("LOCAL_RANK", rank) < max(world, 1):
        raise SpecError(f"RANK={rank}, LOCAL_RANK={values.get('LOCAL_RANK', rank)} in the environment do not fit "
                        f"WORLD_SIZE={world}; {fix}")
    missing = [name for name in RENDEZVOUS if not env.get(name)]
    if world > 1 and missing:
        raise SpecError(f"WORLD_SIZE={world} in the environment (inherited from a cluster job?) asks for several processes, "
                        f"but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set, so they cannot meet; {fix}")
    return from_env()


def speaks() -> bool:
    """Whether this process prints the mistakes every process meets: the main one, or any process whose
    environment does not make a working group (then no other process will say it)."""
    from promptgen.core.errors import SpecError

    try:
        return check_env().main
    except SpecError:
        return True


def start(d: Dist, device: torch.device) -> torch.device:
    """Join the process group (gloo on the CPU, NCCL on CUDA); returns this process's device."""
    import torch
    import torch.distributed as torch_dist

    if not d.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def barrier(d: Dist) -> None:
    import torch.distributed as torch_dist

    if d.active and torch_dist.is_initialized():
        torch_dist.barrier()


def any_true(d: Dist, flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true in any process (every process gets the same answer)."""
    if not d.active:
        return flag
    import torch
    import torch.distributed as torch_dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def from_main(d: Dist, tensors: list[torch.Tensor]) -> None:
    """Overwrite ``tensors`` in every process with the main process's (in place): a decision only the main
    process took (the guard's, which judges on its watch) becomes everyone's."""
    if not d.active:
        return
    import torch.distributed as torch_dist

    if torch_dist.is_initialized():
        for t in tensors:
            torch_dist.broadcast(t, src=0)


def main_object(d: Dist, obj: T) -> T:
    """The main process's ``obj`` in every process (a reading only the main process took; our own processes'
    objects, never a file's)."""
    if not d.active:
        return obj
    import torch.distributed as torch_dist

    if not torch_dist.is_initialized():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def stop(d: Dist) -> None:
    import torch.distributed as torch_dist

    if d.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
