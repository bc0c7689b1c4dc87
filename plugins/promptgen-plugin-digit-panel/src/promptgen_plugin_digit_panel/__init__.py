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


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    return [
        plugin.GeneratorEntry(
            f"panel-{name}",
            partial(_build, name),
            summary=f"panel (benchmarks, tests): {description}, latent {latent}",
            example=f"panel-{name}",
            judges=("mnist-digit-evaluator",),  # digits: the core's evaluator knows their domain
        )
        for name, (latent, description) in PANEL.items()
    ]
