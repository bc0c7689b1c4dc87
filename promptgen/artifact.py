"""The prompt artifact: a folder that stands alone once trained.

::

    runs/digit-3/
      manifest.json       PromptManifest, validated by pydantic
      flow.safetensors    the flow's weights (safetensors: loading runs no code)
      samples.png         a preview grid written by `promptgen compose`

Sampling needs the generator named in the manifest, and none of the energies'
models.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from promptgen.atomic import write_atomic, write_text_atomic
from promptgen.errors import ArtifactError
from promptgen.flow import CouplingFlow, FlowConfig
from promptgen.protocols import AttributeTarget
from promptgen.trainer import TrainingSummary

FORMAT = "promptgen-prompt"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "flow.safetensors"


class GeneratorRecord(BaseModel):
    """Which generator the flow was trained for."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    name: str
    latent_shape: tuple[int, ...]
    resolution: tuple[int, int]
    channels: int
    licence: str = "unknown"
    source: str = ""
    plugin: str = ""


class TargetRecord(BaseModel):
    """An :class:`~promptgen.protocols.AttributeTarget` as stored in the manifest."""

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
    weight: float = Field(ge=0)
    plugin: str = ""
    state: dict[str, list[float]] = Field(default_factory=dict, description="fitted numbers, e.g. de-biasing's beta")
    targets: list[TargetRecord] = Field(default_factory=list, description="what the energy asks of attributes")


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
    weights_sha256: str


class PromptManifest(BaseModel):
    """Everything needed to rebuild and trust a prompt, as stored in ``manifest.json``."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["promptgen-prompt"] = FORMAT
    format_version: int = FORMAT_VERSION
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    generator: GeneratorRecord
    energies: list[EnergyRecord]
    lineage: list[LineageRecord] = Field(default_factory=list, description="ancestors, nearest parent first")
    flow: FlowConfig
    weights_file: str = WEIGHTS
    training: TrainingSummary
    versions: dict[str, str] = Field(default_factory=dict)

    @field_validator("weights_file")
    @classmethod
    def _inside_folder(cls, v: str) -> str:
        # A manifest must not make us read files outside its own folder.
        if not v or "/" in v or "\\" in v or v in (".", "..") or v.startswith("."):
            raise ValueError("must be a plain file name inside the prompt folder")
        return v


def current_versions() -> dict[str, str]:
    import zuko

    from promptgen import __version__

    return {
        "promptgen": __version__,
        "torch": torch.__version__,
        "zuko": zuko.__version__,
        "python": platform.python_version(),
    }


def prepare_out_dir(out: Path, overwrite: bool = False) -> None:
    """Make ``out`` ready for a new prompt without destroying anything the user had.

    An existing non-empty folder is refused unless ``overwrite`` is set and the
    folder is itself a prompt (then only its prompt files are replaced).
    """
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"--out {str(out)!r} is a file; give a folder name, e.g. --out runs/my-prompt")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ArtifactError(f"--out {str(out)!r} already exists and is not empty; choose a new folder or add --overwrite")
        if not (out / MANIFEST).exists():
            raise ArtifactError(f"--out {str(out)!r} is not a prompt folder; --overwrite only replaces prompts, choose a new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create {str(out)!r}: {exc.strerror}; choose a folder you can write to") from None


def save_prompt(out: Path, manifest: PromptManifest, flow: CouplingFlow) -> None:
    """Write weights then manifest, each atomically (a manifest never points at missing weights)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in flow.state_dict().items()}
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ArtifactError(f"the trained flow has non-finite weights ({k}); nothing was saved. Lower --lr and retry")
    write_atomic(out / manifest.weights_file, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    write_text_atomic(out / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def read_manifest(folder: Path) -> PromptManifest:
    """Read and validate ``folder/manifest.json`` with one-line errors."""
    folder = Path(folder)
    if not folder.exists():
        raise ArtifactError(f"prompt folder {str(folder)!r} does not exist; train one with `promptgen compose --out {folder}`")
    if not folder.is_dir():
        raise ArtifactError(f"{str(folder)!r} is a file, not a prompt folder; give the folder that holds {MANIFEST}")
    path = folder / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{str(folder)!r} is not a prompt: it has no {MANIFEST}; give a folder made by `promptgen compose`")
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{str(path)!r} is not valid JSON ({str(exc).splitlines()[0]}); the prompt is damaged, train it again") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{str(path)!r} is not a promptgen manifest (no \"format\": \"{FORMAT}\")")
    version = raw.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        made_by = raw.get("versions", {}).get("promptgen", "a newer promptgen") if isinstance(raw.get("versions"), dict) else "a newer promptgen"
        raise ArtifactError(
            f"{str(folder)!r} is prompt format {version} (made by promptgen {made_by}); this promptgen reads up to "
            f"format {FORMAT_VERSION}: upgrade with `pip install -U promptgen-core`"
        )
    try:
        return PromptManifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        raise ArtifactError(f"{str(path)!r} is invalid at {where}: {err['msg']}; the prompt is damaged, train it again") from None


def load_flow(folder: Path, manifest: PromptManifest) -> CouplingFlow:
    """Rebuild the flow from the manifest and load its safetensors weights."""
    path = Path(folder) / manifest.weights_file
    if not path.exists():
        raise ArtifactError(f"{str(path)!r} is missing; the prompt is incomplete, train it again")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{str(path)!r} is corrupt ({str(exc).splitlines()[0]}); the prompt is damaged, train it again") from None
    flow = CouplingFlow(manifest.flow)
    expected = flow.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ArtifactError(f"{str(path)!r} does not match the manifest's flow (missing {missing[:2]}, unexpected {extra[:2]})")
    for k, v in tensors.items():
        if v.shape != expected[k].shape or v.dtype != expected[k].dtype:
            raise ArtifactError(
                f"{str(path)!r}: {k} has shape {tuple(v.shape)} {v.dtype}, the manifest's flow needs "
                f"{tuple(expected[k].shape)} {expected[k].dtype}; the prompt is damaged"
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ArtifactError(f"{str(path)!r}: {k} holds NaN or infinite values; the prompt is damaged")
    flow.load_state_dict(tensors)
    return flow.eval().requires_grad_(False)
