"""promptgen-plugin-digit-panel: independent digit generators for benchmarks and tests.

Registered through the ``digit_panel`` entry point in the ``promptgen`` group.
Each generator draws 28×28 grey digits from its own N(0, I) latent and was
trained by ``scripts/train_panel.py`` on MNIST images alone (no labels), except
``panel-class-latent``, promptgen's first built-in generator, kept to show how a
class-structured latent flatters every control. None is a default: the panel
exists so that every figure promptgen reports is measured on generators its
controls were not tuned against (docs/benchmarks.md).

    promptgen compose --gen panel-mlp-gan --energy debias:digit
"""

from __future__ import annotations

from functools import partial

from promptgen import plugin

__version__ = "0.2.0"

LICENCE = "CC BY-SA 3.0 (weights trained by promptgen on the MNIST test set)"

#: name -> (latent size, one line for `promptgen list`)
PANEL: dict[str, tuple[int, str]] = {
    "mlp-gan": (64, "MLP GAN, plain non-saturating loss: noisy strokes"),
    "wgan-gp": (64, "DCGAN generator trained as a WGAN-GP"),
    "vae": (16, "convolutional VAE, decoder mean: blurry digits"),
    "biased-gan": (32, "small DCGAN on ink-weighted data: heavy digits, few 1s"),
    "class-latent": (32, "class-structured GAN (digit = argmax z[:10]), trained with labels: the easy case"),
}


def _build(name: str, spec: plugin.Spec, options: plugin.NoOptions, registry: plugin.Registry) -> plugin.ModuleGenerator:
    # The panel's generators take no options: the core refuses any (their entries declare none).
    from promptgen.builtin.mnist.models import load_pretrained_module

    from .training import WEIGHTS_DIR, build_network

    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise plugin.PromptgenError(
            f"the panel's weights {str(path)!r} are missing; reinstall promptgen-plugin-digit-panel "
            f"or retrain with `python plugins/promptgen-plugin-digit-panel/scripts/train_panel.py {name} --data ../shared/data/mnist`"
        )
    latent, description = PANEL[name]
    info = plugin.GeneratorInfo(
        name=f"panel-{name}",
        resolution=(28, 28),
        channels=1,
        licence=LICENCE,
        source="promptgen-plugin-digit-panel package data; retrain with its scripts/train_panel.py",
        description=f"{description}; latent N(0, I) of size {latent}",
    )
    return plugin.ModuleGenerator(load_pretrained_module(build_network(name), path), (latent,), info)


#: The diffusion model's DDIM step counts: trained through few, sampled with more
#: (docs/benchmarks.md, issue 27: the share a prompt reaches at each).
DIFFUSION_STEPS, DIFFUSION_SAMPLE_STEPS = 4, 20
DIFFUSION_SUMMARY = "DDPM, a diffusers UNet2DModel (267k parameters) sampled by a deterministic DDIM from x_T (1×28×28)"

try:  # the options live with the plugin that samples pipelines; without it the entry says what to install
    from promptgen_plugin_diffusers import PipelineOptions

    class DiffusionOptions(PipelineOptions):
        """The panel diffusion model's options: those of any diffusers pipeline, with the digit model's step counts."""

        steps: int = plugin.option(DIFFUSION_STEPS, ge=1, le=1000, help="DDIM steps while a prompt trains (gradients flow through each)", example="4")
        sample_steps: int = plugin.option(DIFFUSION_SAMPLE_STEPS, ge=1, le=1000, help="DDIM steps when sampling, evaluating and judging", example="50")
        checkpointing: bool = plugin.option(
            False, help="recompute each DDIM step's activations in the backward pass (off: at 28×28 memory is no issue, and it costs 50 % more time)"
        )

    _diffusion_options: type[plugin.Options] = DiffusionOptions
except ImportError:
    _diffusion_options = plugin.NoOptions


def _build_diffusion(spec: plugin.Spec, options: plugin.Options, registry: plugin.Registry) -> plugin.Generator:
    from .diffusion import FOLDER
    from .training import WEIGHTS_DIR

    try:
        from promptgen_plugin_diffusers import build_from_folder
    except ImportError:
        raise plugin.PromptgenError(
            "panel-diffusion is sampled through promptgen-plugin-diffusers, which is not installed; "
            "pip install ./plugins/promptgen-plugin-diffusers (or promptgen-plugin-digit-panel[diffusion])"
        ) from None
    folder = WEIGHTS_DIR / FOLDER
    if not (folder / "model_index.json").is_file():
        raise plugin.PromptgenError(
            f"the panel's diffusion model {str(folder)!r} is missing; reinstall promptgen-plugin-digit-panel "
            "or retrain with `python plugins/promptgen-plugin-digit-panel/scripts/train_panel.py diffusion --data ../shared/data/mnist`"
        )
    info = plugin.GeneratorInfo(name="panel-diffusion", resolution=(28, 28), channels=1, licence=LICENCE,
                                source="promptgen-plugin-digit-panel package data; retrain with its scripts/train_panel.py",
                                description=DIFFUSION_SUMMARY)
    return build_from_folder(folder, options, info, spec.format())


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    entries = [
        plugin.GeneratorEntry(
            f"panel-{name}",
            partial(_build, name),
            summary=f"panel (benchmarks, tests): {description}, latent {latent}",
            example=f"panel-{name}",
            judges=("mnist-digit-evaluator",),  # digits: the core's evaluator knows their domain
        )
        for name, (latent, description) in PANEL.items()
    ]
    entries.append(
        plugin.GeneratorEntry(
            "panel-diffusion",
            _build_diffusion,
            summary=f"panel (benchmarks, tests): {DIFFUSION_SUMMARY}; needs promptgen-plugin-diffusers",
            options=_diffusion_options,
            example=f"panel-diffusion:steps={DIFFUSION_STEPS},sample_steps={DIFFUSION_SAMPLE_STEPS}",
            judges=("mnist-digit-evaluator",),
        )
    )
    return entries
