"""promptgen-plugin-foreign-digits: two digit generators nobody on promptgen trained, for held-out measurements.

Registered through the ``foreign_digits`` entry point in the ``promptgen`` group. The generators are
csinva/gan-vae-pretrained-pytorch's MLP GAN and MLP VAE (MIT licence), trained there on the 60,000 MNIST
training images, which promptgen never had. promptgen's rules (defaults, modes, thresholds) are chosen on its
own generators and the digit panel; these two are where the rules are then reported, as generators their
authors never saw (docs/robust-controls.md). Neither is a default.

    promptgen compose --gen foreign-mlp-gan --energy debias:digit                    # downloads G--300.ckpt once
    promptgen compose --gen foreign-mlp-vae:path=vae_epoch_25.pth --energy classifier:digit=0

The repository's LeNet-5 (99.1 % on the MNIST test set) is a third judge beside promptgen's evaluator and
realism check: :func:`promptgen_plugin_foreign_digits.judge.LeNetJudge`, used by the benchmarks. It is not
registered as a classifier, so ``promptgen eval`` keeps its own evaluator.
"""

from __future__ import annotations

from functools import partial

from promptgen import plugin

__version__ = "0.2.0"

LICENCE = "MIT (csinva/gan-vae-pretrained-pytorch; trained on the MNIST training set, CC BY-SA 3.0)"

#: name -> (latent size, one line for `promptgen list`)
GENERATORS: dict[str, tuple[int, str]] = {
    "mlp-gan": (64, "csinva's MLP GAN (784 <- 256 <- 256 <- 64): mode-biased, a third of its digits 1s"),
    "mlp-vae": (20, "csinva's MLP VAE decoder (784 <- 400 <- 20): blurry, many digits ambiguous"),
}


class ForeignOptions(plugin.Options):
    """The generators' one option."""

    path: str | None = plugin.option(None, help="a local copy of the published file (default: download it once into the cache)")


def _build(name: str, spec: plugin.Spec, options: ForeignOptions, registry: plugin.Registry) -> plugin.ModuleGenerator:
    from promptgen_plugin_foreign_digits.files import FILES, load_mlp_gan, load_vae_decoder, locate
    from promptgen_plugin_foreign_digits.networks import AsImages, FromTanh

    file = locate(name, options.path)
    module = FromTanh(load_mlp_gan(file)) if name == "mlp-gan" else AsImages(load_vae_decoder(file))
    latent, description = GENERATORS[name]
    info = plugin.GeneratorInfo(
        name=f"foreign-{name}",
        resolution=(28, 28),
        channels=1,
        licence=LICENCE,
        source=FILES[name].remote.url,
        description=f"{description}; latent N(0, I) of size {latent}",
    )
    return plugin.ModuleGenerator(module, (latent,), info)


@plugin.hookimpl
def promptgen_generators() -> list[plugin.GeneratorEntry]:
    return [
        plugin.GeneratorEntry(
            f"foreign-{name}",
            partial(_build, name),
            summary=f"held out (benchmarks, tests): {description}, latent {latent}; downloads on first use",
            options=ForeignOptions,
            example=f"foreign-{name}",
            judges=("mnist-digit-evaluator",),  # digits: the core's evaluator knows their domain
        )
        for name, (latent, description) in GENERATORS.items()
    ]
