"""Training and measuring the built-in digit models (used by ``scripts/train_builtin.py``
and by the digit panel's ``train_panel.py``).

Which data each model may see is fixed here:

* the evaluator trains on the ``"evaluator"`` split only, and its realism
  check keeps that split's features as its picture of real digits;
* the control classifier trains on the ``"models"`` split;
* every generator trains on the *images* of the ``"models"`` split, read by
  :func:`~promptgen.datasets.mnist.load_split_images`, which never opens
  the labels file: nothing a generator learns comes from a label;
* the ``"heldout"`` split is only ever used to *measure*.

Generators are trained by two generic loops, :func:`train_gan` and
:func:`train_vae`, that take the networks as arguments; the built-in
generator and the digit panel's differ only in networks and settings.

Weights are written as float32 safetensors, atomically (temp file in the same
folder, then ``os.replace``).
"""

from __future__ import annotations

from promptgen.builtin.mnist.train_classifiers import (  # noqa: F401 - re-exported
    JUNK_SHARE,
    _train_supervised,
    train_classifier_model,
    train_realism,
)
from promptgen.builtin.mnist.train_common import (  # noqa: F401 - re-exported
    DEFAULT_EPOCHS,
    DEFAULT_GENERATOR_STEPS,
    MODEL_NAMES,
    REALISM_ACCEPT,
    TRAIN_SPLIT,
    ProgressFactory,
    RichBars,
    _NullProgress,
    accuracy,
    diff_augment,
    random_cutout,
    random_translate,
    save_weights,
    setup_torch,
)
from promptgen.builtin.mnist.train_generators import (  # noqa: F401 - re-exported
    Critic,
    _ema_update,
    _latents,
    judge_samples,
    measure_generator,
    sample,
    save_grid,
    train_gan,
    train_generator,
    train_vae,
)
