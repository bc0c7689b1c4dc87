"""Iterative control: a trained prompt folder used as a generator, ``--gen prompt:PATH``.

A prompt ``x = G(f₁(ε))`` is itself a generator whose latent is the flow's
Gaussian noise ε, so a second prompt can be trained on it
(``x = G(f₁(f₂(ε)))``), and so on. This module is a plugin of promptgen-core,
registered by the ``prompts`` entry point (:mod:`promptgen.artifacts.prompt_plugin`)
through the same hook as any third-party generator. This module holds what
loading and composing need to know about chains; it does not import
:mod:`promptgen.artifacts.prompt`.

A chained prompt's manifest names its parent by absolute path in
``generator.spec`` and keeps one :class:`~promptgen.artifacts.manifest.LineageRecord` per
ancestor (nearest first) with the path relative to the prompt's own folder and
the sha256 of the ancestor's flow weights. Loading follows the absolute path,
else the relative one (a parent moved together with its child), refuses a
parent whose weights changed, and refuses a chain that loops.

>>> normalise_generator_spec("mnist")
'mnist'
>>> normalise_generator_spec("prompt:/runs/three") == prompt_spec(Path("/runs/three").resolve())
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from promptgen.artifacts.manifest import MANIFEST, LineageRecord, PromptManifest, file_sha256, read_manifest
from promptgen.core.errors import ArtifactError, SpecError, inline, one_line
from promptgen.core.options import Options, option, parse_options
from promptgen.core.registry import Registry
from promptgen.core.spec import Arg, Piece, Spec, parse_spec

NAME = "prompt"
_SPECIAL = set(",@=\"'")

# The resolved folders of the prompts being loaded, outermost first (to catch a loop).
_LOADING: ContextVar[tuple[Path, ...]] = ContextVar("promptgen_loading", default=())


# Prompts of a chain already loaded by the outermost load_prompt, by resolved folder (None: not loading).
_PRELOADED: ContextVar[dict[Path, Any] | None] = ContextVar("promptgen_preloaded", default=None)


def cached(folder: Path) -> Any | None:
    """The prompt already loaded from ``folder`` by the outermost load of its chain, if any."""
    cache = _PRELOADED.get()
    if cache is None:
        return None
    try:
        return cache.get(folder.resolve())
    except (OSError, RuntimeError, ValueError):
        return None


def preloading() -> bool:
    """Whether a chain's prompts are being loaded root first (see :func:`preloaded`)."""
    return _PRELOADED.get() is not None


@contextlib.contextmanager
def preloaded() -> Iterator[dict[Path, Any]]:
    """A cache of loaded prompts that ``prompt:PATH`` generators built in this block take from."""
    cache: dict[Path, Any] = {}
    token = _PRELOADED.set(cache)
    try:
        yield cache
    finally:
        _PRELOADED.reset(token)


def parent_folders(folder: Path) -> list[Path]:
    """The prompt folders ``folder``'s chain is trained on, nearest parent first, found by reading manifests.

    A loop: iteration, not recursion, so any length works. The walk stops quietly
    at anything it cannot follow (a missing parent, a loop, a damaged manifest):
    loading the prompt then reports it with the usual one-line error.
    """
    parents: list[Path] = []
    seen = {Path(folder).resolve()}
    current = Path(folder)
    while True:
        try:
            spec = resolve_parent_spec(current, read_manifest(current))
            parsed = parse_spec(spec)
            if parsed.name != NAME:
                return parents
            parent = Path(prompt_path(parsed)).expanduser()
            key = parent.resolve()
        except (ArtifactError, SpecError, OSError, RuntimeError, ValueError):
            return parents
        if key in seen:
            return parents
        seen.add(key)
        parents.append(parent)
        current = parent


class PromptOptions(Options):
    """``prompt:PATH`` (or ``prompt:path=PATH``)."""

    path: str | None = option(None, help="the prompt folder made by `promptgen compose` (or give it bare: prompt:runs/three)", example="runs/three")


def prompt_path(spec: Spec) -> str:
    """The folder named by ``prompt:PATH`` or ``prompt:path=PATH``."""
    both = any(a.key is None for a in spec.args) and any(a.key == "path" for a in spec.args)
    path = None if both else parse_options(spec, PromptOptions, positional="path").options.path
    if path is None or not path.strip():
        raise SpecError(
            f"{spec.format()!r}: give one prompt folder, e.g. prompt:runs/three or prompt:path=runs/three"
        )
    return path


def prompt_spec(folder: Path, weight: float | None = None) -> str:
    """The canonical spec ``prompt:FOLDER`` (quoted if the path has a spec character)."""
    text = str(folder)
    quoted = bool(_SPECIAL & set(text)) or text != text.strip()
    return Spec(NAME, (Arg((Piece(text, quoted),)),), weight).format()


def normalise_generator_spec(spec: str) -> str:
    """``prompt:PATH`` with PATH made absolute and resolved; any other spec unchanged.

    ``compose`` stores this in the manifest so a chained prompt still finds its
    parent when it is sampled from another working directory.
    """
    parsed = parse_spec(spec)
    if parsed.name != NAME:
        return spec
    if prompt_path(parsed).startswith("hf://"):
        # The manifest would have to pin the parent's commit; until it does, the parent must be a local folder.
        raise SpecError(
            f"{spec!r}: a prompt on the Hugging Face Hub cannot be the parent of a new prompt yet; give its local copy, "
            f"the folder printed by `python -c \"import promptgen; print(promptgen.load_prompt('{prompt_path(parsed)}').path)\"`"
        )
    try:
        folder = Path(prompt_path(parsed)).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, a symlink loop, an unknown ~user
        raise SpecError(f"{spec!r}: cannot use that prompt folder ({one_line(str(exc))}); give the folder made by `promptgen compose`") from None
    return prompt_spec(folder, parsed.weight)


@contextlib.contextmanager
def loading(folder: Path) -> Iterator[None]:
    """Mark ``folder`` as being loaded; a prompt met again while its own load is open is a loop."""
    key = Path(folder).resolve()
    stack = _LOADING.get()
    if key in stack:
        loop = " → ".join(str(p) for p in (*stack[stack.index(key):], key))
        raise ArtifactError(
            f"prompt chain loops back on itself: {loop}; a prompt cannot be trained on itself — restore the edited "
            f"manifest.json, or retrain {str(key)!r} on a generator outside the chain (e.g. --gen mnist)"
        )
    token = _LOADING.set((*stack, key))
    try:
        yield
    finally:
        _LOADING.reset(token)


def places_of_parent(folder: Path, parent: LineageRecord) -> list[Path]:
    """Where the recorded ``parent`` of the prompt in ``folder`` may be, in order: its recorded path (taken from
    ``folder`` when it is relative, as a prompt pushed to the Hub records its bundled parents, never from the
    working directory), then its recorded path relative to ``folder``.

    >>> from promptgen.artifacts.manifest import LineageRecord
    >>> r = LineageRecord(path="ancestors/1", relative="ancestors/1", generator="mnist", energies=[], created="", weights_sha256="0" * 64)
    >>> [str(p) for p in places_of_parent(Path("/hub/alice"), r)]
    ['/hub/alice/ancestors/1', '/hub/alice/ancestors/1']
    """
    path = Path(parent.path)
    first = path if path.is_absolute() else Path(folder) / path
    return [first] + ([Path(folder) / parent.relative] if parent.relative else [])


def resolve_parent_spec(folder: Path, manifest: PromptManifest) -> str:
    """The generator spec to build for the prompt in ``folder``.

    For a chained prompt whose spec still names the recorded parent, that is the
    parent at its absolute path, else at its path relative to ``folder``; the
    parent's flow weights must still hash to the recorded sha256. Any other spec
    is returned as stored.
    """
    spec = manifest.generator.spec
    if not manifest.lineage:
        return spec
    try:
        parsed = parse_spec(spec)
        if parsed.name != NAME or parsed.weight is not None:
            return spec
        named = Path(prompt_path(parsed))
    except SpecError:
        return spec  # building it reports the problem
    parent = manifest.lineage[0]
    if named != Path(parent.path):
        return spec  # edited by hand to name another prompt: follow the spec
    found = next((c for c in places_of_parent(folder, parent) if (c / MANIFEST).is_file()), None)
    if found is None:
        raise ArtifactError(
            f"prompt {str(folder)!r} was trained on prompt {parent.path!r}, which is missing; "
            f"put that prompt folder back (or retrain {inline(folder)})"
        )
    found = found.resolve()
    weights = found / read_manifest(found).weights_file
    if weights.is_file() and file_sha256(weights) != parent.weights_sha256:
        raise ArtifactError(
            f"prompt {str(folder)!r} was trained on prompt {str(found)!r}, whose flow has changed since "
            f"({weights.name} no longer matches the recorded sha256); retrain {inline(folder)} or restore that prompt"
        )
    return prompt_spec(found)


def kept_energies(generator: str, energies: Sequence[str], registry: Registry) -> list[str]:
    """The parent prompt's energy specs at their trained weights, for ``compose --keep-parent``.

    A chained prompt samples its parent prompt's distribution, flaws included:
    images the parent's flow let through against its own energies (a thin 1 in
    a prompt for thick strokes) are what a de-biasing child multiplies. Asking
    the parent's energies again keeps the parent's conditions in the child.
    Energies the user gave again (same spec, any weight) are left out: the
    user's weight wins. Each is rebuilt from its spec, so a fitted energy
    (``debias``) is fitted again on the new prompt's own base sample.

    Raises:
        SpecError: ``generator`` is not ``prompt:PATH``, or a parent energy's plugin is not installed.
        ArtifactError: the parent prompt cannot be read.
    """
    parsed = parse_spec(generator)
    if parsed.name != NAME:
        raise SpecError(
            f"--keep-parent asks a parent prompt's energies again, but --gen {generator!r} is not a prompt; "
            "use --gen prompt:PATH, or drop --keep-parent"
        )
    manifest = read_manifest(Path(prompt_path(parsed)))
    given = {parse_spec(e).with_weight(None).format() for e in energies}
    kept = []
    for record in manifest.energies:
        spec = parse_spec(record.spec)
        if spec.with_weight(None).format() in given:
            continue
        if spec.name not in registry.energies:
            raise SpecError(
                f"--keep-parent: the parent prompt's energy {record.spec!r} needs {record.plugin or 'a plugin'}, "
                "which is not installed; install it, or drop --keep-parent"
            )
        kept.append(spec.with_weight(record.weight).format())
    return kept


