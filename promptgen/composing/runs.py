"""``run.json``: the settings of a run, written before training so that ``--resume`` can finish it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from promptgen.artifacts.manifest import (
    MANIFEST,
)
from promptgen.core.conditions import check_names, parse_range
from promptgen.core.errors import ArtifactError, SettingsError, SpecError, first_error, one_line
from promptgen.training.config import TrialRecord
from promptgen.training.flow import FlowConfig
from promptgen.training.trainer import TrainConfig

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"


#: What ``--device`` and run.json's ``device`` may name (resolve_device checks the machine has it).
DEVICE_PATTERN = r"^(auto|(cpu|cuda|mps|xpu)(:[0-9]{1,4})?)$"


def check_flow_settings(flow: dict) -> dict:
    """``flow`` if its keys and values are ones :class:`FlowConfig` takes (checked before anything is written)."""
    if not isinstance(flow, dict):
        raise SpecError(f"flow settings must be a dict of FlowConfig fields, not {type(flow).__name__}")
    unknown = sorted(set(flow) - {"kind", "transforms", "hidden", "bins", "mask_seed"})
    if unknown:
        raise SpecError(f"unknown flow setting(s) {', '.join(map(repr, unknown))}; use kind, transforms, hidden, bins or mask_seed")
    try:
        FlowConfig(features=2, **{**flow, **({"kind": "affine-coupling"} if flow.get("kind") == "auto" else {})})
    except (ValidationError, SettingsError) as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise SpecError(f"flow setting {where}={err.get('input')!r}: {err['msg'].lower()}") from None
    return flow


def default_flow_kind(classes: int) -> str:
    """The flow's layers when none are asked for: affine couplings for one target, splines for a mixture.

    Measured on the digit panel (docs/flow.md): for ``classifier:`` prompts and
    de-biasing by tilt the affine flow matches the spline's figures and trains
    25–40 % faster; a mixture's class-conditional components need the spline
    (affine: KL 0.032 and 6.5 points more junk on the MLP GAN).
    """
    return "spline-coupling" if classes else "affine-coupling"


class RunRequest(BaseModel):
    """What ``compose`` was asked, written to ``RUN_DIR/run.json`` before training so ``--resume`` can continue.

    Read back from a file that may have been edited, so it is checked as strictly as a manifest.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    generator: str = Field(min_length=1, max_length=10_000)
    energies: list[str] = Field(min_length=1, max_length=1024)
    train: TrainConfig
    flow: dict = Field(default_factory=dict)
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    preview: int = Field(default=64, ge=0, le=1024)
    conditions: list[str] = Field(default_factory=list, max_length=64, description="--cond NAME=LOW:HIGH as typed")
    realism: str = Field(default="auto", min_length=1, max_length=200, description="--realism: auto, off or an evaluator's name")
    trials: list[TrialRecord] = Field(default_factory=list, max_length=64, description="mode=auto's trials, once run")

    @field_validator("conditions")
    @classmethod
    def _conditions_parse(cls, conditions: list[str]) -> list[str]:
        try:
            check_names([parse_range(c) for c in conditions])
        except SpecError as exc:
            raise ValueError(str(exc)) from None
        return conditions

    @field_validator("flow")
    @classmethod
    def _flow_fits(cls, flow: dict) -> dict:
        try:
            return check_flow_settings(flow)
        except SpecError as exc:
            raise ValueError(str(exc)) from None


#: Largest run.json read (promptgen's are under a kilobyte).
MAX_RUN_BYTES = 1 << 20


def read_run(folder: Path) -> RunRequest:
    """The request behind an unfinished run, with one-line errors."""
    path = folder / RUN_FILE
    if not folder.is_dir():
        raise ArtifactError(f"--resume {str(folder)!r} is not a folder; give the --out folder of the run to continue")
    if (folder / MANIFEST).exists():
        raise ArtifactError(f"{str(folder)!r} is a finished prompt; sample it with `promptgen sample {folder}` (nothing to resume)")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ArtifactError(f"{str(path)!r} is not a regular file (a link or a special file); a run's {RUN_FILE} is a plain file: start a new run with --out")
    if not path.is_file():
        raise ArtifactError(f"{str(folder)!r} has no {RUN_FILE}; it is not a run started by `promptgen compose` (start a new one with --out)")
    try:
        if path.stat().st_size > MAX_RUN_BYTES:
            raise ArtifactError(f"{str(path)!r} is {path.stat().st_size:,} bytes, far larger than a run's {RUN_FILE}; start a new run with --out")
        return RunRequest.model_validate_json(path.read_bytes())
    except ValidationError as e:
        err = first_error(e)
        where = ".".join(str(part)[:40] for part in err["loc"])
        what = f"invalid at {where}" if where else "not valid"
        raise ArtifactError(f"{str(path)!r} is damaged: {what}: {one_line(err['msg'])[:200]}; start the run again with a new --out") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ArtifactError(f"{str(path)!r} is damaged ({type(e).__name__}); start the run again with a new --out") from None
    except OSError as e:
        raise ArtifactError(f"cannot read {str(path)!r}: {e.strerror}; check its permissions") from None


def check_checkpoint_file(out: Path) -> None:
    """Refuse a ``checkpoint.pt`` in ``out`` that is a link or not a regular file, before training."""
    path = out / CHECKPOINT
    if path.is_symlink():
        raise ArtifactError(f"{str(path)!r} is a symbolic link; a run's checkpoint is a plain file: remove it or start a new run with --out")
    if path.exists() and not path.is_file():
        raise ArtifactError(f"{str(path)!r} is not a regular file; remove it or start a new run with --out")
