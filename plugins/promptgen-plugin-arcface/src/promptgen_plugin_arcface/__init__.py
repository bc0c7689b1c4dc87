"""promptgen-plugin-arcface: the ``arcface-id`` energy, ArcFace IR-SE50 identity between an image and its twin.

Registered through the ``arcface`` entry point in the ``promptgen`` group::

    --energy arcface-id                          # model_ir_se50.pth from $PROMPTGEN_HOME/arcface/
    --energy arcface-id:path=model_ir_se50.pth@10

It is a :class:`promptgen.plugin.Contextual` energy: it needs the twin of each
image at the reference condition, which only a conditional prompt provides (see
:mod:`promptgen_plugin_arcface.energy`). Registering imports no network and
reads no weights: they are loaded when an ``arcface-id`` spec is built.
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_arcface.options import DEFAULT_WEIGHT, ArcFaceOptions

__version__ = "0.2.0"


def _build(spec: plugin.Spec, options: ArcFaceOptions, registry: plugin.Registry) -> plugin.Energy:
    from promptgen_plugin_arcface.energy import build_energy

    return build_energy(spec, options, registry)


@plugin.hookimpl
def promptgen_energies() -> list[plugin.EnergyEntry]:
    return [
        plugin.EnergyEntry(
            "arcface-id",
            _build,
            summary="1 − cos(ArcFace IR-SE50 of the image, of its twin at the reference condition): keep the identity "
            "across a conditional prompt's conditions; needs model_ir_se50.pth (downloaded by hand)",
            options=ArcFaceOptions,
            default_weight=DEFAULT_WEIGHT,
            example="arcface-id",
        )
    ]
