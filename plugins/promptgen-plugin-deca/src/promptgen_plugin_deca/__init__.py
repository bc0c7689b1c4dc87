"""promptgen-plugin-deca: the ``deca-pose`` energy, head pose by DECA's coarse encoder.

Registered through the ``deca`` entry point in the ``promptgen`` group::

    promptgen compose --gen stylegan2-ffhq --energy deca-pose:yaw=0.3 ...         # one fixed pose
    promptgen compose --gen stylegan2-ffhq --energy deca-pose --cond yaw=-0.35:0.35 --cond pitch=-0.35:0.35
                                                                                 # a conditional prompt over poses

DECA's ``deca_model.tar`` is downloaded by hand (non-commercial licence) and
given with ``path=`` or put in ``$PROMPTGEN_HOME/deca/``. Options:
:class:`.options.DecaPoseOptions`.
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_deca.options import DEFAULT_WEIGHT, DecaPoseOptions
from promptgen_plugin_deca.zoo import CACHE_SUBDIR, DECA_MODEL

__version__ = "0.2.0"


def build(spec: plugin.Spec, options: DecaPoseOptions, registry: plugin.Registry) -> plugin.Energy:
    # torch, roma and the network load only when the energy is asked for, not every time the registry is built.
    import torch

    from promptgen_plugin_deca.checkpoints import WHAT, load_encoder
    from promptgen_plugin_deca.energy import DecaPose

    encoder = load_encoder(plugin.local_file(DECA_MODEL, path=options.path, subdir=CACHE_SUBDIR, spec=spec, what=WHAT))
    canonical = torch.tensor([options.canonical_pitch, options.canonical_yaw, options.canonical_roll])
    alpha = torch.tensor([options.pitch, options.yaw, options.roll])
    return DecaPose(encoder, canonical, alpha, options.crop, label=spec.with_weight(None).format())


@plugin.hookimpl
def promptgen_energies() -> list[plugin.EnergyEntry]:
    return [
        plugin.EnergyEntry(
            "deca-pose",
            build,
            summary="squared SO(3) angle between DECA's head rotation and R(α)·R(canonical); α from the condition "
            "(yaw, pitch, roll) or options; needs DECA's deca_model.tar (non-commercial, downloaded by hand)",
            options=DecaPoseOptions,
            default_weight=DEFAULT_WEIGHT,
            example="deca-pose",
            conditions={"yaw": (-0.35, 0.35), "pitch": (-0.35, 0.35), "roll": (-0.2, 0.2)},
        )
    ]
