"""promptgen-plugin-ink: an example third-party promptgen plugin.

It registers one energy, ``ink``, through the ``promptgen_energies`` hook::

    promptgen compose --gen mnist --energy ink:target=0.25 --out runs/inky

The ``promptgen`` entry point in this distribution's ``pyproject.toml`` names
this module; promptgen imports it when it builds its registry and calls every
function here that is marked ``@hookimpl``. Importing it must stay cheap and
must never download or load weights.
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_ink.energy import (
    DEFAULT_SCALE,
    DEFAULT_WEIGHT,
    USAGE,
    InkEnergy,
    InkOptions,
    build_ink_energy,
    mean_ink,
)

__version__ = "0.2.0"


@plugin.hookimpl
def promptgen_energies() -> list[plugin.EnergyEntry]:
    return [
        plugin.EnergyEntry(
            "ink",
            build_ink_energy,
            summary="((mean ink - target) / scale)²: steer the mean pixel intensity, e.g. ink:target=0.2",
            options=InkOptions,
            default_weight=DEFAULT_WEIGHT,
            example=USAGE,
        )
    ]


__all__ = [
    "DEFAULT_SCALE",
    "DEFAULT_WEIGHT",
    "USAGE",
    "InkEnergy",
    "InkOptions",
    "build_ink_energy",
    "mean_ink",
    "promptgen_energies",
]
