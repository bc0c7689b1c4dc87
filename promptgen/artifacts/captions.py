"""What a grid of samples says above its images: which prompt or generator, its spec, the seed and the conditions.

``promptgen sample`` and ``compose``'s preview ``samples.png`` label their grids
with it (:class:`~promptgen.core.images.GridLabels`), so a picture passed on
still says how to make it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from promptgen.artifacts.prompt import Prompt
from promptgen.core.errors import PromptgenError
from promptgen.core.images import GridLabels
from promptgen.core.protocols import Generator


def grid_labels(
    source: Generator,
    seed: int,
    *,
    title: str | None = None,
    spec: str | None = None,
    method: str = "flow",
    condition: Mapping[str, float] | None = None,
    sweep: tuple[str, Sequence[float]] | None = None,
) -> GridLabels:
    """The labels of a grid of ``source``'s samples drawn with ``seed``.

    Args:
        source: a :class:`Prompt` (its generator and weighted energies are read from its manifest) or a generator.
        title: the first line; default the prompt's folder, or the generator's name.
        spec: a generator's spec as typed (``--gen SPEC``); default its name. Unused for a prompt.
        method: how the images were drawn (``sample --method``), said unless it is the flow.
        condition: a conditional prompt's conditions as asked; the others are shown at their reference.
        sweep: (condition name, values): one column per value, each labelled with it.
    """
    facts = [f"seed {seed}"]
    if method != "flow":
        facts.append(f"--method {method}")
    if isinstance(source, Prompt):
        manifest = source.manifest
        title = title or (str(source.path) if source.path is not None else source.info.name)
        words = [f"--gen {manifest.generator.spec}", *(f"--energy {_unweighted(e.spec)}@{e.weight:g}" for e in manifest.energies)]
        words += [f"--cond {c.name}={c.low:g}:{c.high:g}" for c in manifest.conditions]
        described = " ".join(words)
        at = {**source.condition, **(condition or {})}
        if sweep is not None:
            at.pop(sweep[0], None)
        if source.conditions and at:
            facts.append("condition " + ", ".join(f"{name}={value:g}" for name, value in at.items()))
    else:
        title = title or source.info.name
        described = f"--gen {spec or source.info.name}"
    columns: tuple[str, ...] = ()
    if sweep is not None:
        name, values = sweep
        facts.append(f"{name} from {values[0]:g} to {values[-1]:g} across the columns")
        columns = tuple(f"{v:g}" for v in values)
    return GridLabels(title, (described, " · ".join(facts)), columns)


def _unweighted(spec: str) -> str:
    """``spec`` without the ``@weight`` it was typed with (the manifest's weight is shown instead)."""
    from promptgen.core.spec import parse_spec

    try:
        return parse_spec(spec).with_weight(None).format()
    except PromptgenError:
        return spec
