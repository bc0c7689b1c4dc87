"""The 1,000 ImageNet (ILSVRC 2012) class names, in the order of BigGAN's class index.

``imagenet_classes.txt`` holds one name a line (the names torchvision uses for
its ImageNet models; the order is the standard ILSVRC 2012 index order that
BigGAN's one-hot class vector follows). torchvision's names tell apart the
classes ImageNet names alike: ``crane`` (517, the machine) and ``crane bird``
(134); ``maillot`` (638) and ``maillot tank suit`` (639); ``Cardigan`` (264,
the corgi) and ``cardigan`` (474, the sweater). ``class=crane`` and
``class=maillot`` alone are refused with both choices.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from promptgen import plugin

#: Names ImageNet gives to two classes, which torchvision's list (this plugin's) tells apart by renaming one:
#: the name typed alone is refused, with both choices. (``Cardigan`` the corgi and ``cardigan`` the sweater are
#: told apart by their case.)
AMBIGUOUS: dict[str, tuple[int, str, str]] = {
    "crane": (517, "the machine", "crane bird"),
    "maillot": (638, "the one-piece swimsuit 'maillot'", "maillot tank suit"),
}


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
    if typed.lower() in AMBIGUOUS:  # ImageNet has two classes of this name; torchvision renamed one of them
        index, meaning, other = AMBIGUOUS[typed.lower()]
        raise plugin.SpecError(
            f"{spec.format()!r}: ImageNet has two classes named {typed!r}: {meaning} ({index}) and {other!r} "
            f"({names.index(other)}), as torchvision names them; give class={index} or class={other!r}"
        )
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
