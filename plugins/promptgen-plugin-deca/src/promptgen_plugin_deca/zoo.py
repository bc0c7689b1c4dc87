"""DECA's released model (YadiraF/DECA README, "Getting Started"), and under which terms.

The file is on Google Drive behind a confirmation page, with no published size
or checksum, so it is downloaded by hand (``page``) and given with ``path=`` or
put in the cache under ``filename``.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMS = (
    "DECA licence: non-commercial scientific research, education or artistic use only, single user "
    "(Max Planck Institute for Intelligent Systems), https://github.com/YadiraF/DECA/blob/master/LICENSE"
)


@dataclass(frozen=True)
class ZooModel:
    """One published checkpoint.

    Attributes:
        name: what the README calls it.
        filename: its name in the cache (``$PROMPTGEN_HOME/deca/``).
        page: where a person downloads it by hand.
        licence: terms of the weights.
        source: the project it comes from.
        size: the file's size as published (None: not published).
        sha256: published checksum (None: not published).
    """

    name: str
    filename: str
    page: str
    licence: str
    source: str
    size: int | None = None
    sha256: str | None = None


DECA_MODEL = ZooModel(
    "DECA trained model",
    "deca_model.tar",
    "https://drive.google.com/file/d/1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje/view?usp=sharing",
    TERMS,
    "https://github.com/YadiraF/DECA (Feng, Feng, Black, Bolkart: Learning an Animatable Detailed 3D Face Model from In-The-Wild Images, SIGGRAPH 2021)",
)
