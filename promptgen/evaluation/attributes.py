"""What `promptgen eval` judges: the attributes the prompt's energies (or its ancestors', or ``--attr``) ask about."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from promptgen.artifacts.manifest import EnergyRecord
from promptgen.artifacts.prompt import Prompt
from promptgen.core.errors import PromptgenError, UnknownNameError
from promptgen.core.judging import resolve_target
from promptgen.core.metrics import joint_labels
from promptgen.core.protocols import AttributeTarget
from promptgen.core.registry import ClassifierEntry, Registry, get_registry, one_line


@dataclass
class PlannedAttribute:
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


def _resolve(row: PlannedAttribute, registry: Registry) -> PlannedAttribute:
    """Find the evaluator of each part and how its classes map onto the row's labels (:func:`resolve_target`)."""
    resolved = resolve_target(row.target, registry)
    row.parts, row.order = resolved.parts, resolved.order
    return row


def plan_attributes(prompt: Prompt, attrs: Sequence[str] = (), registry: Registry | None = None) -> list[PlannedAttribute]:
    """The attributes to judge: the prompt's targets, its ancestors', then ``attrs`` not already among them.

    An attribute of a target that no installed classifier judges is kept, marked
    unavailable with the reason; an unknown ``attrs`` name is an error.
    """
    registry = registry or get_registry()
    rows: list[PlannedAttribute] = []

    def add(records: Sequence[EnergyRecord], origin: Literal["prompt", "ancestor"], ancestor: str | None) -> None:
        for record in records:
            for t in record.targets:
                row = PlannedAttribute(t.to_target(), origin, energy=record.spec, ancestor=ancestor)
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
        rows.append(_resolve(PlannedAttribute(AttributeTarget(name, tuple(labels)), "asked"), registry))
    return rows


__all__ = ["PlannedAttribute", "ancestors", "plan_attributes"]
