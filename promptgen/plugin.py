"""Everything a plugin author imports, in one place: ``from promptgen import plugin``.

A generator plugin in full::

    from promptgen import plugin

    class Options(plugin.Options):
        psi: float = plugin.option(1.0, ge=0, le=1, help="truncation ψ (1: none)")

    def build(spec: plugin.Spec, options: Options, registry: plugin.Registry) -> plugin.Generator:
        return plugin.ModuleGenerator(MyNet(psi=options.psi), (512,), plugin.GeneratorInfo("mine", (256, 256), 3))

    @plugin.hookimpl
    def promptgen_generators():
        return [plugin.GeneratorEntry("mine", build, summary="my GAN", options=Options, example="mine:psi=0.7")]

The core checks each spec against the entry's options model and writes the
one-line error itself; ``build`` receives the validated options and the
registry. Check a plugin with :mod:`promptgen.testing` (``check_generator``,
``check_energy``, ``check_classifier``) in its own tests. docs/writing-plugins.md
walks through a complete plugin.
"""

from __future__ import annotations

from promptgen.core.budget import MAX_ELEMENTS, ConfigSizeError, build_matching
from promptgen.core.capabilities import (
    Accepting,
    Adaptive,
    Advising,
    Bounded,
    Capabilities,
    Contextual,
    EnergyBase,
    EnergyContext,
    Fittable,
    HasTargets,
    Mixture,
    Settling,
    Stateful,
    capabilities,
)
from promptgen.core.classifiers import ModuleClassifier, adapt_images, classify
from promptgen.core.download import DownloadError, RemoteFile, cache_root, fetch
from promptgen.core.entries import ClassifierEntry, EnergyEntry, GeneratorEntry
from promptgen.core.errors import (
    ArtifactError,
    PromptgenError,
    SpecError,
    UnknownNameError,
    closest,
    one_line,
    unknown_name,
)
from promptgen.core.generators import GeneratorOutputError, ModuleGenerator, check_images
from promptgen.core.hooks import hookimpl
from promptgen.core.latents import seed_of, seeded_noise, split_latent
from promptgen.core.options import NoOptions, Options, option, option_names
from promptgen.core.pickle_budget import (
    COUNTERS,
    COUNTS,
    PickleBudgetError,
    all_finite,
    check_pickle_budget,
    tensor_problem,
)
from promptgen.core.protocols import (
    AttributeClassifier,
    AttributeTarget,
    BaseSample,
    Energy,
    Generator,
    GeneratorInfo,
    HasLatentParts,
    HasNoise,
    ReadsConditions,
)
from promptgen.core.published import Published, local_file, zoo_entries
from promptgen.core.registry import Registry
from promptgen.core.spec import Arg, Spec, parse_spec
from promptgen.core.weights import WeightsFileError, check_state_dict, load_torch_file

#: The version of the plugin surface. A plugin declares the core versions it works with
#: (``Requires-Dist: promptgen-core>=0.2,<0.3``); see docs/writing-plugins.md.
API_VERSION = "0.2"

__all__ = [
    "API_VERSION",
    "COUNTERS",
    "COUNTS",
    "MAX_ELEMENTS",
    "Accepting",
    "Adaptive",
    "Advising",
    "Arg",
    "ArtifactError",
    "AttributeClassifier",
    "AttributeTarget",
    "BaseSample",
    "Bounded",
    "Capabilities",
    "ClassifierEntry",
    "ConfigSizeError",
    "Contextual",
    "DownloadError",
    "Energy",
    "EnergyBase",
    "EnergyContext",
    "EnergyEntry",
    "Fittable",
    "Generator",
    "GeneratorEntry",
    "GeneratorInfo",
    "GeneratorOutputError",
    "HasLatentParts",
    "HasNoise",
    "HasTargets",
    "Mixture",
    "ModuleClassifier",
    "ModuleGenerator",
    "NoOptions",
    "Options",
    "PickleBudgetError",
    "PromptgenError",
    "Published",
    "ReadsConditions",
    "Registry",
    "RemoteFile",
    "Settling",
    "Spec",
    "SpecError",
    "Stateful",
    "UnknownNameError",
    "WeightsFileError",
    "adapt_images",
    "all_finite",
    "build_matching",
    "cache_root",
    "capabilities",
    "check_images",
    "check_pickle_budget",
    "check_state_dict",
    "classify",
    "closest",
    "fetch",
    "hookimpl",
    "load_torch_file",
    "local_file",
    "one_line",
    "option",
    "option_names",
    "parse_spec",
    "seed_of",
    "seeded_noise",
    "split_latent",
    "tensor_problem",
    "unknown_name",
    "zoo_entries",
]
