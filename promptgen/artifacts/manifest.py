"""The prompt artifact: a folder that stands alone once trained.

::

    runs/digit-3/
      manifest.json       PromptManifest, validated by pydantic
      flow.safetensors    the flow's weights (safetensors: loading runs no code)
      samples.png         a preview grid written by `promptgen compose`
      run.json            what compose was asked (for `compose --resume`); not needed to sample
      checkpoint.pt       the training state at the last checkpoint; not needed to sample

Sampling needs the generator named in the manifest, and none of the energies'
models.

A prompt folder may come from a stranger. Reading one runs no code (JSON and
safetensors only), reads no file outside the folder (the manifest names its
weights by a plain file name, and neither file may be a link to elsewhere),
and refuses anything damaged, inconsistent or from a newer promptgen with one
:class:`~promptgen.core.errors.ArtifactError` line (see docs/robustness.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from promptgen.core.atomic import write_atomic, write_text_atomic
from promptgen.core.conditions import MAX_VALUE, ConditionRange
from promptgen.core.errors import ArtifactError, first_error, inline, one_line
from promptgen.core.protocols import AttributeTarget
from promptgen.core.spec import MAX_WEIGHT
from promptgen.training.checkpoint import check_shapes, check_tensors
from promptgen.training.config import TrainingSummary, TrialRecord
from promptgen.training.flow import CouplingFlow, FlowConfig
from promptgen.training.watch import Reading

FORMAT = "promptgen-prompt"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: The sample grid compose writes beside the manifest (``--preview N`` samples; none at 0).
PREVIEW = "samples.png"
WEIGHTS = "flow.safetensors"
# Far above any manifest promptgen writes (a long training history is a few MB);
# a bigger "manifest" is not one, and reading it whole could exhaust memory.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_DAMAGED = "the prompt is damaged, train it again"


class GeneratorRecord(BaseModel):
    """Which generator the flow was trained for."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    name: str
    latent_shape: tuple[int, ...] = Field(min_length=1)
    resolution: tuple[int, int]
    channels: int = Field(ge=1)
    licence: str = "unknown"
    source: str = ""
    plugin: str = ""


class TargetRecord(BaseModel):
    """An :class:`~promptgen.core.protocols.AttributeTarget` as stored in the manifest."""

    model_config = ConfigDict(extra="forbid")

    attribute: str
    labels: list[str]
    target: list[float] | None = None
    asked: list[str] = Field(default_factory=list)
    avoided: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, t: AttributeTarget) -> TargetRecord:
        return cls(
            attribute=t.attribute,
            labels=list(t.labels),
            target=None if t.target is None else list(t.target),
            asked=list(t.asked),
            avoided=list(t.avoided),
        )

    def to_target(self) -> AttributeTarget:
        return AttributeTarget(
            self.attribute,
            tuple(self.labels),
            None if self.target is None else tuple(self.target),
            tuple(self.asked),
            tuple(self.avoided),
        )


class EnergyRecord(BaseModel):
    """One energy of the prompt, as typed and as weighted."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    label: str
    weight: float = Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)
    plugin: str = ""
    state: dict[str, list[float]] = Field(default_factory=dict, description="fitted numbers, e.g. de-biasing's beta")
    targets: list[TargetRecord] = Field(default_factory=list, description="what the energy asks of attributes")


class MixtureRecord(BaseModel):
    """A mixture prompt's components: sampling draws component ``c`` with probability ``weights[c]``.

    Written by an energy with ``mode=mixture`` (de-biasing); the flow then has
    ``classes = len(labels)`` and the prompt's latent one more coordinate, which
    picks the component (see :class:`~promptgen.artifacts.prompt.Prompt`).
    """

    model_config = ConfigDict(extra="forbid")

    energy: str = Field(description="label of the energy that made the prompt a mixture")
    attribute: str = Field(description="the attributes whose class combinations are the components, joined by *")
    labels: list[str] = Field(min_length=1)
    weights: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights_are_a_distribution(self) -> MixtureRecord:
        if len(self.weights) != len(self.labels):
            raise ValueError(f"{len(self.weights)} weights for {len(self.labels)} components")
        if not all(math.isfinite(w) and w >= 0 for w in self.weights) or abs(sum(self.weights) - 1) > 1e-3:
            raise ValueError("the mixture weights must be finite, >= 0 and sum to 1")
        return self


class ConditionRecord(BaseModel):
    """One condition of a conditional prompt: its name, training range and distribution, and reference value."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)
    low: float = Field(ge=-MAX_VALUE, le=MAX_VALUE)
    high: float = Field(ge=-MAX_VALUE, le=MAX_VALUE)
    distribution: Literal["uniform", "normal"] = "uniform"
    reference: float = Field(ge=-MAX_VALUE, le=MAX_VALUE)

    @model_validator(mode="after")
    def _range_holds_reference(self) -> ConditionRecord:
        if not self.low < self.high:
            raise ValueError(f"condition {self.name!r}: low {self.low} must be below high {self.high}")
        if not self.low <= self.reference <= self.high:
            raise ValueError(f"condition {self.name!r}: reference {self.reference} is outside {self.low}:{self.high}")
        return self

    @classmethod
    def of(cls, c: ConditionRange) -> ConditionRecord:
        return cls(name=c.name, low=c.low, high=c.high, distribution=c.distribution, reference=c.reference)

    def to_range(self) -> ConditionRange:
        return ConditionRange(self.name, self.low, self.high, self.distribution, self.reference)


class LineageRecord(BaseModel):
    """One ancestor of a prompt trained on another prompt (``--gen prompt:PATH``).

    ``relative`` is the ancestor's folder relative to this prompt's own folder,
    tried when ``path`` is gone (the two were moved together).
    """

    model_config = ConfigDict(extra="forbid")

    path: str
    relative: str | None = None
    generator: str
    energies: list[str]
    created: str
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class PromptManifest(BaseModel):
    """Everything needed to rebuild and trust a prompt, as stored in ``manifest.json``."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["promptgen-prompt"] = FORMAT
    format_version: int = Field(default=FORMAT_VERSION, ge=1, le=FORMAT_VERSION, strict=True)
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    generator: GeneratorRecord
    energies: list[EnergyRecord]
    lineage: list[LineageRecord] = Field(default_factory=list, description="ancestors, nearest parent first")
    flow: FlowConfig
    mixture: MixtureRecord | None = None
    conditions: list[ConditionRecord] = Field(
        default_factory=list, description="a conditional prompt's conditions, in the order of the flow's condition input"
    )
    weights_file: str = WEIGHTS
    weights_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the weights file, checked when it is loaded (absent in prompts saved before checksums were recorded)"
    )
    training: TrainingSummary
    trials: list[TrialRecord] = Field(default_factory=list, description="mode=auto's trials: each mode read after a short run")
    check: Reading | None = Field(default=None, description="the closing check: the prompt's samples judged against the generator's")
    versions: dict[str, str] = Field(default_factory=dict)

    @field_validator("weights_file")
    @classmethod
    def _inside_folder(cls, v: str) -> str:
        # A manifest must not make us read files outside its own folder.
        if (
            not v
            or len(v) > 255
            or "/" in v
            or "\\" in v
            or v.startswith(".")
            or not v.isprintable()
            or re.match(r"^[A-Za-z]:", v)
        ):
            raise ValueError("must be a plain file name inside the prompt folder, such as flow.safetensors")
        return v

    @model_validator(mode="after")
    def _flow_fits_generator(self) -> PromptManifest:
        if self.flow.shape() != tuple(self.generator.latent_shape):
            raise ValueError(
                f"the flow's latent shape {self.flow.shape()} differs from the generator's {tuple(self.generator.latent_shape)}"
            )
        components = len(self.mixture.labels) if self.mixture is not None else 0
        if components != self.flow.classes:
            raise ValueError(f"the flow has {self.flow.classes} classes but the mixture {components} components")
        if len(self.conditions) != self.flow.conditions:
            raise ValueError(f"the flow takes {self.flow.conditions} conditions but the manifest names {len(self.conditions)}")
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"a condition is named twice in {names}")
        return self

    def condition_ranges(self) -> list[ConditionRange]:
        return [c.to_range() for c in self.conditions]


def current_versions() -> dict[str, str]:
    import zuko

    from promptgen import __version__

    return {
        "promptgen": __version__,
        "torch": torch.__version__,
        "zuko": zuko.__version__,
        "python": platform.python_version(),
    }


def check_out_dir(out: Path, overwrite: bool = False) -> None:
    """Refuse an ``--out`` that a new prompt may not use: a file, or a non-empty folder that is not a prompt
    being overwritten. Nothing is created."""
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"--out {str(out)!r} is a file; give a folder name, e.g. --out runs/my-prompt")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ArtifactError(f"--out {str(out)!r} already exists and is not empty; choose a new folder or add --overwrite")
        if not (out / MANIFEST).exists():
            raise ArtifactError(f"--out {str(out)!r} is not a prompt folder; --overwrite only replaces prompts, choose a new folder")


def prepare_out_dir(out: Path, overwrite: bool = False) -> None:
    """Make ``out`` ready for a new prompt without destroying anything the user had.

    An existing non-empty folder is refused unless ``overwrite`` is set and the
    folder is itself a prompt (then only its prompt files are replaced).
    """
    check_out_dir(out, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create {str(out)!r}: {exc.strerror}; choose a folder you can write to") from None


def save_prompt(out: Path, manifest: PromptManifest, flow: CouplingFlow) -> None:
    """Write weights then manifest, each atomically (a manifest never points at missing weights).

    Sets ``manifest.weights_sha256`` to the checksum of the weights written.
    """
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in flow.state_dict().items()}
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ArtifactError(f"the trained flow has non-finite weights ({k}); nothing was saved. Lower --lr and retry")
    data = safetensors_bytes(tensors, metadata={"format": FORMAT})
    manifest.weights_sha256 = hashlib.sha256(data).hexdigest()
    write_atomic(out / manifest.weights_file, lambda p: p.write_bytes(data))
    write_text_atomic(out / MANIFEST, manifest_json(manifest))


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a block at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_json(manifest: PromptManifest) -> str:
    """The text of ``manifest.json``.

    Written with Python's json rather than pydantic's so that a NaN or infinite
    figure (an evaluation that overflowed) is stored as ``NaN``/``Infinity``,
    which :func:`read_manifest` reads back, not as ``null``, which it would refuse.
    """
    return json.dumps(manifest.model_dump(mode="python"), indent=2, ensure_ascii=False, allow_nan=True) + "\n"


def _own_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` resolved, if it exists; refuses a link to outside ``folder`` and anything but a regular file."""
    path = folder / name
    try:
        os.stat(path)
    except FileNotFoundError:
        return None
    except PermissionError:  # Path.exists() would call this "missing"
        raise ArtifactError(f"cannot read {str(path)!r}: permission denied; check the permissions of the file and its folder") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {str(path)!r}: {exc.strerror or type(exc).__name__}; {_DAMAGED}") from None
    try:
        real, root = path.resolve(strict=True), folder.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ArtifactError(f"cannot follow {str(path)!r} ({one_line(str(exc))}); {_DAMAGED}") from None
    if not real.is_relative_to(root):
        raise ArtifactError(
            f"{str(path)!r} is a link to {str(real)!r}, outside the prompt folder; promptgen reads only files inside "
            "it: copy the file into the folder"
        )
    if not real.is_file():  # a folder, a FIFO or a device would fail or block
        raise ArtifactError(f"{str(path)!r} is not a regular file; {_DAMAGED}")
    return real


def _where(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as ``a.b.0.c``, with names taken from the file quoted safely."""
    parts = [str(p) if isinstance(p, int) or re.fullmatch(r"[A-Za-z0-9_\-]{1,40}", str(p)) else repr(str(p)[:40]) for p in loc]
    return ".".join(parts) or "the top level"


def read_manifest(folder: Path) -> PromptManifest:
    """Read and validate ``folder/manifest.json`` with one-line errors."""
    folder = Path(folder)
    if not folder.exists():
        raise ArtifactError(f"prompt folder {str(folder)!r} does not exist; train one with `promptgen compose --out {inline(folder)}`")
    if not folder.is_dir():
        raise ArtifactError(f"{str(folder)!r} is a file, not a prompt folder; give the folder that holds {MANIFEST}")
    path = folder / MANIFEST
    real = _own_file(folder, MANIFEST)
    if real is None:
        raise ArtifactError(f"{str(folder)!r} is not a prompt: it has no {MANIFEST}; give a folder made by `promptgen compose`")
    try:
        size = real.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ArtifactError(
                f"{str(path)!r} is {size / 2**20:.0f} MB, far larger than a promptgen manifest "
                f"(at most {MAX_MANIFEST_BYTES // 2**20} MB); it is not a prompt manifest"
            )
        raw: Any = json.loads(real.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ArtifactError(f"cannot read {str(path)!r}: {exc.strerror or exc}; check the file and its permissions") from None
    except UnicodeDecodeError:
        raise ArtifactError(f"{str(path)!r} is not UTF-8 text, so not a manifest; {_DAMAGED}") from None
    except RecursionError:
        raise ArtifactError(f"{str(path)!r} is nested too deeply to be a promptgen manifest; {_DAMAGED}") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with thousands of digits
        raise ArtifactError(f"{str(path)!r} is not valid JSON ({one_line(str(exc))[:120]}); {_DAMAGED}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{str(path)!r} is not a promptgen manifest (no \"format\": \"{FORMAT}\")")
    version = raw.get("format_version")
    if isinstance(version, (int, float)) and not isinstance(version, bool) and version > FORMAT_VERSION:
        versions = raw.get("versions")
        made_by = versions.get("promptgen") if isinstance(versions, dict) else None
        if not (isinstance(made_by, str) and made_by.isprintable() and 0 < len(made_by) <= 40):
            made_by = "a newer promptgen"
        small = version < 10**6 if isinstance(version, int) else (math.isfinite(version) and version < 1e6)
        shown = f"{version:.0f}" if small else "newer"
        raise ArtifactError(
            f"{str(folder)!r} is prompt format {shown} (made by promptgen {made_by}); this promptgen reads up to "
            f"format {FORMAT_VERSION}: upgrade with `pip install -U promptgen-core`"
        )
    try:
        return PromptManifest.model_validate(raw)
    except ValidationError as exc:
        err = first_error(exc)
        msg = one_line(err["msg"])[:200]
        raise ArtifactError(f"{str(path)!r} is invalid at {_where(err['loc'])}: {msg}; {_DAMAGED}") from None
    except RecursionError:
        raise ArtifactError(f"{str(path)!r} is nested too deeply to be a promptgen manifest; {_DAMAGED}") from None


def load_flow(folder: Path, manifest: PromptManifest) -> CouplingFlow:
    """Rebuild the flow from the manifest and load its safetensors weights.

    The file's header (names and shapes) is checked before its data is read
    and before the flow is built, so a manifest that describes a huge flow
    cannot make promptgen allocate it; then every tensor must have the flow's
    shape and dtype, the coupling masks their fixed values, and every weight
    must be finite. A manifest with ``weights_sha256`` (every prompt saved by
    this version) also refuses weights changed since they were saved.
    """
    folder = Path(folder)
    path = folder / manifest.weights_file
    where = str(path)
    real = _own_file(folder, manifest.weights_file)
    if real is None:
        raise ArtifactError(f"{where!r} is missing; the prompt is incomplete, train it again")
    try:
        with safe_open(str(real), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (safetensors, OS, dtype); each gets one line
        raise ArtifactError(f"{where!r} is corrupt ({one_line(str(exc))[:120]}); {_DAMAGED}") from None
    config = manifest.flow
    numbers = sum(math.prod(s) for s in shapes.values())
    if config.size_bound() > 4 * numbers + 4096:
        raise ArtifactError(
            f"{where!r} holds {numbers:,} numbers, far fewer than the manifest's flow ({config.kind}, "
            f"{config.transforms} layers, {config.features} features, hidden {config.hidden}) needs; "
            "the manifest and the weights do not belong together, train the prompt again"
        )
    flow = CouplingFlow(config)
    expected = flow.state_dict()
    hint = "the manifest and the weights do not belong together, train the prompt again"
    check_shapes(shapes, {k: tuple(v.shape) for k, v in expected.items()}, where, hint)  # the file's data is not read yet
    if manifest.weights_sha256 is not None and file_sha256(real) != manifest.weights_sha256:
        raise ArtifactError(
            f"{where!r} does not match the sha256 in {MANIFEST}: it was damaged or replaced after training; "
            "restore the prompt folder from a copy, or train it again"
        )
    try:
        tensors = load_file(str(real))
    except Exception as exc:  # noqa: BLE001 - as above
        raise ArtifactError(f"{where!r} is corrupt ({one_line(str(exc))[:120]}); {_DAMAGED}") from None
    check_tensors(tensors, expected, where, hint)
    flow.load_state_dict(tensors)
    return flow.eval().requires_grad_(False)


def check_prompt(folder: Path) -> PromptManifest:
    """The manifest of the prompt in ``folder``, after checking its weights too (without building its generator)."""
    manifest = read_manifest(folder)
    load_flow(folder, manifest)
    return manifest
