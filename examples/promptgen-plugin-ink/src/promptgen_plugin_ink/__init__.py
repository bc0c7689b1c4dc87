"""promptgen-plugin-ink: an example third-party promptgen plugin.

It registers one energy, ``ink``, through the ``promptgen_energies`` hook::

    promptgen compose --gen mnist --energy ink:target=0.25 --out runs/inky

The ``promptgen`` entry point in this distribution's ``pyproject.toml`` names
this module; promptgen imports it when it builds its registry and calls every
function here that is marked ``@hookimpl``. Importing it must stay cheap and
must never download or load weights.
"""

from __future__ import annotations

from promptgen.hookspecs import hookimpl
from promptgen.registry import EnergyEntry

from promptgen_plugin_ink.energy import (
    DEFAULT_SCALE,
    DEFAULT_WEIGHT,
    USAGE,
    InkEnergy,
    build_ink_energy,
    mean_ink,
)

__version__ = "0.1.0"


@hookimpl
def promptgen_energies() -> list[EnergyEntry]:
    return [
        EnergyEntry(
            "ink",
            build_ink_energy,
            summary="((mean ink - target) / scale)²: steer the mean pixel intensity, e.g. ink:target=0.2",
            default_weight=DEFAULT_WEIGHT,
            usage=USAGE,
        )
    ]


__all__ = [
    "DEFAULT_SCALE",
    "DEFAULT_WEIGHT",
    "USAGE",
    "InkEnergy",
    "build_ink_energy",
    "mean_ink",
    "promptgen_energies",
]
