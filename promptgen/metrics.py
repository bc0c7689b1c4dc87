"""Numbers that judge a prompt: class shares, Fréchet distance, diversity."""

from __future__ import annotations

import torch
from torch import Tensor


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)``, the statistic behind FID,
    in whatever feature space the caller chose.

    Args:
        a: (N, D) features; b: (M, D) features. Both need N, M > 1.
    """
    a, b = a.double().flatten(1), b.double().flatten(1)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((Σa Σb)^½) = Tr((Σa^½ Σb Σa^½)^½), whose argument is symmetric PSD.
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    middle = root_a @ cov_b @ root_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt)


def mean_pairwise_distance(features: Tensor, max_samples: int = 1000) -> float:
    """Mean Euclidean distance between distinct samples: a collapse shows as a small value."""
    f = features[:max_samples].double().flatten(1)
    d = torch.cdist(f, f)
    n = f.shape[0]
    return float(d.sum() / (n * (n - 1)))
