"""The Python API; each function mirrors a CLI command."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field
from rich.console import Console
from torch import Tensor

from promptgen.artifacts.manifest import PromptManifest, check_prompt
from promptgen.artifacts.prompt import Prompt, build_generator, is_generator_spec, sample_images, sweep_images
from promptgen.artifacts.prompt import load_prompt as _load_prompt
from promptgen.composing import prompt_ebm
from promptgen.composing.runs import DEVICE_PATTERN
from promptgen.composing.workflow import compose as _compose
from promptgen.core.conditions import MAX_VALUE
from promptgen.core.device import resolve_device
from promptgen.core.entry import public
from promptgen.core.errors import PromptgenError
from promptgen.core.images import check_images_fit
from promptgen.core.limits import MAX_IMAGES
from promptgen.core.protocols import Generator
from promptgen.core.registry import PluginRecord, get_registry
from promptgen.sampling.baselines import SamplerCost
from promptgen.training.config import MAX_SEED, MIN_SEED

if TYPE_CHECKING:
    from promptgen.evaluation.evaluate import EvalReport

# The arguments every entry point checks (promptgen.core.entry.public): a mistake is one SpecError line.
Count = Annotated[int, Field(ge=1, le=MAX_IMAGES, description="e.g. n=64")]
Judged = Annotated[int, Field(ge=2, le=MAX_IMAGES, description="e.g. n=2000")]
Seed = Annotated[int, Field(ge=MIN_SEED, le=MAX_SEED, description="e.g. seed=0")]
Device = Annotated[str, Field(pattern=DEVICE_PATTERN, description="e.g. device='auto', 'cpu' or 'cuda:0'")]
Batch = Annotated[int, Field(ge=1, le=65_536, description="e.g. batch_size=256")]
Value = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_VALUE, le=MAX_VALUE)]
Condition = Annotated[Mapping[str, Value] | None, Field(description="e.g. condition={'slant': 0.2}")]
Folder = Annotated[str | Path, Field(description="e.g. 'runs/three', a folder made by promptgen.compose")]
Source = Annotated[str | Path | Generator, Field(description="e.g. 'runs/three' (a prompt folder), 'mnist' (a generator spec) or a Prompt")]
PromptArg = Annotated[str | Path | Prompt, Field(description="e.g. 'runs/three' or a Prompt")]
OutFile = Annotated[str | Path, Field(description="e.g. 'report.html'")]
Attrs = Annotated[list[str] | tuple[str, ...], Field(description="e.g. attrs=['digit']")]
DataArg = Annotated[str | Path | None, Field(description="e.g. data='data/mnist'")]


def _source(source: str | Path | Generator) -> Generator:
    """A prompt folder, a generator spec (told apart by :func:`~promptgen.artifacts.prompt.is_generator_spec`,
    as at the command line; a :class:`~pathlib.Path` is always a folder), or the object itself."""
    if isinstance(source, Path):
        return _load_prompt(source)
    if isinstance(source, str):
        return build_generator(source) if is_generator_spec(source) else _load_prompt(source)
    return source


@public
def sample(
    source: Source,
    n: Count = 64,
    seed: Seed = 0,
    device: Device = "auto",
    method: str = "flow",
    condition: Condition = None,
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

    Raises:
        SpecError: an argument of the wrong type or out of range (one line naming it and an example), a bad spec.
        ArtifactError: a prompt folder that is missing, damaged or edited.
        UnknownNameError: a generator or energy that no installed plugin provides.
        PromptgenError: any other mistake (a condition on an unconditional prompt, too many images for memory).
    """
    if condition:
        if method != "flow" or options:
            raise PromptgenError(f"a condition is sampled through the trained flow; drop method={method!r} and the options")
        return sample_images(_source(source), n, seed=seed, device=resolve_device(device), condition=condition)
    if method == "flow" and not options:
        return sample_images(_source(source), n, seed=seed, device=resolve_device(device))
    return sample_with_cost(source, n, method=method, seed=seed, device=device, **options)[0]


@public
def sweep(
    source: Source,
    sweep: Annotated[str, Field(description="e.g. 'slant=-0.3:0.3:7' (NAME=LOW:HIGH:STEPS)")],
    n: Count = 8,
    seed: Seed = 0,
    device: Device = "auto",
    condition: Condition = None,
) -> Tensor:
    """A conditional prompt's sweep, as ``sample --sweep``: ``sweep`` is ``NAME=LOW:HIGH:STEPS``.

    Returns:
        (n, STEPS, C, H, W) float in [0, 1] on the CPU: one row per noise ε, one column per value.

    Raises:
        SpecError: an argument of the wrong type or out of range (one line naming it and an example), a bad spec.
        ArtifactError: a prompt folder that is missing, damaged or edited.
        PromptgenError: a prompt without conditions, a condition it was not trained with.
    """
    from promptgen.core.conditions import parse_sweep

    prompt = _source(source)
    name, values = parse_sweep(sweep)
    if not isinstance(prompt, Prompt):
        raise PromptgenError(f"--sweep sweeps a conditional prompt's condition; {prompt.info.name!r} is a base generator")
    return sweep_images(prompt, n, name, values, seed=seed, condition=condition, device=resolve_device(device))


@public
def sample_with_cost(
    source: Source,
    n: Count = 64,
    *,
    method: str = "flow",
    seed: Seed = 0,
    device: Device = "auto",
    accept: str = "auto",
    max_draws: Annotated[int, Field(ge=1, le=10**12, description="e.g. max_draws=1000000")] = 1_000_000,
    steps: Annotated[int, Field(ge=1, le=100_000, description="e.g. steps=200")] = 200,
    step_size: Annotated[float, Field(gt=0, allow_inf_nan=False, description="e.g. step_size=0.05")] = 0.05,
    batch_size: Batch = 256,
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

    Raises:
        SpecError: an argument of the wrong type or out of range (one line naming it and an example), a bad spec.
        ArtifactError: a prompt folder that is missing, damaged or edited (for the last two methods: its energies too).
        PromptgenError: a method that needs a prompt given a generator; rejection sampling that runs out of draws.
    """
    from promptgen.sampling.baselines import METHODS, flow_sample, sample_ebm

    if method not in METHODS:
        raise PromptgenError(f"unknown method {method!r}; use {', '.join(METHODS)}")
    if method != "flow" and isinstance(source, str) and is_generator_spec(source):
        raise PromptgenError(
            f"--method {method} samples a trained prompt's energy-based model: give a prompt folder, not the generator {source!r}"
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


@public
def info(path: Folder) -> PromptManifest:
    """The validated manifest of a prompt folder (its weights checked too).

    Raises:
        SpecError: ``path`` is not a str or a Path.
        ArtifactError: the folder is missing, damaged, or not a prompt.
    """
    return check_prompt(Path(path))


def list_plugins() -> list[PluginRecord]:
    """Installed plugins, what each registers, and any that failed to load."""
    return get_registry().plugins


@public
def evaluate(
    prompt: PromptArg,
    n: Judged = 5000,
    seed: Seed = 0,
    attrs: Attrs = (),
    data: DataArg = None,
    batch_size: Batch = 500,
    device: Device = "auto",
    progress: bool = False,
    console: Console | None = None,
) -> EvalReport:
    """Judge a prompt against its generator on ``n`` samples each (see :mod:`promptgen.evaluation`).

    ``attrs`` adds attributes to judge (``"digit"``, joint ``"digit*thickness"``);
    ``data`` is an MNIST idx folder or an ``.npz`` of real images for Fréchet distances.

    Raises:
        SpecError: an argument of the wrong type or out of range (one line naming it and an example), a bad spec.
        ArtifactError: a prompt folder that is missing, damaged or edited; unreadable ``data``.
        UnknownNameError: an attribute no evaluator judges.
    """
    from promptgen.evaluation.evaluate import evaluate_prompt

    return evaluate_prompt(
        prompt, n=n, seed=seed, attrs=attrs, data=data, batch_size=batch_size, device=device,
        progress=progress, console=console,
    ).report


@public
def report(
    prompt: PromptArg,
    out: OutFile = "report.html",
    n: Judged = 2000,
    seed: Seed = 0,
    attrs: Attrs = (),
    data: DataArg = None,
    batch_size: Batch = 500,
    device: Device = "auto",
    progress: bool = False,
    console: Console | None = None,
    on_report: Callable[..., None] | None = None,
) -> Path:
    """Evaluate a prompt and write a self-contained HTML report to ``out`` (see :mod:`promptgen.evaluation.report`);
    ``on_report`` gets the :class:`~promptgen.evaluation.EvalReport` (its ``verdict`` and ``warnings``) first.

    Raises:
        SpecError: an argument of the wrong type or out of range (one line naming it and an example), a bad spec.
        ArtifactError: a prompt folder that is missing, damaged or edited; unreadable ``data``.
        PromptgenError: ``out`` cannot be written (a link, a folder, a full disk: the message names the file).
    """
    from promptgen.evaluation.report import write_report

    return write_report(
        prompt, out, n=n, seed=seed, attrs=attrs, data=data, batch_size=batch_size, device=device,
        progress=progress, console=console, on_report=on_report,
    )


@public
def load_prompt(path: Folder) -> Prompt:
    """Load a prompt folder (see :func:`promptgen.artifacts.prompt.load_prompt`).

    Raises:
        SpecError: ``path`` is not a str or a Path.
        ArtifactError: the folder is missing, damaged, or not a prompt.
        UnknownNameError: its generator's plugin is not installed.
    """
    return _load_prompt(path)


#: :func:`promptgen.composing.compose` with its arguments checked first (a dict for ``train`` is made a TrainConfig).
#: Raises SpecError (an argument or spec), UnknownNameError (a name no plugin provides), ArtifactError (``out``
#: is not a folder it may write, another run holds it, a damaged run to resume) and TrainingDiverged; a failed
#: run leaves ``out`` as it found it.
compose = public(_compose)


__all__ = ["Prompt", "SamplerCost", "compose", "evaluate", "info", "list_plugins", "load_prompt", "report", "sample", "sample_with_cost", "sweep"]
