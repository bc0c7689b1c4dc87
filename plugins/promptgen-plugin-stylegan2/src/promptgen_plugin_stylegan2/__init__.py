"""promptgen-plugin-stylegan2: StyleGAN2 generators from the official checkpoints.

Registered through the ``stylegan2`` entry point in the ``promptgen`` group::

    promptgen compose --gen stylegan2-ffhq --energy debias:gender,age
    promptgen compose --gen stylegan2:path=network-snapshot.pkl,psi=0.7 --energy ...

``stylegan2:path=FILE`` loads any StyleGAN2 checkpoint (an NVIDIA ``.pkl`` of
stylegan2-ada-pytorch or stylegan3, or a rosinality ``.pt``); the other names
are the published models of :mod:`.zoo`, downloaded into
``$PROMPTGEN_HOME/stylegan2/`` on first use.
"""

from __future__ import annotations

from functools import partial

from promptgen.hookspecs import hookimpl
from promptgen.registry import GeneratorEntry
from promptgen_plugin_stylegan2.zoo import MODELS, OPTIONS

__version__ = "0.1.0"


def _build(spec, model=None):
    # The network and checkpoint code load only when a StyleGAN2 generator is asked for,
    # not every time the registry is built (promptgen list, any other generator).
    from promptgen_plugin_stylegan2.generator import build_generator

    return build_generator(spec, model)


def _build_zoo(name: str, spec):
    return _build(spec, MODELS[name])


@hookimpl
def promptgen_generators() -> list[GeneratorEntry]:
    entries = [
        GeneratorEntry(
            "stylegan2",
            _build,
            summary="StyleGAN2 from a local checkpoint: stylegan2:path=FILE (.pkl from NVIDIA, .pt from rosinality)",
            options=OPTIONS,
        )
    ]
    for name, m in MODELS.items():
        how = "downloads on first use" if m.url else "download by hand, then path="
        entries.append(GeneratorEntry(name, partial(_build_zoo, name), summary=f"{m.description}, {m.resolution}px; {how}", options=OPTIONS))
    return entries
