"""The distributions promptgen knows of, and what each registers: the table behind "pip install" hints.

When a name is unknown here (``--energy clip:...`` without the CLIP plugin),
the registry looks it up in :data:`ZOO` and names the distribution that
provides it and how to install it, instead of only "unknown energy 'clip'".
A test checks every row against what the installed plugin really registers,
so the table cannot drift from the plugins.

None of these is on PyPI yet (:data:`ON_PYPI` is empty): the install line
names the clone's folder and the wheelhouse (``bash scripts/build_wheels.sh
dist``) until they are published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ON_PYPI", "ZOO", "Distribution", "install_command", "install_hint", "provider_of", "recorded_hint"]

Kind = Literal["generator", "energy", "classifier"]


@dataclass(frozen=True)
class Distribution:
    """One installable distribution and the names it registers.

    Attributes:
        name: the distribution's name (``pip install NAME``).
        folder: its folder in the clone.
        generators, energies, classifiers: the names it registers.
        shipped: False for the distributions that exist for benchmarks and tests (the digit panel, the
            foreign generators), which are installed from the clone only.
    """

    name: str
    folder: str
    generators: tuple[str, ...] = ()
    energies: tuple[str, ...] = ()
    classifiers: tuple[str, ...] = ()
    shipped: bool = True

    def names(self, kind: Kind) -> tuple[str, ...]:
        return {"generator": self.generators, "energy": self.energies, "classifier": self.classifiers}[kind]


_STYLEGAN2 = (
    "stylegan2", "stylegan2-ffhq", "stylegan2-metfaces", "stylegan2-afhqcat", "stylegan2-afhqdog", "stylegan2-afhqwild",
    "stylegan2-brecahad", "stylegan2-cifar10", "stylegan2-ffhq-1024", "stylegan2-ffhq-512", "stylegan2-ffhq-256",
    "stylegan2-ffhqu-1024", "stylegan2-ffhqu-256", "stylegan2-metfaces-1024", "stylegan2-metfacesu-1024",
    "stylegan2-afhqv2-512", "stylegan2-celebahq-256", "stylegan2-lsundog-256", "stylegan2-ffhq-256-rosinality",
    "stylegan3-t", "stylegan3-t-ffhq-1024", "stylegan3-t-ffhqu-1024", "stylegan3-t-ffhqu-256", "stylegan3-t-afhqv2-512",
    "stylegan3-t-metfaces-1024", "stylegan3-t-metfacesu-1024", "stylegan3-r", "stylegan3-r-ffhq-1024",
    "stylegan3-r-ffhqu-1024", "stylegan3-r-ffhqu-256", "stylegan3-r-afhqv2-512", "stylegan3-r-metfaces-1024",
    "stylegan3-r-metfacesu-1024",
)  # fmt: skip

#: Every distribution of this repository besides promptgen-core.
ZOO: tuple[Distribution, ...] = (
    Distribution("promptgen-plugin-stylegan2", "plugins/promptgen-plugin-stylegan2", generators=_STYLEGAN2),
    Distribution(
        "promptgen-plugin-nvae", "plugins/promptgen-plugin-nvae",
        generators=("nvae", "nvae-ffhq-256", "nvae-celebahq-256", "nvae-celeba-64", "nvae-cifar10", "nvae-mnist"),
    ),
    Distribution(
        "promptgen-plugin-biggan", "plugins/promptgen-plugin-biggan",
        generators=("biggan", "biggan-deep-128", "biggan-deep-256", "biggan-deep-512"),
    ),
    Distribution(
        "promptgen-plugin-diffusers", "plugins/promptgen-plugin-diffusers",
        generators=("diffusers", "ddpm-cifar10-32", "ddpm-celebahq-256", "ddpm-ema-celebahq-256", "ddpm-church-256",
                    "ddpm-ema-church-256", "ddpm-bedroom-256", "ddpm-ema-bedroom-256", "ddpm-cat-256", "ddpm-ema-cat-256"),
    ),
    Distribution(
        "promptgen-plugin-diffae", "plugins/promptgen-plugin-diffae",
        generators=("diffae", "diffae-ffhq-256", "diffae-ffhq-128", "diffae-bedroom-128", "diffae-horse-128"),
    ),
    Distribution(
        "promptgen-plugin-stylenerf", "plugins/promptgen-plugin-stylenerf",
        generators=("stylenerf", "stylenerf-ffhq-256", "stylenerf-ffhq-512", "stylenerf-ffhq-1024"),
    ),
    Distribution("promptgen-plugin-clip", "plugins/promptgen-plugin-clip", energies=("clip",)),
    Distribution("promptgen-plugin-deca", "plugins/promptgen-plugin-deca", energies=("deca-pose",)),
    Distribution("promptgen-plugin-arcface", "plugins/promptgen-plugin-arcface", energies=("arcface-id",)),
    Distribution("promptgen-plugin-fairface", "plugins/promptgen-plugin-fairface", classifiers=("fairface",)),
    Distribution(
        "promptgen-plugin-digit-panel", "plugins/promptgen-plugin-digit-panel",
        generators=("panel-mlp-gan", "panel-wgan-gp", "panel-vae", "panel-biased-gan", "panel-class-latent", "panel-diffusion"),
        shipped=False,
    ),
    Distribution(
        "promptgen-plugin-foreign-digits", "plugins/promptgen-plugin-foreign-digits",
        generators=("foreign-mlp-gan", "foreign-mlp-vae"), shipped=False,
    ),
    Distribution("promptgen-plugin-ink", "examples/promptgen-plugin-ink", energies=("ink",), shipped=False),
)  # fmt: skip

#: The distributions published on PyPI; until one is, its install line names the clone and the wheelhouse.
ON_PYPI: frozenset[str] = frozenset()


def provider_of(kind: Kind, name: str) -> Distribution | None:
    """The distribution of :data:`ZOO` that registers ``name`` as a ``kind``, if one does."""
    for dist in ZOO:
        if name in dist.names(kind):
            return dist
    return None


def install_command(dist: str, version: str | None = None) -> str:
    """How to install the distribution ``dist`` (at ``version``, if given), as one phrase.

    >>> install_command("promptgen-plugin-clip")
    'pip install ./plugins/promptgen-plugin-clip from a clone of promptgen (not on PyPI yet), or pip install --find-links dist promptgen-plugin-clip from its wheelhouse'
    """
    pinned = f"{dist}=={version}" if version else dist
    if dist in ON_PYPI:
        return f"pip install {pinned}"
    known = next((d for d in ZOO if d.name == dist), None)
    if known is None:
        return f"pip install {pinned} (or from wherever its author publishes it)"
    return (
        f"pip install ./{known.folder} from a clone of promptgen (not on PyPI yet), "
        f"or pip install --find-links dist {pinned} from its wheelhouse"
    )


def install_hint(kind: Kind, name: str) -> str | None:
    """"DIST provides it and is not installed: pip install ..." for a name the zoo knows, else None."""
    dist = provider_of(kind, name)
    if dist is None:
        return None
    return f"{dist.name} provides it and is not installed: {install_command(dist.name)}"


def recorded_hint(kind: Kind, name: str, recorded: str) -> str | None:
    """The hint for a prompt whose ``kind`` ``name`` came from ``recorded`` ("distribution version", from its manifest)."""
    parts = recorded.split()
    if not parts or parts[0] in ("", "unknown"):
        return install_hint(kind, name)
    dist, version = parts[0], (parts[1] if len(parts) > 1 else None)
    return (
        f"the prompt was trained with {kind} {name!r} from {dist}{' ' + version if version else ''}, "
        f"which is not installed here: {install_command(dist, version)}"
    )
