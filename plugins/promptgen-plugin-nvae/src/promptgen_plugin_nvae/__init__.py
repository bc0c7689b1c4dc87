"""promptgen-plugin-nvae: NVAE (Vahdat and Kautz, NeurIPS 2020) generators from the official checkpoints.

Registered through the ``nvae`` entry point in the ``promptgen`` group::

    promptgen compose --gen nvae-ffhq-256 --energy debias:gender
    promptgen compose --gen nvae:path=checkpoint.pt,t=0.7,groups=2 --energy ...

``nvae:path=FILE`` loads any NVAE ``checkpoint.pt`` saved by NVlabs/NVAE's
train.py; the other names are the published models of :mod:`.zoo` (downloaded
by hand: NVIDIA shares them in a Google Drive folder). The weights are under
the NVIDIA Source Code License: non-commercial use only. Every name takes the
options of :class:`.options.NVAEOptions`.
"""

from __future__ import annotations

from functools import partial

from promptgen import plugin
from promptgen_plugin_nvae.options import NVAEOptions
from promptgen_plugin_nvae.zoo import MODELS, ZooModel

__version__ = "0.2.0"


def _build(spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry, model: ZooModel | None = None) -> plugin.Generator:
    # The network and checkpoint code load only when an NVAE is asked for, not every time the registry is built.
    from promptgen_plugin_nvae.generator import build_generator

    return build_generator(spec, options, model)


def _build_zoo(name: str, spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry) -> plugin.Generator:
    return _build(spec, options, registry, MODELS[name])  # looked up when built, not when registered


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    entries = [
        plugin.GeneratorEntry(
            "nvae",
            _build,
            summary="NVAE from a local checkpoint.pt of NVlabs/NVAE: nvae:path=FILE (NVIDIA's weights: non-commercial licence)",
            options=NVAEOptions,
            example="nvae:path=checkpoint.pt,t=0.7",
        )
    ]
    for name, m in MODELS.items():
        entries.append(
            plugin.GeneratorEntry(
                name,
                partial(_build_zoo, name),
                summary=f"NVAE {m.description}, {m.resolution}px, {m.decoder_parameters:g} M decoder parameters; NVIDIA Source Code License, "
                "non-commercial only; download by hand into the cache, or path=",
                options=NVAEOptions,
                example=f"{name}:t=0.7",
            )
        )
    return entries
