"""Numbers that judge a prompt: class shares, Fréchet distance, diversity."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _centred(x: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """(mean, X) with ``Xᵀ X`` the (weighted, unbiased) covariance of the rows of ``x``."""
    if weights is None:
        mu = x.mean(0)
        return mu, (x - mu) / math.sqrt(x.shape[0] - 1)
    p = weights.to(device=x.device, dtype=x.dtype).flatten()
    p = p / p.sum()
    mu = p @ x
    # Reliability weights: Σ p_i (x_i − μ)(x_i − μ)ᵀ / (1 − Σ p_i²), torch.cov's unbiased form for equal weights.
    return mu, (x - mu) * (p / (1 - p.pow(2).sum()).clamp_min(1e-12)).sqrt()[:, None]


def frechet_distance(a: Tensor, b: Tensor, weights: Tensor | None = None) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)``, the statistic behind FID,
    in whatever feature space the caller chose.

    Args:
        a: (N, D) features; b: (M, D) features. Both need N, M > 1.
        weights: (N,) non-negative weights of the rows of ``a`` (e.g. importance
            weights, so ``a`` stands for another distribution); None: equal.

    With fewer samples than dimensions (e.g. raw pixels) the trace of the root
    is computed in sample space instead, exactly and much faster: the non-zero
    eigenvalues of ``Σ_a Σ_b`` are the squared singular values of
    ``X_a X_bᵀ`` (X: centred, scaled features with ``Σ = Xᵀ X``).
    """
    a, b = a.double().flatten(1), b.double().flatten(1)
    (mu_a, xa), (mu_b, xb) = _centred(a, weights), _centred(b, None)
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    tr_a, tr_b = xa.pow(2).sum(), xb.pow(2).sum()
    if min(n, m) < d:
        tr_sqrt = torch.linalg.svdvals(xa @ xb.T).sum()
        return float((mu_a - mu_b).pow(2).sum() + tr_a + tr_b - 2 * tr_sqrt)
    cov_a, cov_b = xa.T @ xa, xb.T @ xb
    # Tr((Σa Σb)^½) = Tr((Σa^½ Σb Σa^½)^½), whose argument is symmetric PSD.
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    middle = root_a @ cov_b @ root_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + tr_a + tr_b - 2 * tr_sqrt)


def effective_sample_size(log_weights: Tensor) -> float:
    """Kish's effective sample size ``1 / Σ p_i²`` of self-normalised weights ``p ∝ exp(log_weights)``.

    >>> round(effective_sample_size(torch.zeros(10)), 6), round(effective_sample_size(torch.tensor([0.0, -1e9])), 6)
    (10.0, 1.0)
    """
    p = torch.softmax(log_weights.double().flatten(), 0)
    return float(1.0 / p.pow(2).sum())


def mean_pairwise_distance(features: Tensor, max_samples: int = 1000) -> float:
    """Mean Euclidean distance between distinct samples: a collapse shows as a small value."""
    f = features[:max_samples].double().flatten(1)
    d = torch.cdist(f, f)
    n = f.shape[0]
    return float(d.sum() / (n * (n - 1)))


# Attribute histograms and how far they are from a target. Histograms are lists
# of shares (each in [0, 1], summing to 1), one per class, in the class order of
# the attribute; a joint attribute ``a*b`` has one class per combination, first
# part slowest (see :class:`promptgen.core.protocols.AttributeTarget`).


def class_histogram(classes: Tensor | Sequence[int], num_classes: int) -> list[float]:
    """Share of samples in each class (unitless, sums to 1; all zeros for no samples).

    Args:
        classes: (N,) class indices in ``0 .. num_classes - 1``.
        num_classes: K, the length of the histogram.

    >>> class_histogram(torch.tensor([0, 2, 2, 1]), 3)
    [0.25, 0.25, 0.5]
    >>> class_histogram([], 2)
    [0.0, 0.0]
    """
    idx = torch.as_tensor(classes, dtype=torch.long).flatten().cpu()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise ValueError(f"class indices must be in 0..{num_classes - 1}, got {int(idx.min())}..{int(idx.max())}")
    counts = torch.bincount(idx, minlength=num_classes).double()
    total = float(counts.sum())
    return [float(c) / total if total else 0.0 for c in counts]


def joint_classes(parts: Sequence[Tensor], sizes: Sequence[int]) -> Tensor:
    """Index of each sample's combination of classes, first part slowest.

    Args:
        parts: one (N,) tensor of class indices per part attribute.
        sizes: number of classes of each part.

    Returns:
        (N,) int64 indices in ``0 .. prod(sizes) - 1``.

    >>> joint_classes([torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1])], [3, 2]).tolist()
    [1, 2, 5]
    """
    if len(parts) != len(sizes) or not parts:
        raise ValueError("give one size per part, and at least one part")
    out = torch.zeros_like(torch.as_tensor(parts[0], dtype=torch.long))
    for p, k in zip(parts, sizes):
        out = out * int(k) + torch.as_tensor(p, dtype=torch.long)
    return out


def joint_labels(labels: Sequence[Sequence[str]]) -> list[str]:
    """Labels of a joint attribute's classes, joined with ``/``, first part slowest.

    >>> joint_labels([["0", "1"], ["thin", "thick"]])
    ['0/thin', '0/thick', '1/thin', '1/thick']
    """
    out = [""]
    for i, part in enumerate(labels):
        out = [f"{a}/{b}" if i else str(b) for a in out for b in part]
    return out


def _distributions(p: Sequence[float], q: Sequence[float]) -> tuple[Tensor, Tensor]:
    a, b = torch.as_tensor(p, dtype=torch.float64).flatten(), torch.as_tensor(q, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"distributions of different lengths: {a.numel()} and {b.numel()}")
    if (a < 0).any() or (b < 0).any() or a.sum() <= 0 or b.sum() <= 0:
        raise ValueError("distributions need non-negative shares with a positive sum")
    return a / a.sum(), b / b.sum()


def kl_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """``KL(p ‖ q) = Σ p ln(p / q)`` in nats (natural log); 0 when p == q.

    Both are normalised to sum to 1. Classes with p = 0 add nothing; a class
    with p > 0 where q = 0 makes the divergence infinite.

    Args:
        p: the observed histogram (e.g. of samples); q: the target distribution.

    >>> import math
    >>> math.isclose(kl_divergence([0.5, 0.25, 0.25], [1/3, 1/3, 1/3]), 0.5 * math.log(1.5) + 0.5 * math.log(0.75))
    True
    >>> kl_divergence([0.2, 0.8], [0.2, 0.8])
    0.0
    >>> kl_divergence([0.5, 0.5], [1.0, 0.0])
    inf
    """
    a, b = _distributions(p, q)
    keep = a > 0
    if (b[keep] == 0).any():
        return float("inf")
    return max(0.0, float((a[keep] * (a[keep] / b[keep]).log()).sum()))


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """Total variation distance ``½ Σ |p − q|`` (unitless, in [0, 1]); both normalised to sum to 1.

    >>> total_variation([0.5, 0.25, 0.25], [0.25, 0.25, 0.5])
    0.25
    """
    a, b = _distributions(p, q)
    return float(0.5 * (a - b).abs().sum())


def class_share(
    histogram: Sequence[float], labels: Sequence[str], asked: Sequence[str] = (), avoided: Sequence[str] = ()
) -> float:
    """Share of samples (unitless, in [0, 1]) whose class is an asked one and not an avoided one.

    With no ``asked`` classes every class counts as asked, so the share is that
    of samples outside the ``avoided`` classes.

    >>> class_share([0.1, 0.7, 0.2], ["0", "1", "2"], asked=["1"])
    0.7
    >>> round(class_share([0.1, 0.7, 0.2], ["0", "1", "2"], avoided=["1"]), 6)
    0.3
    """
    if len(histogram) != len(labels):
        raise ValueError(f"{len(histogram)} shares for {len(labels)} labels")
    wanted, unwanted = {str(a) for a in asked}, {str(a) for a in avoided}
    return float(
        sum(h for h, lab in zip(histogram, labels) if (not wanted or str(lab) in wanted) and str(lab) not in unwanted)
    )
