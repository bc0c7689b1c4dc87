"""The Python API; each function mirrors a CLI command."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from torch import Tensor

from promptgen.artifacts.manifest import PromptManifest, check_prompt
from promptgen.artifacts.prompt import Prompt, build_generator, load_prompt, sample_images, sweep_images
from promptgen.composing import compose, prompt_ebm
from promptgen.core.device import resolve_device
from promptgen.core.errors import PromptgenError
from promptgen.core.images import check_images_fit
from promptgen.core.protocols import Generator
from promptgen.core.registry import PluginRecord, get_registry
from promptgen.sampling.baselines import SamplerCost

if TYPE_CHECKING:
    from promptgen.evaluation.evaluate import EvalReport


def _source(source: str | Path | Generator) -> Generator:
    """A prompt folder (a string that exists or contains a ``/``), a generator spec, or the object itself.

    ``prompt:PATH`` is a generator spec like any other (a chained prompt).
    """
    if isinstance(source, (str, Path)):
        text = str(source)
        looks_like_path = not text.startswith("prompt:") and (Path(text).exists() or "/" in text or "\\" in text)
        return load_prompt(text) if looks_like_path else build_generator(text)
    return source


def sample(
    source: str | Path | Generator,
    n: int = 64,
    seed: int = 0,
    device: str = "auto",
    method: str = "flow",
    condition: Mapping[str, float] | None = None,
    **options: Any,
) -> Tensor:
    """``n`` images from a prompt folder, a :class:`Prompt`, a generator, or a generator spec.

    A string is taken as a prompt folder if it exists or contains a ``/``,
    else as a generator spec (``"mnist"``). ``method`` other than ``"flow"``
    samples the prompt's energy-based model without its flow (see
    :func:`sample_with_cost`, which also takes ``options``). ``condition``: a
    conditional prompt's conditions (``{"yaw": 0.2}``, as ``sample --cond``).

    Returns:
        (n, C, H, W) float in [0, 1] on the CPU; the same ``seed`` gives the same images.
    """
    if condition:
        if method != "flow" or options:
            raise PromptgenError(f"a condition is sampled through the trained flow; drop method={method!r} and the options")
        return sample_images(_source(source), n, seed=seed, device=resolve_device(device), condition=condition)
    if method == "flow" and not options:
        return sample_images(_source(source), n, seed=seed, device=resolve_device(device))
    return sample_with_cost(source, n, method=method, seed=seed, device=device, **options)[0]


def sweep(
    source: str | Path | Prompt,
    sweep: str,
    n: int = 8,
    seed: int = 0,
    device: str = "auto",
    condition: Mapping[str, float] | None = None,
) -> Tensor:
    """A conditional prompt's sweep, as ``sample --sweep``: ``sweep`` is ``NAME=LOW:HIGH:STEPS``.

    Returns:
        (n, STEPS, C, H, W) float in [0, 1] on the CPU: one row per noise ε, one column per value.
    """
    from promptgen.core.conditions import parse_sweep

    prompt = _source(source)
    name, values = parse_sweep(sweep)
    if not isinstance(prompt, Prompt):
        raise PromptgenError(f"--sweep sweeps a conditional prompt's condition; {prompt.info.name!r} is a base generator")
    return sweep_images(prompt, n, name, values, seed=seed, condition=condition, device=resolve_device(device))


def sample_with_cost(
    source: str | Path | Generator,
    n: int = 64,
    *,
    method: str = "flow",
    seed: int = 0,
    device: str = "auto",
    accept: str = "auto",
    max_draws: int = 1_000_000,
    steps: int = 200,
    step_size: float = 0.05,
    batch_size: int = 256,
    progress: bool = False,
    console: Console | None = None,
) -> tuple[Tensor, SamplerCost]:
    """``n`` images and what they cost, by one of three methods.

    - ``"flow"``: the trained prompt, one pass per image (any generator works).
    - ``"rejection"``: :func:`promptgen.sampling.baselines.rejection_sample` (``accept``,
      ``max_draws``) from the prompt's generator, on its energy-based model.
    - ``"langevin"``: :func:`promptgen.sampling.baselines.langevin_sample` (``steps``,
      ``step_size``) on the prompt's energy-based model.

    The last two need a trained prompt (folder or :class:`Prompt`), whose
    energies are rebuilt with their fitted state (their plugins and models
    must be installed).

    Returns:
        (images (n, C, H, W) in [0, 1] on the CPU, :class:`~promptgen.sampling.baselines.SamplerCost`).
    """
    from promptgen.sampling.baselines import METHODS, flow_sample, sample_ebm

    if method not in METHODS:
        raise PromptgenError(f"unknown method {method!r}; use {', '.join(METHODS)}")
    if method != "flow" and isinstance(source, (str, Path)):
        text = str(source)
        if not (Path(text).exists() or "/" in text or "\\" in text):
            raise PromptgenError(
                f"--method {method} samples a trained prompt's energy-based model: give a prompt folder, not the generator {text!r}"
            )
    if not math.isfinite(step_size) or step_size <= 0:
        raise PromptgenError(f"--step-size {step_size!r} must be a finite number above 0, such as 0.05")
    gen = _source(source)
    dev = resolve_device(device)
    check_images_fit(n, gen.info.channels, *gen.info.resolution)
    if method == "flow":
        return flow_sample(gen, n, seed=seed, device=dev)
    if not isinstance(gen, Prompt):
        raise PromptgenError(f"--method {method} samples a trained prompt's energy-based model: give a prompt folder, not a generator")
    ebm = prompt_ebm(gen)
    return sample_ebm(
        ebm, n, method, seed=seed, device=dev, progress=progress, console=console, accept=accept,
        max_draws=max_draws, steps=steps, step_size=step_size, batch_size=batch_size,
    )


def info(path: str | Path) -> PromptManifest:
    """The validated manifest of a prompt folder (its weights checked too)."""
    return check_prompt(Path(path))


def list_plugins() -> list[PluginRecord]:
    """Installed plugins, what each registers, and any that failed to load."""
    return get_registry().plugins


def evaluate(
    prompt: str | Path | Prompt,
    n: int = 5000,
    seed: int = 0,
    attrs: list[str] | tuple[str, ...] = (),
    data: str | Path | None = None,
    batch_size: int = 500,
    device: str = "auto",
    progress: bool = False,
    console: Console | None = None,
) -> EvalReport:
    """Judge a prompt against its generator on ``n`` samples each (see :mod:`promptgen.evaluation`).

    ``attrs`` adds attributes to judge (``"digit"``, joint ``"digit*thickness"``);
    ``data`` is an MNIST idx folder or an ``.npz`` of real images for Fréchet distances.
    """
    from promptgen.evaluation.evaluate import evaluate_prompt

    return evaluate_prompt(
        prompt, n=n, seed=seed, attrs=attrs, data=data, batch_size=batch_size, device=device,
        progress=progress, console=console,
    ).report


def report(
    prompt: str | Path | Prompt,
    out: str | Path = "report.html",
    n: int = 2000,
    seed: int = 0,
    attrs: list[str] | tuple[str, ...] = (),
    data: str | Path | None = None,
    batch_size: int = 500,
    device: str = "auto",
    progress: bool = False,
    console: Console | None = None,
    on_report: Callable[[EvalReport], None] | None = None,
) -> Path:
    """Evaluate a prompt and write a self-contained HTML report to ``out`` (see :mod:`promptgen.evaluation.report`);
    ``on_report`` gets the :class:`~promptgen.evaluation.EvalReport` (its ``verdict`` and ``warnings``) first."""
    from promptgen.evaluation.report import write_report

    return write_report(
        prompt, out, n=n, seed=seed, attrs=attrs, data=data, batch_size=batch_size, device=device,
        progress=progress, console=console, on_report=on_report,
    )


__all__ = ["Prompt", "SamplerCost", "compose", "evaluate", "info", "list_plugins", "load_prompt", "report", "sample", "sample_with_cost", "sweep"]
