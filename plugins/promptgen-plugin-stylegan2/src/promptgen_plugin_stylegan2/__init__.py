"""promptgen-plugin-stylegan2: StyleGAN2 and StyleGAN3 generators from the official checkpoints.

Registered through the ``stylegan2`` entry point in the ``promptgen`` group::

    promptgen compose --gen stylegan2-ffhq --energy debias:gender,age
    promptgen compose --gen stylegan2:path=network-snapshot.pkl,psi=0.7 --energy ...
    promptgen compose --gen stylegan3-r-ffhq-1024:psi=0.7,rotate=15 --energy ...

``stylegan2:path=FILE`` loads any StyleGAN2 checkpoint (an NVIDIA ``.pkl`` of
stylegan2-ada-pytorch or stylegan3, or a rosinality ``.pt``), ``stylegan3-t:path=FILE``
and ``stylegan3-r:path=FILE`` any StyleGAN3 one of that config; the other names are the published models of
:mod:`.zoo`, downloaded into ``$PROMPTGEN_HOME/stylegan2/`` on first use.
StyleGAN2 names take the options of :data:`.options.StyleGAN2Options`,
StyleGAN3 names those of :data:`.options.StyleGAN3Options`.
"""

from __future__ import annotations

from collections.abc import Callable

from promptgen import plugin
from promptgen_plugin_stylegan2.options import StyleGAN2Options, StyleGAN3Options
from promptgen_plugin_stylegan2.zoo import MODELS, STYLEGAN3_MODELS, ZooModel

__version__ = "0.2.0"


def _build(spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry, model: ZooModel | None = None) -> plugin.Generator:
    # The network and checkpoint code load only when a StyleGAN generator is asked for,
    # not every time the registry is built (promptgen list, any other generator).
    from promptgen_plugin_stylegan2.generator import build_generator

    return build_generator(spec, options, model, family="stylegan2")


def _build3(
    spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry, model: ZooModel | None = None
) -> plugin.Generator:
    from promptgen_plugin_stylegan2.generator import build_generator

    return build_generator(spec, options, model, family="stylegan3")


def _build3_file(kind: str) -> Callable[[plugin.Spec, plugin.Options, plugin.Registry], plugin.Generator]:
    def build(spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry) -> plugin.Generator:
        from promptgen_plugin_stylegan2.generator import build_generator

        return build_generator(spec, options, None, family="stylegan3", kind=kind)

    return build


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
        *(
            plugin.GeneratorEntry(
                f"stylegan3-{kind.lower()}",
                _build3_file(kind),
                summary=f"StyleGAN3 config {kind} from a local checkpoint: stylegan3-{kind.lower()}:path=FILE "
                "(.pkl from NVlabs/stylegan3)",
                options=StyleGAN3Options,
                example=f"stylegan3-{kind.lower()}:path=network-snapshot.pkl,psi=0.7",
            )
            for kind in ("T", "R")
        ),
        *plugin.zoo_entries(STYLEGAN3_MODELS, _build3, options=StyleGAN3Options, summary=_summary, example=_example),
    ]
