"""How sure `promptgen eval`'s figures are: 95 % bootstrap intervals of every share, KL and Fréchet distance.

Each side's samples are resampled with replacement (:func:`promptgen.core.metrics.bootstrap`, seeded, so the same
``eval`` prints the same intervals) and every figure is recomputed on each resample:

- class shares, the asked share and the junk rate: the percentile interval (these figures are unbiased);
- KL divergences and Fréchet distances: biased upward at small ``n``, and their resamples more so, so their
  percentile interval is moved down by the bootstrap's estimate of that bias
  (:func:`~promptgen.core.metrics.bias_corrected_interval`); ``benchmarks/ci_coverage.py`` measures how often the
  intervals of 2,000 samples cover the figure of 5,000.

Counts-based figures are cheap (:data:`RESAMPLES` resamples of the class indices at once); a Fréchet distance
needs a covariance per resample, so it gets :data:`FRECHET_RESAMPLES` (fewer in large feature spaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from promptgen.core.judging import ResolvedTarget
from promptgen.core.metrics import (
    INTERVAL_LEVEL,
    bias_corrected_interval,
    bootstrap,
    frechet_distance,
    joint_classes,
    kl_divergences,
    percentile_interval,
    resampled_counts,
)

#: Resamples behind the intervals of shares and KL divergences.
RESAMPLES = 1000
#: Resamples behind the interval of a Fréchet distance (a covariance and a matrix root each) ...
FRECHET_RESAMPLES = 200
#: ... and in feature spaces of more than LARGE_FEATURES dimensions (pixels), where each costs far more.
FRECHET_RESAMPLES_LARGE, LARGE_FEATURES = 40, 256
#: What the report says of the method.
METHOD = (
    "percentile bootstrap over the samples (shares, junk); KL divergences and Fréchet distances, biased upward at "
    "small n, are moved down by the bootstrap's estimate of their bias"
)

Interval = tuple[float, float]


@dataclass
class AttributeIntervals:
    """The intervals of one attribute's figures on one side (see :class:`~promptgen.evaluation.results.AttributeSide`)."""

    histogram: list[Interval]
    junk: Interval | None
    kl: Interval | None
    share: Interval | None


def _rounded(interval: Interval) -> Interval:
    return (float(interval[0]), float(interval[1]))


def attribute_intervals(
    resolved: ResolvedTarget, classes: Sequence[Tensor], junk: Tensor | None, kl: float | None, *, seed: int,
    resamples: int = RESAMPLES, level: float = INTERVAL_LEVEL,
) -> AttributeIntervals:
    """Bootstrap intervals of the figures :func:`~promptgen.core.judging.judged_figure` computes from the same input.

    Args:
        resolved: the attribute, its judges and its labels' order.
        classes: (N,) top class by each part's judge.
        junk: (N,) True for samples the realism check rejects (None: no check).
        kl: the figure's KL on the samples themselves (the estimate whose bias is corrected).
        seed: the resamples' seed; the same seed and N give the same resamples, so every attribute of one side is
            resampled alike.
    """
    t = resolved.target
    sizes = [len(entry.attributes[p]) for p, (entry, _) in zip(t.parts, resolved.parts)]
    joint = joint_classes(list(classes), sizes).cpu()
    judged = 1
    for k in sizes:
        judged *= int(k)
    # One category per class of the judge, and one more for junk: a junk sample is never counted as a class.
    categories = joint if junk is None else torch.where(junk.cpu().bool(), torch.full_like(joint, judged), joint)
    order = torch.as_tensor(resolved.order, dtype=torch.long)
    wanted = [
        j for j, lab in enumerate(t.labels)
        if (not t.asked or str(lab) in {str(a) for a in t.asked}) and str(lab) not in {str(a) for a in t.avoided}
    ]
    ask = t.asked or t.avoided

    def figures(idx: Tensor) -> Tensor:
        counts = resampled_counts(categories, judged + 1, idx)
        counted = counts[:, :judged].sum(1, keepdim=True)
        hist = torch.where(counted > 0, counts[:, order] / counted.clamp_min(1), torch.zeros_like(counts[:, order]))
        cols = [hist, counts[:, judged:] / idx.shape[1]]
        if t.target is not None:
            cols.append(kl_divergences(hist, t.target)[:, None])
        if ask:
            cols.append(hist[:, wanted].sum(1, keepdim=True) if wanted else torch.zeros_like(counted))
        return torch.cat(cols, 1)

    values = bootstrap(figures, int(joint.shape[0]), resamples=resamples, seed=seed)
    k = len(t.labels)
    histogram = [_rounded(percentile_interval(values[:, j], level)) for j in range(k)]
    junk_ci = None if junk is None else _rounded(percentile_interval(values[:, k], level))
    col = k + 1
    kl_ci = share_ci = None
    if t.target is not None:
        kl_ci = _rounded(bias_corrected_interval(float("inf") if kl is None else kl, values[:, col], level, floor=0.0))
        col += 1
    if ask:
        share_ci = _rounded(percentile_interval(values[:, col], level))
    return AttributeIntervals(histogram, junk_ci, kl_ci, share_ci)


def junk_interval(junk: Tensor, *, seed: int, resamples: int = RESAMPLES, level: float = INTERVAL_LEVEL) -> Interval:
    """The interval of the junk rate: (N,) True for samples the realism check rejects."""
    flags = junk.double().cpu().flatten()
    return _rounded(percentile_interval(bootstrap(lambda idx: flags[idx].mean(1), flags.numel(), resamples=resamples, seed=seed), level))


def frechet_resamples(dims: int) -> int:
    """How many resamples a Fréchet distance in a ``dims``-dimensional feature space gets."""
    return FRECHET_RESAMPLES if dims <= LARGE_FEATURES else FRECHET_RESAMPLES_LARGE


def _moments(x: Tensor, p: Tensor, squares: Tensor) -> tuple[Tensor, Tensor]:
    """(B, D) means and (B, D, D) covariances of the rows of ``x`` (N, D) under (B, N) weights ``p`` summing to 1 per
    row, with reliability correction ``1 / (1 − squares)`` (``squares``: (B,) Σ p² over the resample's rows), as
    :func:`~promptgen.core.metrics.frechet_distance` computes them for one set."""
    mu = p @ x
    raw = torch.einsum("bn,nd,ne->bde", p, x, x)
    cov = raw - mu[:, :, None] * mu[:, None, :]
    return mu, cov / (1 - squares).clamp_min(1e-12)[:, None, None]


def _factor(cov: Tensor) -> Tensor:
    """(…, D, D) F with ``F Fᵀ = cov``: Cholesky's (cheap), or the symmetric root where a covariance is singular."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info == 0).all()):
        return chol
    vals, vecs = torch.linalg.eigh(cov)
    root = vecs @ torch.diag_embed(vals.clamp(min=0).sqrt()) @ vecs.transpose(-1, -2)
    return torch.where((info == 0)[..., None, None], chol, root)


def _resampled_weights(idx: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """(B, N) normalised weights of each original row in each resample, and (B,) Σ p² over the resample's rows."""
    n = idx.shape[1]
    counts = resampled_counts(torch.arange(n), n, idx)
    w = counts if weights is None else counts * weights[None, :]
    total = w.sum(1, keepdim=True).clamp_min(1e-300)
    squares = (counts * (weights[None, :] if weights is not None else 1.0) ** 2).sum(1) / total.squeeze(1) ** 2
    return w / total, squares


def resampled_frechet(a: Tensor, b: Tensor, idx: Tensor, *, weights: Tensor | None = None, paired: bool = False) -> Tensor:
    """(B,) ``frechet_distance(a[i], b[i] if paired else b, weights[i])`` for each row ``i`` of ``idx``, batched.

    The resamples' means and covariances come from each row's count in them, a batch at a time (one ``eigh`` per
    batch, not per resample: small matrix roots one by one are slow on a busy CPU). Needs more samples than
    dimensions (else :func:`~promptgen.core.metrics.frechet_distance` works in sample space, one by one here).

    Args:
        a: (N, D) features; b: (M, D) features (M = N when ``paired``).
        idx: (B, N) resampled row indices.
        weights: (N,) non-negative weights of ``a``'s rows.
    """
    a, b = a.double().flatten(1).cpu(), b.double().flatten(1).cpu()
    w = None if weights is None else weights.double().flatten().cpu()
    if min(a.shape[0], b.shape[0]) <= a.shape[1]:
        return torch.tensor(
            [frechet_distance(a[i], b[i] if paired else b, weights=None if w is None else w[i]) for i in idx], dtype=torch.float64
        )
    p, squares = _resampled_weights(idx, w)
    mu_a, cov_a = _moments(a, p, squares)
    # Tr((Σa Σb)^½) is the sum of the roots of the eigenvalues of Σa Σb, which are those of the symmetric Fᵀ Σb F
    # for any F with F Fᵀ = Σa (or the other way round).
    if paired:
        q, q_squares = _resampled_weights(idx, None)
        mu_b, cov_b = _moments(b, q, q_squares)
        f = _factor(cov_a)
        middle = f.transpose(-1, -2) @ cov_b @ f
    else:
        ones = torch.full((1, b.shape[0]), 1.0 / b.shape[0], dtype=torch.float64)
        mu_b, cov_b = _moments(b, ones, torch.tensor([1.0 / b.shape[0]], dtype=torch.float64))
        f = _factor(cov_b)
        middle = f.transpose(-1, -2) @ cov_a @ f
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.transpose(-1, -2)) / 2).clamp(min=0).sqrt().sum(-1)
    trace = torch.diagonal(cov_a, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(cov_b, dim1=-2, dim2=-1).sum(-1)
    return (mu_a - mu_b).pow(2).sum(-1) + trace - 2 * tr_sqrt


def frechet_interval(
    a: Tensor, b: Tensor, estimate: float, *, weights: Tensor | None = None, paired: bool = False, seed: int,
    resamples: int | None = None, level: float = INTERVAL_LEVEL,
) -> Interval:
    """The interval of ``frechet_distance(a, b, weights)``, bias-corrected, resampling the rows of ``a`` (the
    samples; ``b`` is a fixed set of reference images) or, with ``paired``, the rows of both alike (base and prompt
    samples drawn from the same noise). See :func:`resampled_frechet` for the arguments.

    Args:
        estimate: the distance on the samples themselves.
        resamples: how many (default :func:`frechet_resamples` of the feature space's size).
    """
    n, d = a.shape[0], a[0].numel()
    count = resamples if resamples is not None else frechet_resamples(d)
    # A batch holds (resamples × N) counts and (resamples × N × D) products: about 64 MB at most.
    values = bootstrap(
        lambda idx: resampled_frechet(a, b, idx, weights=weights, paired=paired), n, resamples=count, seed=seed,
        max_elements=max(n, (1 << 23) // max(d, 1)),
    )
    return _rounded(bias_corrected_interval(estimate, values, level, floor=0.0))


__all__ = [
    "FRECHET_RESAMPLES",
    "FRECHET_RESAMPLES_LARGE",
    "LARGE_FEATURES",
    "METHOD",
    "RESAMPLES",
    "AttributeIntervals",
    "Interval",
    "attribute_intervals",
    "frechet_interval",
    "frechet_resamples",
    "junk_interval",
    "resampled_frechet",
]
