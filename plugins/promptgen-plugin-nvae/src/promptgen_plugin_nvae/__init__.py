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

from promptgen import plugin
from promptgen_plugin_nvae.options import NVAEOptions
from promptgen_plugin_nvae.zoo import MODELS, ZooModel

__version__ = "0.2.0"


def _build(spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry, model: ZooModel | None = None) -> plugin.Generator:
    # The network and checkpoint code load only when an NVAE is asked for, not every time the registry is built.
    from promptgen_plugin_nvae.generator import build_generator

    return build_generator(spec, options, model)


def _summary(model: ZooModel) -> str:
    return (
        f"NVAE {model.description}, {model.resolution}px, {model.decoder_parameters:g} M decoder parameters; "
        "NVIDIA Source Code License, non-commercial only; download by hand into the cache, or path="
    )


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    return [
        plugin.GeneratorEntry(
            "nvae",
            _build,
            summary="NVAE from a local checkpoint.pt of NVlabs/NVAE: nvae:path=FILE (NVIDIA's weights: non-commercial licence)",
            options=NVAEOptions,
            example="nvae:path=checkpoint.pt,t=0.7",
        ),
        *plugin.zoo_entries(MODELS, _build, options=NVAEOptions, summary=_summary, example=lambda m: f"{m.name}:t=0.7"),
    ]
