"""Judging a prompt against its own generator (what `promptgen eval` does).

The base (the prompt's generator: a built-in model, a plugin's, or the parent
prompt of a chain) and the prompt are sampled side by side from the same seed
and judged in the same ways (see ``../shared/METHOD.md``, "How results are
judged"):

- per attribute that an energy of the prompt (or of an ancestor prompt) asks
  something of, or that the user names with ``--attr``: the class histogram by
  the evaluator classifier (independent of the classifier that defined the
  energy when one is installed), its KL divergence and total variation to a
  target distribution, and the share of samples of the asked classes;
- the mean and spread of each of the prompt's (unweighted) energies;
- diversity, the mean pairwise distance between samples in the evaluator's
  feature space (pixels when no evaluator has features), and the Fréchet
  distance there to real reference images;
- realism: the *junk rate*, the share of samples an evaluator's realism check
  rejects, and the Fréchet distance to the reference of *exact* samples of the
  prompt's target (the base samples, importance-weighted by
  ``exp(−Σ w_i E_i)``). A prompt whose junk rate rises above its generator's,
  or whose samples lie much further from the reference than exact samples of
  the same target, has left the generator's usual output: its controls were
  probably fooled, and the report says so (:func:`realism_warnings`).

Everything lands in an :class:`EvalReport` (pydantic; its JSON keys are stable),
which ``promptgen eval --json`` prints and :mod:`promptgen.evaluation.report` renders.
The samples are judged batch by batch, so large ``n`` needs little memory.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table
from torch import Tensor

from promptgen.artifacts.manifest import EnergyRecord, current_versions
from promptgen.artifacts.prompt import Prompt, load_prompt
from promptgen.composing import rebuild_terms
from promptgen.core.atomic import writable_target, write_text_atomic
from promptgen.core.classifiers import adapt_images
from promptgen.core.device import resolve_device
from promptgen.core.errors import PromptgenError, UnknownNameError, printable
from promptgen.core.progress import progress_bar
from promptgen.core.protocols import AttributeClassifier, AttributeTarget
from promptgen.core.registry import ClassifierEntry, Registry, get_registry, one_line
from promptgen.core.spec import parse_spec
from promptgen.evaluation.metrics import (
    class_histogram,
    class_share,
    effective_sample_size,
    frechet_distance,
    joint_classes,
    joint_labels,
    kl_divergence,
    mean_pairwise_distance,
    total_variation,
)

EVAL_FORMAT = "promptgen-eval"
EVAL_FORMAT_VERSION = 2
#: A prompt warns when its junk rate exceeds the generator's by more than this (2 points).
JUNK_MARGIN = 0.02
#: ... or when its Fréchet distance to the reference exceeds that of exact samples of its target this many times,
FRECHET_RATIO = 1.5
#: ... judged only where the importance weights behind the exact samples have this effective sample size.
MIN_ESS = 50.0
PIXEL_SIZE = (32, 32)
SIDES = ("base", "prompt")

DATA_HINT = (
    "pass a folder with the MNIST idx files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
    "or an .npz file with an 'images' array (N, C, H, W) in [0, 1]"
)


class _Model(BaseModel):
    # Infinite numbers (a KL against a target with zero mass) are written as the string "Infinity".
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Moments(_Model):
    """Mean and standard deviation of one energy over the samples (the energy's own units)."""

    mean: float
    std: float


class AttributeSide(_Model):
    """How one side (base or prompt) fares on one attribute.

    Attributes:
        histogram: share of samples in each class (sums to 1), in ``labels`` order,
            by the evaluator's top class.
        kl: ``KL(histogram ‖ target)`` in nats, when the target is a distribution.
        tv: total variation ``½ Σ |histogram − target|``, when the target is a distribution.
        share: share of samples whose class is asked (and not avoided), when
            classes are asked or avoided.
    """

    histogram: list[float]
    kl: float | None = None
    tv: float | None = None
    share: float | None = None


class AttributeEval(_Model):
    """One judged attribute.

    Attributes:
        attribute: name; a joint one joins its parts with ``*``.
        labels: its classes, in histogram order.
        origin: ``prompt`` (an energy of the prompt asks it), ``ancestor`` (an
            energy of an ancestor prompt of a chain does) or ``asked`` (``--attr``).
        energy: the spec of the energy that asks it (None for ``--attr``).
        ancestor: the folder of the ancestor prompt, for origin ``ancestor``.
        target, asked, avoided: what is asked (see :class:`~promptgen.core.protocols.AttributeTarget`).
        evaluators: the classifier that judged each part.
        independent: True if every part was judged by an evaluator-role
            classifier, not by a model that can define energies.
        available: False when no installed classifier can judge it (see ``reason``).
    """

    attribute: str
    labels: list[str]
    origin: Literal["prompt", "ancestor", "asked"]
    energy: str | None = None
    ancestor: str | None = None
    target: list[float] | None = None
    asked: list[str] = Field(default_factory=list)
    avoided: list[str] = Field(default_factory=list)
    evaluators: list[str] = Field(default_factory=list)
    independent: bool = False
    available: bool = True
    reason: str | None = None
    base: AttributeSide | None = None
    prompt: AttributeSide | None = None


class EnergyEval(_Model):
    """Statistics of one of the prompt's energies (unweighted), or why it could not be rebuilt."""

    spec: str
    label: str
    weight: float
    available: bool = True
    reason: str | None = None
    base: Moments | None = None
    prompt: Moments | None = None


class SideEval(_Model):
    """Sample-level numbers of one side.

    Attributes:
        n: samples drawn.
        seconds: time spent drawing them (flow and generator; judging excluded).
        samples_per_second: ``n / seconds``.
        diversity: mean pairwise Euclidean distance in the feature space (of at
            most 1000 samples); a collapse shows as a small value.
        frechet: Fréchet distance to the reference images in the feature space
            (None without ``--data``).
        junk_rate: share of samples the realism check rejects (None without one).
    """

    n: int
    seconds: float
    samples_per_second: float
    diversity: float
    frechet: float | None = None
    junk_rate: float | None = None


class EvalReport(_Model):
    """Everything `promptgen eval` measures; ``--json`` prints it, ``promptgen report`` renders it."""

    format: Literal["promptgen-eval"] = EVAL_FORMAT
    format_version: int = EVAL_FORMAT_VERSION
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    prompt_path: str | None
    generator: str = Field(description="the base: the prompt's generator spec")
    n: int
    seed: int
    features: str = Field(description="the feature space of diversity and Fréchet distances")
    reference: str | None = Field(default=None, description="the --data the Fréchet distances compare with")
    reference_n: int | None = None
    frechet_base_prompt: float | None = Field(default=None, description="Fréchet distance between base and prompt samples")
    frechet_exact: float | None = Field(
        default=None,
        description="Fréchet distance to the reference of exact samples of the prompt's target: base samples weighted by exp(-sum w E) "
        "(for a mixture prompt, the tilt whose weights its components share: what the mixture stands for)",
    )
    exact_ess: float | None = Field(default=None, description="effective sample size of the weights behind frechet_exact")
    realism: str | None = Field(default=None, description="the realism check behind the junk rates")
    warnings: list[str] = Field(default_factory=list, description="signs that the prompt's samples left the generator's usual output")
    base: SideEval
    prompt: SideEval
    attributes: list[AttributeEval]
    energies: list[EnergyEval]
    versions: dict[str, str] = Field(default_factory=dict)

    def side(self, name: str) -> SideEval:
        return self.base if name == "base" else self.prompt


@dataclass
class Evaluation:
    """An :class:`EvalReport` with the first samples of each side (for pictures).

    Attributes:
        report: the numbers.
        images: ``"base"`` / ``"prompt"`` -> (k, C, H, W) in [0, 1] on the CPU,
            the first ``keep`` samples that were judged.
        realism: ``"base"`` / ``"prompt"`` -> (n,) realism scores (empty without a realism check).
    """

    report: EvalReport
    images: dict[str, Tensor] = field(default_factory=dict)
    realism: dict[str, Tensor] = field(default_factory=dict)


# --- reference images -------------------------------------------------------------------------


def load_reference(path: str | Path) -> Tensor:
    """Real images to compare with: an MNIST idx folder (its held-out split) or an ``.npz`` with ``images``.

    Returns:
        (N, C, H, W) float32 in [0, 1], N >= 2.
    """
    path = Path(path)
    if not path.exists():
        raise PromptgenError(f"--data {str(path)!r} does not exist; {DATA_HINT}")
    if path.is_dir():
        from promptgen.builtin.mnist.data import load_split

        try:
            images, _ = load_split(path, "heldout")
        except (ValueError, OSError, EOFError, zlib.error) as exc:  # a missing, truncated or corrupt idx file
            raise PromptgenError(f"--data {str(path)!r}: {one_line(str(exc))[:160] or type(exc).__name__}; {DATA_HINT}") from None
        return images
    if path.suffix.lower() != ".npz":
        raise PromptgenError(f"--data {str(path)!r} is neither a folder nor an .npz file; {DATA_HINT}")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise PromptgenError(f"--data {str(path)!r} is not a regular file; {DATA_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files:
                raise PromptgenError(f"--data {str(path)!r} has no 'images' array (it has {', '.join(npz.files) or 'none'}); {DATA_HINT}")
            array = npz["images"]
    except PromptgenError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, MemoryError) as exc:
        # A half-written or corrupt .npz fails in any of these ways (MemoryError: a header claiming a huge array).
        raise PromptgenError(
            f"--data {str(path)!r} is not a readable .npz ({type(exc).__name__}: {one_line(str(exc))[:160]}); {DATA_HINT}"
        ) from None
    if array.ndim != 4 or array.shape[1] not in (1, 3) or array.shape[0] < 2:
        raise PromptgenError(f"--data {str(path)!r}: 'images' has shape {array.shape}; need (N >= 2, C = 1 or 3, H, W)")
    if not np.issubdtype(array.dtype, np.floating):
        raise PromptgenError(f"--data {str(path)!r}: 'images' is {array.dtype}; need floats in [0, 1] (divide 8-bit pixels by 255)")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise PromptgenError(f"--data {str(path)!r}: 'images' has values outside [0, 1]; need floats in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


# --- what to judge ------------------------------------------------------------------------------


@dataclass
class _Row:
    """An attribute to judge, before judging: its target and, per part, the classifier entry."""

    target: AttributeTarget
    origin: Literal["prompt", "ancestor", "asked"]
    energy: str | None = None
    ancestor: str | None = None
    parts: list[tuple[ClassifierEntry, bool]] = field(default_factory=list)
    reason: str | None = None
    order: list[int] | None = None  # evaluator's joint class index of each of target.labels


def ancestors(prompt: Prompt) -> list[Prompt]:
    """The prompts a chained prompt was trained on, nearest parent first (empty for a plain prompt)."""
    out = []
    g = prompt.generator
    while isinstance(g, Prompt):
        out.append(g)
        g = g.generator
    return out


def _resolve(row: _Row, registry: Registry) -> _Row:
    """Find the evaluator of each part and how its classes map onto the row's labels."""
    parts = row.target.parts
    row.parts = [registry.evaluator_for(p) for p in parts]  # UnknownNameError for an unknown attribute
    eval_labels = joint_labels([[str(x) for x in entry.attributes[p]] for p, (entry, _) in zip(parts, row.parts)])
    labels = [str(x) for x in row.target.labels]
    if sorted(labels) != sorted(eval_labels):
        raise PromptgenError(
            f"the evaluator's classes of {row.target.attribute!r} ({', '.join(eval_labels[:12])}) "
            f"differ from the target's ({', '.join(labels[:12])})"
        )
    if row.target.target is not None and len(row.target.target) != len(labels):
        raise PromptgenError(f"the target of {row.target.attribute!r} has {len(row.target.target)} shares for {len(labels)} classes")
    row.order = [eval_labels.index(lab) for lab in labels]
    return row


def plan_attributes(prompt: Prompt, attrs: Sequence[str] = (), registry: Registry | None = None) -> list[_Row]:
    """The attributes to judge: the prompt's targets, its ancestors', then ``attrs`` not already among them.

    An attribute of a target that no installed classifier judges is kept, marked
    unavailable with the reason; an unknown ``attrs`` name is an error.
    """
    registry = registry or get_registry()
    rows: list[_Row] = []

    def add(records: Sequence[EnergyRecord], origin: Literal["prompt", "ancestor"], ancestor: str | None) -> None:
        for record in records:
            for t in record.targets:
                row = _Row(t.to_target(), origin, energy=record.spec, ancestor=ancestor)
                try:
                    _resolve(row, registry)
                except PromptgenError as exc:
                    row.reason = one_line(str(exc))
                rows.append(row)

    add(prompt.manifest.energies, "prompt", None)
    for parent in ancestors(prompt):
        add(parent.manifest.energies, "ancestor", str(parent.path) if parent.path is not None else parent.info.name)
    seen = {r.target.attribute for r in rows}
    for name in attrs:
        name = name.strip()
        parts = [p.strip() for p in name.split("*")]
        if not name or not all(parts):
            raise PromptgenError(f"--attr {name!r}: give an attribute name such as digit, or a joint one such as digit*thickness")
        name = "*".join(parts)
        if name in seen:
            continue
        seen.add(name)
        try:
            entries = [registry.evaluator_for(p)[0] for p in parts]
        except UnknownNameError as exc:
            raise UnknownNameError(f"--attr {name!r}: {exc}") from None
        labels = joint_labels([[str(x) for x in e.attributes[p]] for p, e in zip(parts, entries)])
        rows.append(_resolve(_Row(AttributeTarget(name, tuple(labels)), "asked"), registry))
    return rows


# --- judging ----------------------------------------------------------------------------------


def domain_evaluators(prompt: Prompt, registry: Registry) -> list[ClassifierEntry]:
    """Evaluator classifiers that know the domain of the root generator of ``prompt`` (a chain's first):
    the generator entry's ``judges``, else the evaluators of the plugin that provides it."""
    root = (ancestors(prompt) or [prompt])[-1]
    name = parse_spec(root.manifest.generator.spec).name
    entry = registry.generators.get(name)
    if entry is not None and entry.judges:
        return [registry.classifiers[c] for c in entry.judges if c in registry.classifiers]
    for plugin in registry.plugins:
        if name in plugin.generators:
            return [registry.classifiers[c] for c in plugin.classifiers if c in registry.classifiers and registry.classifiers[c].role == "evaluator"]
    return []


def _options_in(energy_spec: str | None, entry: ClassifierEntry) -> dict[str, str]:
    """The options of classifier ``entry`` that an energy spec (as recorded in a manifest) gave."""
    if not energy_spec or not entry.options.model_fields:
        return {}
    try:
        spec = parse_spec(energy_spec)
    except PromptgenError:
        return {}
    return {
        a.key: a.value
        for a in spec.args
        if a.key in entry.options.model_fields and a.key not in entry.attributes and a.op == "="
    }


def _pixel_features(images: Tensor, channels: int) -> Tensor:
    return adapt_images(images, PIXEL_SIZE, channels).flatten(1)


class _Judge:
    """Runs each needed classifier once per batch; collects classes, features and energies."""

    def __init__(
        self, rows: list[_Row], registry: Registry, device: torch.device, channels: int, domain: Sequence[ClassifierEntry] = ()
    ) -> None:
        self.device = device
        self.channels = channels
        self.registry = registry
        self.classifiers: dict[str, AttributeClassifier] = {}
        self.needed: dict[str, set[str]] = {}
        for row in rows:
            if row.reason is not None:
                continue
            try:
                for entry, independent in row.parts:
                    # The control classifier judging its own energy's attributes gets the
                    # options the energy gave it (e.g. path= to local weights).
                    self._build(entry, {} if independent else _options_in(row.energy, entry))
            except Exception as exc:  # noqa: BLE001 - a plugin's model that fails to load: say so in the row
                row.reason = f"its evaluator cannot be loaded: {one_line(str(exc)) or type(exc).__name__}"
                continue
            for part, (entry, _) in zip(row.target.parts, row.parts):
                self.needed.setdefault(entry.name, set()).add(part)
        # The feature space: the first classifier with features() among the evaluators
        # of the generator's own plugin (the same space for every prompt of a
        # generator), then those of the judged attributes, independent ones first.
        judged = [(entry, ind) for row in rows if row.reason is None for entry, ind in row.parts]
        candidates = list(domain) + [e for e, ind in judged if ind] + [e for e, ind in judged if not ind]
        self.feature_source: str | None = None
        self._features: Callable[[Tensor], Tensor] = lambda x: _pixel_features(x, channels)
        self.realism_source: str | None = None
        self._realism: Callable[[Tensor], Tensor] | None = None
        for entry in {e.name: e for e in candidates}.values():
            try:
                built = self._build(entry)
            except Exception:  # noqa: BLE001, S112 - try the next candidate
                continue
            fn = getattr(built, "features", None)
            if self.feature_source is None and callable(fn):
                self.feature_source, self._features = entry.name, fn
            # A realism check only from an evaluator: a control classifier's own idea of its domain can be fooled.
            check = getattr(built, "realism", None) if entry.role == "evaluator" else None
            if self.realism_source is None and callable(check):
                self.realism_source, self._realism = entry.name, check

    def _build(self, entry: ClassifierEntry, options: dict[str, str] | None = None) -> AttributeClassifier:
        if entry.name not in self.classifiers:
            self.classifiers[entry.name] = self.registry.build_classifier(entry.name, options or {}).to(self.device)
        return self.classifiers[entry.name]

    @property
    def description(self) -> str:
        if self.feature_source is None:
            return f"pixels resized to {PIXEL_SIZE[0]}×{PIXEL_SIZE[1]}"
        return f"features of classifier {self.feature_source}"

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        return self._features(images.to(self.device)).double().flatten(1).cpu()

    @torch.no_grad()
    def realism(self, images: Tensor) -> Tensor | None:
        """(B,) realism scores (>= 0: a real image of the domain), or None without a realism check."""
        if self._realism is None:
            return None
        return self._realism(images.to(self.device)).double().flatten().cpu()

    @torch.no_grad()
    def classes(self, images: Tensor) -> dict[tuple[str, str], Tensor]:
        """(classifier name, attribute) -> (B,) top class by that classifier."""
        out = {}
        for name, attributes in self.needed.items():
            logp = self.classifiers[name].log_probs(images)
            for attribute in attributes:
                out[(name, attribute)] = logp[attribute].argmax(1).cpu()
        return out


@dataclass
class _SideResult:
    seconds: float = 0.0
    classes: dict[tuple[str, str], list[Tensor]] = field(default_factory=dict)
    features: list[Tensor] = field(default_factory=list)
    realism: list[Tensor] = field(default_factory=list)
    energies: dict[str, list[Tensor]] = field(default_factory=dict)
    kept: list[Tensor] = field(default_factory=list)


def _moments(values: list[Tensor]) -> Moments:
    v = torch.cat(values).double()
    return Moments(mean=float(v.mean()), std=float(v.std()) if v.numel() > 1 else 0.0)


def _rebuild_energies(prompt: Prompt, registry: Registry) -> tuple[list, dict[str, str]]:
    """The prompt's energy terms that can be rebuilt here, and label -> reason for those that cannot."""
    # A plugin's model may fail in its own way (unknown name, missing file, import
    # error...): whatever it raises, report that energy as unavailable and keep the others.
    terms, missing = [], {}
    for record in prompt.manifest.energies:
        try:
            terms += rebuild_terms([record], registry)
        except Exception as exc:  # noqa: BLE001 - reported in the energy's row
            missing[record.label] = one_line(str(exc)) or type(exc).__name__
    return terms, missing


def evaluate_prompt(
    prompt: Prompt | str | Path,
    *,
    n: int = 5000,
    seed: int = 0,
    attrs: Sequence[str] = (),
    data: str | Path | None = None,
    batch_size: int = 500,
    device: str | torch.device = "auto",
    keep: int = 0,
    progress: bool = False,
    console: Console | None = None,
    registry: Registry | None = None,
) -> Evaluation:
    """Sample base and prompt ``n`` times each from ``seed`` and judge both.

    Args:
        prompt: a prompt folder or a loaded :class:`~promptgen.artifacts.prompt.Prompt`.
        n: samples per side (at least 2).
        seed: noise seed; base and prompt draw the same noise, in the same
            batches as :func:`~promptgen.artifacts.prompt.sample_images` with ``batch_size``.
        attrs: more attributes to judge (``"digit"``, joint ``"digit*thickness"``).
        data: real reference images for Fréchet distances (see :func:`load_reference`).
        batch_size: samples generated and judged at once.
        device: ``auto``, ``cpu``, ``cuda``...
        keep: how many of the first samples of each side to return as images.
        progress: show rich progress bars on ``console``.

    Returns:
        The :class:`Evaluation`: report and kept images.
    """
    registry = registry or get_registry()
    if n < 2:
        raise PromptgenError(f"-n {n}: need at least 2 samples to measure diversity")
    if batch_size < 1:
        raise PromptgenError(f"--batch-size {batch_size}: need at least 1")
    dev = resolve_device(device)
    if not isinstance(prompt, Prompt):
        prompt = load_prompt(prompt, registry)
    # Everything a user can get wrong is checked before any sampling.
    rows = plan_attributes(prompt, attrs, registry)
    reference = load_reference(data) if data is not None else None
    base = prompt.generator
    terms, missing = _rebuild_energies(prompt, registry)
    for t in terms:
        t.energy.to(dev)
    judge = _Judge(rows, registry, dev, channels=prompt.info.channels, domain=domain_evaluators(prompt, registry))
    prompt.to(dev)

    results = {side: _SideResult() for side in SIDES}
    bar = progress_bar(console, progress)
    with bar, torch.no_grad():
        warm = torch.zeros((2, *prompt.latent_shape), device=dev)  # first calls are slow; keep them out of the timings
        base.decode(prompt.noise(warm))
        prompt.decode(warm)
        for side in SIDES:
            task = bar.add_task(f"{side:>9} samples", total=n)
            r = results[side]
            g = torch.Generator().manual_seed(seed)
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                # The same noise on both sides (a mixture prompt's extra component coordinate aside).
                noise = torch.randn((m, *prompt.latent_shape), generator=g).to(dev)
                t0 = time.perf_counter()
                z = prompt.noise(noise) if side == "base" else prompt.latents(noise)
                images = base.decode(z).clamp(0, 1)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                r.seconds += time.perf_counter() - t0
                for key, c in judge.classes(images).items():
                    r.classes.setdefault(key, []).append(c)
                r.features.append(judge.features(images))
                scores = judge.realism(images)
                if scores is not None:
                    r.realism.append(scores)
                for t in terms:
                    r.energies.setdefault(t.label, []).append(t.energy(images, z).detach().double().cpu())
                if sum(k.shape[0] for k in r.kept) < keep:
                    r.kept.append(images[: keep - sum(k.shape[0] for k in r.kept)].cpu())
                bar.update(task, advance=m)
        ref_features = None
        if reference is not None:
            task = bar.add_task("reference", total=reference.shape[0])
            chunks = []
            for chunk in reference.split(batch_size):
                chunks.append(judge.features(chunk.to(dev)))
                bar.update(task, advance=chunk.shape[0])
            ref_features = torch.cat(chunks)

    features = {side: torch.cat(results[side].features) for side in SIDES}
    sides = {}
    for side in SIDES:
        r = results[side]
        sides[side] = SideEval(
            n=n,
            seconds=r.seconds,
            samples_per_second=n / r.seconds if r.seconds > 0 else float("inf"),
            diversity=mean_pairwise_distance(features[side]),
            frechet=frechet_distance(features[side], ref_features) if ref_features is not None else None,
            junk_rate=float((torch.cat(r.realism) < 0).double().mean()) if r.realism else None,
        )
    # Exact samples of the target: the base samples, weighted by exp(-Σ w E) (every energy must have been rebuilt).
    # A mixture's energies are its tilt here (its components only sharpen the classes the tilt weights), so a
    # mixture prompt is compared with the distribution it stands for.
    frechet_exact = exact_ess = None
    if not missing and terms:
        log_w = -sum(t.weight * torch.cat(results["base"].energies[t.label]) for t in terms)
        if bool(torch.isfinite(log_w).all()):
            exact_ess = effective_sample_size(log_w)
            if ref_features is not None:
                frechet_exact = frechet_distance(features["base"], ref_features, weights=torch.softmax(log_w, 0))
    report = EvalReport(
        prompt_path=str(prompt.path) if prompt.path is not None else None,
        generator=prompt.manifest.generator.spec,
        n=n,
        seed=seed,
        features=judge.description,
        reference=str(data) if data is not None else None,
        reference_n=int(reference.shape[0]) if reference is not None else None,
        frechet_base_prompt=frechet_distance(features["base"], features["prompt"]),
        frechet_exact=frechet_exact,
        exact_ess=exact_ess,
        realism=judge.realism_source and f"realism check of classifier {judge.realism_source}",
        base=sides["base"],
        prompt=sides["prompt"],
        attributes=[_attribute_eval(row, results) for row in rows],
        energies=[_energy_eval(record, results, missing) for record in prompt.manifest.energies],
        versions=current_versions(),
    )
    report.warnings = realism_warnings(report)
    images = {side: torch.cat(results[side].kept) if results[side].kept else torch.empty(0) for side in SIDES}
    realism = {side: torch.cat(results[side].realism) for side in SIDES if results[side].realism}
    return Evaluation(report=report, images=images, realism=realism)


def junk_margin(base: float, prompt: float, n: int) -> float:
    """How far the prompt's junk rate may exceed the base's before :func:`realism_warnings` warns:
    :data:`JUNK_MARGIN`, or twice the standard error of the difference of two rates on ``n`` samples each.

    >>> junk_margin(0.01, 0.02, 5000), round(junk_margin(0.1, 0.12, 200), 3)
    (0.02, 0.063)
    """
    se = math.sqrt((base * (1 - base) + prompt * (1 - prompt)) / max(n, 1))
    return max(JUNK_MARGIN, 2 * se)


def realism_warnings(report: EvalReport) -> list[str]:
    """One line per sign that the prompt's samples left the generator's usual output.

    - the junk rate rose more than :data:`JUNK_MARGIN` above the generator's, and
      more than twice the standard error of that difference on ``n`` samples
      (so a small ``-n`` does not warn of noise);
    - the Fréchet distance to the reference is more than :data:`FRECHET_RATIO`
      times that of exact samples of the same target (judged where their
      weights' effective sample size is at least :data:`MIN_ESS`).
    """
    out = []
    base, prompt = report.base.junk_rate, report.prompt.junk_rate
    if base is not None and prompt is not None and prompt - base > junk_margin(base, prompt, report.n):
        out.append(
            f"{prompt:.1%} of the prompt's samples fail the {report.realism} against {base:.1%} of the generator's: "
            "the prompt makes images its generator rarely makes, which its control classifiers may take for what was asked; "
            "look at the samples, and try a control that knows what is not a digit/face (realism= in the spec) or a lower weight"
        )
    fd, exact = report.prompt.frechet, report.frechet_exact
    if fd is not None and exact is not None and (report.exact_ess or 0) >= MIN_ESS and fd > FRECHET_RATIO * exact:
        out.append(
            f"the prompt's samples are {fd:.3g} from the reference images (Fréchet distance), {fd / exact:.1f} times the "
            f"{exact:.3g} of exact samples of the same target: the flow found images the energies like but the generator "
            "rarely makes; look at the samples"
        )
    return out


def _attribute_eval(row: _Row, results: dict[str, _SideResult]) -> AttributeEval:
    t = row.target
    out = AttributeEval(
        attribute=t.attribute,
        labels=list(t.labels),
        origin=row.origin,
        energy=row.energy,
        ancestor=row.ancestor,
        target=None if t.target is None else list(t.target),
        asked=list(t.asked),
        avoided=list(t.avoided),
        evaluators=[entry.name for entry, _ in row.parts],
        independent=bool(row.parts) and all(ind for _, ind in row.parts),
        available=row.reason is None,
        reason=row.reason,
    )
    if row.reason is not None:
        return out
    assert row.order is not None
    sizes = [len(entry.attributes[p]) for p, (entry, _) in zip(t.parts, row.parts)]
    for side in SIDES:
        r = results[side]
        parts = [torch.cat(r.classes[(entry.name, p)]) for p, (entry, _) in zip(t.parts, row.parts)]
        hist_eval = class_histogram(joint_classes(parts, sizes), len(row.order))
        hist = [hist_eval[i] for i in row.order]
        s = AttributeSide(histogram=hist)
        if t.target is not None:
            s.kl, s.tv = kl_divergence(hist, t.target), total_variation(hist, t.target)
        if t.asked or t.avoided:
            s.share = class_share(hist, t.labels, t.asked, t.avoided)
        setattr(out, side, s)
    return out


def _energy_eval(record: EnergyRecord, results: dict[str, _SideResult], missing: dict[str, str]) -> EnergyEval:
    out = EnergyEval(spec=record.spec, label=record.label, weight=record.weight)
    if record.label in missing or record.label not in results["base"].energies:
        out.available = False
        out.reason = missing.get(record.label, "the energy could not be rebuilt")
        return out
    out.base = _moments(results["base"].energies[record.label])
    out.prompt = _moments(results["prompt"].energies[record.label])
    return out


# --- presenting -------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if math.isnan(x):
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}f}"


def histogram_text(labels: Sequence[str], histogram: Sequence[float], top: int = 10) -> str:
    """``"3 0.91 · 8 0.05 · …"``: the largest non-zero shares first, at most ``top`` of them.

    >>> histogram_text(["0", "1", "2"], [0.2, 0.5, 0.3], top=2)
    '1 0.50 · 2 0.30 · …'
    >>> histogram_text(["0", "1", "2"], [0.0, 1.0, 0.0])
    '1 1.00'
    """
    order = [i for i in sorted(range(len(labels)), key=lambda i: -histogram[i]) if histogram[i] > 0]
    shown = [f"{labels[i]} {histogram[i]:.2f}" for i in order[:top]]
    return " · ".join(shown + (["…"] if len(order) > top else []))


def attribute_title(a: AttributeEval) -> str:
    """One line naming an attribute, what is asked of it and who judges it."""
    wish = []
    if a.asked:
        wish.append("asked " + ", ".join(a.asked))
    if a.avoided:
        wish.append("avoided " + ", ".join(a.avoided))
    if a.target is not None:
        wish.append("target distribution")
    if a.origin == "ancestor":
        wish.append(f"by ancestor {a.ancestor}")
    elif a.origin == "asked":
        wish.append("--attr")
    head = f"{a.attribute} ({'; '.join(wish)})" if wish else a.attribute
    if not a.available:
        return head
    judge = " × ".join(dict.fromkeys(a.evaluators))
    return f"{head}, judged by {judge}" + ("" if a.independent else " (not independent: it also defines energies)")


def summary_rows(report: EvalReport) -> list[tuple[str, str, str]]:
    """(what, base, prompt) rows of text, shared by the terminal table and the HTML report."""
    rows = [
        ("samples", str(report.base.n), str(report.prompt.n)),
        ("samples / second", _num(report.base.samples_per_second, 1), _num(report.prompt.samples_per_second, 1)),
        ("diversity (mean pairwise distance)", _num(report.base.diversity), _num(report.prompt.diversity)),
    ]
    if report.base.junk_rate is not None and report.prompt.junk_rate is not None:
        rows.append(("junk rate (fail the realism check)", f"{report.base.junk_rate:.1%}", f"{report.prompt.junk_rate:.1%}"))
    if report.reference is not None:
        rows.append(("Fréchet distance to reference", _num(report.base.frechet), _num(report.prompt.frechet)))
        if report.frechet_exact is not None:
            rows.append((
                f"  … of exact samples of the target (weighted base, ESS {report.exact_ess:.0f})", "", _num(report.frechet_exact)
            ))
    rows.append(("Fréchet distance base ↔ prompt", "", _num(report.frechet_base_prompt)))
    for e in report.energies:
        if e.available and e.base is not None and e.prompt is not None:
            rows.append((f"energy {e.label} (mean ± std)", f"{_num(e.base.mean)} ± {_num(e.base.std)}", f"{_num(e.prompt.mean)} ± {_num(e.prompt.std)}"))
        else:
            rows.append((f"energy {e.label}", f"unavailable: {e.reason}", ""))
    for a in report.attributes:
        title = attribute_title(a)
        if not a.available or a.base is None or a.prompt is None:
            rows.append((title, f"unavailable: {a.reason}", ""))
            continue
        rows.append((title, histogram_text(a.labels, a.base.histogram), histogram_text(a.labels, a.prompt.histogram)))
        if a.base.share is not None:
            if not a.avoided:
                what = "share of asked classes"
            elif not a.asked:
                what = "share outside the avoided classes"
            else:
                what = "share of asked, not avoided classes"
            rows.append((f"  {what}", _num(a.base.share), _num(a.prompt.share)))
        if a.base.kl is not None:
            rows.append(("  KL(histogram ‖ target), nats", _num(a.base.kl, 4), _num(a.prompt.kl, 4)))
            rows.append(("  total variation", _num(a.base.tv), _num(a.prompt.tv)))
    return rows


def measured_in(report: EvalReport) -> str:
    """Where the distances were measured, in one sentence."""
    text = f"Distances in the {report.features}"
    if report.reference is not None:
        text += f"; reference: {report.reference} ({report.reference_n} images)"
    if report.realism is not None:
        text += f"; junk by the {report.realism}"
    return text + "."


def report_table(report: EvalReport) -> Table:
    """The report as a rich table with base and prompt columns."""
    # Labels and specs come from the prompt's manifest (maybe a stranger's): printable() keeps markup and terminal codes out.
    title = f"eval of {report.prompt_path or 'prompt'} ({report.n} samples each, seed {report.seed})"
    table = Table(title=printable(title), caption=printable(measured_in(report)))
    table.add_column("")
    table.add_column(printable(f"base ({report.generator})"), overflow="fold")
    table.add_column("prompt", overflow="fold")
    for what, b, p in summary_rows(report):
        table.add_row(printable(what), printable(b), printable(p))
    return table


def check_json_output(out: str | Path) -> Path:
    """Refuse an ``--out`` that cannot be written, before any work is done."""
    out = Path(out)
    if out.is_dir():
        raise PromptgenError(f"--out {str(out)!r} is a folder; give a file name such as eval.json")
    writable_target(out, "--out")
    return out


def write_report_json(report: EvalReport, out: str | Path) -> Path:
    """Write the report's JSON atomically."""
    out = check_json_output(out)
    write_text_atomic(out, report.model_dump_json(indent=2) + "\n")
    return out


__all__ = [
    "AttributeEval",
    "AttributeSide",
    "EnergyEval",
    "EvalReport",
    "Evaluation",
    "Moments",
    "SideEval",
    "ancestors",
    "evaluate_prompt",
    "load_reference",
    "measured_in",
    "plan_attributes",
    "realism_warnings",
    "report_table",
    "summary_rows",
    "write_report_json",
]
