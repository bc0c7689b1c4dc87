"""promptgen-plugin-diffusers: unconditional diffusers pipelines as promptgen generators.

Registered through the ``diffusers`` entry point in the ``promptgen`` group::

    promptgen compose --gen diffusers:path=DIR --energy clip:"a red car"
    promptgen compose --gen ddpm-cifar10-32:steps=5,sample_steps=50 --energy ...

``diffusers:path=DIR`` reads any folder a ``DDPMPipeline`` or ``DDIMPipeline`` saved with ``save_pretrained``
(a ``UNet2DModel`` and a DDPM, DDIM or PNDM noise schedule); ``repo=`` fetches one from the Hugging Face Hub,
and the names of :data:`.zoo.MODELS` are Google's published DDPMs. The generator is a deterministic DDIM
(η = 0) from x_T (:mod:`.generator`). diffusers is this plugin's dependency, never the core's: it is imported
only when a diffusion generator is built.
"""

from __future__ import annotations

from pathlib import Path

from promptgen import plugin
from promptgen_plugin_diffusers.options import DiffusersOptions, PipelineOptions
from promptgen_plugin_diffusers.zoo import MODELS, ZooModel

__version__ = "0.2.0"

__all__ = ["DiffusersOptions", "PipelineOptions", "build_from_folder"]


def build_from_folder(folder: str | Path, options: PipelineOptions, info: plugin.GeneratorInfo, spec_text: str) -> plugin.Generator:
    """The generator of a pipeline folder (also what other plugins call for a pipeline they ship, e.g. the digit panel's)."""
    from promptgen_plugin_diffusers.generator import build
    from promptgen_plugin_diffusers.pipeline import check_folder, load_unet

    folder = Path(folder)
    unet_config, scheduler_config = check_folder(folder)
    return build(load_unet(folder, unet_config), scheduler_config, options, info, spec_text)


def _build(spec: plugin.Spec, options: DiffusersOptions, registry: plugin.Registry, model: ZooModel | None = None) -> plugin.Generator:
    from promptgen_plugin_diffusers.pipeline import hub_folder

    text = spec.format()
    if options.path is not None and options.repo is not None:
        raise plugin.SpecError(f"{text!r}: give path= (a local folder) or repo= (a hub id), not both")
    if options.path is not None:
        folder = Path(options.path).expanduser()
        source, licence = str(folder), "see the pipeline's source"
    else:
        repo = options.repo or (model.repo if model is not None else None)
        if repo is None:
            raise plugin.SpecError(f"{text!r}: give the pipeline, e.g. diffusers:path=DIR or diffusers:repo=google/ddpm-cifar10-32, or a named model (promptgen list)")
        folder = hub_folder(repo, options.revision)
        source = f"https://huggingface.co/{repo}"
        licence = model.licence if model is not None and repo == model.repo else "see the model card on the Hugging Face Hub"
    description = model.description if model is not None and options.path is None and options.repo is None else f"diffusers pipeline {folder.name}"
    info = plugin.GeneratorInfo(name=spec.name, resolution=(0, 0), channels=0, licence=licence, source=source, description=description)
    return build_from_folder(folder, options, info, text)


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    return [
        plugin.GeneratorEntry(
            "diffusers",
            _build,
            summary="an unconditional diffusers pipeline (UNet2DModel, DDPM/DDIM schedule) from a folder or the hub, sampled by a deterministic DDIM",
            options=DiffusersOptions,
            example="diffusers:path=ddpm-cifar10-32,steps=5,sample_steps=50",
        ),
        *plugin.zoo_entries(
            MODELS,
            _build,
            options=DiffusersOptions,
            summary=lambda m: f"DDPM {m.description}, {m.resolution}px, from the hub ({m.repo}); {m.licence}",
            example=lambda m: f"{m.name}:steps=5,sample_steps=50",
        ),
    ]
