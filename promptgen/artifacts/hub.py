"""Prompts on the Hugging Face Hub: ``promptgen push`` and ``hf://OWNER/NAME[@REVISION]``.

A prompt folder is uploaded as a model repository (:func:`push_prompt`): its
manifest, its flow weights and its sample grid, with a model card
(``README.md``) written from the manifest. A chained prompt (trained with
``--gen prompt:PATH``) carries its ancestors along, nearest first, in
``ancestors/1/``, ``ancestors/2/``...; each copy of a manifest names its parent
there by the relative path loading already follows (see
:mod:`promptgen.artifacts.chaining`), and each parent's weights still match the
sha256 its child recorded.

``load_prompt("hf://alice/threes")`` (and ``--gen prompt:hf://alice/threes``)
downloads only what loading needs (:data:`LOAD_PATTERNS`) into the Hub's cache,
then copies the files of that commit into ``$PROMPTGEN_HOME/hub/`` (the Hub
cache keeps files as links to elsewhere, which a prompt folder refuses: see
:mod:`promptgen.artifacts.manifest`) and loads that folder like any other: the
manifest is validated and the weights checked against its sha256 before the
generator is built, and nothing in the repository is run.

``huggingface_hub`` is an optional extra (``promptgen-core[hub]``, or ``pip install huggingface_hub``),
imported only here and only when a Hub feature is used.

>>> parse_hub_ref("hf://alice/threes@v1")
HubRef(repo_id='alice/threes', revision='v1')
>>> str(parse_hub_ref("hf://alice/threes"))
'hf://alice/threes'
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

from promptgen.artifacts import chaining
from promptgen.artifacts.manifest import MANIFEST, PREVIEW, PromptManifest, check_prompt, manifest_json, read_manifest
from promptgen.core.download import cache_root
from promptgen.core.errors import ArtifactError, PromptgenError, SpecError, inline, one_line
from promptgen.core.spec import parse_spec

SCHEME = "hf://"
INSTALL = "pip install huggingface_hub"
ANCESTORS = "ancestors"
CARD = "README.md"
#: What loading a prompt reads from its repository: manifests and weights, its own and its ancestors'.
LOAD_PATTERNS = [MANIFEST, "*.safetensors", f"{ANCESTORS}/*/{MANIFEST}"]
OFFLINE_VARIABLE = "HF_HUB_OFFLINE"

# The Hub's rule for repo ids (huggingface_hub's validate_repo_id), checked before huggingface_hub is imported.
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"(?:{_PART}/)?{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9_.\-/]{1,255}")
_ANCESTOR_DIR = re.compile(r"[1-9][0-9]{0,3}")


class HubError(PromptgenError):
    """A prompt that cannot be pushed to or fetched from the Hugging Face Hub (one line, exit code 2)."""


@dataclass(frozen=True)
class HubRef:
    """A prompt on the Hub: ``hf://REPO_ID`` at ``revision`` (a branch, tag or commit; None: the main branch)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return SCHEME + self.repo_id + (f"@{self.revision}" if self.revision else "")


def is_hub_ref(text: object) -> bool:
    """Whether ``text`` names a prompt on the Hub (``hf://...``)."""
    return isinstance(text, str) and text.startswith(SCHEME)


def check_repo_id(text: str) -> str:
    """``text`` if it is a valid Hub repo id (``OWNER/NAME`` or ``NAME``), else a one-line :class:`HubError`."""
    if (
        not isinstance(text, str)
        or not _REPO_ID.fullmatch(text)
        or "--" in text
        or ".." in text
        or text.endswith(".git")
    ):
        raise HubError(
            f"{inline(text)!s} is not a Hugging Face repo id; give OWNER/NAME, e.g. alice/mnist-threes "
            "(letters, digits, '-', '_' and '.', at most 96 each, no '--' or '..')"
        )
    return text


def check_revision(text: str) -> str:
    """``text`` if it can be a branch, tag or commit name, else a one-line :class:`HubError`."""
    if not _REVISION.fullmatch(text) or ".." in text or text.startswith(("/", "-")) or text.endswith("/"):
        raise HubError(f"{inline(text)!s} is not a revision; give a branch, tag or commit, e.g. main or v1")
    return text


def parse_hub_ref(text: str) -> HubRef:
    """``hf://REPO_ID[@REVISION]`` as a :class:`HubRef`; one-line :class:`HubError` for anything else."""
    if not is_hub_ref(text):
        raise HubError(
            f"{inline(text)!s} does not start with {SCHEME}; give {SCHEME}OWNER/NAME, e.g. hf://alice/threes"
        )
    rest = text[len(SCHEME) :]
    repo_id, at, revision = rest.partition("@")
    if not repo_id:
        raise HubError(f"{inline(text)!s} names no repo; give {SCHEME}OWNER/NAME, e.g. hf://alice/threes")
    check_repo_id(repo_id)
    if at:
        check_revision(revision)
    return HubRef(repo_id, revision or None)


def require_hub(what: str) -> ModuleType:
    """``huggingface_hub``, or a one-line :class:`HubError` saying how to install it."""
    try:
        import huggingface_hub
        import huggingface_hub.constants
    except ImportError:
        raise HubError(f"{what} needs huggingface_hub, which is not installed: {INSTALL}") from None
    return huggingface_hub


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "on", "yes", "true")


# huggingface_hub reads its variables once, when it is imported; these read them when they are used.
def hub_offline(hub: ModuleType) -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the network."""
    return _env_flag(OFFLINE_VARIABLE) or bool(getattr(hub.constants, "HF_HUB_OFFLINE", False))


def _endpoint(hub: ModuleType) -> str:
    return (os.environ.get("HF_ENDPOINT") or hub.constants.ENDPOINT).rstrip("/")


def _hub_cache(hub: ModuleType) -> str:
    home = os.environ.get("HF_HOME")
    default = os.path.join(home, "hub") if home else hub.constants.HF_HUB_CACHE
    return os.path.expanduser(os.path.expandvars(os.environ.get("HF_HUB_CACHE") or default))


# -- fetching ------------------------------------------------------------------------------------------------------


def download_prompt(ref: str | HubRef, token: str | None = None) -> Path:
    """The local folder of the prompt ``ref`` (``hf://OWNER/NAME[@REVISION]``), downloaded once.

    Only manifests and weights are downloaded (:data:`LOAD_PATTERNS`); with
    ``HF_HUB_OFFLINE=1`` only the Hub's cache is read. The folder returned holds
    plain copies of that commit's files, under ``$PROMPTGEN_HOME/hub/``; nothing
    in it has been checked yet beyond its names (loading checks the rest).

    Raises:
        HubError: a malformed reference, huggingface_hub missing, no such repo
            or revision, offline without a cached copy, a repo that is no
            prompt, or a prompt whose manifest records no sha256 of its weights.
    """
    ref = parse_hub_ref(ref) if isinstance(ref, str) else ref
    hub = require_hub(f"{ref}")
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline(hub)
    cache = _hub_cache(hub)
    try:
        snapshot = Path(
            hub.snapshot_download(
                ref.repo_id,
                revision=ref.revision,
                allow_patterns=LOAD_PATTERNS,
                local_files_only=offline,
                cache_dir=cache,
                endpoint=_endpoint(hub),
                token=token,
            )
        )
    except LocalEntryNotFoundError:
        if offline:
            raise HubError(
                f"{ref} is not in the Hugging Face cache ({cache}) and {OFFLINE_VARIABLE} is set, so it is not "
                f"downloaded; unset {OFFLINE_VARIABLE} to download it once"
            ) from None
        raise HubError(
            f"cannot download {ref}: the Hub cannot be reached; check the connection and try again"
        ) from None
    except RevisionNotFoundError:
        raise HubError(
            f"{ref}: the repo {ref.repo_id} has no revision {ref.revision!r}; give a branch, tag or commit it has"
        ) from None
    except RepositoryNotFoundError:  # also a gated or private repo the token cannot see
        raise HubError(
            f"{ref}: no such repo on the Hub, or it is private; check the name, or log in (`hf auth login`, or HF_TOKEN)"
        ) from None
    except EntryNotFoundError:
        raise HubError(
            f"{ref}: a file of the prompt is missing from the repo; push it again with `promptgen push`"
        ) from None
    except HFValidationError as exc:
        raise HubError(f"{ref}: {one_line(str(exc))[:160]}") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise HubError(f"cannot download {ref}: the Hub answered HTTP {status}; try again later") from None
    except OSError as exc:
        raise HubError(f"cannot download {ref}: {exc.strerror or one_line(str(exc))[:160]}; try again") from None
    except Exception as exc:  # noqa: BLE001 - the HTTP library's own errors (requests or httpx) differ by version
        raise HubError(f"cannot download {ref}: {type(exc).__name__}: {one_line(str(exc))[:160]}; try again") from None
    folder = _materialise(snapshot, ref)
    try:
        manifest = read_manifest(folder)
    except PromptgenError as exc:  # said of the downloaded copy: name the repo it came from
        raise type(exc)(f"{ref}: {exc}") from None
    if manifest.weights_sha256 is None:
        raise HubError(
            f"{ref}: its manifest records no sha256 of its weights, so they cannot be checked; promptgen loads from the "
            "Hub only prompts saved by promptgen 0.2 or later: ask for it to be composed and pushed again"
        )
    _check_bundled_parents(folder, manifest, ref)
    return folder


def _wanted(relative: PurePosixPath) -> bool:
    """Whether a file of a snapshot is one loading reads, with a name a prompt folder may hold."""
    parts = relative.parts
    if any(p.startswith(".") or not p.isprintable() or len(p) > 255 for p in parts):
        return False
    if len(parts) == 3 and (parts[0] != ANCESTORS or not _ANCESTOR_DIR.fullmatch(parts[1])):
        return False
    if len(parts) not in (1, 3):
        return False
    return any(fnmatch.fnmatchcase(str(relative), p) for p in LOAD_PATTERNS)


def _materialise(snapshot: Path, ref: HubRef) -> Path:
    """Plain copies of the snapshot's prompt files, in a folder of promptgen's cache named by the commit."""
    if not (snapshot / MANIFEST).is_file():
        raise HubError(f"{ref} holds no {MANIFEST}: it is not a promptgen prompt; check the repo name")
    commit = snapshot.name if re.fullmatch(r"[0-9a-f]{40}", snapshot.name) else None
    if commit is None:  # not the Hub cache's layout: never reuse a copy
        commit = uuid.uuid4().hex
    target = cache_root() / "hub" / ref.repo_id.replace("/", "--") / commit
    if (target / MANIFEST).is_file():
        return target  # a commit never changes: copied whole by an earlier load
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=target.parent))
    except OSError as exc:
        raise HubError(
            f"cannot copy {ref} into {str(target.parent)!r}: {exc.strerror or exc}; set PROMPTGEN_HOME to a folder you can write to"
        ) from None
    try:
        for root, dirs, files in os.walk(snapshot):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                source = Path(root) / name
                relative = PurePosixPath(source.relative_to(snapshot).as_posix())
                if not _wanted(relative) or not source.is_file():
                    continue
                destination = staging.joinpath(*relative.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)  # follows the cache's link to its blob
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not another process that copied it first
                raise
    except OSError as exc:
        raise HubError(
            f"cannot copy {ref} into {str(target.parent)!r}: {exc.strerror or exc}; set PROMPTGEN_HOME to a folder you can write to"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_bundled_parents(folder: Path, manifest: PromptManifest, ref: HubRef) -> None:
    """Refuse, in one line, a chained prompt whose repo lacks a parent it needs (pushed without ``promptgen push``)."""
    current, record_manifest = folder, manifest
    for depth in range(1, len(manifest.lineage) + 1):
        if not record_manifest.lineage:
            return
        parent = record_manifest.lineage[0]
        found = next((c for c in chaining.places_of_parent(current, parent) if (c / MANIFEST).is_file()), None)
        if found is None:
            raise HubError(
                f"{ref} is a prompt trained on another prompt ({parent.generator} + {', '.join(parent.energies)}), "
                f"and the repo does not hold that parent ({ANCESTORS}/{depth}/); push it again with `promptgen push`, "
                "which uploads the parents with it"
            )
        current, record_manifest = found, read_manifest(found)


# -- pushing -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_prompt` uploaded: the repo (``OWNER/NAME``), its URL, the commit and the files."""

    repo_id: str
    url: str
    commit: str | None
    revision: str | None
    files: tuple[str, ...]

    @property
    def ref(self) -> HubRef:
        return HubRef(self.repo_id, self.revision)


def prompt_chain(folder: Path) -> list[tuple[Path, PromptManifest]]:
    """The prompt in ``folder`` and its ancestors, nearest first, each with its manifest.

    Each manifest is validated and each flow's weights checked against their
    sha256 (:func:`~promptgen.artifacts.manifest.check_prompt`); a parent must
    be where its child recorded it, with the weights the child was trained on.
    """
    chain: list[tuple[Path, PromptManifest]] = []
    seen: set[Path] = set()
    current = Path(folder)
    while True:
        manifest = check_prompt(current)
        try:
            key = current.resolve()
        except (OSError, RuntimeError) as exc:
            raise ArtifactError(f"cannot follow {str(current)!r} ({one_line(str(exc))})") from None
        if key in seen:
            raise ArtifactError(f"prompt chain loops back on itself at {str(key)!r}; restore the edited manifest.json")
        seen.add(key)
        chain.append((current, manifest))
        spec = parse_spec(chaining.resolve_parent_spec(current, manifest))
        if spec.name != chaining.NAME:
            return chain
        parent = chaining.prompt_path(spec)
        if is_hub_ref(parent):
            raise HubError(
                f"{str(folder)!r} was trained on {parent}; push the prompt it was trained on from a local folder"
            )
        current = Path(parent).expanduser()


def _parent_spec_of(spec: str, path: str) -> bool:
    """Whether ``spec`` is ``prompt:`` of the folder ``path`` (as compose records a chained prompt's parent)."""
    try:
        parsed = parse_spec(spec)
        return parsed.name == chaining.NAME and parsed.weight is None and Path(chaining.prompt_path(parsed)) == Path(path)
    except SpecError:
        return False


def _staged_manifest(manifest: PromptManifest, index: int) -> str:
    """The manifest of the chain's ``index``-th prompt (0: the one pushed), its ancestors' paths made those of the
    repo's layout (``ancestors/K/``, relative to the manifest's folder): no path of the pusher's machine is
    uploaded, and loading finds each parent beside its child (:func:`~promptgen.artifacts.chaining.places_of_parent`)."""
    def place(ancestor: int) -> str:
        return f"{ANCESTORS}/{ancestor}" if index == 0 else f"../{ancestor}"

    lineage = []
    for k, record in enumerate(manifest.lineage, start=1):
        update = {"relative": place(index + k), "path": place(index + k)}
        if k < len(manifest.lineage) and _parent_spec_of(record.generator, manifest.lineage[k].path):
            update["generator"] = chaining.prompt_spec(Path(place(index + k + 1)))
        lineage.append(record.model_copy(update=update))
    generator = manifest.generator
    if lineage:  # the spec that builds the parent, and the name the parent prompt gave itself
        here = chaining.prompt_spec(Path(lineage[0].path))
        for key in ("spec", "name"):
            if _parent_spec_of(getattr(generator, key), manifest.lineage[0].path):
                generator = generator.model_copy(update={key: here})
    return manifest_json(manifest.model_copy(update={"lineage": lineage, "generator": generator}))


def _stage(chain: list[tuple[Path, PromptManifest]], staging: Path) -> list[str]:
    """Copy the chain's files into ``staging`` in the repo's layout; the files' paths, relative to it."""
    written = []
    for index, (folder, manifest) in enumerate(chain):
        into = staging if index == 0 else staging / ANCESTORS / str(index)
        into.mkdir(parents=True, exist_ok=True)
        prefix = "" if index == 0 else f"{ANCESTORS}/{index}/"
        if manifest.lineage:
            (into / MANIFEST).write_text(_staged_manifest(manifest, index), encoding="utf-8")
        else:
            shutil.copyfile(folder / MANIFEST, into / MANIFEST)
        shutil.copyfile(folder / manifest.weights_file, into / manifest.weights_file)
        written += [prefix + MANIFEST, prefix + manifest.weights_file]
        if index == 0 and (folder / PREVIEW).is_file():
            shutil.copyfile(folder / PREVIEW, into / PREVIEW)
            written.append(PREVIEW)
    return written


def _cell(text: object) -> str:
    """``text`` safe inside a Markdown table cell (it may come from a stranger's manifest)."""
    flat = " ".join(str(text).split())
    return "".join(c for c in flat if c.isprintable()).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def _code(text: object) -> str:
    return f"`{_cell(text)}`"


def _figure(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.1%}" if kind == "share" else f"{value:.3g}"


def _asked(target: Any) -> str:
    """What a :class:`~promptgen.artifacts.manifest.TargetRecord` asks, in a few words."""
    parts = []
    if target.asked:
        parts.append(", ".join(target.asked))
    if target.avoided:
        parts.append("not " + ", ".join(target.avoided))
    if target.target is not None:
        parts.append("target " + ", ".join(f"{label} {p:.2f}" for label, p in zip(target.labels, target.target)))
    return " ".join(parts) or "-"


def _distribution(plugin: str) -> str | None:
    """The distribution a manifest's ``plugin`` field names (``promptgen-plugin-stylegan2 0.2.0``), if not the core."""
    name = plugin.split()[0] if plugin.split() else ""
    if not name or name == "promptgen-core" or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}", name):
        return None
    return name


def model_card(
    repo_id: str, chain: list[tuple[Path, PromptManifest]], preview: bool, revision: str | None = None
) -> str:
    """The ``README.md`` of a pushed prompt, from its manifest (and its ancestors', for a chain)."""
    manifest = chain[0][1]
    root = chain[-1][1].generator  # the base generator, at the root of a chain
    ref = str(HubRef(repo_id, revision))
    plugins = sorted({d for _, m in chain for d in [_distribution(m.generator.plugin)] if d})
    energies = " + ".join(_code(e.spec) for e in manifest.energies) or "no energies"
    on = _code(root.spec) if len(chain) == 1 else f"{_code(root.spec)}, through {len(chain) - 1} parent prompt(s)"
    name = repo_id.rsplit("/", 1)[-1]
    lines = [
        "---",
        "library_name: promptgen",
        "tags:",
        "- promptgen",
        "- normalizing-flow",
        "- controllable-generation",
        "---",
        "",
        f"# {_cell(name)}",
        "",
        (
            f"A [promptgen](https://pypi.org/project/promptgen-core/) prompt: a small normalizing flow in the latent "
            f"space of the generator {on}, trained so that its samples follow {energies}. Sampling it costs one pass of "
            "the flow and the generator per image; it needs the generator's plugin, none of the energies' models."
        ),
        "",
    ]
    if preview:
        lines += ["![samples from this prompt](samples.png)", ""]
    install = _install_lines(plugins)
    lines += [
        "## Use",
        "",
        "```bash",
        *install,
        f"promptgen sample --gen prompt:{_spec_value(ref)} -n 64 -o samples.png",
        "```",
        "",
        "```python",
        "import promptgen",
        "",
        f'prompt = promptgen.load_prompt("{ref}")',
        "images = promptgen.sample(prompt, n=64, seed=0)   # (N, C, H, W) float in [0, 1]",
        "```",
        "",
        "## Generator",
        "",
        "| spec | latent shape | resolution | channels | licence | source | plugin |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        (
            f"| {_code(root.spec)} | {_cell(tuple(root.latent_shape))} | {root.resolution[0]}×{root.resolution[1]} | "
            f"{root.channels} | {_cell(root.licence)} | {_cell(root.source)} | {_cell(root.plugin)} |"
        ),
        "",
        "The generator's licence applies to its images; this prompt only chooses its latents.",
        "",
        "## Energies",
        "",
        "| spec | weight | plugin | asks |",
        "| --- | --- | --- | --- |",
    ]
    for e in manifest.energies:
        asks = "; ".join(f"{t.attribute}: {_asked(t)}" for t in e.targets)
        lines.append(f"| {_code(e.spec)} | {e.weight:g} | {_cell(e.plugin)} | {_cell(asks) or '-'} |")
    lines.append("")
    check = manifest.check
    if check is not None:
        lines += [
            "## Closing check",
            "",
            (
                f"Judged on {check.n:,} fresh samples after training (step {check.step}), beside the generator's own "
                "samples on the same noise:"
            ),
            "",
            "| energy | attribute | judged by | prompt | generator | goal | met |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for t in check.targets:
            judges = ", ".join(t.judges) + ("" if t.independent else " (the control classifier)")
            goal = ("KL ≤ " if t.kind == "kl" else "≥ ") + _figure(t.goal, t.kind)
            lines.append(
                f"| {_code(t.energy)} | {_cell(t.attribute)} | {_cell(judges)} | {_figure(t.value, t.kind)} | "
                f"{_figure(t.base, t.kind)} | {_cell(goal)} | {'yes' if t.met else 'no'} |"
            )
        lines += ["", _cell(check.describe_junk()) + ".", ""]
        if check.unjudged:
            lines += ["Not judged: " + _cell("; ".join(check.unjudged)) + ".", ""]
        lines += [f"**{'Every target met.' if check.met else 'Not every target met.'}**", ""]
    training = manifest.training
    config = training.config
    flow = manifest.flow
    versions = ", ".join(f"{_cell(k)} {_cell(v)}" for k, v in manifest.versions.items())
    lines += [
        "## Training",
        "",
        f"- flow: {_cell(flow.kind)}, {flow.transforms} transforms, hidden {flow.hidden}, {flow.features} features",
        f"- {config.steps} steps, batch {config.batch_size}, learning rate {config.lr:g} ({config.schedule}), seed {config.seed}",
        f"- {training.seconds:.0f} s on {_cell(training.device)}, {training.processes} process(es); final loss {training.final_loss:.4g}",
        f"- created {_cell(manifest.created)}" + (f" with {versions}" if versions else ""),
    ]
    if manifest.conditions:
        conditions = ", ".join(f"{c.name} {c.low:g}:{c.high:g}" for c in manifest.conditions)
        lines.append(f"- conditions (`promptgen sample --cond`): {_cell(conditions)}")
    if manifest.mixture is not None:
        lines.append(
            f"- a mixture over {_cell(manifest.mixture.attribute)} ({len(manifest.mixture.labels)} components)"
        )
    lines.append("")
    if len(chain) > 1:
        lines += [
            "## Parent prompts",
            "",
            "Trained on another prompt; its ancestors are in this repo, nearest first:",
            "",
        ]
        for index, (_, m) in enumerate(chain[1:], start=1):
            energies_k = " + ".join(_code(e.spec) for e in m.energies) or "no energies"
            lines.append(f"- `{ANCESTORS}/{index}/`: {energies_k}")
        lines.append("")
    lines += [
        "## Files",
        "",
        f"- `{MANIFEST}`: everything needed to rebuild and check the prompt (format {manifest.format_version})",
        (
            f"- `{_cell(manifest.weights_file)}`: the flow's weights (safetensors), sha256 `{manifest.weights_sha256}`, "
            "checked when the prompt is loaded"
        ),
        "",
    ]
    return "\n".join(lines)


def _spec_value(ref: str) -> str:
    """``ref`` as a spec value: quoted when it holds ``@`` (a revision), which a spec reads as a weight."""
    return f"'\"{ref}\"'" if "@" in ref else ref


def push_prompt(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    message: str | None = None,
) -> PushResult:
    """Upload the prompt in ``folder`` (and, for a chain, its ancestors) to the Hub repo ``repo_id``, with a model card.

    The repo is created if needed (``private`` then makes it private); ``revision``
    is a branch, created from the main branch if it does not exist. Uploaded:
    ``manifest.json``, the weights, ``samples.png`` and ``README.md``; not the
    training state (``checkpoint.pt``, ``run.json``), which holds local paths.
    Every manifest and weights file is checked before anything is sent.

    Raises:
        ArtifactError: the folder is no prompt, is damaged, or a parent is missing or changed.
        HubError: a malformed repo id or revision, huggingface_hub missing, offline, or the Hub refused.
    """
    check_repo_id(repo_id)
    if revision is not None:
        check_revision(revision)
    chain = prompt_chain(Path(folder))
    if chain[0][1].weights_sha256 is None:
        raise HubError(
            f"{str(folder)!r} records no sha256 of its weights (saved before promptgen 0.2), so nobody could check them; "
            "compose it again, then push"
        )
    hub = require_hub("promptgen push")
    if hub_offline(hub):
        raise HubError(f"promptgen push needs the network, and {OFFLINE_VARIABLE} is set; unset it and push again")
    from huggingface_hub.utils import HfHubHTTPError, HFValidationError

    api = hub.HfApi(endpoint=_endpoint(hub), token=token)
    what = f"push to {repo_id}"
    try:
        repo = api.create_repo(repo_id, private=True if private else None, exist_ok=True)
        full_id = getattr(repo, "repo_id", None) or repo_id
        if revision is not None and revision != "main":
            api.create_branch(full_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="promptgen-push-") as tmp:
            staging = Path(tmp)
            files = _stage(chain, staging)
            (staging / CARD).write_text(model_card(full_id, chain, PREVIEW in files, revision), encoding="utf-8")
            files.append(CARD)
            info = api.upload_folder(
                repo_id=full_id,
                folder_path=staging,
                revision=revision,
                commit_message=message
                or f"promptgen push: {' + '.join(e.spec for e in chain[0][1].energies) or 'a prompt'}",
            )
    except HFValidationError as exc:
        raise HubError(f"cannot {what}: {one_line(str(exc))[:160]}") from None
    except HfHubHTTPError as exc:
        raise HubError(_http_refusal(exc, what)) from None
    except OSError as exc:
        raise HubError(
            f"cannot {what}: {exc.strerror or one_line(str(exc))[:160]}; check the connection and try again"
        ) from None
    except ValueError as exc:  # huggingface_hub's own checks (the card's metadata, a malformed answer)
        raise HubError(f"cannot {what}: {one_line(str(exc))[:160]}") from None
    except Exception as exc:  # noqa: BLE001 - the HTTP library's own errors (requests or httpx) differ by version
        raise HubError(f"cannot {what}: {type(exc).__name__}: {one_line(str(exc))[:160]}; try again") from None
    url = f"{_endpoint(hub)}/{full_id}" + (f"/tree/{revision}" if revision else "")
    return PushResult(full_id, url, getattr(info, "oid", None), revision, tuple(sorted(files)))


def _http_refusal(exc: Any, what: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return (
            f"cannot {what}: the Hub refused (HTTP {status}); log in with `hf auth login`, set HF_TOKEN, or pass "
            "--token a token that may write to that repo"
        )
    if status == 404:
        return f"cannot {what}: the Hub has no such repo or branch (HTTP 404); check the name"
    return f"cannot {what}: the Hub answered HTTP {status}; try again later"


def _install_lines(plugins: list[str]) -> list[str]:
    """The model card's install lines: by name once promptgen is on PyPI, from a clone until then."""
    from promptgen.core.zoo import ON_PYPI, ZOO

    if "promptgen-core" in ON_PYPI:
        return ['pip install "promptgen-core[hub]"'] + [f"pip install {p}" for p in plugins]
    folders = {d.name: d.folder for d in ZOO}
    return ["# in a clone of promptgen (its distributions are not on PyPI yet)", 'pip install "./[hub]"'] + [
        f"pip install ./{folders[p]}" if p in folders else f"pip install {p}" for p in plugins
    ]
