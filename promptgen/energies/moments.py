"""The maths of de-biasing: the exponential tilt that meets a moment constraint, fitted by its convex dual.

See :mod:`promptgen.energies.debias` for how the energy uses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MomentFit:
    """The solution of the dual and what it reaches on the sample it was fitted on.

    Attributes:
        beta: (D,) the tilt.
        moments: (D,) ``E_w[φ]`` under the self-normalised weights ``exp(β · φ)``.
        iterations: Newton steps taken.
        converged: the moment error fell below the tolerance.
        ess: effective sample size of the weights as a share of the sample, in (0, 1].
    """

    beta: Tensor
    moments: Tensor
    iterations: int
    converged: bool
    ess: float


def fit_moment_constraint(
    phi: Tensor, target: Tensor, *, log_base: Tensor | None = None, ridge: float = 1e-6, max_iter: int = 100, tol: float = 1e-7
) -> MomentFit:
    """Solve ``min_β log mean_i exp(β · φ_i + b_i) − β · μ`` by damped Newton steps.

    The objective is convex (its Hessian is the weighted covariance of φ), so
    any minimum is the global one and its gradient, ``E_w[φ] − μ``, is zero
    there: the tilted sample meets the constraint exactly when ``μ`` lies
    inside the convex hull of the φ_i. A tiny ridge fixes the directions in
    which φ is constant (its blocks sum to one).

    Args:
        phi: (N, D) features of N samples, e.g. class probabilities.
        target: (D,) the wanted ``E[φ]``.
        log_base: (N,) log-weights ``b_i`` the samples carry before the tilt
            (e.g. ``log p(in domain | x_i)``: tilt the images that are digits at
            all); None for equal weights.

    >>> phi = torch.eye(2).repeat_interleave(torch.tensor([3, 1]), dim=0)  # 3 of class 0, 1 of class 1
    >>> fit = fit_moment_constraint(phi, torch.tensor([0.5, 0.5]))
    >>> [round(float(m), 4) for m in fit.moments], round(float(fit.beta[1] - fit.beta[0]), 4), round(math.log(3), 4)
    ([0.5, 0.5], 1.0986, 1.0986)
    """
    phi = phi.detach().to(torch.float64)
    mu = target.detach().to(phi)
    n, d = phi.shape
    base = phi.new_zeros(n) if log_base is None else log_base.detach().to(phi)
    beta = phi.new_zeros(d)

    def objective(b: Tensor) -> Tensor:
        return torch.logsumexp(phi @ b + base, 0) - math.log(n) - b @ mu + 0.5 * ridge * b @ b

    value = objective(beta)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        w = torch.softmax(phi @ beta + base, 0)
        m = w @ phi
        grad = m - mu + ridge * beta
        if float(grad.abs().max()) < tol:
            converged = True
            it -= 1
            break
        centred = phi - m
        hess = (centred * w[:, None]).T @ centred + ridge * torch.eye(d, dtype=phi.dtype)
        step = -torch.linalg.lstsq(hess, grad[:, None]).solution[:, 0]
        t = 1.0
        while t > 1e-8:
            cand = beta + t * step
            new = objective(cand)
            if new <= value + 1e-4 * t * (grad @ step):
                break
            t *= 0.5
        beta, value = cand, new
    w = torch.softmax(phi @ beta + base, 0)
    moments = w @ phi
    if not converged:
        converged = float((moments - mu).abs().max()) < 1e-4
    return MomentFit(
        beta=beta.to(torch.float32),
        moments=moments.to(torch.float32),
        iterations=it,
        converged=converged,
        ess=float(1.0 / (w * w).sum() / n),
    )


def joint_log_probs(parts: Sequence[Tensor]) -> Tensor:
    """(B, Π K_i) log-probabilities of every combination of the parts' (B, K_i) classes, first part slowest.

    The order of :func:`promptgen.core.metrics.joint_labels`: the outer product of
    the parts' probabilities (independent given the image).
    """
    joint = parts[0]
    for p in parts[1:]:
        joint = (joint[:, :, None] + p[:, None, :]).flatten(1)
    return joint


__all__ = ["MomentFit", "fit_moment_constraint", "joint_log_probs"]
