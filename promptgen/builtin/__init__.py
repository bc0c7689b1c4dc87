"""promptgen's built-in plugin: the MNIST digit generator and digit classifiers.

Registered through the ``builtin`` entry point of promptgen-core and the same
hooks as any third-party plugin (see :mod:`promptgen.core.hooks`).
"""

from __future__ import annotations

from promptgen.energies import debias
from promptgen.energies.classifier import DEFAULT_WEIGHT, ClassifierOptions, build_classifier_energy
from promptgen.plugin import (
    ClassifierEntry,
    EnergyEntry,
    GeneratorEntry,
    GeneratorInfo,
    ModuleClassifier,
    ModuleGenerator,
    NoOptions,
    Options,
    PromptgenError,
    Registry,
    Spec,
    hookimpl,
    option,
)

DIGITS = [str(d) for d in range(10)]
THICKNESS = ["thin", "medium", "thick"]
SLANT = ["left", "upright", "right"]
MNIST_LICENCE = "CC BY-SA 3.0 (weights trained by promptgen on the MNIST test set)"
MNIST_SOURCE = "promptgen package data; retrain with scripts/train_builtin.py"


class PathOptions(Options):
    """The built-in digit classifiers' one option."""

    path: str | None = option(None, help="a local .safetensors file of the same network (e.g. retrained by scripts/train_builtin.py)")


def _load(name: str, path: str | None = None):
    from pathlib import Path

    from promptgen.builtin.mnist.models import WEIGHTS_DIR, build, load_pretrained_module

    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise PromptgenError(f"path={path!r}: no such file; give the .safetensors file of a retrained built-in {name}")
        try:
            return load_pretrained_module(build(name), file)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: one line
            raise PromptgenError(
                f"path={path!r} is not a built-in {name}'s weights ({type(exc).__name__}); "
                f"give a file written by `python scripts/train_builtin.py {name}`"
            ) from None
    file = WEIGHTS_DIR / f"{name}.safetensors"
    if not file.exists():
        raise PromptgenError(
            f"the built-in weights {str(file)!r} are missing; reinstall with `pip install --force-reinstall promptgen-core` "
            "or retrain with `python scripts/train_builtin.py all --data ../shared/data/mnist`"
        )
    return load_pretrained_module(build(name), file)


def build_mnist(spec: Spec, options: NoOptions, registry: Registry) -> ModuleGenerator:
    from promptgen.builtin.mnist.models import LATENT_DIM

    info = GeneratorInfo(
        name="mnist",
        resolution=(28, 28),
        channels=1,
        licence=MNIST_LICENCE,
        source=MNIST_SOURCE,
        description="handwritten digits, 28×28 grey, latent N(0, I) of size 32 (unconditional GAN, trained on images alone)",
    )
    return ModuleGenerator(_load("generator"), (LATENT_DIM,), info)


#: Weights of the conditional digit energies, measured with benchmarks/conditional_mnist.py.
SLANT_WEIGHT = 3.0
DIGIT_ID_WEIGHT = 10.0


def _conditional():
    from promptgen.builtin.mnist import conditional

    return conditional


def _build_slant(spec: Spec, options, registry: Registry):
    return _conditional().build_slant(spec, options, registry)


def _build_digit_id(spec: Spec, options, registry: Registry):
    return _conditional().build_digit_id(spec, options, registry, _load("classifier"))


def _stroke_classifier(role: str):
    from promptgen.builtin.mnist.strokes import StrokeClassifier, StrokeEvaluator

    return StrokeClassifier() if role == "control" else StrokeEvaluator()


def _digit_classifier(name: str, path: str | None = None) -> ModuleClassifier:
    from promptgen.builtin.mnist.models import NOT_A_DIGIT

    heads = {"digit": (DIGITS, slice(0, 10))}
    if name == "classifier":
        # The eleventh logit says "not a digit": energies on this classifier also ask for a digit at all.
        return ModuleClassifier(_load(name, path), heads, (28, 28), channels=1, outside=("digit", NOT_A_DIGIT))
    from promptgen.builtin.mnist.models import RealismCheck

    evaluator = _load(name, path)
    return ModuleClassifier(evaluator, heads, (28, 28), channels=1, realism=RealismCheck(_load("realism"), evaluator))


@hookimpl
def promptgen_generators() -> list[GeneratorEntry]:
    return [
        GeneratorEntry("mnist", build_mnist, summary="built-in unconditional digit GAN, 28×28, latent 32; runs offline", example="mnist")
    ]


@hookimpl
def promptgen_energies() -> list[EnergyEntry]:
    return [
        EnergyEntry(
            "classifier",
            build_classifier_energy,
            summary="-log p(class) from an attribute classifier: classifier:digit=3, classifier:digit!=1",
            options=ClassifierOptions,
            arguments="ATTR=CLASS to ask for a class, ATTR!=CLASS to refuse one, and the chosen classifier's options",
            default_weight=DEFAULT_WEIGHT,
            example="classifier:digit=3",
        ),
        EnergyEntry(
            "debias",
            debias.build_debias_energy,
            summary="even out attributes by a moment constraint: debias:digit,thickness, debias:digit*thickness, "
            "debias:thickness=0.2/0.3/0.5",
            options=debias.DebiasOptions,
            arguments="ATTR to even out, ATTR*ATTR for a joint target, ATTR=P1/P2/... for a target distribution, and the classifiers' options",
            default_weight=debias.DEFAULT_WEIGHT,
            example="debias:digit,thickness",
        ),
        EnergyEntry(
            "slant",
            _build_slant,
            summary="digit slant set by a prompt's condition: --energy slant --cond slant=-0.3:0.3 (or slant:target=0.2)",
            options=_conditional().SlantOptions,
            default_weight=SLANT_WEIGHT,
            example="slant",
            conditions={"slant": (-0.3, 0.3)},
        ),
        EnergyEntry(
            "digit-id",
            _build_digit_id,
            summary="keep the digit across a conditional prompt's conditions: KL of the classifier's digit vs the twin's",
            options=_conditional().DigitIdOptions,
            default_weight=DIGIT_ID_WEIGHT,
            example="digit-id",
        ),
    ]


@hookimpl
def promptgen_attribute_classifiers() -> list[ClassifierEntry]:
    return [
        ClassifierEntry(
            "mnist-digit",
            {"digit": DIGITS},
            lambda options, registry: _digit_classifier("classifier", options.path),
            role="control",
            summary="built-in CNN digit classifier with a 'not a digit' class, trained on augmented and adversarial digits (controls)",
            options=PathOptions,
        ),
        ClassifierEntry(
            "mnist-digit-evaluator",
            {"digit": DIGITS},
            lambda options, registry: _digit_classifier("evaluator", options.path),
            role="evaluator",
            summary="independent residual digit classifier and realism check, disjoint training split (judges results only)",
            options=PathOptions,
        ),
        ClassifierEntry(
            "mnist-stroke",
            {"thickness": THICKNESS, "slant": SLANT},
            lambda options, registry: _stroke_classifier("control"),
            role="control",
            summary="stroke thickness (ink per pixel) and slant (shear), soft bins, differentiable (controls)",
        ),
        ClassifierEntry(
            "mnist-stroke-evaluator",
            {"thickness": THICKNESS, "slant": SLANT},
            lambda options, registry: _stroke_classifier("evaluator"),
            role="evaluator",
            summary="thickness and slant of the binarised image, hard bins (judges results only)",
        ),
    ]
