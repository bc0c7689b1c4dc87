"""Training and measuring the built-in digit models (used by
``scripts/train_builtin.py``).

Which data each model may see is fixed here:

* the evaluator trains on the ``"evaluator"`` split only;
* the control classifier and the generator train on the ``"models"`` split;
* the ``"heldout"`` split is only ever used to *measure* accuracy.

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
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .data import load_split
from .models import LATENT_DIM, NUM_CLASSES, WEIGHTS_DIR, DigitGenerator, build, latent_class, sample_latent

MODEL_NAMES = ("evaluator", "classifier", "generator")
TRAIN_SPLIT = {"evaluator": "evaluator", "classifier": "models", "generator": "models"}

# defaults chosen so each run stays within a few minutes on 2 CPU cores
DEFAULT_EPOCHS = {"evaluator": 40, "classifier": 60, "generator": 90}

ProgressFactory = Callable[[str, int], Any]


# --------------------------------------------------------------------------- utils


def setup_torch(seed: int, threads: int = 2) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict as float32 safetensors, atomically.

    BatchNorm ``num_batches_tracked`` counters are dropped (they do not affect
    eval-mode outputs); :func:`models.load_pretrained` tolerates their absence.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous().clone()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata or {})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def random_affine(
    x: torch.Tensor,
    max_rot_deg: float = 12.0,
    scale: tuple[float, float] = (0.9, 1.1),
    max_shift_px: float = 2.5,
    max_shear: float = 0.15,
) -> torch.Tensor:
    """Per-sample random small rotation/scale/shear/translation of (B,1,28,28) images."""
    b = x.shape[0]
    dev = x.device
    ang = (torch.rand(b, device=dev) * 2 - 1) * math.radians(max_rot_deg)
    sc = torch.empty(b, device=dev).uniform_(*scale)
    sh = (torch.rand(b, device=dev) * 2 - 1) * max_shear
    t = (torch.rand(b, 2, device=dev) * 2 - 1) * (max_shift_px * 2 / x.shape[-1])
    cos, sin = torch.cos(ang), torch.sin(ang)
    # inverse map (output -> input coords): rotation @ shear, divided by scale
    a00 = (cos + sin * sh) / sc
    a01 = (-sin + cos * sh) / sc
    a10 = sin / sc
    a11 = cos / sc
    theta = torch.stack(
        [torch.stack([a00, a01, t[:, 0]], 1), torch.stack([a10, a11, t[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_translate(x: torch.Tensor, max_shift: int = 3) -> torch.Tensor:
    """DiffAugment-style per-sample integer translation (zero fill), differentiable."""
    b, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), device=x.device)
    padded = F.pad(x, (max_shift, max_shift, max_shift, max_shift))
    rows = (torch.arange(h, device=x.device)[None, :] + max_shift - shifts[:, 0:1])  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + max_shift - shifts[:, 1:2])  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    return padded[:, 0][bi, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += (model(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum().item()
    model.train(was_training)
    return correct / len(images)


class _NullProgress:
    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


# --------------------------------------------------------------------- classifiers


def train_classifier_model(
    name: str,
    data: str | Path,
    out: str | Path = WEIGHTS_DIR,
    seed: int = 0,
    epochs: int | None = None,
    progress: ProgressFactory | None = None,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> dict[str, Any]:
    """Train the ``"classifier"`` or ``"evaluator"`` on its own split, save it,
    and return ``{"heldout_accuracy": ..., ...}`` measured on the held-out split."""
    if name not in ("classifier", "evaluator"):
        raise ValueError(f"not a classifier model: {name!r}")
    epochs = DEFAULT_EPOCHS[name] if epochs is None else epochs
    setup_torch(seed)
    split = TRAIN_SPLIT[name]
    x, y = load_split(data, split)
    hx, hy = load_split(data, "heldout")

    model = build(name)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    bar = (progress or _NullProgress)(f"{name} ({split})", epochs * steps_per_epoch)
    t0 = time.perf_counter()
    loss_ema = None
    for _epoch in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            xb = random_affine(x[idx])
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
            bar.advance(1, info=f"loss {loss_ema:.3f}")
    bar.close()
    train_time = time.perf_counter() - t0
    model.eval()
    acc = accuracy(model, hx, hy)
    train_acc = accuracy(model, x, y)
    path = save_weights(
        model,
        Path(out) / f"{name}.safetensors",
        metadata={
            "model": name,
            "train_split": split,
            "seed": str(seed),
            "epochs": str(epochs),
            "heldout_accuracy": f"{acc:.4f}",
        },
    )
    return {
        "heldout_accuracy": round(acc, 4),
        "train_accuracy": round(train_acc, 4),
        "train_split": split,
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(train_time, 1),
        "weights": str(path),
        "bytes": path.stat().st_size,
    }


# ------------------------------------------------------------------------ generator


class Discriminator(nn.Module):
    """Class-conditional GAN critic (training only, never shipped).

    DCGAN-style conv trunk (BatchNorm, LeakyReLU) with a projection head:
    ``D(x, y) = w . phi(x) + embed(y) . phi(x)``; x (B,1,28,28) in [0,1],
    y (B,) int64 -> (B,) logits.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.trunk = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1),  # 14x14
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1),  # 7x7
            nn.BatchNorm2d(2 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1),  # 4x4
            nn.BatchNorm2d(4 * w),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.linear = nn.Linear(4 * w * 4 * 4, 1)
        self.embed = nn.Embedding(NUM_CLASSES, 4 * w * 4 * 4)
        nn.init.normal_(self.embed.weight, std=0.01)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x * 2 - 1)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


@torch.no_grad()
def sample(generator: nn.Module, n: int, seed: int = 0, batch: int = 1000) -> torch.Tensor:
    """``n`` images (n,1,28,28) from ``generator`` with z ~ N(0, I) from a seeded generator."""
    z = sample_latent(n, generator=torch.Generator().manual_seed(seed))
    return torch.cat([generator(z[i : i + batch]) for i in range(0, n, batch)])


@torch.no_grad()
def judge_samples(
    images: torch.Tensor, evaluator: nn.Module, intended: torch.Tensor | None = None, batch: int = 1000
) -> dict[str, Any]:
    """Per-digit shares and mean max-probability of ``images`` as judged by
    ``evaluator`` (and, given ``intended`` digits, the share that agree)."""
    probs = torch.cat([F.softmax(evaluator(images[i : i + batch]), 1) for i in range(0, len(images), batch)])
    conf, pred = probs.max(1)
    shares = torch.bincount(pred, minlength=NUM_CLASSES).float() / len(images)
    out = {
        "digit_shares": [round(v, 4) for v in shares.tolist()],
        "mean_max_prob": round(conf.mean().item(), 4),
        "share_confident_0.9": round((conf > 0.9).float().mean().item(), 4),
    }
    if intended is not None:
        out["agrees_with_latent_class"] = round((pred == intended).float().mean().item(), 4)
    return out


def measure_generator(generator: nn.Module, weights_dir: str | Path = WEIGHTS_DIR, n: int = 10_000) -> dict[str, Any]:
    """Judge ``n`` samples with the evaluator (and control classifier) if their weights exist."""
    from safetensors.torch import load_file

    result: dict[str, Any] = {"n_samples": n}
    seed = 12345
    imgs = sample(generator, n, seed=seed)
    intended = latent_class(sample_latent(n, generator=torch.Generator().manual_seed(seed)))
    for name in ("evaluator", "classifier"):
        path = Path(weights_dir) / f"{name}.safetensors"
        if not path.is_file():
            result[name] = "weights missing"
            continue
        model = build(name)
        model.load_state_dict(load_file(str(path)), strict=False)
        model.eval()
        result[name] = judge_samples(imgs, model, intended)
    torch.set_num_threads(2)
    with torch.no_grad():
        z = torch.randn(1000, LATENT_DIM)
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
    epochs: int | None = None,
    progress: ProgressFactory | None = None,
    batch_size: int = 64,
    lr: float = 2e-4,
    ema_decay: float = 0.999,
    grid_path: str | Path | None = None,
) -> dict[str, Any]:
    """Train the generator on the ``"models"`` split and save the EMA generator.

    Recipe: class-conditional DCGAN through the generator's class-structured
    latent (fake digit ``y`` is drawn uniformly and ``z`` from N(0, I)
    conditioned on ``latent_class(z) == y``; real images use their labels),
    projection critic with BatchNorm, non-saturating loss, Adam 2e-4
    (0.5, 0.999), DiffAugment-style random translation of +-3 px on real and
    fake critic inputs, EMA of generator weights (decay 0.999). Returns
    sample-quality measurements (judged by the evaluator if its weights exist).
    """
    epochs = DEFAULT_EPOCHS["generator"] if epochs is None else epochs
    setup_torch(seed)

    x, y = load_split(data, TRAIN_SPLIT["generator"])
    gen = DigitGenerator()
    disc = Discriminator()
    ema = copy.deepcopy(gen).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))

    steps_per_epoch = len(x) // batch_size
    total = epochs * steps_per_epoch
    bar = (progress or _NullProgress)("generator (models)", total)
    t0 = time.perf_counter()
    d_ema = g_ema = None
    step = 0
    for _epoch in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            # --- critic step (non-saturating loss, conditioned on the digit)
            y_fake = torch.randint(0, NUM_CLASSES, (batch_size,))
            with torch.no_grad():
                fake = gen(sample_latent(batch_size, y_fake))
            d_real = disc(random_translate(x[idx]), y[idx])
            d_fake = disc(random_translate(fake), y_fake)
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # --- generator step
            y_fake = torch.randint(0, NUM_CLASSES, (batch_size,))
            loss_g = F.softplus(-disc(random_translate(gen(sample_latent(batch_size, y_fake))), y_fake)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            step += 1
            # EMA: warm up the decay so early weights do not linger
            _ema_update(ema, gen, min(ema_decay, (1 + step) / (10 + step)))
            d_ema = loss_d.item() if d_ema is None else 0.98 * d_ema + 0.02 * loss_d.item()
            g_ema = loss_g.item() if g_ema is None else 0.98 * g_ema + 0.02 * loss_g.item()
            bar.advance(1, info=f"D {d_ema:.3f} G {g_ema:.3f}")
    bar.close()
    train_time = time.perf_counter() - t0
    ema.eval()
    path = save_weights(
        ema,
        Path(out) / "generator.safetensors",
        metadata={
            "model": "generator",
            "train_split": "models",
            "seed": str(seed),
            "epochs": str(epochs),
            "ema_decay": str(ema_decay),
        },
    )
    if grid_path is not None:
        save_grid(sample(ema, 100, seed=7), grid_path)
    result = measure_generator(ema, Path(out))
    result.update(
        {
            "train_split": "models",
            "epochs": epochs,
            "steps": step,
            "seed": seed,
            "train_seconds": round(train_time, 1),
            "weights": str(path),
            "bytes": path.stat().st_size,
        }
    )
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
