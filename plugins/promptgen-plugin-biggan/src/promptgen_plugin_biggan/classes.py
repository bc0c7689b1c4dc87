"""The 1,000 ImageNet (ILSVRC 2012) class names, in the order of BigGAN's class index.

``imagenet_classes.txt`` holds one name a line (the names torchvision uses for
its ImageNet models; the order is the standard ILSVRC 2012 index order that
BigGAN's one-hot class vector follows).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from promptgen import plugin


@cache
def imagenet_classes() -> tuple[str, ...]:
    text = resources.files("promptgen_plugin_biggan").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def class_index(spec: plugin.Spec, value: str, num_classes: int) -> int:
    """The class ``value`` names: an index ``0 <= i < num_classes``, or an ImageNet name (any case)."""
    text = value.strip()
    if text.isdigit():
        if int(text) < num_classes:
            return int(text)
        raise plugin.SpecError(f"{spec.format()!r}: class={value} is out of range; the model has classes 0-{num_classes - 1}")
    names = imagenet_classes()
    if num_classes != len(names):
        raise plugin.SpecError(f"{spec.format()!r}: this model has {num_classes} classes, not ImageNet's; give class=INDEX (0-{num_classes - 1})")
    typed = " ".join(text.replace("_", " ").split())
    exact = [i for i, n in enumerate(names) if n == typed]
    if exact:  # the case decides between names that differ only in it ("Cardigan" the corgi, "cardigan" the sweater)
        return exact[0]
    key = typed.lower()
    same = [i for i, n in enumerate(names) if n.lower() == key]
    if len(same) > 1:
        which = " or ".join(f"{names[i]!r} ({i})" for i in same)
        raise plugin.SpecError(f"{spec.format()!r}: {value!r} names {len(same)} ImageNet classes: {which}; write it with that case, or give the index")
    lowered = {n.lower(): i for i, n in enumerate(names)}
    if key in lowered:
        return lowered[key]
    near = plugin.closest(key, lowered)
    tail = "did you mean " + " or ".join(repr(names[lowered[n]]) for n in near) + "?" if near else "give an ImageNet class name or an index 0-999"
    raise plugin.SpecError(f"{spec.format()!r}: {value!r} is not an ImageNet class; {tail}")
