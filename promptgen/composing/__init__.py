"""From spec strings to a trained prompt folder (what `promptgen compose` does)."""

from __future__ import annotations

from promptgen.composing.runs import (  # noqa: F401
    CHECKPOINT,
    DEVICE_PATTERN,
    MAX_RUN_BYTES,
    RUN_FILE,
    RunRequest,
    check_checkpoint_file,
    check_flow_settings,
    default_flow_kind,
    read_run,
)
from promptgen.composing.terms import (  # noqa: F401
    build_energy,
    check_fit,
    default_out_dir,
    energy_record,
    mixture_record,
    prompt_ebm,
    rebuild_terms,
    unique_labels,
)
from promptgen.composing.workflow import _train_and_save, compose  # noqa: F401

__all__ = ["build_energy", "compose", "prompt_ebm", "read_run", "rebuild_terms"]
