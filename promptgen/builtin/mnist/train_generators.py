"""Training the built-in generators (a GAN, and a VAE for the panel) and judging their samples."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from promptgen.builtin.mnist.train_common import (
    DEFAULT_GENERATOR_STEPS,
    TRAIN_SPLIT,
    ProgressFactory,
    _NullProgress,
    diff_augment,
    save_weights,
    setup_torch,
)
from promptgen.datasets.mnist import load_split_images

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
