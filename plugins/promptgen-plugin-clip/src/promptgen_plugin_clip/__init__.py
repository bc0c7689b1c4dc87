"""promptgen-plugin-clip: text control with CLIP (open_clip), the ``clip`` energy.

Registered through the ``clip`` entry point in the ``promptgen`` group::

    promptgen compose --gen stylegan2-ffhq --energy clip:"smiling" --energy debias:gender,age

Registering imports neither CLIP models nor open_clip: the model is loaded
when a ``clip:`` spec is built. See :mod:`promptgen_plugin_clip.energy` for the
spec and :class:`~promptgen_plugin_clip.options.ClipOptions` for its options.
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_clip.options import ClipOptions

__version__ = "0.2.0"

DEFAULT_WEIGHT = 1000.0  # the paper's; kept equal to energy.DEFAULT_WEIGHT by a test


def _build(spec: plugin.Spec, options: ClipOptions, registry: plugin.Registry) -> plugin.Energy:
    from promptgen_plugin_clip.energy import build_clip_energy

    return build_clip_energy(spec, options, registry)


@plugin.hookimpl
def promptgen_energies() -> list[plugin.EnergyEntry]:
    return [
        plugin.EnergyEntry(
            "clip",
            _build,
            summary='1 − cos(CLIP image, CLIP text) over augmentations: clip:"a smiling face", negatives, several models',
            options=ClipOptions,
            arguments='the texts to aim for (quote one that has a comma), "TEXT"-"TEXT" or neg=TEXT (repeatable) for texts to avoid',
            default_weight=DEFAULT_WEIGHT,
            example='clip:"a smiling face"',
        )
    ]
