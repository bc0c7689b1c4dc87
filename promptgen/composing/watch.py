"""compose's watch: the prompt's samples judged while it trains and once more at the end.

At each periodic evaluation the trainer hands the watch the flow's images on fixed noise; the watch returns a
:class:`~promptgen.training.watch.Reading`: the share of *junk* (images the generator's realism check rejects,
against the generator's own share on the same noise) and, for each attribute an energy asks about, the judged
figure on the samples that pass the check (:func:`~promptgen.core.judging.judged_figure`). The judges are
evaluator-role classifiers, which define no energy; where none is installed for an attribute, the control
classifier judges it and the reading says so.

The trainer's guard acts on the readings (``TrainConfig.guard``), ``mode=auto`` compares two short trials by
them (:func:`promptgen.composing.trials.choose_modes`), and compose closes with :func:`closing_check`: a reading on
``check_samples`` fresh samples of the prompt and the generator, printed with a verdict and kept in the manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from promptgen.core.errors import PromptgenError, one_line
from promptgen.core.judging import (
    GOAL_KL,
    GOAL_SHARE,
    RealismCheck,
    ResolvedTarget,
    asked_diversity,
    domain_judges,
    judged_figure,
    realism_check,
    resolve_target,
)
from promptgen.core.metrics import mean_pairwise_distance
from promptgen.core.protocols import AttributeClassifier, Generator
from promptgen.core.registry import Registry
from promptgen.training.ebm import WeightedEnergy
from promptgen.training.watch import JUNK_MARGIN, NO_FIGURE, Reading, TargetReading, junk_margin, junk_rise_bound

#: ``--realism`` values that are not a classifier's name.
REALISM_AUTO, REALISM_OFF = "auto", "off"


class SampleWatch:
    """Judges images for compose (the :class:`~promptgen.training.watch.Watch` protocol).

    Args:
        terms: the prompt's energies; each attribute they ask about (``targets()``) is judged.
        info: the generator, for the realism check's fit.
        root: the name of the generator entry at the root of a chain (whose domain the check must know).
        realism: ``auto`` (the generator's domain evaluators), ``off``, or an evaluator's name.

    Raises:
        PromptgenError: one line for a realism check that cannot judge this generator's images.
    """

    def __init__(
        self,
        terms: Sequence[WeightedEnergy],
        generator: Generator,
        root: str,
        registry: Registry,
        device: torch.device,
        realism: str = REALISM_AUTO,
    ) -> None:
        self.check: RealismCheck | None = None
        if realism != REALISM_OFF:
            asked = None if realism == REALISM_AUTO else realism
            self.check = realism_check(domain_judges(root, registry), registry, generator.info, device, asked=asked)
        self.rows: list[tuple[str, ResolvedTarget]] = []
        self.skipped: list[str] = []
        self.classifiers: dict[str, AttributeClassifier] = {}
        for term in terms:
            for target in term.caps.targets():
                try:
                    resolved = resolve_target(target, registry)
                    for entry, _ in resolved.parts:
                        if entry.name not in self.classifiers:
                            self.classifiers[entry.name] = registry.build_classifier(entry.name, {}).to(device)
                except PromptgenError as exc:
                    self.skipped.append(f"{term.label}: {target.attribute}: {one_line(str(exc))}")
                    continue
                self.rows.append((term.label, resolved))
        self.base: Reading | None = None
        self._base_values: list[float] = []
        self._baselines: dict[str, tuple[Reading, list[float], list[list[Tensor]], Tensor | None]] = {}
        self._last_parts: list[list[Tensor]] = []  # the last judged images' top classes (per row, per part) and junk
        self._last_junk: Tensor | None = None

    @property
    def active(self) -> bool:
        """Whether it judges anything (a realism check or an attribute)."""
        return self.check is not None or bool(self.rows)

    @torch.no_grad()
    def _judge(self, images: Tensor) -> tuple[list[TargetReading], Tensor | None]:
        tops: dict[tuple[str, str], Tensor] = {}
        check = self.check
        if check is not None and check.joint is not None and check.source in self.classifiers:
            # The check's classifier also judges a target: one pass gives both (the evaluator is the costly part).
            parts = sorted({p for _, r in self.rows for p, (e, _) in zip(r.target.parts, r.parts) if e.name == check.source})
            junks, got = [], {p: [] for p in parts}
            for chunk in images.split(500):
                log_probs, scores = check.joint(chunk)
                junks.append(scores.flatten().cpu() < 0)
                for p in parts:
                    got[p].append(log_probs[p].argmax(1).cpu())
            junk: Tensor | None = torch.cat(junks)
            tops.update({(check.source, p): torch.cat(v) for p, v in got.items()})
        else:
            junk = check.junk(images) if check is not None else None
        for label, resolved in self.rows:
            for part, (entry, _) in zip(resolved.target.parts, resolved.parts):
                if (entry.name, part) not in tops:
                    chunks = [self.classifiers[entry.name].log_probs(c)[part].argmax(1).cpu() for c in images.split(500)]
                    tops[(entry.name, part)] = torch.cat(chunks)
        readings = []
        self._last_parts = [[tops[(e.name, p)] for p, (e, _) in zip(r.target.parts, r.parts)] for _, r in self.rows]
        self._last_junk = junk
        for i, (label, resolved) in enumerate(self.rows):
            t = resolved.target
            figure = judged_figure(resolved, self._last_parts[i], junk)
            kind = "kl" if figure.kl is not None else "share"
            value = min(figure.value, NO_FIGURE)
            goal = GOAL_KL if kind == "kl" else GOAL_SHARE
            base = self._base_values[i] if i < len(self._base_values) else value
            readings.append(TargetReading(
                energy=label, attribute=t.attribute, judges=[e.name for e, _ in resolved.parts], independent=resolved.independent,
                kind=kind, value=value, base=base, goal=goal, met=figure.met(), histogram=[round(h, 4) for h in figure.histogram],
                labels=[str(x) for x in t.labels], target=None if t.target is None else [float(x) for x in t.target],
                asked=[str(x) for x in t.asked], avoided=[str(x) for x in t.avoided], counted=figure.counted,
            ))
        return readings, junk

    def baseline(self, images: Tensor) -> Reading:
        """Judge the generator's images (step 0); later readings are held against this one.

        The same images (mode=auto's second run, the closing check of each run) are judged once: the
        reading is remembered by the images' bytes."""
        key = hashlib.sha256(images.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest() + str(tuple(images.shape))
        if key in self._baselines:
            self.base, values, self._last_parts, self._last_junk = self._baselines[key]
            self._base_values = list(values)
            return self.base.model_copy(deep=True)
        self._base_values = []
        targets, junk = self._judge(images)
        self._base_values = [t.value for t in targets]
        rate = None if junk is None else float(junk.double().mean())
        self.base = Reading(
            step=0, n=images.shape[0], junk=rate, base_junk=rate, junk_margin=None if rate is None else junk_margin(rate, rate, images.shape[0]),
            healthy=True, targets=targets, score=sum(t.shortfall for t in targets), realism=self.check and self.check.description,
            unjudged=list(self.skipped),
        )
        self._baselines[key] = (self.base.model_copy(deep=True), list(self._base_values), self._last_parts, self._last_junk)
        return self.base

    def read(self, images: Tensor, step: int, loss: float = 0.0, *, strict: bool = False) -> Reading:
        """Judge the flow's images after ``step`` steps, against :meth:`baseline` (which must come first).

        The junk counts as risen past :func:`~promptgen.training.watch.junk_margin` of the generator's (2 points,
        or twice the standard error on a few hundred samples, so the guard does not act on noise); ``strict``
        (the closing check) holds it to :data:`~promptgen.training.watch.JUNK_MARGIN` exactly, so that a
        prompt never reads as met on a junk rate the 2-point target would call missed.
        """
        if self.base is None:
            raise RuntimeError("SampleWatch.read before baseline")
        targets, junk = self._judge(images)
        for t, b in zip(targets, self.base.targets):
            t.base_histogram, t.base_counted = list(b.histogram), b.counted
        rate = None if junk is None else float(junk.double().mean())
        base = self.base.junk
        margin = None if rate is None or base is None else JUNK_MARGIN if strict else junk_margin(base, rate, images.shape[0])
        healthy = rate is None or base is None or margin is None or rate - base <= margin
        return Reading(
            step=step, n=images.shape[0], junk=rate, base_junk=base, junk_margin=margin, healthy=healthy, targets=targets,
            score=sum(t.shortfall for t in targets) if targets else float(loss), realism=self.check and self.check.description,
            unjudged=list(self.skipped),
        )


def verdict(reading: Reading) -> tuple[bool, list[str]]:
    """(every target met without junk, one line per thing said): what compose prints at the end.

    A target reached while the junk rate rose past the generator's is *not* met: the figure may count images the
    control took for what was asked and the realism check did not take for images of the domain at all. Nor is one
    met by less than the noise of the samples judged (the junk's rise or a share bounded one-sided at 95 %,
    :data:`~promptgen.training.watch.CONFIRM_Z`): "not confirmed", with the way to judge more samples.
    """
    lines = [t.describe() for t in reading.targets]
    lines += [f"not judged: {u}" for u in reading.unjudged]
    if not reading.targets and not reading.unjudged:
        lines.append("no target to judge (no energy asks for a share or a distribution of an attribute): only the junk is checked")
    lines.append(reading.describe_junk())
    if not reading.healthy:
        lines.append("not met: the prompt makes more junk than the generator, so its figures cannot be trusted; look at samples.png")
        return False, lines
    if reading.unjudged:
        lines.append("not met: a target could not be judged (see 'not judged'), so the prompt is not called met; install an evaluator for it")
    unsure = []
    if reading.junk_unconfirmed:
        assert reading.junk is not None and reading.base_junk is not None
        allowed = reading.base_junk + reading.allowed_rise
        could = reading.base_junk + junk_rise_bound(reading.base_junk, reading.junk, reading.n)
        unsure.append(f"junk {reading.junk:.1%} is under the allowed {allowed:.1%} by less than the noise of {reading.n} samples (it could be {could:.1%})")
    for t in reading.targets:
        if t.unconfirmed:
            unsure.append(f"{t.energy}: {t.value:.1%} {t.attribute} is over the goal {t.goal:.0%} by less than the noise of {t.counted} samples")
    for u in unsure:
        lines.append(f"not met: not confirmed: {u}; judge more samples (promptgen eval PROMPT -n 10000)")
    missed = [t for t in reading.targets if not t.met]
    for t in missed:
        if not t.closer:
            lines.append(f"not met: {t.energy} left {t.attribute} no closer to its target than the generator ({t.value:.4g} against {t.base:.4g})")
        else:
            lines.append(f"not met: {t.energy} brought {t.attribute} closer to its target but short of the goal")
    return not missed and not reading.unjudged and not unsure, lines





def root_generator(generator: Generator, name: str) -> str:
    """The generator entry at the root of ``generator``: ``name`` itself, or a chain's first prompt's generator."""
    from promptgen.artifacts.prompt import Prompt
    from promptgen.core.spec import parse_spec

    if isinstance(generator, Prompt):
        return parse_spec(generator.chain()[-1].manifest.generator.spec).name
    return name


@torch.no_grad()
def closing_check(prompt, watch: SampleWatch, n: int, seed: int, device: torch.device, batch: int = 256) -> Reading:
    """The watch's reading of ``n`` fresh samples of ``prompt`` against its generator's on the same noise.

    The noise comes from ``seed + 2`` (neither training's nor the evaluations'), drawn for the generator's latent, so
    that a tilt and a mixture prompt of the same run are judged on the same samples (a mixture's component
    coordinate comes from another stream, ``seed + 4``); a conditional prompt is judged at conditions drawn from
    its training distribution (``seed + 5``).
    """
    from promptgen.core.conditions import draw_conditions

    g = torch.Generator().manual_seed((seed + 2) % 2**64)
    gu = torch.Generator().manual_seed((seed + 4) % 2**64)
    gc = torch.Generator().manual_seed((seed + 5) % 2**64)
    base, ours = [], []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        noise = torch.randn((m, *prompt.generator.latent_shape), generator=g)
        eps = prompt.with_component(noise, torch.randn(m, generator=gu)).to(device)
        condition = draw_conditions(prompt.conditions, m, gc).to(device) if prompt.conditions else None
        # A generator that reads conditions (a camera) renders both sides at the same ones.
        base.append(prompt.decode_latents(prompt.noise(eps), condition).clamp(0, 1))
        ours.append(prompt.decode_latents(prompt.latents_at(eps, condition), condition).clamp(0, 1))
    base_images, our_images = torch.cat(base), torch.cat(ours)
    watch.baseline(base_images)
    base_parts, base_junk = watch._last_parts, watch._last_junk
    reading = watch.read(our_images, int(prompt.manifest.training.config.steps), strict=True)
    features = watch.check.features if watch.check is not None else None
    if features is not None:  # diversity, overall and within each row's asked classes, for the flags of a collapse
        ours_f, base_f = (torch.cat([features(c.to(device)).double().flatten(1).cpu() for c in x.split(batch)]) for x in (our_images, base_images))
        reading.diversity, reading.base_diversity = mean_pairwise_distance(ours_f), mean_pairwise_distance(base_f)
        reading.diversity_features = watch.check.source if watch.check is not None else None
        for i, (t, (_, resolved)) in enumerate(zip(reading.targets, watch.rows)):
            if t.asked or t.avoided:
                t.diversity, t.diversity_n = asked_diversity(resolved, watch._last_parts[i], watch._last_junk, ours_f)
                t.base_diversity, t.base_diversity_n = asked_diversity(resolved, base_parts[i], base_junk, base_f)
    return reading

__all__ = ["REALISM_AUTO", "REALISM_OFF", "SampleWatch", "closing_check", "root_generator", "verdict"]
