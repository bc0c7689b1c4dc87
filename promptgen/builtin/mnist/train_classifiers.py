"""Training the built-in digit classifiers: the control classifier, the independent evaluator and the realism check."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from promptgen.builtin.mnist.train_common import (
    DEFAULT_EPOCHS,
    REALISM_ACCEPT,
    TRAIN_SPLIT,
    ProgressFactory,
    _NullProgress,
    accuracy,
    save_weights,
    setup_torch,
)
from promptgen.datasets.mnist import load_split, load_split_images

from .augment import augment_digits, blob_images, junk_images, noise_images, photometric
from .models import (
    NOT_A_DIGIT,
    WEIGHTS_DIR,
    RealismCheck,
    build,
    load_pretrained,
)

# --------------------------------------------------------------------- classifiers


def _train_supervised(
    model: nn.Module,
    n: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    label: str,
    progress: ProgressFactory | None,
) -> float:
    """The classifiers' loop: ``epochs`` passes over ``n`` images in random batches of indices, AdamW with a
    one-cycle rate; ``loss_of(indices)`` builds each batch's loss. Returns the seconds it took."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    bar = (progress or _NullProgress)(label, epochs * steps_per_epoch)
    t0 = time.perf_counter()
    loss_ema = None
    for _epoch in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            loss = loss_of(perm[i : i + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
            bar.advance(1, info=f"loss {loss_ema:.3f}")
    bar.close()
    model.eval()
    return time.perf_counter() - t0

#: Share of each control-classifier batch that is "not a digit" images.
JUNK_SHARE = 0.25
#: The control classifier is trained against adversarial images: each batch is also seen perturbed by the
#: worst change of L2 norm at most this (pixels in [0, 1]; a 28×28 digit has norm about 9), found by
#: :data:`ROBUST_STEPS` steps of projected gradient ascent. A flow trained against a classifier finds whatever
#: raises its score; a robust classifier's score rises only with changes that look like the class, so the
#: flow's images stay digits (docs/robust-controls.md: on a stranger's MLP GAN the mixture's junk went from
#: 22.6 % to 5.8 %). 1.5 was set once, before any measurement, from the robust-MNIST literature's range.
ROBUST_L2 = 1.5
ROBUST_STEPS = 3


def adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = ROBUST_STEPS) -> torch.Tensor:
    """``x`` moved to raise ``model``'s loss on labels ``y`` most within an L2 ball of radius ``eps`` per image
    (projected gradient ascent, step 2.5·eps/steps, images kept in [0, 1]); no gradient flows back to ``x``."""
    was_training = model.training
    model.eval()
    delta = torch.zeros_like(x, requires_grad=True)
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        (grad,) = torch.autograd.grad(F.cross_entropy(model((x + delta).clamp(0, 1)), y), delta)
        grad = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = (delta + alpha * grad).detach()
        norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = (delta * (eps / norm.clamp_min(1e-12)).clamp(max=1)).requires_grad_(True)
    model.train(was_training)
    return (x + delta).clamp(0, 1).detach()


def train_classifier_model(
    name: str,
    data: str | Path,
    out: str | Path = WEIGHTS_DIR,
    seed: int = 0,
    epochs: int | None = None,
    progress: ProgressFactory | None = None,
    batch_size: int = 64,
    lr: float = 3e-3,
    augment: float = 1.0,
    junk: bool = True,
    robust: float | None = None,
) -> dict[str, Any]:
    """Train the ``"classifier"`` or ``"evaluator"`` on its own split, save it, and measure it.

    Both see their digits through :func:`~promptgen.builtin.mnist.augment.augment_digits`
    (``augment`` scales it; 0 turns it off). The control classifier also sees a
    quarter of "not a digit" images per batch as its eleventh class (``junk=False``
    leaves that class untrained), and each batch perturbed adversarially within an L2
    ball of radius ``robust`` (default :data:`ROBUST_L2` for the classifier, 0 for the
    evaluator; the loss is the mean of the clean and the perturbed batch's).

    Returns ``{"heldout_accuracy": ..., ...}`` measured on the held-out split.
    """
    if name not in ("classifier", "evaluator"):
        raise ValueError(f"not a classifier model: {name!r}")
    epochs = DEFAULT_EPOCHS[name] if epochs is None else epochs
    setup_torch(seed)
    split = TRAIN_SPLIT[name]
    x, y = load_split(data, split)
    hx, hy = load_split(data, "heldout")
    with_junk = name == "classifier" and junk
    robust = (ROBUST_L2 if name == "classifier" else 0.0) if robust is None else robust

    model = build(name)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb, yb = augment_digits(x[idx], augment), y[idx]
        if with_junk:
            k = max(1, round(JUNK_SHARE * len(idx)))
            source = x[torch.randint(0, len(x), (k,))]
            xb = torch.cat([xb, photometric(junk_images(source), augment)])
            yb = torch.cat([yb, torch.full((k,), NOT_A_DIGIT, dtype=yb.dtype)])
        if robust > 0:
            moved = adversarial(model, xb, yb, robust)  # before the batch's own pass, which moves batch-norm statistics
            return 0.5 * F.cross_entropy(model(xb), yb) + 0.5 * F.cross_entropy(model(moved), yb)
        return F.cross_entropy(model(xb), yb)

    train_time = _train_supervised(model, len(x), loss_of, epochs=epochs, batch_size=batch_size, lr=lr,
                                   label=f"{name} ({split})", progress=progress)
    acc = accuracy(model, hx, hy)
    torch.manual_seed(seed + 1)
    acc_augmented = accuracy(model, augment_digits(hx), hy)
    result: dict[str, Any] = {
        "heldout_accuracy": round(acc, 4),
        "heldout_accuracy_augmented": round(acc_augmented, 4),
        "train_accuracy": round(accuracy(model, x, y), 4),
        "train_split": split,
        "epochs": epochs,
        "augment": augment,
        "robust_l2": robust,
        "seed": seed,
        "train_seconds": round(train_time, 1),
    }
    if name == "classifier":
        with torch.no_grad():
            torch.manual_seed(seed + 2)
            junk_top = model(junk_images(hx[:1000])).argmax(1)
            real_top = model(hx).argmax(1)
        result["junk_class"] = with_junk
        result["heldout_junk_called_not_a_digit"] = round(float((junk_top == NOT_A_DIGIT).float().mean()), 4)
        result["heldout_digits_called_not_a_digit"] = round(float((real_top == NOT_A_DIGIT).float().mean()), 4)
    path = save_weights(
        model,
        Path(out) / f"{name}.safetensors",
        metadata={"model": name, "train_split": split, "seed": seed, "epochs": epochs, "augment": augment,
                  "junk_class": with_junk, "robust_l2": robust, "robust_steps": ROBUST_STEPS if robust > 0 else 0,
                  "heldout_accuracy": f"{acc:.4f}"},
    )
    result.update({"weights": str(path), "bytes": path.stat().st_size})
    return result


def train_realism(
    data: str | Path,
    out: str | Path = WEIGHTS_DIR,
    seed: int = 0,
    epochs: int | None = None,
    progress: ProgressFactory | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> dict[str, Any]:
    """Train the realism check (:class:`~promptgen.builtin.mnist.models.DigitRealism`) and set its threshold.

    Real digits: the ``"evaluator"`` split through
    :func:`~promptgen.builtin.mnist.augment.augment_digits` (still digits); not
    digits: as many :func:`~promptgen.builtin.mnist.augment.junk_images`. The
    threshold is the logit that accepts :data:`REALISM_ACCEPT` of the
    ``"models"`` split's digits, which it never trained on; so is the
    evaluator's top probability that the check also asks for (the evaluator's
    weights must be in ``out``). Acceptance of the whole
    :class:`~promptgen.builtin.mnist.models.RealismCheck` is then measured on
    the held-out split and on fresh junk.
    """
    epochs = DEFAULT_EPOCHS["realism"] if epochs is None else epochs
    if not (Path(out) / "evaluator.safetensors").is_file():
        raise ValueError(f"the realism check is calibrated with the evaluator beside it, and {Path(out) / 'evaluator.safetensors'} "
                         f"does not exist; train the evaluator into that folder first (train_builtin.py evaluator realism --out {out})")
    setup_torch(seed)
    x, _ = load_split(data, "evaluator")
    model = build("realism")

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        real = x[idx]
        junk = photometric(junk_images(x[torch.randint(0, len(x), (len(real),))]), 0.7)
        images = torch.cat([augment_digits(real, 0.7), junk])
        target = torch.cat([torch.ones(len(real)), torch.zeros(len(real))])
        return F.binary_cross_entropy_with_logits(model(images), target)

    train_time = _train_supervised(model, len(x), loss_of, epochs=epochs, batch_size=batch_size, lr=lr,
                                   label="realism (evaluator)", progress=progress)
    with torch.no_grad():
        unseen = load_split_images(data, "models")
        model.threshold.fill_(float(torch.quantile(model(unseen), 1 - REALISM_ACCEPT)))
        # The evaluator beside it in ``out`` (trained first by ``all``): how sure it is of real digits.
        evaluator = load_pretrained("evaluator", weights_dir=out)
        confidence = torch.cat([F.softmax(evaluator(c), 1).amax(1) for c in unseen.split(1000)])
        model.evaluator_confidence.fill_(float(torch.quantile(confidence, 1 - REALISM_ACCEPT)))
        check = RealismCheck(model, evaluator)
        held = load_split_images(data, "heldout")
        torch.manual_seed(seed + 1)
        junk = junk_images(held)
        accepts = lambda images: check(images) >= 0
        rates = {
            "heldout_accepted": accepts(held),
            "heldout_accepted_by_the_network": model.accepts(held),
            "heldout_augmented_accepted": accepts(augment_digits(held)),
            "junk_accepted": accepts(junk),
            "noise_accepted": accepts(noise_images(1000)),
            "blobs_accepted": accepts(blob_images(1000)),
        }
    result: dict[str, Any] = {k: round(float(v.float().mean()), 4) for k, v in rates.items()}
    path = save_weights(model, Path(out) / "realism.safetensors",
                        metadata={"model": "realism", "train_split": "evaluator", "calibration_split": "models",
                                  "seed": seed, "epochs": epochs, "accept": REALISM_ACCEPT})
    result.update({"threshold": round(float(model.threshold), 4),
                   "evaluator_confidence": round(float(model.evaluator_confidence), 4), "train_split": "evaluator", "epochs": epochs,
                   "seed": seed, "train_seconds": round(train_time, 1), "weights": str(path),
                   "bytes": path.stat().st_size})
    return result
