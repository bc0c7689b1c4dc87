"""promptgen-plugin-biggan: BigGAN-deep 128, 256 and 512 in pytorch-pretrained-BigGAN's format.

Registered through the ``biggan`` entry point in the ``promptgen`` group::

    promptgen compose --gen biggan-deep-128 --energy ...                 # a prompt learns classes and images
    promptgen compose --gen "biggan-deep-256:class=golden retriever" ...  # one class: the latent is z only
    promptgen compose --gen biggan:path=models/biggan-deep-128/ ...       # local config.json + pytorch_model.bin

The named models are downloaded into ``$PROMPTGEN_HOME/biggan/`` on first use.
Every name takes the options of :class:`.options.BigGANOptions`.
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_biggan.options import BigGANOptions
from promptgen_plugin_biggan.zoo import MODELS, ZooModel

__version__ = "0.2.0"


def _build(spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry, model: ZooModel | None = None) -> plugin.Generator:
    # The network loads only when a BigGAN is asked for, not every time the registry is built.
    from promptgen_plugin_biggan.generator import build_generator

    return build_generator(spec, options, model)


def _summary(model: ZooModel) -> str:
    return f"{model.description}; class embedding learnt by the prompt unless class=; downloads on first use"


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    return [
        plugin.GeneratorEntry(
            "biggan",
            _build,
            summary="BigGAN-deep from a local model: biggan:path=FOLDER (config.json + pytorch_model.bin of pytorch-pretrained-BigGAN)",
            options=BigGANOptions,
            positional="path",
            example="biggan:path=biggan-deep-128/,truncation=0.4",
        ),
        *plugin.zoo_entries(
            MODELS,
            _build,
            options=BigGANOptions,
            summary=_summary,
            example=lambda m: f"{m.name}:class=golden retriever",
        ),
    ]
