"""Who judges samples, shared by compose's watch and ``promptgen eval``.

- :func:`resolve_target`: the classifier that judges each part of an attribute an energy asks about (an
  evaluator-role classifier when one is installed: it never defines an energy, so a flow cannot have learnt its
  blind spots; else the control classifier, flagged not independent), and where each of the target's labels
  sits among that classifier's classes.
- :func:`domain_judges`: the evaluator classifiers that know a generator's domain (the generator entry's
  ``judges``, else the evaluators of the plugin that provides it); their realism check says which samples are
  junk.
- :func:`realism_check`: that check, built, after checking it was trained on images like the generator's.
- :func:`judged_figure`: one attribute's figure on judged samples: the class histogram of the samples that pass
  the realism check, its KL divergence to a target distribution or the share of the asked classes, and the share
  of junk beside it. A histogram of blobs is not a histogram of digits: the junk is counted, never spread over
  the classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from promptgen.core.entries import ClassifierEntry
from promptgen.core.errors import PromptgenError
from promptgen.core.metrics import (
    class_histogram,
    class_share,
    joint_classes,
    joint_labels,
    kl_divergence,
    mean_pairwise_distance,
)
from promptgen.core.protocols import AttributeClassifier, AttributeTarget, GeneratorInfo
from promptgen.core.registry import Registry

#: A de-biasing target counts as met when the judged histogram is this close to it (KL, nats).
GOAL_KL = 0.02
#: Asking for classes counts as met when at least this share of the judged samples are of them.
GOAL_SHARE = 0.95

__all__ = [
    "GOAL_KL",
    "GOAL_SHARE",
    "Figure",
    "RealismCheck",
    "ResolvedTarget",
    "asked_diversity",
    "domain_judges",
    "judged_figure",
    "realism_check",
    "resolve_target",
]


@dataclass
class ResolvedTarget:
    """An attribute target with its judges: ``parts[i]`` is (classifier entry, independent) for ``target.parts[i]``,
    and ``order[j]`` is the judge's joint class index of ``target.labels[j]``."""

    target: AttributeTarget
    parts: list[tuple[ClassifierEntry, bool]]
    order: list[int]

    @property
    def independent(self) -> bool:
        return all(ind for _, ind in self.parts)


def resolve_target(target: AttributeTarget, registry: Registry) -> ResolvedTarget:
    """Find the judge of each part of ``target`` and how its classes map onto the target's labels.

    Raises:
        UnknownNameError: no installed classifier has one of the parts.
        PromptgenError: the judge's classes differ from the target's, or the target has the wrong length.
    """
    parts = [registry.evaluator_for(p) for p in target.parts]
    judge_labels = joint_labels([[str(x) for x in entry.attributes[p]] for p, (entry, _) in zip(target.parts, parts)])
    labels = [str(x) for x in target.labels]
    if sorted(labels) != sorted(judge_labels):
        raise PromptgenError(
            f"the evaluator's classes of {target.attribute!r} ({', '.join(judge_labels[:12])}) "
            f"differ from the target's ({', '.join(labels[:12])})"
        )
    if target.target is not None and len(target.target) != len(labels):
        raise PromptgenError(f"the target of {target.attribute!r} has {len(target.target)} shares for {len(labels)} classes")
    return ResolvedTarget(target, parts, [judge_labels.index(lab) for lab in labels])


def domain_judges(generator: str, registry: Registry) -> list[ClassifierEntry]:
    """Evaluator classifiers that know the domain of the generator entry named ``generator``: the entry's
    ``judges``, else the evaluator-role classifiers of the plugin that provides it (none for an unknown name)."""
    entry = registry.generators.get(generator)
    if entry is not None and entry.judges:
        return [registry.classifiers[c] for c in entry.judges if c in registry.classifiers]
    for plugin in registry.plugins:
        if generator in plugin.generators:
            return [registry.classifiers[c] for c in plugin.classifiers if c in registry.classifiers and registry.classifiers[c].role == "evaluator"]
    return []


@dataclass
class RealismCheck:
    """A built realism check: ``scores(images)`` is (B,), >= 0 for an image of the domain, < 0 for junk.

    ``joint``, when the classifier ``source`` offers it (its ``judge``), gives its log-probabilities and the
    scores from one pass: the watch then reads the digits and the junk without running the evaluator twice.
    """

    source: str
    scores: Callable[[Tensor], Tensor]
    joint: Callable[[Tensor], tuple[dict[str, Tensor], Tensor]] | None = None
    #: the same classifier's feature space (``features(images) -> (B, D)``), when it has one: compose's closing
    #: check measures the diversity of its samples there, as `promptgen eval` does.
    features: Callable[[Tensor], Tensor] | None = None

    @property
    def description(self) -> str:
        return f"realism check of classifier {self.source}"

    @torch.no_grad()
    def junk(self, images: Tensor, batch: int = 500) -> Tensor:
        """(B,) True for each image the check rejects."""
        return torch.cat([self.scores(chunk).flatten() < 0 for chunk in images.split(batch)]).cpu()


def _fits(classifier: AttributeClassifier, info: GeneratorInfo) -> str | None:
    """Why ``classifier``'s realism check cannot judge images like ``info``'s (None when it can, or cannot tell)."""
    size, channels = getattr(classifier, "input_size", None), getattr(classifier, "channels", None)
    res = tuple(info.resolution)
    if size is not None and tuple(size) != res or channels is not None and channels != info.channels:
        def shape(hw: Sequence[int] | None, c: int | None) -> str:
            colour = {1: "grey", 3: "RGB"}.get(c, f"{c}-channel") if c is not None else ""
            return " ".join(x for x in (f"{hw[0]}×{hw[1]}" if hw is not None else "", colour) if x)

        return f"it was trained on {shape(size, channels)} images and {info.name!r} draws {shape(res, info.channels)} images"
    return None


def realism_check(
    candidates: Sequence[ClassifierEntry],
    registry: Registry,
    info: GeneratorInfo,
    device: torch.device | str = "cpu",
    *,
    asked: str | None = None,
) -> RealismCheck | None:
    """The realism check of the first of ``candidates`` that has one, built on ``device`` (None if none has).

    Only evaluator-role classifiers count: a control classifier's own idea of its domain can be fooled by the
    flow trained against it.

    Args:
        info: the generator whose images it will judge.
        asked: the classifier the user named (``--realism NAME``): it must have a realism check that fits.

    Raises:
        PromptgenError: one line when the asked classifier has no realism check, or when the check (asked or
            declared by the generator's plugin) was trained on images of another size or channel count than the
            generator's: resizing them would pass or fail images for the wrong reasons.
    """
    if asked is not None:
        candidates = [registry.classifier(asked)]  # an unknown name: one line with the closest names
    for entry in candidates:
        if entry.role != "evaluator":
            if asked is not None:
                raise PromptgenError(f"--realism {asked}: {asked!r} is a control classifier; a realism check must come from an evaluator, which no energy uses")
            continue
        try:
            built = registry.build_classifier(entry.name, {})
        except PromptgenError:
            if asked is not None:
                raise
            continue
        scores = getattr(built, "realism", None)
        if not callable(scores):
            if asked is not None:
                raise PromptgenError(f"--realism {asked}: classifier {asked!r} has no realism check; name an evaluator that has one, or give --realism off")
            continue
        why = _fits(built, info)
        if why is not None:
            raise PromptgenError(
                f"the realism check of classifier {entry.name!r} cannot judge generator {info.name!r}: {why}; "
                "give --realism with a check trained on such images, or --realism off"
            )
        if hasattr(built, "to"):
            built = built.to(device)
        moved = getattr(built, "realism", None)  # the check of the classifier on the device
        joint = getattr(built, "judge", None)
        features = getattr(built, "features", None)
        return RealismCheck(
            entry.name, moved if callable(moved) else scores, joint if callable(joint) else None, features if callable(features) else None
        )
    return None


@dataclass
class Figure:
    """One attribute judged on a set of samples (see :func:`judged_figure`).

    Attributes:
        histogram: the judge's class shares among the samples that pass the realism check (all samples
            without one), in the target's label order.
        junk: the share of samples the realism check rejects (None without one).
        kl: KL(histogram ‖ target) in nats, for a target distribution.
        share: the share of the asked classes (or of classes not avoided), for asked classes.
        counted: how many samples the histogram counts.
    """

    histogram: list[float]
    junk: float | None
    kl: float | None
    share: float | None
    counted: int

    @property
    def value(self) -> float:
        """The number a goal is set on: the KL, else the share."""
        return self.kl if self.kl is not None else (self.share if self.share is not None else float("nan"))

    def met(self) -> bool:
        """Whether the figure reaches its goal (:data:`GOAL_KL`, :data:`GOAL_SHARE`), junk aside."""
        if self.kl is not None:
            return self.kl <= GOAL_KL
        return self.share is not None and self.share >= GOAL_SHARE


def judged_figure(resolved: ResolvedTarget, classes: Sequence[Tensor], junk: Tensor | None) -> Figure:
    """The figure of ``resolved`` on samples whose top classes by each part's judge are ``classes`` (one (N,)
    tensor per part), ``junk`` (N,) True for samples the realism check rejects (None: no check).

    The histogram, KL and share are computed on the samples that pass the check, and the junk share is given
    beside them; a sample the check rejects is never counted as a class. With every sample junk the histogram
    is empty (zeros) and the KL infinite.
    """
    t = resolved.target
    sizes = [len(entry.attributes[p]) for p, (entry, _) in zip(t.parts, resolved.parts)]
    joint = joint_classes(list(classes), sizes)
    keep = torch.ones_like(joint, dtype=torch.bool) if junk is None else ~junk.to(joint.device)
    counted = int(keep.sum())
    if counted:
        judged = class_histogram(joint[keep], len(resolved.order))
        histogram = [judged[i] for i in resolved.order]
    else:
        histogram = [0.0] * len(resolved.order)
    kl = share = None
    if t.target is not None:
        kl = kl_divergence(histogram, t.target) if counted else float("inf")
    if t.asked or t.avoided:
        share = class_share(histogram, t.labels, t.asked, t.avoided) if counted else 0.0
    return Figure(histogram, None if junk is None else float(junk.double().mean()), kl, share, counted)



def asked_diversity(resolved: ResolvedTarget, parts: Sequence[Tensor], junk: Tensor | None, features: Tensor) -> tuple[float | None, int]:
    """(diversity, how many samples) of the samples that pass the realism check and whose class is asked and
    not avoided: a prompt asking for 3s is compared with the generator's 3s, not with all its digits."""
    t = resolved.target
    sizes = [len(entry.attributes[p]) for p, (entry, _) in zip(t.parts, resolved.parts)]
    joint = joint_classes(list(parts), sizes)
    asked, avoided = {str(a) for a in t.asked}, {str(a) for a in t.avoided}
    wanted = [resolved.order[j] for j, lab in enumerate(t.labels) if (not asked or str(lab) in asked) and str(lab) not in avoided]
    keep = torch.isin(joint, torch.tensor(wanted, dtype=torch.long, device=joint.device))
    if junk is not None:
        keep &= ~junk.to(keep.device)
    chosen = features[keep.to(features.device)]
    return (mean_pairwise_distance(chosen) if chosen.shape[0] > 1 else None), int(chosen.shape[0])
