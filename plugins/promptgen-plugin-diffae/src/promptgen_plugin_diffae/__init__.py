"""promptgen-plugin-diffae: diffusion autoencoders (phizaz/diffae) as promptgen generators.

Registered through the ``diffae`` entry point in the ``promptgen`` group::

    promptgen compose --gen diffae-ffhq-256 --energy debias:gender
    promptgen compose --gen diffae:path=ffhq256_autoenc_latent/last.ckpt,steps=5,sample_steps=100 --energy clip:"a smiling face"

The prompt controls the 512-d noise of the latent DDIM, as in the PromptGen paper; the image DDIM's x_T is
noise the prompt does not control (:mod:`.generator`). The networks are this plugin's own
(:mod:`.network`), with phizaz/diffae's parameter names; nothing of phizaz/diffae is imported.
"""

from __future__ import annotations

from pathlib import Path

from promptgen import plugin
from promptgen_plugin_diffae.options import DiffAEOptions
from promptgen_plugin_diffae.zoo import MODELS, ZooModel

__version__ = "0.2.0"

__all__ = ["DiffAEOptions", "_build"]

CACHE_SUBDIR = "diffae"


def _build(spec: plugin.Spec, options: DiffAEOptions, registry: plugin.Registry, model: ZooModel | None = None) -> plugin.Generator:
    # The networks load only when a DiffAE is asked for, not every time the registry is built.
    from promptgen_plugin_diffae.checkpoints import FFHQ256, WHAT, read_files
    from promptgen_plugin_diffae.generator import build

    path = plugin.local_file(model.weights if model else None, path=options.path, subdir=CACHE_SUBDIR, spec=spec, what=WHAT)
    extra = {}
    for name, value in (("latent_path", options.latent_path), ("stats", options.stats)):
        if value is not None:
            given = Path(value).expanduser()
            if not given.is_file():
                raise plugin.SpecError(f"{spec.format()!r}: {name}={value!r} is not a file; give {'a DiffAE latent DPM last.ckpt' if name == 'latent_path' else 'a DiffAE latent.pkl'}")
            extra[name] = given
    try:
        files = read_files(path, latent_path=extra.get("latent_path"), stats_path=extra.get("stats"), fallback=model.preset if model else FFHQ256)
    except plugin.PromptgenError as e:
        raise plugin.SpecError(f"{spec.format()!r}: {e}") from None
    if model is not None and options.path is None:
        info = plugin.GeneratorInfo(name=spec.name, resolution=(0, 0), channels=3, licence=model.licence,
                                    source=model.weights.page, description=f"DiffAE {model.description}")
    else:
        info = plugin.GeneratorInfo(name=spec.name, resolution=(0, 0), channels=3, licence="see the checkpoint's source (phizaz/diffae: MIT)",
                                    source=str(path), description=f"DiffAE {path.parent.name}/{path.name}")
    try:
        return build(files, options, info, spec.format())
    except plugin.WeightsFileError as e:
        raise plugin.SpecError(f"{spec.format()!r}: {e}") from None


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    generic = plugin.GeneratorEntry(
        "diffae",
        _build,
        summary="a diffusion autoencoder (phizaz/diffae) from its latent model's last.ckpt; the prompt controls the latent DDIM's noise",
        options=DiffAEOptions,
        example="diffae:path=ffhq256_autoenc_latent/last.ckpt,steps=5,sample_steps=100",
    )
    return [generic] + plugin.zoo_entries(
        MODELS, _build, options=DiffAEOptions,
        summary=lambda m: f"DiffAE {m.description}, {m.resolution}px; {m.licence}; download by hand into the cache, or path=",
        example=lambda m: f"{m.name}:steps=5,sample_steps=100",
    )
