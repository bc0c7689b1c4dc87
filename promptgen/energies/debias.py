"""De-biasing by a moment constraint: ``debias:ATTR[,ATTR...]``.

The closest distribution (in KL) to the generator's own whose expected class
probabilities equal a target ``μ`` is an exponential tilt of it,
``p(x) ∝ p_G(x) · exp(β · φ(x))``, with ``φ(x)`` the classifier's class
probabilities (see ``../shared/METHOD.md``). The energy is ``E(x) = −β · φ(x)``.

``β`` is fitted once, before the flow is trained, on a cached sample of the base
distribution, by the convex dual ``min_β log mean_i exp(β · φ_i) − β · μ``
(:func:`fit_moment_constraint`). A reverse-KL flow falls short of the tilt it is
trained on (it under-covers the rare classes the tilt must lift), so by default
the loop is closed: every ``refit`` steps after the warm-up, the dual is solved
again on the flow's own samples and the correction is added to ``β``. With
``refit=0`` the fit on the base sample is used as is (the paper's way).

Spec::

    debias:digit                     uniform over digits
    debias:digit,thickness           uniform over each (β fitted jointly)
    debias:digit*thickness           uniform over the 30 combinations
    debias:thickness=0.2/0.3/0.5     an explicit target, in class order
    debias:thickness=target.json     a target from a file: [0.2, 0.3, 0.5]
                                     or {"thin": 0.2, "medium": 0.3, "thick": 0.5}
    debias:digit,refit=0             open loop: β from the base sample only
    debias:digit,mode=mixture        a mixture prompt: one flow component per class
                                     (the default for joint targets)
    debias:digit*thickness,mode=tilt one flow on the tilt
    debias:digit,mode=auto           the default for plain attributes: the tilt, or the
                                     mixture when the base sample draws some class at
                                     less than half its target (decided at the fit)

With a classifier that knows its domain (the built-in control's "not a
digit" class), every energy below also carries ``realism · −log p(in domain | x)``
and β is fitted on base samples weighted by ``p(in domain | x)``: the target is
the de-biased distribution of the images the classifier takes for digits at all.

``mode=mixture`` trains a class-conditional flow instead of one flow on the
tilt: one component per combination ``c`` of the named attributes' classes,
each trained on ``E_c(x) = 10 · Σ_a −log p̃_a(c_a | x)`` (``p̃``: the control
classifiers' probabilities averaged over ``shifts`` random translations, see
:func:`~promptgen.energies.classifier.shifted_log_probs`), and sampled with
the weights ``π_c = E_w[Π_a p_a(c_a | x)]`` of the fitted tilt's
self-normalised base sample, whose marginals are exactly the target. Where
every class is plain to see this is the tilt with the classes made hard; it
reaches classes the generator almost never draws, which the tilt's flow
under-covers (docs/debiasing.md).

This module builds the energy from its spec; the energy itself is in
:mod:`~promptgen.energies.debias_energy` and the fit of β in :mod:`~promptgen.energies.moments`
(their names can be imported from here too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from promptgen.core.metrics import joint_labels
from promptgen.energies.classifier import DEFAULT_REALISM, check_realism_applies, classifier_options
from promptgen.energies.debias_energy import (
    ADVICE_KL,
    AUTO_RARE,
    DAMPING,
    DEFAULT_MODE,
    DEFAULT_REFIT,
    DEFAULT_SHIFTS,
    DEFAULT_WEIGHT,
    FIT_SAMPLES,
    FIT_SAMPLES_PLAIN,
    MAX_BETA,
    MAX_COMPONENTS,
    MAX_CORRECTION,
    MAX_STEP,
    MODES,
    REFIT_SAMPLES,
    SHARPNESS,
    Block,
    DebiasEnergy,
)
from promptgen.energies.moments import MomentFit, fit_moment_constraint, joint_log_probs
from promptgen.plugin import (
    Arg,
    AttributeClassifier,
    ClassifierEntry,
    Options,
    Registry,
    Spec,
    SpecError,
    option,
    option_names,
)


def _parse_target(spec: Spec, attribute: str, labels: Sequence[str], value: str) -> tuple[float, ...]:
    usage = f"debias:{attribute}={'/'.join(['%.3g' % (1 / len(labels))] * len(labels))}"
    if value.lower().endswith(".json") or Path(value).is_file():
        path = Path(value)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpecError(f"{spec.format()!r}: cannot read the target file {value!r} ({type(exc).__name__}); give a JSON list like [0.2, 0.3, 0.5] or a {{label: probability}} object") from None
        if isinstance(raw, dict):
            unknown = [k for k in raw if str(k) not in labels]
            if unknown:
                raise SpecError(f"{spec.format()!r}: {value!r} names class {unknown[0]!r}, which {attribute!r} does not have; its classes are {', '.join(labels)}")
            raw = [raw.get(lab, 0.0) for lab in labels]
        if not isinstance(raw, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
            raise SpecError(f"{spec.format()!r}: {value!r} must hold a JSON list of numbers or a {{label: probability}} object")
        probs = [float(x) for x in raw]
    else:
        try:
            probs = [float(x) for x in value.split("/")]
        except ValueError:
            raise SpecError(f"{spec.format()!r}: the target {value!r} is not numbers separated by '/'; write it like {usage}") from None
    if len(probs) != len(labels):
        raise SpecError(
            f"{spec.format()!r}: {attribute!r} has {len(labels)} classes ({', '.join(labels)}), the target has {len(probs)} numbers; "
            f"give one per class, e.g. {usage}"
        )
    if any(not math.isfinite(p) or p < 0 for p in probs):
        raise SpecError(f"{spec.format()!r}: target probabilities must be finite and >= 0; e.g. {usage}")
    total = sum(probs)
    if abs(total - 1.0) > 1e-3:
        raise SpecError(f"{spec.format()!r}: the target for {attribute!r} sums to {total:.4g}, not 1; e.g. {usage}")
    if any(p == 0 for p in probs):
        raise SpecError(
            f"{spec.format()!r}: a target of 0 for a class cannot be reached by a tilt (β would be −∞); "
            f"use a small positive number, or classifier:{attribute}!=CLASS to rule a class out"
        )
    return tuple(p / total for p in probs)


class DebiasOptions(Options):
    """The options of ``debias:``; its other arguments are ``ATTR``, ``ATTR*ATTR`` and ``ATTR=TARGET``."""

    mode: Literal["auto", "tilt", "mixture"] | None = option(
        None, help="tilt: one flow on -β·φ; mixture: a flow per class combination; auto: chosen at the fit (default: by the other options)"
    )
    refit: int | None = option(None, ge=0, help=f"mode=tilt: refit β every N steps (0: once; default {DEFAULT_REFIT})")
    shifts: int | None = option(None, ge=0, le=64, help=f"mode=mixture: translations the probabilities are averaged over (default {DEFAULT_SHIFTS})")
    realism: float = option(DEFAULT_REALISM, ge=0, help="weight of -log p(in domain | x), for classifiers that know their domain (0: off)")


def build_debias_energy(spec: Spec, options: DebiasOptions, registry: Registry) -> DebiasEnergy:
    """Build ``debias:ATTR[*ATTR][,ATTR...][,ATTR=TARGET][,refit=N][,mode=M][,shifts=N][,realism=W][,OPTION=VALUE...]``.

    ``OPTION``: an option a classifier of the attributes declares
    (``ClassifierEntry.options``), passed to its ``build``, e.g.
    ``debias:race,gender,age,path=res34.pt``.
    """
    refit = options.refit
    mode: str | None = options.mode
    shifts = DEFAULT_SHIFTS if options.shifts is None else options.shifts
    realism = options.realism
    wanted: list[tuple[str, str | None]] = []
    others: list[Arg] = []
    for arg in spec.args:
        if arg.key in option_names(DebiasOptions):
            continue
        if arg.key is not None and "*" not in arg.key and not registry.provides(arg.key):
            others.append(arg)  # a classifier's option, or an unknown attribute: decided once the classifiers are known
            continue
        if arg.key is not None and arg.op != "=":
            raise SpecError(f"{spec.format()!r}: debias takes ATTR or ATTR=TARGET, not {arg.format()!r}")
        wanted.append((arg.key, arg.value) if arg.key is not None else (arg.value, None))
    if not wanted:
        declared = {o for e in registry.classifiers.values() for o in option_names(e.options)}
        for arg in others:
            if arg.key not in declared:
                raise registry.unknown_attribute(arg.key)
        raise SpecError(f"{spec.format()!r}: name the attributes to even out, e.g. debias:digit or debias:digit,thickness")
    entries: dict[str, ClassifierEntry] = {}  # attribute -> its classifier
    blocks: list[Block] = []
    seen: set[str] = set()
    for attribute, value in wanted:
        parts = tuple(p.strip() for p in attribute.split("*"))
        if any(not p for p in parts):
            raise SpecError(f"{spec.format()!r}: {attribute!r} has an empty part; write joint attributes like digit*thickness")
        part_labels = []
        for p in parts:
            if p in seen:
                raise SpecError(f"{spec.format()!r}: {p!r} appears twice; name each attribute once (use a*b for a joint target)")
            seen.add(p)
            entries[p] = registry.classifier_for(p)
            part_labels.append([str(x) for x in entries[p].attributes[p]])
        labels = tuple(joint_labels(part_labels))
        if value is None:
            target = tuple(1.0 / len(labels) for _ in labels)
        else:
            target = _parse_target(spec, attribute, labels, value)
        blocks.append(Block(attribute, parts, labels, target))
    has_shifts = options.shifts is not None
    if mode == "mixture" and refit is not None:
        raise SpecError(f"{spec.format()!r}: refit= closes the loop of mode=tilt; a mixture has no loop, remove refit=")
    if mode == "auto" and (refit is not None or has_shifts):
        option = "refit=" if refit is not None else "shifts="
        wanted_mode = "tilt" if refit is not None else "mixture"
        raise SpecError(f"{spec.format()!r}: {option} applies to mode={wanted_mode} only, and mode=auto may choose the other; write mode={wanted_mode}")
    sizes = [len(entries[p].attributes[p]) for p in entries]
    if mode is None:  # refit= only means something for the tilt and shifts= for the mixture, so each asks for its mode
        joint = any("*" in attribute for attribute, _ in wanted)
        mode = "tilt" if refit is not None else "mixture" if joint or has_shifts else DEFAULT_MODE
        if mode == "auto" and math.prod(sizes) > MAX_COMPONENTS:  # too many classes for a mixture: auto can only tilt
            mode = "tilt"
    if mode == "tilt" and has_shifts:
        raise SpecError(f"{spec.format()!r}: shifts= applies to mode=mixture only; remove shifts=, or use mode=mixture without refit=")
    if mode != "tilt" and math.prod(sizes) > MAX_COMPONENTS:
        raise SpecError(
            f"{spec.format()!r}: mode=mixture would need {math.prod(sizes):,} components (one per combination of classes), "
            f"more than {MAX_COMPONENTS}; use mode=tilt or fewer attributes"
        )
    chosen = list({e.name: e for e in entries.values()}.values())
    options = classifier_options(spec, others, chosen, registry)
    # One classifier object per classifier, however many of its attributes are used.
    built = {e.name: registry.build_classifier(e.name, options[e.name], spec) for e in chosen}
    check_realism_applies(spec, built)
    classifiers: dict[str, AttributeClassifier] = {p: built[e.name] for p, e in entries.items()}
    return DebiasEnergy(
        blocks,
        classifiers,
        label=spec.with_weight(None).format(),
        refit=DEFAULT_REFIT if refit is None else refit,
        mode=mode,
        shifts=shifts,
        realism=realism,
    )


__all__ = [
    "ADVICE_KL",
    "AUTO_RARE",
    "DAMPING",
    "DEFAULT_MODE",
    "DEFAULT_REFIT",
    "DEFAULT_SHIFTS",
    "DEFAULT_WEIGHT",
    "FIT_SAMPLES",
    "FIT_SAMPLES_PLAIN",
    "MAX_BETA",
    "MAX_COMPONENTS",
    "MAX_CORRECTION",
    "MAX_STEP",
    "MODES",
    "REFIT_SAMPLES",
    "SHARPNESS",
    "Block",
    "DebiasEnergy",
    "DebiasOptions",
    "MomentFit",
    "build_debias_energy",
    "fit_moment_constraint",
    "joint_log_probs",
]
