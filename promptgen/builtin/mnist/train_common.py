"""What training the built-in models shares: settings, seeding, saving weights, augmentations, progress bars."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from .models import (
    NUM_CLASSES,
)

if TYPE_CHECKING:
    from typing_extensions import Self


MODEL_NAMES = ("evaluator", "realism", "classifier", "generator")
TRAIN_SPLIT = {"evaluator": "evaluator", "realism": "evaluator", "classifier": "models", "generator": "models"}

# defaults chosen so each run stays within minutes on 2 CPU cores
DEFAULT_EPOCHS = {"evaluator": 40, "classifier": 40, "realism": 20}
#: Share of real digits the realism check never saw (the "models" split) that its threshold accepts.
REALISM_ACCEPT = 0.995
DEFAULT_GENERATOR_STEPS = 12_000

ProgressFactory = Callable[[str, int], Any]


# --------------------------------------------------------------------------- utils


def setup_torch(seed: int, threads: int = 2) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def save_weights(model: nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict (or a dict of tensors) as float32 safetensors, atomically.

    BatchNorm ``num_batches_tracked`` counters are dropped (they do not affect
    eval-mode outputs); :func:`models.load_pretrained` tolerates their absence.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = model.state_dict() if isinstance(model, nn.Module) else model
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous().clone()
        for k, v in tensors.items()
        if not k.endswith("num_batches_tracked")
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def random_translate(x: torch.Tensor, max_shift: int = 3) -> torch.Tensor:
    """DiffAugment-style per-sample integer translation (zero fill), differentiable."""
    b, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), device=x.device)
    padded = F.pad(x, (max_shift, max_shift, max_shift, max_shift))
    rows = (torch.arange(h, device=x.device)[None, :] + max_shift - shifts[:, 0:1])  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + max_shift - shifts[:, 1:2])  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    return padded[:, 0][bi, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def random_cutout(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """DiffAugment-style cutout: one ``size`` × ``size`` square per image set to 0, differentiable."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    keep = ((ys - cy).abs() > size // 2) | ((xs - cx).abs() > size // 2)
    return x * keep.unsqueeze(1).to(x)


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """What the critic sees of real and fake images alike: translated by up to 3 px, with a cutout."""
    return random_cutout(random_translate(x))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Share of ``images`` whose top digit (logits 0-9) is ``labels``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += (model(images[i : i + batch])[:, :NUM_CLASSES].argmax(1) == labels[i : i + batch]).sum().item()
    model.train(was_training)
    return correct / len(images)


class RichBars:
    """A :data:`ProgressFactory` of rich progress bars on stderr, for the training scripts::

        with RichBars() as bars:
            train_generator(..., progress=bars)
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
        )

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, label: str, total: int) -> Any:
        from rich.markup import escape

        progress, task = self.progress, self.progress.add_task(escape(label), total=total, info="")

        class Bar:
            def advance(self, n: int = 1, **fields: Any) -> None:
                progress.update(task, advance=n, **fields)

            def close(self) -> None:
                progress.refresh()

        return Bar()


class _NullProgress:
    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass
