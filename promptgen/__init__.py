"""promptgen: distributional control of pretrained generative models.

A small invertible network in a generator's latent space is trained so that
the generator's samples follow an energy-based model built from other models
(classifiers, CLIP...). Afterwards sampling is one forward pass.

Example (trains for about a minute)::

    import promptgen
    prompt = promptgen.compose("mnist", ["classifier:digit=3"], out="runs/three")
    images = promptgen.sample(prompt, n=64, seed=0)   # (64, 1, 28, 28) in [0, 1]
"""

from __future__ import annotations

__version__ = "0.2.0"

import importlib
from typing import TYPE_CHECKING, Any

from promptgen import _moved

_moved.install()

#: The public Python API: name -> the module it lives in. Loaded on first use, so that
#: ``promptgen --help`` and ``import promptgen.plugin`` do not wait for torch.
_API = {
    "compose": "promptgen.api",
    "sample": "promptgen.api",
    "sample_with_cost": "promptgen.api",
    "sweep": "promptgen.api",
    "evaluate": "promptgen.api",
    "report": "promptgen.api",
    "info": "promptgen.api",
    "list_plugins": "promptgen.api",
    "load_prompt": "promptgen.api",
    "Prompt": "promptgen.artifacts.prompt",
    "PromptgenError": "promptgen.core.errors",
    "SpecError": "promptgen.core.errors",
    "UnknownNameError": "promptgen.core.errors",
    "ArtifactError": "promptgen.core.errors",
    "TrainingDiverged": "promptgen.core.errors",
    "TrainConfig": "promptgen.training.config",
    "FlowConfig": "promptgen.training.config",
}

__all__ = [
    "ArtifactError",
    "FlowConfig",
    "Prompt",
    "PromptgenError",
    "SpecError",
    "TrainConfig",
    "TrainingDiverged",
    "UnknownNameError",
    "__version__",
    "compose",
    "evaluate",
    "info",
    "list_plugins",
    "load_prompt",
    "report",
    "sample",
    "sample_with_cost",
    "sweep",
]

if TYPE_CHECKING:
    from promptgen.api import (
        compose,
        evaluate,
        info,
        list_plugins,
        load_prompt,
        report,
        sample,
        sample_with_cost,
        sweep,
    )
    from promptgen.artifacts.prompt import Prompt
    from promptgen.core.errors import ArtifactError, PromptgenError, SpecError, TrainingDiverged, UnknownNameError
    from promptgen.training.config import FlowConfig, TrainConfig


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'promptgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
