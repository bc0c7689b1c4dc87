"""Signs that a prompt's samples left its generator's usual output (:func:`realism_warnings`)."""

from __future__ import annotations

from promptgen.evaluation.results import EvalReport
from promptgen.training.watch import JUNK_MARGIN, junk_margin

#: A prompt warns when its junk rate exceeds the generator's by more than JUNK_MARGIN (2 points, and twice the
#: standard error: :func:`~promptgen.training.watch.junk_margin`, the same rule as compose's watch),
#: ... or when its Fréchet distance to the reference exceeds that of exact samples of its target this many times,
FRECHET_RATIO = 1.5
#: ... judged only where the importance weights behind the exact samples have this effective sample size.
MIN_ESS = 50.0


def realism_warnings(report: EvalReport) -> list[str]:
    """One line per sign that the prompt's samples left the generator's usual output.

    - the junk rate rose more than :data:`JUNK_MARGIN` above the generator's, and
      more than twice the standard error of that difference on ``n`` samples
      (so a small ``-n`` does not warn of noise);
    - the Fréchet distance to the reference is more than :data:`FRECHET_RATIO`
      times that of exact samples of the same target (judged where their
      weights' effective sample size is at least :data:`MIN_ESS`).
    """
    out = []
    base, prompt = report.base.junk_rate, report.prompt.junk_rate
    if base is not None and prompt is not None and prompt - base > junk_margin(base, prompt, report.n):
        out.append(
            f"{prompt:.1%} of the prompt's samples fail the {report.realism} against {base:.1%} of the generator's: "
            "the prompt makes images its generator rarely makes, which its control classifiers may take for what was asked; "
            "look at the samples, and try a control that knows what is not a digit/face (realism= in the spec) or a lower weight"
        )
    fd, exact = report.prompt.frechet, report.frechet_exact
    if fd is not None and exact is not None and (report.exact_ess or 0) >= MIN_ESS and fd > FRECHET_RATIO * exact:
        out.append(
            f"the prompt's samples are {fd:.3g} from the reference images (Fréchet distance), {fd / exact:.1f} times the "
            f"{exact:.3g} of exact samples of the same target: the flow found images the energies like but the generator "
            "rarely makes; look at the samples"
        )
    return out


__all__ = ["FRECHET_RATIO", "JUNK_MARGIN", "MIN_ESS", "junk_margin", "realism_warnings"]
