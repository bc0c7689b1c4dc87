"""promptgen: distributional control of pretrained generative models.

A small invertible network in a generator's latent space is trained so that
the generator's samples follow an energy-based model built from other models
(classifiers, CLIP...). Afterwards sampling is one forward pass.

Example (trains for about a minute)::

    import promptgen
    prompt = promptgen.compose("mnist", ["classifier:digit=3"], out="runs/three")
    images = promptgen.sample(prompt, n=64, seed=0)   # (64, 1, 28, 28) in [0, 1]
"""

from __future__ import annotations

__version__ = "0.2.0"

from promptgen import _moved

_moved.install()

from promptgen.api import compose, info, list_plugins, load_prompt, sample

__all__ = ["__version__", "compose", "info", "list_plugins", "load_prompt", "sample"]
