"""The de-biasing energy ``E(x) = −β · φ(x)``: its fit, its closed loop, its mixture mode and its saved state.

The method and the spec are described in :mod:`promptgen.energies.debias`, which builds it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from promptgen.core.metrics import joint_labels, kl_divergence
from promptgen.energies.classifier import DEFAULT_REALISM, shifted_classify
from promptgen.energies.moments import fit_moment_constraint, joint_log_probs
from promptgen.plugin import AttributeClassifier, AttributeTarget, BaseSample, SpecError

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
#: Without mode=: plain attributes get ``auto``, decided by outcome on the generator at hand: compose trains
#: the tilt and the mixture for a short budget each and keeps the one whose judged samples are better
#: (:mod:`promptgen.composing.trials`); a joint target is a mixture, since its rare combinations are what the
#: tilt's flow cannot reach (docs/debiasing.md).
DEFAULT_MODE = "auto"
#: A class the flow draws at less than this share of its target counts as rare in the tilt's advice.
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
        #: The mode asked for: ``auto`` leaves the choice to compose's trials, which advice then respects.
        self.requested = mode
        self.fitted_pi: Tensor | None = None  # the mixture's weights, once fitted (also in mode auto)
        self.mode = "auto"
        self.settle_mode(mode)

    def settle_mode(self, mode: str) -> None:
        """Be the tilt or the mixture (``auto``: undecided until compose's trials; trained as a tilt meanwhile)."""
        self.mode = mode
        self.adapt_every = self.refit if mode != "mixture" else 0
        self.mixture_components = math.prod(k for _, k in self.parts) if mode == "mixture" else 0
        if self.mixture_components:
            self.mixture_labels = tuple(joint_labels([b.labels for b in self.blocks]))
            self.mixture_attribute = "*".join(p for p, _ in self.parts)
            uniform = torch.full((self.mixture_components,), 1.0 / self.mixture_components)
            self.pi = self.fitted_pi if self.fitted_pi is not None else uniform

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
        if combinations:
            # π_c = E_w[Π_a p_a(c_a | x)]: summing over the other attributes' classes leaves E_w[φ], which is μ.
            w = torch.softmax(phi.double() @ fit.beta.double().to(phi.device) + log_base.double(), 0)
            pi = (w @ combos.double()).clamp_min(0)
            self.fitted_pi = (pi / pi.sum()).float().cpu()
            report["mixture components"] = float(self.fitted_pi.numel())
            report["mixture smallest weight"] = float(self.fitted_pi.min())
            if self.mixture_components:
                self.pi = self.fitted_pi
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

        It never points at a setting measured worse on this run: with ``mode=auto`` compose has already tried
        the mixture on this generator and kept the tilt, so it says to train longer. Only when the tilt was asked
        for (``mode=tilt``) and the flow still draws the class furthest below its share at less than
        :data:`AUTO_RARE` of it does it suggest ``mode=auto``, which measures both (docs/debiasing.md).
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
        if got_i < AUTO_RARE * want_i and self.requested == "tilt":  # the mixture was never measured on this run
            fix = "the tilt lifts a class this rare slowly: try mode=auto, which also tries the mixture and keeps the better"
        else:  # with mode=auto, compose measured the mixture on this generator and kept the tilt: never advise it
            fix = "train longer (--steps)"
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


__all__ = [
    "ADVICE_KL",
    "AUTO_RARE",
    "DAMPING",
    "DEFAULT_MODE",
    "DEFAULT_REFIT",
    "DEFAULT_SHIFTS",
    "DEFAULT_WEIGHT",
    "FIT_SAMPLES",
    "FIT_SAMPLES_PLAIN",
    "MAX_BETA",
    "MAX_COMPONENTS",
    "MAX_CORRECTION",
    "MAX_STEP",
    "MODES",
    "REFIT_SAMPLES",
    "SHARPNESS",
    "Block",
    "DebiasEnergy",
]
