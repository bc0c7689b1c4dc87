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

import copy
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from promptgen.datasets.mnist import load_split, load_split_images

from .augment import augment_digits, blob_images, junk_images, noise_images, photometric
from .models import (
    LATENT_DIM,
    NOT_A_DIGIT,
    NUM_CLASSES,
    WEIGHTS_DIR,
    DigitGenerator,
    RealismCheck,
    build,
    load_pretrained,
)

if TYPE_CHECKING:
    from typing_extensions import Self

MODEL_NAMES = ("evaluator", "realism", "classifier", "generator")
TRAIN_SPLIT = {"evaluator": "evaluator", "realism": "evaluator", "classifier": "models", "generator": "models"}

# defaults chosen so each run stays within minutes on 2 CPU cores
DEFAULT_EPOCHS = {"evaluator": 40, "classifier": 60, "realism": 20}
#: Share of real digits the realism check never saw (the "models" split) that its threshold accepts.
REALISM_ACCEPT = 0.995
DEFAULT_GENERATOR_STEPS = 12_000

ProgressFactory = Callable[[str, int], Any]


# --------------------------------------------------------------------------- utils


def setup_torch(seed: int, threads: int = 2) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def save_weights(model: nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict (or a dict of tensors) as float32 safetensors, atomically.

    BatchNorm ``num_batches_tracked`` counters are dropped (they do not affect
    eval-mode outputs); :func:`models.load_pretrained` tolerates their absence.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = model.state_dict() if isinstance(model, nn.Module) else model
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous().clone()
        for k, v in tensors.items()
        if not k.endswith("num_batches_tracked")
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def random_translate(x: torch.Tensor, max_shift: int = 3) -> torch.Tensor:
    """DiffAugment-style per-sample integer translation (zero fill), differentiable."""
    b, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), device=x.device)
    padded = F.pad(x, (max_shift, max_shift, max_shift, max_shift))
    rows = (torch.arange(h, device=x.device)[None, :] + max_shift - shifts[:, 0:1])  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + max_shift - shifts[:, 1:2])  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    return padded[:, 0][bi, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def random_cutout(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """DiffAugment-style cutout: one ``size`` × ``size`` square per image set to 0, differentiable."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    keep = ((ys - cy).abs() > size // 2) | ((xs - cx).abs() > size // 2)
    return x * keep.unsqueeze(1).to(x)


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """What the critic sees of real and fake images alike: translated by up to 3 px, with a cutout."""
    return random_cutout(random_translate(x))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Share of ``images`` whose top digit (logits 0-9) is ``labels``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += (model(images[i : i + batch])[:, :NUM_CLASSES].argmax(1) == labels[i : i + batch]).sum().item()
    model.train(was_training)
    return correct / len(images)


class RichBars:
    """A :data:`ProgressFactory` of rich progress bars on stderr, for the training scripts::

        with RichBars() as bars:
            train_generator(..., progress=bars)
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
        )

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, label: str, total: int) -> Any:
        from rich.markup import escape

        progress, task = self.progress, self.progress.add_task(escape(label), total=total, info="")

        class Bar:
            def advance(self, n: int = 1, **fields: Any) -> None:
                progress.update(task, advance=n, **fields)

            def close(self) -> None:
                progress.refresh()

        return Bar()


class _NullProgress:
    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


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
) -> dict[str, Any]:
    """Train the ``"classifier"`` or ``"evaluator"`` on its own split, save it, and measure it.

    Both see their digits through :func:`~promptgen.builtin.mnist.augment.augment_digits`
    (``augment`` scales it; 0 turns it off). The control classifier also sees a
    quarter of "not a digit" images per batch as its eleventh class (``junk=False``
    leaves that class untrained).

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

    model = build(name)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb, yb = augment_digits(x[idx], augment), y[idx]
        if with_junk:
            k = max(1, round(JUNK_SHARE * len(idx)))
            source = x[torch.randint(0, len(x), (k,))]
            xb = torch.cat([xb, photometric(junk_images(source), augment)])
            yb = torch.cat([yb, torch.full((k,), NOT_A_DIGIT, dtype=yb.dtype)])
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
                  "junk_class": with_junk, "heldout_accuracy": f"{acc:.4f}"},
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


# ------------------------------------------------------------------------ generators


class Critic(nn.Module):
    """Unconditional GAN critic for 28×28 digits (training only, never shipped).

    DCGAN-style conv trunk without normalisation (so an R1 or gradient penalty
    applies per sample): x (B,1,28,28) in [0,1] -> (B,) logits.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1),  # 14x14
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1),  # 7x7
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1),  # 4x4
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(4 * w * 4 * 4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).squeeze(1)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def _latents(n: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(n, *shape)


@torch.no_grad()
def sample(generator: nn.Module, n: int, seed: int = 0, batch: int = 1000, latent_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``n`` images (n,1,28,28) from ``generator`` with z ~ N(0, I) from a seeded generator."""
    shape = latent_shape or (getattr(generator, "latent_dim", LATENT_DIM),)
    z = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    return torch.cat([generator(z[i : i + batch]) for i in range(0, n, batch)]).clamp(0, 1)


def train_gan(
    generator: nn.Module,
    critic: nn.Module,
    images: torch.Tensor,
    *,
    latent_shape: tuple[int, ...],
    steps: int,
    loss: Literal["ns-r1", "wgan-gp", "ns"] = "ns-r1",
    batch_size: int = 64,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    critic_steps: int = 1,
    penalty: float = 1.0,
    penalty_every: int = 4,
    augment: bool = True,
    ema_decay: float | None = 0.999,
    weights: torch.Tensor | None = None,
    progress: ProgressFactory | None = None,
    label: str = "generator",
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``generator`` against ``critic`` on ``images`` alone (no labels) and return it.

    Args:
        images: (N, 1, 28, 28) in [0, 1], the real images.
        latent_shape: the generator's latent, drawn from N(0, I).
        steps: generator updates.
        loss: ``ns-r1``: non-saturating loss with a lazy R1 penalty
            (``penalty`` = γ, every ``penalty_every`` critic steps; Mescheder et
            al. 2018); ``ns``: without the penalty; ``wgan-gp``: Wasserstein
            loss with a gradient penalty of weight ``penalty`` (Gulrajani et al.
            2017), usually with ``critic_steps=5`` and ``betas=(0.5, 0.9)``.
        augment: the critic sees real and fake images through :func:`diff_augment`
            (Zhao et al. 2020), which keeps it from memorising 4,000 images.
        ema_decay: keep an exponential moving average of the generator's
            weights and return it (None: return the generator itself).
        weights: (N,) how often to draw each real image (None: uniformly), e.g.
            to train a deliberately biased generator.

    Returns:
        (the trained generator in eval mode, a summary of the run).
    """
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)
    ema = copy.deepcopy(generator).eval().requires_grad_(False) if ema_decay else None
    view = diff_augment if augment else (lambda t: t)
    probs = None if weights is None else (weights / weights.sum()).double()

    def real_batch() -> torch.Tensor:
        if probs is None:
            return images[torch.randint(0, len(images), (batch_size,))]
        return images[torch.multinomial(probs, batch_size, replacement=True)]

    bar = (progress or _NullProgress)(label, steps)
    t0 = time.perf_counter()
    d_avg = g_avg = None
    d_step = 0
    for step in range(1, steps + 1):
        for _ in range(critic_steps):
            real = real_batch()
            with torch.no_grad():
                fake = generator(_latents(batch_size, latent_shape))
            d_real, d_fake = critic(view(real)), critic(view(fake))
            if loss == "wgan-gp":
                loss_d = d_fake.mean() - d_real.mean()
                mix = torch.rand(batch_size, 1, 1, 1)
                between = (mix * real + (1 - mix) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
                loss_d = loss_d + penalty * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            else:
                loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
                if loss == "ns-r1" and d_step % penalty_every == 0:
                    real_in = real.detach().requires_grad_(True)
                    (grad,) = torch.autograd.grad(critic(view(real_in)).sum(), real_in, create_graph=True)
                    loss_d = loss_d + (penalty / 2) * penalty_every * grad.pow(2).flatten(1).sum(1).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            d_step += 1
        out = critic(view(generator(_latents(batch_size, latent_shape))))
        loss_g = -out.mean() if loss == "wgan-gp" else F.softplus(-out).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            # The decay warms up so early weights do not linger.
            _ema_update(ema, generator, min(ema_decay, (1 + step) / (10 + step)))
        d_avg = loss_d.item() if d_avg is None else 0.98 * d_avg + 0.02 * loss_d.item()
        g_avg = loss_g.item() if g_avg is None else 0.98 * g_avg + 0.02 * loss_g.item()
        bar.advance(1, info=f"D {d_avg:.3f} G {g_avg:.3f}")
    bar.close()
    result = ema if ema is not None else generator
    result.eval().requires_grad_(False)
    summary = {
        "family": "GAN",
        "loss": loss,
        "steps": steps,
        "batch_size": batch_size,
        "critic_steps": critic_steps,
        "lr": lr,
        "ema_decay": ema_decay,
        "augment": augment,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return result, summary


def train_vae(
    vae: nn.Module,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    beta: float = 1.0,
    progress: ProgressFactory | None = None,
    label: str = "vae",
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a VAE on ``images`` alone (no labels) by the evidence lower bound, Bernoulli likelihood.

    ``vae`` has ``encode(x) -> (mean, log_var)`` and ``decode_logits(z) -> (B,1,28,28)``;
    ``beta`` weights the KL term. Returns (the VAE in eval mode, a summary).
    """
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    bar = (progress or _NullProgress)(label, steps)
    t0 = time.perf_counter()
    avg = None
    vae.train()
    for _step in range(steps):
        x = images[torch.randint(0, len(images), (batch_size,))]
        mean, log_var = vae.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        recon = F.binary_cross_entropy_with_logits(vae.decode_logits(z), x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        loss = (recon + beta * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        bar.advance(1, info=f"-ELBO {avg:.1f}")
    bar.close()
    vae.eval().requires_grad_(False)
    summary = {"family": "VAE", "steps": steps, "batch_size": batch_size, "lr": lr, "beta": beta,
               "final_neg_elbo": round(avg or math.nan, 2), "train_seconds": round(time.perf_counter() - t0, 1)}
    return vae, summary


@torch.no_grad()
def judge_samples(images: torch.Tensor, weights_dir: str | Path = WEIGHTS_DIR, batch: int = 1000) -> dict[str, Any]:
    """How the built-in classifiers see ``images``: the evaluator's digit shares and confidence,
    the control classifier's agreement with it and its "not a digit" share, and the realism
    check's junk rate (each part only if its weights are in ``weights_dir``)."""
    from safetensors.torch import load_file

    out: dict[str, Any] = {"n_samples": len(images)}
    top = {}
    for name in ("evaluator", "classifier"):
        path = Path(weights_dir) / f"{name}.safetensors"
        if not path.is_file():
            out[name] = "weights missing"
            continue
        model = build(name)
        model.load_state_dict(load_file(str(path)), strict=False)
        model.eval()
        logits = torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)])
        probs = F.softmax(logits[:, :NUM_CLASSES], 1)
        conf, pred = probs.max(1)
        top[name] = pred
        row = {
            "digit_shares": [round(v, 4) for v in (torch.bincount(pred, minlength=NUM_CLASSES).float() / len(images)).tolist()],
            "mean_max_prob": round(conf.mean().item(), 4),
        }
        if name == "classifier":
            row["not_a_digit"] = round(float((logits.argmax(1) == NOT_A_DIGIT).float().mean()), 4)
        out[name] = row
    if len(top) == 2:
        out["agreement"] = round(float((top["evaluator"] == top["classifier"]).float().mean()), 4)
    if (Path(weights_dir) / "realism.safetensors").is_file() and "evaluator" in top:
        check = RealismCheck(load_pretrained("realism", weights_dir=weights_dir), load_pretrained("evaluator", weights_dir=weights_dir))
        accepted = torch.cat([check(images[i : i + batch]) >= 0 for i in range(0, len(images), batch)])
        out["junk_rate"] = round(1 - float(accepted.float().mean()), 4)
    return out


def measure_generator(generator: nn.Module, weights_dir: str | Path = WEIGHTS_DIR, n: int = 10_000,
                      latent_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Judge ``n`` samples (seed 12345) with the built-in classifiers and time 1,000 samples."""
    shape = latent_shape or (getattr(generator, "latent_dim", LATENT_DIM),)
    result = judge_samples(sample(generator, n, seed=12345, latent_shape=shape), weights_dir)
    torch.set_num_threads(2)
    with torch.no_grad():
        z = torch.randn(1000, *shape)
        generator(z)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            generator(z)
            times.append(time.perf_counter() - t)
    result["sample_1000_seconds"] = round(min(times), 4)
    return result


def train_generator(
    data: str | Path,
    out: str | Path = WEIGHTS_DIR,
    seed: int = 0,
    steps: int | None = None,
    progress: ProgressFactory | None = None,
    grid_path: str | Path | None = None,
) -> dict[str, Any]:
    """Train the built-in unconditional generator on the images of the ``"models"`` split and save it.

    Recipe: :class:`~promptgen.builtin.mnist.models.DigitGenerator` against a
    :class:`Critic`, non-saturating loss with a lazy R1 penalty (γ = 1),
    DiffAugment translation and cutout on real and fake critic inputs, Adam
    2e-4 (0.5, 0.999), batch 64, EMA of the generator's weights (0.999). No
    labels are read. Returns sample-quality measurements (by the built-in
    classifiers, if their weights exist in ``out``).
    """
    steps = DEFAULT_GENERATOR_STEPS if steps is None else steps
    setup_torch(seed)
    images = load_split_images(data, TRAIN_SPLIT["generator"])
    ema, summary = train_gan(DigitGenerator(), Critic(), images, latent_shape=(LATENT_DIM,), steps=steps, progress=progress)
    path = save_weights(ema, Path(out) / "generator.safetensors",
                        metadata={"model": "generator", "train_split": "models", "labels_read": "none", "seed": seed, **summary})
    if grid_path is not None:
        save_grid(sample(ema, 100, seed=7), grid_path)
    result = measure_generator(ema, Path(out))
    result.update({"train_split": "models", "seed": seed, "weights": str(path), "bytes": path.stat().st_size, **summary})
    return result


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10, pad: int = 2, upscale: int = 2) -> Path:
    """Save (N,1,28,28) images in [0,1] as a PNG grid (white background lines)."""
    from PIL import Image

    n = images.shape[0]
    ncol = nrow
    nrows = math.ceil(n / ncol)
    h = w = images.shape[-1]
    canvas = torch.ones(nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    for k in range(n):
        r, c = divmod(k, ncol)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[k, 0]
    arr = (canvas.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    img = Image.fromarray(arr, mode="L")
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    path = Path(path)
    img.save(path)
    return path
