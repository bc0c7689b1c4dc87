"""promptgen-plugin-stylenerf: facebookresearch/StyleNeRF's 3D-aware FFHQ generators as promptgen generators.

Registered through the ``stylenerf`` entry point in the ``promptgen`` group::

    promptgen compose --gen stylenerf-ffhq-256 --energy debias:gender
    promptgen compose --gen stylenerf:path=ffhq_256.pkl,camera=latent --energy clip:"a smiling face"

The prompt controls z (512), as in the PromptGen paper; the camera is noise drawn from the model's own prior
(``camera=prior``) or a controlled latent part (``camera=latent``). The network is this plugin's own
(:mod:`.network`), under the official parameter names, read from the official pickles without running their
code (:mod:`.checkpoints`).
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_stylenerf.options import StyleNeRFOptions
from promptgen_plugin_stylenerf.zoo import MODELS, ZooModel

__version__ = "0.2.0"

__all__ = ["StyleNeRFOptions", "_build"]

CACHE_SUBDIR = "stylenerf"


def _build(
    spec: plugin.Spec, options: StyleNeRFOptions, registry: plugin.Registry, model: ZooModel | None = None
) -> plugin.Generator:
    # The network loads only when a StyleNeRF is asked for, not every time the registry is built.
    from promptgen_plugin_stylenerf.checkpoints import WHAT, load_stylenerf
    from promptgen_plugin_stylenerf.generator import build

    path = plugin.local_file(
        model.weights if model else None, path=options.path, subdir=CACHE_SUBDIR, spec=spec, what=WHAT
    )
    try:
        network = load_stylenerf(path)
    except plugin.PromptgenError as e:  # the error names the file already: the spec's name is enough
        raise plugin.SpecError(f"--gen {spec.name}: {e}") from None
    if model is not None and options.path is None:
        info = plugin.GeneratorInfo(
            name=spec.name,
            resolution=(0, 0),
            channels=3,
            licence=model.licence,
            source=model.weights.page,
            description=f"StyleNeRF FFHQ {model.resolution}px",
        )
    else:
        info = plugin.GeneratorInfo(
            name=spec.name,
            resolution=(0, 0),
            channels=3,
            licence="see the checkpoint's source (facebookresearch/StyleNeRF: CC BY-NC 4.0)",
            source=str(path),
            description=f"StyleNeRF {path.name}",
        )
    return build(network, options.camera, options.psi, info)


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    generic = plugin.GeneratorEntry(
        "stylenerf",
        _build,
        summary="a StyleNeRF (facebookresearch/StyleNeRF) from its network pickle; "
        "the prompt controls z, the camera is the model's own",
        options=StyleNeRFOptions,
        example="stylenerf:path=ffhq_256.pkl,camera=latent",
    )
    return [generic] + plugin.zoo_entries(
        MODELS,
        _build,
        options=StyleNeRFOptions,
        summary=lambda m: f"StyleNeRF FFHQ {m.resolution}px, 3D-aware, camera from its prior; {m.licence}",
        example=lambda m: f"{m.name}:psi=0.7",
    )
