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
  probably fooled, and the report says so (:func:`realism_warnings`);
- a 95 % bootstrap interval beside every share, KL and Fréchet distance
  (:mod:`~promptgen.evaluation.intervals`), and the diversity of the samples of
  the asked classes;
- flags (:mod:`~promptgen.evaluation.flags`): every failure those figures show
  (a missed target, a collapse, a lost class, junk), each with the generator's
  figure and a next step.

Everything lands in an :class:`EvalReport` (pydantic; its JSON keys are stable),
which ``promptgen eval --json`` prints and :mod:`promptgen.evaluation.report` renders.
The samples are judged batch by batch, so large ``n`` needs little memory.

This module runs an evaluation; the pieces live beside it (their names can be imported from here too):
:mod:`~promptgen.evaluation.results` (the report's models), :mod:`~promptgen.evaluation.attributes`
(what to judge), :mod:`~promptgen.evaluation.judge` (running the evaluator classifiers),
:mod:`~promptgen.evaluation.reference` (``--data``), :mod:`~promptgen.evaluation.realism` (the warnings)
and :mod:`~promptgen.evaluation.render` (the table and the JSON file).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from torch import Tensor

from promptgen.artifacts.manifest import EnergyRecord, current_versions
from promptgen.artifacts.prompt import Prompt, load_prompt
from promptgen.composing import rebuild_terms
from promptgen.composing.watch import verdict
from promptgen.core.capabilities import EnergyContext
from promptgen.core.conditions import draw_conditions
from promptgen.core.device import resolve_device
from promptgen.core.errors import PromptgenError
from promptgen.core.judging import GOAL_KL, GOAL_SHARE, ResolvedTarget, asked_diversity, judged_figure
from promptgen.core.metrics import (
    INTERVAL_LEVEL,
    effective_sample_size,
    frechet_distance,
    mean_pairwise_distance,
    total_variation,
)
from promptgen.core.progress import progress_bar
from promptgen.core.registry import Registry, get_registry, one_line
from promptgen.evaluation.attributes import PlannedAttribute, ancestors, plan_attributes
from promptgen.evaluation.intervals import (
    METHOD,
    RESAMPLES,
    attribute_intervals,
    frechet_interval,
    frechet_resamples,
    junk_interval,
)
from promptgen.evaluation.judge import PIXEL_SIZE, Judge, domain_evaluators
from promptgen.evaluation.realism import (
    FRECHET_RATIO,
    JUNK_MARGIN,
    MIN_ESS,
    REALISM_KINDS,
    junk_margin,
    realism_warnings,
    report_flags,
)
from promptgen.evaluation.reference import DATA_HINT, load_reference
from promptgen.evaluation.render import (
    attribute_title,
    check_json_output,
    histogram_text,
    measured_in,
    report_table,
    summary_rows,
    write_report_json,
)
from promptgen.evaluation.results import (
    EVAL_FORMAT,
    EVAL_FORMAT_VERSION,
    AttributeEval,
    AttributeSide,
    EnergyEval,
    EvalReport,
    Evaluation,
    Intervals,
    Moments,
    SideEval,
)
from promptgen.training.watch import NO_FIGURE, Reading, TargetReading

SIDES = ("base", "prompt")


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
    judge = Judge(rows, registry, dev, channels=prompt.info.channels, domain=domain_evaluators(prompt, registry))
    prompt.to(dev)

    results = {side: _SideResult() for side in SIDES}
    bar = progress_bar(console, progress)
    with bar, torch.no_grad():
        warm = torch.zeros((2, *prompt.latent_shape), device=dev)  # first calls are slow; keep them out of the timings
        base.decode(prompt.noise(warm))
        prompt.decode(warm)
        for side in SIDES:
            _sample_side(side, results[side], prompt, judge, terms, n=n, seed=seed, batch_size=batch_size, keep=keep, bar=bar)
        ref_features = _reference_features(judge, reference, batch_size, dev, bar) if reference is not None else None

    features = {side: torch.cat(results[side].features) for side in SIDES}
    sides = {side: _side_eval(results[side], n, features[side], ref_features, seed) for side in SIDES}
    # A target is met only if the junk stayed within 2 points of the generator's: strictly, so that a missed target
    # is never reported as met (the warnings below allow for noise on small -n instead).
    margin = None if sides["base"].junk_rate is None or sides["prompt"].junk_rate is None else JUNK_MARGIN
    # A conditional prompt's target is one distribution per condition: no single importance-weighted base sample stands for it.
    frechet_exact, exact_ess, frechet_exact_ci = (
        (None, None, None) if prompt.conditions else _exact_target(terms, missing, results["base"], features["base"], ref_features, seed)
    )
    frechet_base_prompt = frechet_distance(features["base"], features["prompt"])
    report = EvalReport(
        prompt_path=str(prompt.path) if prompt.path is not None else None,
        generator=prompt.manifest.generator.spec,
        n=n,
        seed=seed,
        features=judge.description,
        reference=str(data) if data is not None else None,
        reference_n=int(reference.shape[0]) if reference is not None else None,
        frechet_base_prompt=frechet_base_prompt,
        frechet_exact=frechet_exact,
        exact_ess=exact_ess,
        frechet_base_prompt_ci=frechet_interval(features["prompt"], features["base"], frechet_base_prompt, paired=True, seed=seed),
        frechet_exact_ci=frechet_exact_ci,
        intervals=Intervals(
            level=INTERVAL_LEVEL, resamples=RESAMPLES, frechet_resamples=frechet_resamples(features["base"].shape[1]), seed=seed,
            method=METHOD,
        ),
        realism=judge.realism_source and f"realism check of classifier {judge.realism_source}",
        base=sides["base"],
        prompt=sides["prompt"],
        attributes=[_attribute_eval(row, results, features, margin, seed) for row in rows],
        energies=[_energy_eval(record, results, missing) for record in prompt.manifest.energies],
        versions=current_versions(),
    )
    report.flags = report_flags(report)
    report.warnings = [f.message for f in report.flags if f.kind in REALISM_KINDS]
    report.met, report.verdict = _verdict(report, margin)
    images = {side: torch.cat(results[side].kept) if results[side].kept else torch.empty(0) for side in SIDES}
    realism = {side: torch.cat(results[side].realism) for side in SIDES if results[side].realism}
    return Evaluation(report=report, images=images, realism=realism)


def _sample_side(
    side: str, r: _SideResult, prompt: Prompt, judge: Judge, terms: list, *, n: int, seed: int, batch_size: int, keep: int,
    bar: Progress,
) -> None:
    """Draw ``n`` samples of one side (``base``: the generator on the prompt's noise; ``prompt``: through the flow)
    from ``seed``, batch by batch, and collect into ``r`` what the judge and the energies say of them."""
    dev = judge.device
    task = bar.add_task(f"{side:>9} samples", total=n)
    g = torch.Generator().manual_seed(seed)
    # A conditional prompt is judged at conditions drawn from its training distribution (the same on both sides);
    # its twin-comparing energies see each sample's twin at the reference condition (the base's is itself).
    conditions = prompt.conditions
    cg = torch.Generator().manual_seed((seed + 1) % 2**64)
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        # The same noise on both sides (a mixture prompt's extra component coordinate aside).
        noise = torch.randn((m, *prompt.latent_shape), generator=g).to(dev)
        condition = draw_conditions(conditions, m, cg).to(dev) if conditions else None
        t0 = time.perf_counter()
        z = prompt.noise(noise) if side == "base" else prompt.latents_at(noise, condition)
        images = prompt.decode_latents(z, condition).clamp(0, 1)  # a generator that reads conditions: the same on both sides
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        r.seconds += time.perf_counter() - t0
        for key, c in judge.classes(images).items():
            r.classes.setdefault(key, []).append(c)
        r.features.append(judge.features(images))
        scores = judge.realism(images)
        if scores is not None:
            r.realism.append(scores)
        context = None
        if condition is not None:
            ref = prompt.reference_input(m, dev)
            twin = images if side == "base" else prompt.decode_latents(prompt.latents_at(noise, ref), ref).clamp(0, 1)
            context = EnergyContext(
                condition=condition, condition_names=tuple(c.name for c in conditions), reference=twin,
                classes=None if side == "base" else prompt.components(noise),
            )
        for t in terms:
            value = t.energy.context_energy(images, z, context) if context is not None and t.caps.contextual else t.energy(images, z)
            r.energies.setdefault(t.label, []).append(value.detach().double().cpu())
        if sum(k.shape[0] for k in r.kept) < keep:
            r.kept.append(images[: keep - sum(k.shape[0] for k in r.kept)].cpu())
        bar.update(task, advance=m)


def _reference_features(judge: Judge, reference: Tensor, batch_size: int, dev: torch.device, bar: Progress) -> Tensor:
    """The judge's features of the reference images."""
    task = bar.add_task("reference", total=reference.shape[0])
    chunks = []
    for chunk in reference.split(batch_size):
        chunks.append(judge.features(chunk.to(dev)))
        bar.update(task, advance=chunk.shape[0])
    return torch.cat(chunks)


def _side_eval(r: _SideResult, n: int, features: Tensor, ref_features: Tensor | None, seed: int) -> SideEval:
    frechet = frechet_distance(features, ref_features) if ref_features is not None else None
    junk = torch.cat(r.realism) < 0 if r.realism else None
    return SideEval(
        n=n,
        seconds=r.seconds,
        samples_per_second=n / r.seconds if r.seconds > 0 else float("inf"),
        diversity=mean_pairwise_distance(features),
        frechet=frechet,
        junk_rate=float(junk.double().mean()) if junk is not None else None,
        frechet_ci=frechet_interval(features, ref_features, frechet, seed=seed) if ref_features is not None and frechet is not None else None,
        junk_rate_ci=junk_interval(junk, seed=seed) if junk is not None else None,
    )


def _exact_target(
    terms: list, missing: dict[str, str], base: _SideResult, base_features: Tensor, ref_features: Tensor | None, seed: int
) -> tuple[float | None, float | None, tuple[float, float] | None]:
    """(Fréchet distance to the reference, effective sample size, the distance's interval) of exact samples of the
    prompt's target.

    Exact samples of the target: the base samples, weighted by exp(-Σ w E) (every energy must have been rebuilt).
    A mixture's energies are its tilt here (its components only sharpen the classes the tilt weights), so a
    mixture prompt is compared with the distribution it stands for.
    """
    frechet_exact = exact_ess = interval = None
    if not missing and terms:
        log_w = -sum(t.weight * torch.cat(base.energies[t.label]) for t in terms)
        if bool(torch.isfinite(log_w).all()):
            exact_ess = effective_sample_size(log_w)
            if ref_features is not None:
                weights = torch.softmax(log_w, 0)
                frechet_exact = frechet_distance(base_features, ref_features, weights=weights)
                interval = frechet_interval(base_features, ref_features, frechet_exact, weights=weights, seed=seed)
    return frechet_exact, exact_ess, interval


def _asked_diversity(resolved: ResolvedTarget, parts: list[Tensor], junk: Tensor | None, features: Tensor) -> tuple[float | None, int]:
    """(diversity, how many samples) of the counted samples whose class is asked and not avoided."""
    return asked_diversity(resolved, parts, junk, features)


def _attribute_eval(
    row: PlannedAttribute, results: dict[str, _SideResult], features: dict[str, Tensor], margin: float | None, seed: int
) -> AttributeEval:
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
    resolved = ResolvedTarget(t, row.parts, row.order)
    figures = {}
    for side in SIDES:
        r = results[side]
        parts = [torch.cat(r.classes[(entry.name, p)]) for p, (entry, _) in zip(t.parts, row.parts)]
        junk = torch.cat(r.realism) < 0 if r.realism else None
        judged, everything = judged_figure(resolved, parts, junk), judged_figure(resolved, parts, None)
        figures[side] = judged
        ci = attribute_intervals(resolved, parts, junk, judged.kl, seed=seed)
        s = AttributeSide(
            histogram=judged.histogram, junk=judged.junk, counted=judged.counted, histogram_all=everything.histogram,
            histogram_ci=ci.histogram, junk_ci=ci.junk,
        )
        if t.target is not None:
            s.kl, s.tv, s.kl_all = judged.kl, total_variation(judged.histogram, t.target) if judged.counted else 1.0, everything.kl
            s.kl_ci = ci.kl
        if t.asked or t.avoided:
            s.share, s.share_ci = judged.share, ci.share
            s.diversity, s.diversity_n = _asked_diversity(resolved, parts, junk, features[side])
        setattr(out, side, s)
    if t.target is not None or t.asked or t.avoided:
        junk_rose = margin is not None and (figures["prompt"].junk or 0.0) - (figures["base"].junk or 0.0) > margin
        out.met = figures["prompt"].met() and not junk_rose
    return out


def _verdict(report: EvalReport, margin: float | None) -> tuple[bool | None, list[str]]:
    """The report's verdict in the words of compose's closing check (:func:`promptgen.composing.watch.verdict`):
    each asked target's figure, the junk rate, and what was not met. None when nothing is asked and no junk rose."""
    targets, unjudged = [], []
    for a in report.attributes:
        if a.origin == "prompt" and not a.available:  # the prompt asks it, and nothing installed can judge it
            unjudged.append(f"{a.energy or a.attribute}: {a.attribute}: {a.reason or 'no installed classifier judges it'}")
        if a.met is None or a.base is None or a.prompt is None:
            continue
        kl = a.prompt.kl is not None
        value, base = (a.prompt.kl, a.base.kl) if kl else (a.prompt.share, a.base.share)
        targets.append(TargetReading(
            energy=a.energy or a.attribute, attribute=a.attribute, judges=list(dict.fromkeys(a.evaluators)), independent=a.independent,
            kind="kl" if kl else "share", value=min(value or 0.0, NO_FIGURE), base=min(base or 0.0, NO_FIGURE),
            goal=GOAL_KL if kl else GOAL_SHARE, met=(value or 0.0) <= GOAL_KL if kl else (value or 0.0) >= GOAL_SHARE,
            histogram=a.prompt.histogram, counted=a.prompt.counted or 0,
        ))
    base, prompt = report.base.junk_rate, report.prompt.junk_rate
    healthy = base is None or prompt is None or margin is None or prompt - base <= margin
    reading = Reading(
        step=0, n=report.n, junk=prompt, base_junk=base, junk_margin=margin, healthy=healthy, targets=targets, realism=report.realism,
        unjudged=unjudged,
    )
    met, lines = verdict(reading)
    return (met if targets or unjudged or not healthy else None), lines


def _energy_eval(record: EnergyRecord, results: dict[str, _SideResult], missing: dict[str, str]) -> EnergyEval:
    out = EnergyEval(spec=record.spec, label=record.label, weight=record.weight)
    if record.label in missing or record.label not in results["base"].energies:
        out.available = False
        out.reason = missing.get(record.label, "the energy could not be rebuilt")
        return out
    out.base = _moments(results["base"].energies[record.label])
    out.prompt = _moments(results["prompt"].energies[record.label])
    return out


__all__ = [
    "DATA_HINT",
    "EVAL_FORMAT",
    "EVAL_FORMAT_VERSION",
    "FRECHET_RATIO",
    "JUNK_MARGIN",
    "MIN_ESS",
    "PIXEL_SIZE",
    "SIDES",
    "AttributeEval",
    "AttributeSide",
    "EnergyEval",
    "EvalReport",
    "Evaluation",
    "Moments",
    "SideEval",
    "ancestors",
    "attribute_title",
    "check_json_output",
    "domain_evaluators",
    "evaluate_prompt",
    "histogram_text",
    "junk_margin",
    "load_reference",
    "measured_in",
    "plan_attributes",
    "realism_warnings",
    "report_flags",
    "report_table",
    "summary_rows",
    "write_report_json",
]
