"""promptgen-plugin-stylegan2: StyleGAN2 generators from the official checkpoints.

Registered through the ``stylegan2`` entry point in the ``promptgen`` group::

    promptgen compose --gen stylegan2-ffhq --energy debias:gender,age
    promptgen compose --gen stylegan2:path=network-snapshot.pkl,psi=0.7 --energy ...

``stylegan2:path=FILE`` loads any StyleGAN2 checkpoint (an NVIDIA ``.pkl`` of
stylegan2-ada-pytorch or stylegan3, or a rosinality ``.pt``); the other names
are the published models of :mod:`.zoo`, downloaded into
``$PROMPTGEN_HOME/stylegan2/`` on first use. Every name takes the options of
:data:`.options.StyleGAN2Options`.
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_stylegan2.options import StyleGAN2Options
from promptgen_plugin_stylegan2.zoo import MODELS, ZooModel

__version__ = "0.2.0"


def _build(spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry, model: ZooModel | None = None) -> plugin.Generator:
    # The network and checkpoint code load only when a StyleGAN2 generator is asked for,
    # not every time the registry is built (promptgen list, any other generator).
    from promptgen_plugin_stylegan2.generator import build_generator

    return build_generator(spec, options, model)


def _summary(model: ZooModel) -> str:
    how = "downloads on first use" if model.weights.url else "download by hand, then path="
    return f"{model.description}, {model.resolution}px; {how}"


def _example(model: ZooModel) -> str:
    return f"{model.name}:class={model.classes[3]}" if model.classes else f"{model.name}:psi=0.7"


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    return [
        plugin.GeneratorEntry(
            "stylegan2",
            _build,
            summary="StyleGAN2 from a local checkpoint: stylegan2:path=FILE (.pkl from NVIDIA, .pt from rosinality)",
            options=StyleGAN2Options,
            example="stylegan2:path=network-snapshot.pkl,psi=0.7",
        ),
        *plugin.zoo_entries(MODELS, _build, options=StyleGAN2Options, summary=_summary, example=_example),
    ]
