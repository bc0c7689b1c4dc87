"""promptgen-plugin-fairface: the FairFace race, gender and age classifier as a promptgen control classifier.

After ``pip install promptgen-plugin-fairface``::

    promptgen compose --gen stylegan2-ffhq --energy debias:gender,age
    promptgen compose --gen stylegan2-ffhq --energy classifier:gender=female,path=res34.pt

Registering the plugin imports neither torchvision nor the weights: both are
loaded by ``build``, only when an energy asks for ``race``, ``gender`` or ``age``.
"""

from __future__ import annotations

from promptgen import plugin
from promptgen_plugin_fairface.attributes import AGES, GENDERS, RACES

NAME = "fairface"


class FairFaceOptions(plugin.Options):
    """What an energy spec that uses FairFace may add (``classifier:gender=female,path=res34.pt``)."""

    path: str | None = plugin.option(
        None,
        help="a local copy of res34_fair_align_multi_7_20190809.pt (default: download it once into the promptgen cache)",
        example="res34_fair_align_multi_7_20190809.pt",
    )


def build_fairface_classifier(options: FairFaceOptions, registry: plugin.Registry) -> plugin.ModuleClassifier:
    """The FairFace classifier (a ``ModuleClassifier``), from ``options.path`` or the cached download."""
    from promptgen_plugin_fairface.model import build_fairface

    return build_fairface(options.path)


@plugin.hookimpl
def promptgen_attribute_classifiers() -> list[plugin.ClassifierEntry]:
    return [
        plugin.ClassifierEntry(
            NAME,
            {"race": list(RACES), "gender": list(GENDERS), "age": list(AGES)},
            build_fairface_classifier,
            role="control",
            summary="FairFace ResNet-34 (Kärkkäinen & Joo 2021): race (7), gender, age (9) of face images; "
            "weights CC BY 4.0, downloaded once or path=FILE",
            options=FairFaceOptions,
        )
    ]
