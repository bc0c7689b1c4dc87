"""DECA's released model (YadiraF/DECA README, "Getting Started"), and under which terms.

The file is on Google Drive behind a confirmation page, with no published size
or checksum, so it is downloaded by hand (``page``) and given with ``path=`` or
put in the cache under ``filename``.
"""

from __future__ import annotations

from promptgen import plugin

CACHE_SUBDIR = "deca"
TERMS = (
    "DECA licence: non-commercial scientific research, education or artistic use only, single user "
    "(Max Planck Institute for Intelligent Systems), https://github.com/YadiraF/DECA/blob/master/LICENSE"
)
SOURCE = (
    "https://github.com/YadiraF/DECA (Feng, Feng, Black, Bolkart: Learning an Animatable Detailed 3D Face Model from "
    "In-The-Wild Images, SIGGRAPH 2021)"
)

#: The "DECA trained model", cached in ``$PROMPTGEN_HOME/deca/``.
DECA_MODEL = plugin.Published(
    "deca_model.tar",
    page="https://drive.google.com/file/d/1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje/view?usp=sharing (non-commercial licence)",
)
