"""Running the evaluator classifiers on samples: classes, features (for diversity and Fréchet distances) and realism."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from promptgen.artifacts.prompt import Prompt
from promptgen.core.classifiers import adapt_images
from promptgen.core.errors import PromptgenError
from promptgen.core.judging import domain_judges
from promptgen.core.options import option_names
from promptgen.core.protocols import AttributeClassifier
from promptgen.core.registry import ClassifierEntry, Registry, one_line
from promptgen.core.spec import parse_spec
from promptgen.evaluation.attributes import PlannedAttribute, ancestors

PIXEL_SIZE = (32, 32)


def domain_evaluators(prompt: Prompt, registry: Registry) -> list[ClassifierEntry]:
    """Evaluator classifiers that know the domain of the root generator of ``prompt`` (a chain's first):
    :func:`~promptgen.core.judging.domain_judges` of its name."""
    root = (ancestors(prompt) or [prompt])[-1]
    return domain_judges(parse_spec(root.manifest.generator.spec).name, registry)


def _options_in(energy_spec: str | None, entry: ClassifierEntry) -> dict[str, str]:
    """The options of classifier ``entry`` that an energy spec (as recorded in a manifest) gave."""
    if not energy_spec or not option_names(entry.options):
        return {}
    try:
        spec = parse_spec(energy_spec)
    except PromptgenError:
        return {}
    return {
        a.key: a.value
        for a in spec.args
        if a.key in option_names(entry.options) and a.key not in entry.attributes and a.op == "="
    }


def _pixel_features(images: Tensor, channels: int) -> Tensor:
    return adapt_images(images, PIXEL_SIZE, channels).flatten(1)


class Judge:
    """Runs each needed classifier once per batch; collects classes, features and energies."""

    def __init__(
        self, rows: list[PlannedAttribute], registry: Registry, device: torch.device, channels: int, domain: Sequence[ClassifierEntry] = ()
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


__all__ = ["PIXEL_SIZE", "Judge", "domain_evaluators"]
