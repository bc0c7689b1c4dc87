"""Published models: the zoo of a generator plugin and the local copy of a published file.

Every plugin that wraps someone else's weights has the same three pieces: a table
of named models (what users type after ``--gen``), one registry entry per name,
and a rule for where the file comes from (``path=``, else the cache, else a
download, else a one-line how-to). They live here so each plugin keeps only its
table::

    from promptgen import plugin

    FFHQ = plugin.Published("ffhq.pkl", url="https://example.org/ffhq.pkl", size=381_624_121)

    def build_generator(spec, options, model=None):
        path = plugin.local_file(model.weights if model else None, path=options.path, subdir="mygan",
                                 spec=spec, what="a MyGAN .pkl")
        ...

    @plugin.hookimpl
    def promptgen_generators():
        return [plugin.GeneratorEntry("mygan", build, ...)] + plugin.zoo_entries(
            MODELS, build, options=MyOptions, summary=lambda m: m.description, example=lambda m: f"{m.name}:t=0.7")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from promptgen.core.download import DownloadError, RemoteFile, cache_root, fetch
from promptgen.core.entries import GeneratorEntry
from promptgen.core.errors import SpecError
from promptgen.core.spec import Spec


@dataclass(frozen=True)
class Published:
    """One file a model's authors publish.

    Attributes:
        filename: its name in the plugin's cache folder.
        url: a direct link, or None when there is none (a Drive folder, a form to fill in).
        sha256: the published SHA-256 in lowercase hex, when there is one.
        size: the published size in bytes, when there is one (checked after a download).
        page: where a person downloads it by hand.
    """

    filename: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    page: str = ""


def local_file(
    file: Published | None, *, path: str | Path | None, subdir: str, spec: Spec, what: str, progress: bool = True
) -> Path:
    """The local copy of a published file: ``path=`` if given, else the cache, downloading it once.

    Args:
        file: the zoo's file, or None for a plugin's generic entry (then ``path=`` is required).
        path: the user's ``path=`` option.
        subdir: the plugin's folder inside :func:`~promptgen.plugin.cache_root`.
        spec: the spec being built, named in every error.
        what: the file in a few words, for errors ("an NVIDIA .pkl", "DiffAE's last.ckpt").
        progress: show a progress bar while downloading.

    Raises:
        SpecError: ``path=`` is not a file, or neither ``path=`` nor a zoo file is given.
        DownloadError: the file has no direct link and is not cached, or its download failed.
    """
    text = spec.format()
    if path is not None:
        given = Path(path).expanduser()
        if not given.is_file():
            problem = "is a folder, not a file" if given.is_dir() else "is not a file"
            raise SpecError(f"{text!r}: path={str(path)!r} {problem}; give {what}")
        return given
    if file is None:
        raise SpecError(
            f"{text!r}: give {what} with path=, e.g. {spec.name}:path=FILE, or a named model (promptgen list)"
        )
    if file.url is not None:
        return fetch(RemoteFile(file.url, file.filename, file.sha256, file.size), subdir=subdir, progress=progress)
    target = cache_root() / subdir / file.filename
    if target.is_file():
        return target
    where = f" from {file.page}" if file.page else ""
    raise DownloadError(
        f"{spec.name} needs {what}, which has no direct download link: download it by hand{where}, put it at {target}, or pass path="
    )


class _Named(Protocol):
    @property
    def name(self) -> str: ...


M = TypeVar("M", bound=_Named)


def _build_named(
    build: Callable[..., Any], models: Mapping[str, Any], name: str, spec: Spec, options: Any, registry: Any
) -> Any:
    return build(spec, options, registry, models[name])  # looked up when built, not when registered


def zoo_entries(
    models: Mapping[str, M],
    build: Callable[..., Any],
    *,
    options: Any,
    summary: Callable[[M], str],
    example: Callable[[M], str],
) -> list[GeneratorEntry]:
    """One generator entry per zoo model, each built by ``build(spec, options, registry, model)``.

    ``summary`` and ``example`` give the model's line in ``promptgen list`` and its example spec.
    """
    return [
        GeneratorEntry(
            name, partial(_build_named, build, models, name), summary=summary(m), options=options, example=example(m)
        )
        for name, m in models.items()
    ]
