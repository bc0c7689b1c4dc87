"""De-biasing by a moment constraint: ``debias:ATTR[,ATTR...]``.

The closest distribution (in KL) to the generator's own whose expected class
probabilities equal a target ``μ`` is an exponential tilt of it,
``p(x) ∝ p_G(x) · exp(β · φ(x))``, with ``φ(x)`` the classifier's class
probabilities (see ``../shared/METHOD.md``). The energy is ``E(x) = −β · φ(x)``.

``β`` is fitted once, before the flow is trained, on a cached sample of the base
distribution, by the convex dual ``min_β log mean_i exp(β · φ_i) − β · μ``
(:func:`fit_moment_constraint`). A reverse-KL flow falls short of the tilt it is
trained on (it under-covers the rare classes the tilt must lift), so by default
the loop is closed: every ``refit`` steps after the warm-up, the dual is solved
again on the flow's own samples and the correction is added to ``β``. With
``refit=0`` the fit on the base sample is used as is (the paper's way).

Spec::

    debias:digit                     uniform over digits
    debias:digit,thickness           uniform over each (β fitted jointly)
    debias:digit*thickness           uniform over the 30 combinations
    debias:thickness=0.2/0.3/0.5     an explicit target, in class order
    debias:thickness=target.json     a target from a file: [0.2, 0.3, 0.5]
                                     or {"thin": 0.2, "medium": 0.3, "thick": 0.5}
    debias:digit,refit=0             open loop: β from the base sample only
    debias:digit,mode=mixture        a mixture prompt: one flow component per class
                                     (the default for joint targets)
    debias:digit*thickness,mode=tilt one flow on the tilt
    debias:digit,mode=auto           the default for plain attributes: the tilt, or the
                                     mixture when the base sample draws some class at
                                     less than half its target (decided at the fit)

With a classifier that knows its domain (the built-in control's "not a
digit" class), every energy below also carries ``realism · −log p(in domain | x)``
and β is fitted on base samples weighted by ``p(in domain | x)``: the target is
the de-biased distribution of the images the classifier takes for digits at all.

``mode=mixture`` trains a class-conditional flow instead of one flow on the
tilt: one component per combination ``c`` of the named attributes' classes,
each trained on ``E_c(x) = 10 · Σ_a −log p̃_a(c_a | x)`` (``p̃``: the control
classifiers' probabilities averaged over ``shifts`` random translations, see
:func:`~promptgen.energies.classifier.shifted_log_probs`), and sampled with
the weights ``π_c = E_w[Π_a p_a(c_a | x)]`` of the fitted tilt's
self-normalised base sample, whose marginals are exactly the target. Where
every class is plain to see this is the tilt with the classes made hard; it
reaches classes the generator almost never draws, which the tilt's flow
under-covers (docs/debiasing.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from promptgen.energies.classifier import (
    DEFAULT_REALISM,
    check_realism_applies,
    classifier_options,
    shifted_classify,
)
from promptgen.evaluation.metrics import joint_labels, kl_divergence
from promptgen.plugin import (
    Arg,
    AttributeClassifier,
    AttributeTarget,
    BaseSample,
    ClassifierEntry,
    Options,
    Registry,
    Spec,
    SpecError,
    option,
)

#: β already carries the scale of the tilt, so the weight is 1 (a weight w
#: applies the tilt w·β; the paper compensated under-coverage with w = 2).
DEFAULT_WEIGHT = 1.0
DEFAULT_REFIT = 50
#: Flow samples each refit measures: 1,024 keep the loop's moment estimates within about 1 % of a class
#: share and its cost at a tenth of training (2,048 cost a sixth; docs/benchmarks.md, the cost case).
REFIT_SAMPLES = 1024
# Share of each refit's correction applied: the flow lags behind β, so full
# corrections overshoot and oscillate.
DAMPING = 0.5
# Largest correction of β per refit, and largest total correction of the closed
# loop over the fit on the base sample, in nats. Without the second bound a
# class the generator (almost) never makes keeps raising its β while the flow
# cannot follow (integral wind-up), until that one class dominates the energy.
MAX_STEP = 1.0
MAX_CORRECTION = 6.0
MAX_BETA = 30.0
#: Base samples the fit wants: rare classes (a thick 1 was 0.06 % of an earlier
#: built-in generator's digits) need thousands to be seen at all, so a joint
#: target's fit takes 8,192; plain attributes' classes are seldom that rare, and
#: 4,096 halve the fit's share of training (docs/benchmarks.md, the cost case).
FIT_SAMPLES = 8192
FIT_SAMPLES_PLAIN = 4096
MODES = ("auto", "tilt", "mixture")
#: Without mode=: plain attributes get ``auto``, decided at the fit on the base
#: sample (:data:`AUTO_RARE`); a joint target is a mixture, since its rare
#: combinations are what the tilt's flow cannot reach (docs/debiasing.md).
DEFAULT_MODE = "auto"
#: ``mode=auto`` trains the mixture when the generator draws some class less than
#: this share of its target (by the control classifier, among the images it takes
#: for digits at all), else the tilt, which keeps closer to the generator's own
#: images where little must move (docs/debiasing.md has the measurements).
AUTO_RARE = 0.5
#: A tilt whose flow ends further than this (KL, by the control classifier) from
#: an attribute's target gets advice to train longer (:meth:`DebiasEnergy.advice`).
ADVICE_KL = 0.02
#: Mixture mode: the energy per nat of each component's classes. 1 would make each component the
#: generator's own images of its class, but a reverse-KL flow then leaks other classes into it; 30 (the
#: classifier energy's weight) let components on an MLP GAN settle on squiggles the control took for 5s
#: and 8s (18 % junk against the generator's 12 %); 10 kept them digits (8 % junk, KL 0.003; 3: KL 0.016).
SHARPNESS = 10.0
#: Mixture mode: random translations the control's probabilities are averaged over.
DEFAULT_SHIFTS = 4
MAX_COMPONENTS = 4096


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

    The order of :func:`promptgen.evaluation.metrics.joint_labels`: the outer product of
    the parts' probabilities (independent given the image).
    """
    joint = parts[0]
    for p in parts[1:]:
        joint = (joint[:, :, None] + p[:, None, :]).flatten(1)
    return joint


@dataclass(frozen=True)
class Block:
    """One constrained attribute: plain (``digit``) or joint (``digit*thickness``).

    Attributes:
        attribute: as typed, parts joined with ``*``.
        parts: the plain attributes.
        labels: its classes (joint: every combination, first part slowest, joined with ``/``).
        target: (K,) the wanted class distribution.
    """

    attribute: str
    parts: tuple[str, ...]
    labels: tuple[str, ...]
    target: tuple[float, ...]


class DebiasEnergy:
    """``E(x) = −β · φ(x)``, φ the class probabilities of each block (see the module docstring).

    Args:
        blocks: the attributes and their targets.
        classifiers: attribute -> the control classifier providing it.
        label: text for logs.
        refit: close the loop every ``refit`` training steps (0: never; mode ``tilt`` only).
        mode: ``tilt`` (one flow on ``−β · φ``), ``mixture`` (a flow with a
            component per combination of classes) or ``auto`` (one of the two,
            settled when β is fitted; see the module docstring).
        shifts: mixture mode: random translations the control's probabilities are averaged over.
        realism: weight of ``−log p(in domain | x)`` for classifiers that know
            their domain: the target becomes the de-biased distribution of the
            images the classifiers take for digits at all, so a flow gains
            nothing by drawing junk the classifier cannot place.
    """

    def __init__(
        self,
        blocks: Sequence[Block],
        classifiers: Mapping[str, AttributeClassifier],
        label: str,
        refit: int = DEFAULT_REFIT,
        mode: str = DEFAULT_MODE,
        shifts: int = DEFAULT_SHIFTS,
        realism: float = DEFAULT_REALISM,
    ) -> None:
        self.blocks = list(blocks)
        self.classifiers = dict(classifiers)
        self.label = label
        self.shifts = shifts
        self.realism = realism
        self.refit = refit
        self.adapt_samples = REFIT_SAMPLES
        self.mu = torch.tensor([p for b in self.blocks for p in b.target])
        self.beta = torch.zeros_like(self.mu)
        self.beta_fit = torch.zeros_like(self.mu)
        self.base_moments: Tensor | None = None
        self.flow_moments: Tensor | None = None  # what the flow reached at the last refit
        self.fit_samples = FIT_SAMPLES if any(len(b.parts) > 1 for b in self.blocks) else FIT_SAMPLES_PLAIN
        # The mixture's components: every combination of the attributes' classes, first attribute slowest.
        self.parts = [(p, len(self.classifiers[p].attributes[p])) for b in self.blocks for p in b.parts]
        self.mode = "auto"
        self.settle_mode(mode)

    def settle_mode(self, mode: str) -> None:
        """Be the tilt or the mixture (``auto``: undecided until :meth:`fit`, trained as a tilt meanwhile)."""
        self.mode = mode
        self.adapt_every = self.refit if mode != "mixture" else 0
        self.mixture_components = math.prod(k for _, k in self.parts) if mode == "mixture" else 0
        if self.mixture_components:
            self.mixture_labels = tuple(joint_labels([b.labels for b in self.blocks]))
            self.mixture_attribute = "*".join(p for p, _ in self.parts)
            self.pi = torch.full((self.mixture_components,), 1.0 / self.mixture_components)

    def _slices(self) -> Iterator[tuple[Block, slice]]:
        """Each block with its entries' slice of φ, μ and β (the blocks' classes, concatenated)."""
        start = 0
        for b in self.blocks:
            yield b, slice(start, start + len(b.labels))
            start += len(b.labels)

    def _centred(self, beta: Tensor) -> Tensor:
        """β with each block's mean removed: each block of φ sums to 1, so this changes
        every energy by the same constant only, and keeps β from drifting."""
        out = beta.clone()
        for _, s in self._slices():
            out[s] -= out[s].mean()
        return out

    # -- features -----------------------------------------------------------
    def _classify(self, images: Tensor, shifts: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        """Each constrained attribute's class log-probabilities, and ``realism · Σ log p(in domain)``
        over the classifiers that know their domain ((B,) zeros without any); one call per classifier."""
        logp: dict[str, Tensor] = {}
        domain = images.new_zeros(images.shape[0])
        for clf in {id(c): c for c in self.classifiers.values()}.values():
            out, inside = shifted_classify(clf, images, shifts)
            logp.update({a: out[a] for a in out if a in self.classifiers and self.classifiers[a] is clf})
            if inside is not None and self.realism > 0:
                domain = domain + self.realism * inside
        return logp, domain

    def _log_probs(self, images: Tensor, shifts: int = 0) -> dict[str, Tensor]:
        return self._classify(images, shifts)[0]

    def _combinations(self, logp: Mapping[str, Tensor]) -> Tensor:
        """(B, components) log-probabilities of every combination of classes, as if the attributes were independent given x."""
        return joint_log_probs([logp[p] for p, _ in self.parts])

    def features(self, images: Tensor) -> Tensor:
        """φ(x): each block's class probabilities, concatenated, (B, D)."""
        return self._features_from(self._log_probs(images))

    def _features_from(self, logp: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([joint_log_probs([logp[p] for p in b.parts]).exp() for b in self.blocks], dim=1)

    def _features_of(self, sample: BaseSample) -> Tensor:
        # Chunk by chunk: the images are decoded on demand and never all held at once.
        return sample.map_images(self.features)

    def _report(self, prefix: str, moments: Tensor) -> dict[str, float]:
        return {f"{prefix} KL {b.attribute}": kl_divergence(moments[s].tolist(), self.mu[s].tolist()) for b, s in self._slices()}

    # -- the Energy protocol --------------------------------------------------
    def fit(self, base: BaseSample) -> dict[str, float]:
        d = self.mu.numel()
        combinations = self.mode != "tilt"  # a mixture's weights need them; auto may become one

        def measure(images: Tensor) -> Tensor:
            # φ, the domain's log-weight and the combinations' probabilities, in one pass.
            logp, domain = self._classify(images)
            parts = [self._features_from(logp), domain[:, None]]
            if combinations:
                parts.append(self._combinations(logp).exp())
            return torch.cat(parts, 1)

        measured = base.map_images(measure)
        if self.mode == "auto":
            # Does the generator draw some class far below its share, among the images the control takes for digits?
            shares = torch.softmax(measured[:, d].double(), 0) @ measured[:, :d].double()
            self.settle_mode("mixture" if bool((shares.float().cpu() < AUTO_RARE * self.mu.cpu()).any()) else "tilt")
        phi, log_base = measured[:, :d], measured[:, d]
        combos = measured[:, d + 1 :]
        fit = fit_moment_constraint(phi, self.mu, log_base=log_base)
        self.beta = self._centred(fit.beta).clamp(-MAX_BETA, MAX_BETA).to(self.beta.device)
        self.beta_fit = self.beta.clone()
        self.base_moments = phi.mean(0)
        report = {
            **self._report("base", self.base_moments.cpu()),
            **self._report("fit", fit.moments),
            "fit ess": fit.ess,
            "fit converged": float(fit.converged),
            "mixture": float(bool(self.mixture_components)),
        }
        if log_base.numel() and float(log_base.min()) < 0:
            report["base in domain"] = float((log_base / max(self.realism, 1e-12)).exp().mean())
        if self.mixture_components:
            # π_c = E_w[Π_a p_a(c_a | x)]: summing over the other attributes' classes leaves E_w[φ], which is μ.
            w = torch.softmax(phi.double() @ fit.beta.double().to(phi.device) + log_base.double(), 0)
            pi = (w @ combos.double()).clamp_min(0)
            self.pi = (pi / pi.sum()).float().cpu()
            report["mixture components"] = float(self.mixture_components)
            report["mixture smallest weight"] = float(self.pi.min())
        return report

    def mixture_weights(self) -> list[float]:
        """π, the share of each component when sampling (mixture mode; known after :meth:`fit`)."""
        return self.pi.tolist()

    def conditional(self, images: Tensor, latents: Tensor, classes: Tensor) -> Tensor:
        """Component ``classes[i]``'s energy of each image: ``SHARPNESS · (Σ_a −log p̃_a(c_a | x) − realism · log p̃(in domain | x))``, (B,)."""
        logp, domain = self._classify(images, self.shifts)
        index = classes.to(images.device).long()
        energy = -domain
        for p, k in reversed(self.parts):  # first attribute slowest
            energy = energy - logp[p].gather(1, (index % k)[:, None])[:, 0]
            index = index // k
        return SHARPNESS * energy

    def adapt(self, sample: BaseSample) -> dict[str, float]:
        """Close the loop: tilt the flow's own samples onto the target and add that tilt to β."""
        # Closing the loop on the control's top classes (a one-hot φ) instead
        # was tried: on `debias:digit,thickness` it reached thickness KL 0.009
        # against 0.001 with the probabilities (1,500 steps, seed 0).
        phi = self._features_of(sample)
        fit = fit_moment_constraint(phi, self.mu.to(phi.device))
        step = (DAMPING * self._centred(fit.beta).to(self.beta.device)).clamp(-MAX_STEP, MAX_STEP)
        correction = (self._centred(self.beta + step) - self.beta_fit).clamp(-MAX_CORRECTION, MAX_CORRECTION)
        self.beta = (self.beta_fit + correction).clamp(-MAX_BETA, MAX_BETA)
        self.flow_moments = phi.mean(0).cpu()
        return self._report("flow", self.flow_moments)

    def advice(self) -> str | None:
        """A one-line hint after training when the tilt's closed loop ended far from the target, else None.

        What it advises follows what was measured on the digit panel
        (docs/debiasing.md): where the flow still draws the class furthest
        below its share at less than :data:`AUTO_RARE` of it, the tilt lifts
        that class slowly, and the mixture met every target on each generator
        where that happened (more steps halved the KL but made more junk);
        otherwise it says to train longer, which brought the tilt to its
        target without other harm.
        """
        if self.mixture_components or self.flow_moments is None:
            return None
        worst = None
        for b, s in self._slices():
            got, want = self.flow_moments[s], self.mu[s]
            kl = kl_divergence(got.tolist(), want.tolist())
            if kl > ADVICE_KL and (worst is None or kl > worst[0]):
                i = int(torch.argmin(got / want.clamp_min(1e-12)))  # the class furthest below its share
                worst = (kl, b.attribute, b.labels[i], float(got[i]), float(want[i]))
        if worst is None:
            return None
        kl, attribute, label, got_i, want_i = worst
        fix = (
            "the tilt lifts a class this rare slowly: use mode=mixture (a flow component per class)"
            if got_i < AUTO_RARE * want_i
            else "train longer (--steps)"
        )
        return (
            f"{self.label}: at its last refit the flow was KL {kl:.3f} from the {attribute} target by the control classifier "
            f"({label!r}: {got_i:.1%} against {want_i:.1%}); {fix}"
        )

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        logp, domain = self._classify(images)
        return -(self._features_from(logp) * self.beta.to(images.device, images.dtype)).sum(1) - domain

    def to(self, device: torch.device | str) -> DebiasEnergy:
        for c in self.classifiers.values():
            c.to(device)
        self.beta = self.beta.to(device)
        self.mu = self.mu.to(device)
        return self

    # -- optional methods (see promptgen.core.protocols) ----------------------------
    def targets(self) -> list[AttributeTarget]:
        return [AttributeTarget(b.attribute, b.labels, b.target) for b in self.blocks]

    def state(self) -> dict[str, list[float]]:
        out = {"beta": self.beta.cpu().tolist(), "beta_fit": self.beta_fit.cpu().tolist()}
        if self.mixture_components:
            out["mixture"] = self.pi.tolist()
        if self.base_moments is not None:
            out["base_moments"] = self.base_moments.cpu().tolist()
        return out

    def load_state(self, state: Mapping[str, Sequence[float]]) -> None:
        beta = torch.tensor(list(state["beta"]), dtype=torch.float32)
        if beta.shape != self.mu.shape:
            raise SpecError(
                f"{self.label!r}: the saved β has {beta.numel()} numbers, this energy needs {self.mu.numel()}; "
                "the classifier's classes changed since training: install the plugin version named in the manifest"
            )
        self.beta = beta.to(self.mu.device)
        self.beta_fit = torch.tensor(list(state.get("beta_fit", beta.tolist())), dtype=torch.float32).to(self.mu.device)
        if self.mode == "auto":  # what the fit decided: a mixture keeps its weights in the state
            self.settle_mode("mixture" if "mixture" in state else "tilt")
        if "base_moments" in state:
            self.base_moments = torch.tensor(list(state["base_moments"]), dtype=torch.float32)
        if self.mixture_components and "mixture" in state:
            pi = torch.tensor(list(state["mixture"]), dtype=torch.float32)
            if pi.shape != (self.mixture_components,):
                raise SpecError(
                    f"{self.label!r}: the saved mixture has {pi.numel()} weights, this energy has {self.mixture_components} components; "
                    "the classifier's classes changed since training: install the plugin version named in the manifest"
                )
            self.pi = pi

    def lower_bound(self) -> float:
        # φ of each block lies on the simplex, so β · φ is at most the sum of each block's largest β.
        return -sum(float(self.beta[s].max()) for _, s in self._slices())


# -- building from a spec ---------------------------------------------------------


def _parse_target(spec: Spec, attribute: str, labels: Sequence[str], value: str) -> tuple[float, ...]:
    usage = f"debias:{attribute}={'/'.join(['%.3g' % (1 / len(labels))] * len(labels))}"
    if value.lower().endswith(".json") or Path(value).is_file():
        path = Path(value)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpecError(f"{spec.format()!r}: cannot read the target file {value!r} ({type(exc).__name__}); give a JSON list like [0.2, 0.3, 0.5] or a {{label: probability}} object") from None
        if isinstance(raw, dict):
            unknown = [k for k in raw if str(k) not in labels]
            if unknown:
                raise SpecError(f"{spec.format()!r}: {value!r} names class {unknown[0]!r}, which {attribute!r} does not have; its classes are {', '.join(labels)}")
            raw = [raw.get(lab, 0.0) for lab in labels]
        if not isinstance(raw, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
            raise SpecError(f"{spec.format()!r}: {value!r} must hold a JSON list of numbers or a {{label: probability}} object")
        probs = [float(x) for x in raw]
    else:
        try:
            probs = [float(x) for x in value.split("/")]
        except ValueError:
            raise SpecError(f"{spec.format()!r}: the target {value!r} is not numbers separated by '/'; write it like {usage}") from None
    if len(probs) != len(labels):
        raise SpecError(
            f"{spec.format()!r}: {attribute!r} has {len(labels)} classes ({', '.join(labels)}), the target has {len(probs)} numbers; "
            f"give one per class, e.g. {usage}"
        )
    if any(not math.isfinite(p) or p < 0 for p in probs):
        raise SpecError(f"{spec.format()!r}: target probabilities must be finite and >= 0; e.g. {usage}")
    total = sum(probs)
    if abs(total - 1.0) > 1e-3:
        raise SpecError(f"{spec.format()!r}: the target for {attribute!r} sums to {total:.4g}, not 1; e.g. {usage}")
    if any(p == 0 for p in probs):
        raise SpecError(
            f"{spec.format()!r}: a target of 0 for a class cannot be reached by a tilt (β would be −∞); "
            f"use a small positive number, or classifier:{attribute}!=CLASS to rule a class out"
        )
    return tuple(p / total for p in probs)


class DebiasOptions(Options):
    """The options of ``debias:``; its other arguments are ``ATTR``, ``ATTR*ATTR`` and ``ATTR=TARGET``."""

    mode: Literal["auto", "tilt", "mixture"] | None = option(
        None, help="tilt: one flow on -β·φ; mixture: a flow per class combination; auto: chosen at the fit (default: by the other options)"
    )
    refit: int | None = option(None, ge=0, help=f"mode=tilt: refit β every N steps (0: once; default {DEFAULT_REFIT})")
    shifts: int | None = option(None, ge=0, le=64, help=f"mode=mixture: translations the probabilities are averaged over (default {DEFAULT_SHIFTS})")
    realism: float = option(DEFAULT_REALISM, ge=0, help="weight of -log p(in domain | x), for classifiers that know their domain (0: off)")


def build_debias_energy(spec: Spec, options: DebiasOptions, registry: Registry) -> DebiasEnergy:
    """Build ``debias:ATTR[*ATTR][,ATTR...][,ATTR=TARGET][,refit=N][,mode=M][,shifts=N][,realism=W][,OPTION=VALUE...]``.

    ``OPTION``: an option a classifier of the attributes declares
    (``ClassifierEntry.options``), passed to its ``build``, e.g.
    ``debias:race,gender,age,path=res34.pt``.
    """
    refit = options.refit
    mode: str | None = options.mode
    shifts = DEFAULT_SHIFTS if options.shifts is None else options.shifts
    realism = options.realism
    wanted: list[tuple[str, str | None]] = []
    others: list[Arg] = []
    for arg in spec.args:
        if arg.key in DebiasOptions.model_fields:
            continue
        if arg.key is not None and "*" not in arg.key and not registry.provides(arg.key):
            others.append(arg)  # a classifier's option, or an unknown attribute: decided once the classifiers are known
            continue
        if arg.key is not None and arg.op != "=":
            raise SpecError(f"{spec.format()!r}: debias takes ATTR or ATTR=TARGET, not {arg.format()!r}")
        wanted.append((arg.key, arg.value) if arg.key is not None else (arg.value, None))
    if not wanted:
        declared = {o for e in registry.classifiers.values() for o in e.options.model_fields}
        for arg in others:
            if arg.key not in declared:
                raise registry.unknown_attribute(arg.key)
        raise SpecError(f"{spec.format()!r}: name the attributes to even out, e.g. debias:digit or debias:digit,thickness")
    entries: dict[str, ClassifierEntry] = {}  # attribute -> its classifier
    blocks: list[Block] = []
    seen: set[str] = set()
    for attribute, value in wanted:
        parts = tuple(p.strip() for p in attribute.split("*"))
        if any(not p for p in parts):
            raise SpecError(f"{spec.format()!r}: {attribute!r} has an empty part; write joint attributes like digit*thickness")
        part_labels = []
        for p in parts:
            if p in seen:
                raise SpecError(f"{spec.format()!r}: {p!r} appears twice; name each attribute once (use a*b for a joint target)")
            seen.add(p)
            entries[p] = registry.classifier_for(p)
            part_labels.append([str(x) for x in entries[p].attributes[p]])
        labels = tuple(joint_labels(part_labels))
        if value is None:
            target = tuple(1.0 / len(labels) for _ in labels)
        else:
            target = _parse_target(spec, attribute, labels, value)
        blocks.append(Block(attribute, parts, labels, target))
    has_shifts = options.shifts is not None
    if mode == "mixture" and refit is not None:
        raise SpecError(f"{spec.format()!r}: refit= closes the loop of mode=tilt; a mixture has no loop, remove refit=")
    if mode == "auto" and (refit is not None or has_shifts):
        option = "refit=" if refit is not None else "shifts="
        wanted_mode = "tilt" if refit is not None else "mixture"
        raise SpecError(f"{spec.format()!r}: {option} applies to mode={wanted_mode} only, and mode=auto may choose the other; write mode={wanted_mode}")
    sizes = [len(entries[p].attributes[p]) for p in entries]
    if mode is None:  # refit= only means something for the tilt and shifts= for the mixture, so each asks for its mode
        joint = any("*" in attribute for attribute, _ in wanted)
        mode = "tilt" if refit is not None else "mixture" if joint or has_shifts else DEFAULT_MODE
        if mode == "auto" and math.prod(sizes) > MAX_COMPONENTS:  # too many classes for a mixture: auto can only tilt
            mode = "tilt"
    if mode == "tilt" and has_shifts:
        raise SpecError(f"{spec.format()!r}: shifts= applies to mode=mixture only; remove shifts=, or use mode=mixture without refit=")
    if mode != "tilt" and math.prod(sizes) > MAX_COMPONENTS:
        raise SpecError(
            f"{spec.format()!r}: mode=mixture would need {math.prod(sizes):,} components (one per combination of classes), "
            f"more than {MAX_COMPONENTS}; use mode=tilt or fewer attributes"
        )
    chosen = list({e.name: e for e in entries.values()}.values())
    options = classifier_options(spec, others, chosen, registry)
    # One classifier object per classifier, however many of its attributes are used.
    built = {e.name: registry.build_classifier(e.name, options[e.name], spec) for e in chosen}
    check_realism_applies(spec, built)
    classifiers: dict[str, AttributeClassifier] = {p: built[e.name] for p, e in entries.items()}
    return DebiasEnergy(
        blocks,
        classifiers,
        label=spec.with_weight(None).format(),
        refit=DEFAULT_REFIT if refit is None else refit,
        mode=mode,
        shifts=shifts,
        realism=realism,
    )
