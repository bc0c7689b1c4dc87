"""promptgen-plugin-clip: text control with CLIP (open_clip), the ``clip`` energy.

Registered through the ``clip`` entry point in the ``promptgen`` group::

    promptgen compose --gen stylegan2-ffhq --energy clip:"smiling" --energy debias:gender,age

Registering imports neither torch models nor open_clip: the model is loaded
when a ``clip:`` spec is built. See :mod:`promptgen_plugin_clip.energy` for the spec.
"""

from __future__ import annotations

from promptgen.hookspecs import hookimpl
from promptgen.registry import EnergyEntry

__version__ = "0.1.0"

DEFAULT_WEIGHT = 1000.0  # the paper's; kept equal to energy.DEFAULT_WEIGHT by a test


def _build(spec, registry):
    from promptgen_plugin_clip.energy import build_clip_energy

    return build_clip_energy(spec, registry)


@hookimpl
def promptgen_energies() -> list[EnergyEntry]:
    return [
        EnergyEntry(
            "clip",
            _build,
            summary='1 − cos(CLIP image, CLIP text) over augmentations: clip:"a smiling face", negatives, several models',
            default_weight=DEFAULT_WEIGHT,
            usage='clip:"a smiling face"',
        )
    ]
