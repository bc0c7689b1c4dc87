"""What a run records of its steps: experiment trackers (TensorBoard, Weights & Biases) and the compact per-step
history kept in the manifest.

A :class:`Tracker` is three calls (:meth:`~Tracker.log_scalars`, :meth:`~Tracker.log_images`,
:meth:`~Tracker.close`); the trainer calls them from the main process only, with every step's loss and energy
terms, and each periodic evaluation's figures and sample grid. TensorBoard and Weights & Biases are optional
extras (``tensorboard``, ``wandb``; ``pip install tensorboard`` works too): this module imports them only when a run asks
for them, and ``log="auto"`` uses TensorBoard when it is installed and nothing otherwise.

:class:`StepHistory` is what the manifest keeps of every step (``TrainingSummary.step_history``): each step's
loss and energy terms, averaged over windows of 2, 4, 8... steps once a run has more steps than
:data:`HISTORY_POINTS`, so a long run's manifest stays small.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from promptgen.core.errors import ArtifactError, PromptgenError, SpecError, one_line

if TYPE_CHECKING:
    from torch import Tensor

#: Where a run's logs go by default: this folder inside the run's folder (beside its checkpoint).
LOGS = "logs"
#: The file in the log folder that names the Weights & Biases run, so ``--resume`` continues it.
WANDB_ID = "wandb-run-id"
#: Most points :class:`StepHistory` keeps; past it, neighbouring windows are averaged together.
HISTORY_POINTS = 2000

Backend = Literal["tensorboard", "wandb", "none"]
LogChoice = Literal["auto", "tensorboard", "wandb", "none"]

#: backend -> the module it needs (the package pip installs, and promptgen-core's extra of the same name)
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


@runtime_checkable
class Tracker(Protocol):
    """Where a run's figures go while it trains. Called from the main training process only."""

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Record ``values`` (tag -> number; tags such as ``train/loss``, ``eval/junk``) at optimiser step ``step``."""
        ...

    def log_images(self, step: int, name: str, images: Tensor) -> None:
        """Record ``images`` (N, C, H, W), float in [0, 1], as one grid named ``name`` at ``step``."""
        ...

    def close(self) -> None:
        """Write out what is buffered; the tracker is not used again."""
        ...


class NoTracker:
    """Records nothing (``log="none"``, processes other than the main one)."""

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def log_images(self, step: int, name: str, images: Tensor) -> None:
        pass

    def close(self) -> None:
        pass


def _quiet_writer_threads() -> None:
    """Keep TensorBoard's writer thread from printing a traceback when the disk fills or the folder goes away.

    The thread keeps its exception and TensorBoard raises it again in the training process's next write, which
    compose turns into one line naming the folder; the thread's own traceback on stderr would only bury that line.
    """
    import threading

    from tensorboard.summary.writer import event_file_writer

    previous = threading.excepthook
    if getattr(previous, "promptgen_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.thread, event_file_writer._AsyncWriterThread) and isinstance(args.exc_value, OSError):
            return  # raised again in the next write, where it becomes one line
        previous(args)

    hook.promptgen_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class TensorBoardTracker:
    """Event files in ``log_dir`` through :class:`torch.utils.tensorboard.SummaryWriter`.

    ``first_step`` is the first step this process trains: events a killed process wrote at or after it (steps
    the resumed run takes again) are hidden, as are all of an earlier run's in the same folder when a run starts
    afresh (``first_step`` 1: everything from step 0 is purged).
    """

    def __init__(self, log_dir: Path, first_step: int = 1) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        _quiet_writer_threads()
        self.writer = SummaryWriter(str(log_dir), purge_step=first_step if first_step > 1 else 0)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def log_images(self, step: int, name: str, images: Tensor) -> None:
        self.writer.add_image(name, image_grid(images), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run: ``wandb.init`` with ``project``, ``name`` and the run's settings as its config.

    The run's id is kept in ``log_dir/wandb-run-id``; a resumed run (``first_step`` > 1) continues that run
    (``resume="allow"``), a new one starts another. ``WANDB_MODE=offline`` and wandb's other environment
    variables are honoured by wandb itself; ``WANDB_PROJECT`` and ``WANDB_NAME`` override the defaults here.
    """

    def __init__(
        self,
        log_dir: Path,
        first_step: int = 1,
        *,
        project: str = "promptgen",
        name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        import wandb

        self.wandb = wandb
        log_dir.mkdir(parents=True, exist_ok=True)
        id_file = log_dir / WANDB_ID
        run_id = id_file.read_text().strip() if first_step > 1 and id_file.is_file() else ""
        if not run_id:
            run_id = secrets.token_hex(4)
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or project,
            name=os.environ.get("WANDB_NAME") or name,
            id=run_id,
            resume="allow",
            dir=str(log_dir),
            config=config or {},
        )

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def log_images(self, step: int, name: str, images: Tensor) -> None:
        self.run.log({name: self.wandb.Image(image_grid(images))}, step=step)

    def close(self) -> None:
        self.run.finish()


def image_grid(images: Tensor) -> Any:
    """(N, C, H, W) in [0, 1] -> one (H', W', 3) uint8 grid, about square (grey images repeated to RGB)."""
    from promptgen.core.images import make_grid

    grid = make_grid(images.detach().float().cpu())
    return grid.repeat(3, axis=2) if grid.shape[2] == 1 else grid[:, :, :3]


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a module set to None in sys.modules cannot)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def choose_backend(log: str) -> Backend:
    """The tracker ``log`` asks for: ``auto`` is TensorBoard when it is installed, else none.

    Raises a one-line :class:`~promptgen.core.errors.SpecError` for a backend that is not installed, naming the
    ``pip install`` that adds it, and for an unknown name.
    """
    if log == "auto":
        return "tensorboard" if installed("tensorboard") else "none"
    if log == "none":
        return "none"
    if log not in _PACKAGES:
        raise SpecError(f"unknown --log {log!r}; use auto, tensorboard, wandb or none")
    module = _PACKAGES[log]
    if not installed(module):
        raise SpecError(
            f"--log {log} needs the {module} package, which is not installed: pip install {module} (or use --log none)"
        )
    return log  # type: ignore[return-value]


def log_folder(log_dir: str | None, checkpoint: Path | None) -> Path | None:
    """Where a run's logs go: ``log_dir``, else ``logs/`` beside the run's checkpoint; None when neither is known."""
    if log_dir:
        return Path(log_dir)
    return checkpoint.parent / LOGS if checkpoint is not None else None


def open_tracker(
    log: str, folder: Path | None, first_step: int = 1, *, name: str | None = None, config: dict[str, Any] | None = None
) -> Tracker:
    """The tracker ``log`` asks for, writing into ``folder`` from ``first_step`` on (see :func:`choose_backend`).

    ``auto`` with nowhere to write, or with a TensorBoard that fails to import, records nothing; an explicit
    choice that cannot work is a one-line error.
    """
    backend = choose_backend(log)
    if backend == "none" or (folder is None and log == "auto"):
        return NoTracker()
    if folder is None:
        raise SpecError(f"log={log!r} needs a folder for its logs: give log_dir, or a checkpoint to write beside")
    try:
        if backend == "tensorboard":
            return TensorBoardTracker(folder, first_step)
        return WandbTracker(folder, first_step, name=name, config=config)
    except OSError as exc:
        raise PromptgenError(
            f"cannot write logs to {str(folder)!r}: {exc.strerror or exc}; choose another --log-dir, or --log none"
        ) from None
    except ImportError as exc:
        if log == "auto":
            return NoTracker()
        raise SpecError(
            f"--log {log}: importing it failed ({one_line(str(exc))[:160]}); reinstall it with "
            f"pip install -U {backend}, or use --log none"
        ) from None


class StepHistory:
    """Every optimiser step's loss and energy terms, in at most ``limit`` points.

    Each point is a window of steps: ``{"step": mean step of the window, "loss": mean loss, label: mean term...}``.
    Windows are one step wide until ``limit`` would be passed; then neighbouring windows are averaged together
    (widths 2, 4, 8... steps, aligned on step 1), so a run of S steps keeps between ``limit / 2`` and ``limit``
    points when S > ``limit``, and every step when S <= ``limit``. Skipped steps and values that are not finite are
    left out of the means.

    >>> h = StepHistory(limit=4)
    >>> for step in range(1, 7):
    ...     h.add(step, {"loss": float(step)})
    >>> h.points()
    [{'step': 1.5, 'loss': 1.5}, {'step': 3.5, 'loss': 3.5}, {'step': 5.5, 'loss': 5.5}]
    """

    def __init__(self, limit: int = HISTORY_POINTS) -> None:
        if limit < 2:
            raise ValueError("a step history keeps at least 2 points")
        self.limit = limit
        self.width = 1
        # Each window: [index, steps in it, sum of their steps, {key: [sum, count]}]; index = (step - 1) // width.
        self.windows: list[list[Any]] = []

    def add(self, step: int, values: Mapping[str, float]) -> None:
        """Record step ``step``'s values (steps come in increasing order)."""
        index = (step - 1) // self.width
        if (not self.windows or self.windows[-1][0] != index) and len(self.windows) >= self.limit:
            self._widen()  # a new window would be one too many
            index = (step - 1) // self.width
        if not self.windows or self.windows[-1][0] != index:
            self.windows.append([index, 0, 0, {}])
        window = self.windows[-1]
        window[1] += 1
        window[2] += step
        sums = window[3]
        for key, value in values.items():
            if math.isfinite(value):
                total = sums.setdefault(key, [0.0, 0])
                total[0] += float(value)
                total[1] += 1

    def _widen(self) -> None:
        """Double the windows' width: each pair of neighbouring windows becomes one."""
        self.width *= 2
        merged: list[list[Any]] = []
        for index, n, steps, sums in self.windows:
            if merged and merged[-1][0] == index // 2:
                into = merged[-1]
                into[1] += n
                into[2] += steps
                for key, (total, count) in sums.items():
                    have = into[3].setdefault(key, [0.0, 0])
                    have[0] += total
                    have[1] += count
            else:
                merged.append([index // 2, n, steps, {k: list(v) for k, v in sums.items()}])
        self.windows = merged

    def points(self) -> list[dict[str, float]]:
        """The windows' means, first step first, each value to 6 significant digits (the manifest's field)."""
        return [
            {"step": _short(steps / n), **{k: _short(total / count) for k, (total, count) in sums.items() if count}}
            for _, n, steps, sums in self.windows
        ]

    def state(self) -> dict[str, Any]:
        """Plain data for a checkpoint (ints, floats, strings, lists and dicts)."""
        return {
            "limit": self.limit,
            "width": self.width,
            "windows": [[i, n, s, {k: list(v) for k, v in sums.items()}] for i, n, s, sums in self.windows],
        }

    @classmethod
    def restore(cls, state: object, where: str = "checkpoint", hint: str = "") -> StepHistory:
        """A history from :meth:`state`'s data, checked: anything else is a one-line ArtifactError."""

        def fail() -> ArtifactError:
            return ArtifactError(f"{where!r}: 'step_history' is not a step history{'; ' + hint if hint else ''}")

        def whole(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        def number(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not isinstance(state, dict) or not whole(state.get("limit")) or not whole(state.get("width")):
            raise fail()
        windows = state.get("windows")
        if state["limit"] < 2 or state["width"] < 1 or not isinstance(windows, list) or len(windows) > state["limit"]:
            raise fail()
        history = cls(state["limit"])
        history.width = state["width"]
        for w in windows:
            if not (
                isinstance(w, list)
                and len(w) == 4
                and whole(w[0])
                and whole(w[1])
                and w[1] > 0
                and number(w[2])
                and isinstance(w[3], dict)
            ):
                raise fail()
            for k, v in w[3].items():
                if not (isinstance(k, str) and isinstance(v, list) and len(v) == 2 and number(v[0]) and whole(v[1])):
                    raise fail()
            history.windows.append([w[0], w[1], w[2], {k: [float(v[0]), v[1]] for k, v in w[3].items()}])
        if any(a[0] >= b[0] for a, b in zip(history.windows, history.windows[1:])):
            raise fail()
        return history


def _short(x: float) -> float:
    return float(f"{x:.6g}")


__all__ = [
    "HISTORY_POINTS",
    "LOGS",
    "WANDB_ID",
    "Backend",
    "LogChoice",
    "NoTracker",
    "StepHistory",
    "TensorBoardTracker",
    "Tracker",
    "WandbTracker",
    "choose_backend",
    "image_grid",
    "installed",
    "log_folder",
    "open_tracker",
]
