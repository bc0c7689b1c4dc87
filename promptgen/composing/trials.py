"""``mode=auto`` decided by outcome on the generator at hand: the tilt first, the mixture when the tilt misses.

A rule fitted on the generators promptgen trained (the mixture when some class is drawn at under half its share)
failed on a stranger's MLP GAN: the mixture it chose there made blobs. Short trials of both modes failed too: a
mixture's junk rises during its warm-up and falls later (on the panel's MLP GAN, 23 % at a quarter of the run,
8 % at the end), so a short trial condemned the mode that would have met every target. So ``auto`` now
measures whole runs, and only as many as it needs (compose does it, :func:`promptgen.composing.compose`):

1. it trains the **tilt**, which stays closest to the generator's own images, for the whole run (with its
   checkpoints and the guard), and judges it with the closing check's reading (:mod:`promptgen.composing.watch`);
2. if that reading meets every target without raising the junk rate, by more than the noise of its samples, the
   tilt is the prompt;
3. otherwise it keeps the tilt aside (``.tilt-flow.safetensors`` beside the run, its record in ``run.json``)
   and trains the **mixture** the same way, from the same fit and seed, judged on the same samples;
4. it keeps the better reading (:func:`~promptgen.training.watch.better`: junk within the margin beats junk that
   rose; then the lower shortfall; between two that rose, the lower junk; a tie keeps the tilt).

Both runs count in the training time; a run stopped between them resumes where it was. The records are kept in
the manifest (``trials``), and advice never points back at the mode that lost
(:meth:`~promptgen.energies.debias_energy.DebiasEnergy.advice`).
"""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from promptgen.core.atomic import write_atomic
from promptgen.core.errors import ArtifactError, one_line
from promptgen.training.config import TrialRecord
from promptgen.training.ebm import WeightedEnergy
from promptgen.training.flow import CouplingFlow
from promptgen.training.watch import better

#: The modes ``auto`` tries, in order: the first wins ties and ends the trials when it meets its targets.
MODES = ("tilt", "mixture")
#: Where the tilt's flow waits while the mixture trains.
STASH = ".tilt-flow.safetensors"


def undecided(terms: list[WeightedEnergy]) -> list[WeightedEnergy]:
    """The terms whose mode is still ``auto`` (freshly built, or fitted without a choice)."""
    return [t for t in terms if t.caps.settling and getattr(t.energy, "mode", None) == "auto"]


def done(records: list[TrialRecord]) -> bool:
    """Whether the trials are over: the tilt met its targets by more than the noise of the samples judged (the
    closing check would otherwise call it "not met: not confirmed"), or both modes were tried."""
    return (len(records) >= 1 and records[0].reading.confirmed) or len(records) >= len(MODES)


def choose(records: list[TrialRecord]) -> TrialRecord:
    """The record kept: the last mode whose reading is better than every earlier one's, the tilt on a tie; marks it."""
    best = records[0]
    for record in records[1:]:
        if better(record.reading, best.reading):
            best = record
    for record in records:
        record.chosen = record is best
    return best


def stash(flow: CouplingFlow, folder: Path) -> None:
    """Keep the tilt's flow beside the run (atomically) while the mixture trains."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in flow.state_dict().items()}
    write_atomic(folder / STASH, lambda p: save_file(tensors, str(p)))


def unstash(flow: CouplingFlow, folder: Path) -> CouplingFlow:
    """The tilt's flow, read back into ``flow`` (built with the tilt's settings); one line if it is gone or damaged."""
    path = folder / STASH
    try:
        flow.load_state_dict(load_file(str(path)), strict=True)
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as exc:
        raise ArtifactError(
            f"{str(path)!r}, the tilt's flow kept beside this mode=auto run, is missing or damaged ({one_line(str(exc))}); "
            f"start the run again without --resume"
        ) from None
    return flow


def describe(records: list[TrialRecord]) -> list[str]:
    """One line per decided energy: what each mode's whole run read, and which was kept."""
    lines = []
    for label in dict.fromkeys(r.energy for r in records):
        mine = [r for r in records if r.energy == label]
        parts = []
        for r in mine:
            figures = ", ".join(f"{t.attribute} KL {t.value:.4f}" if t.kind == "kl" else f"{t.value:.0%} {t.attribute}" for t in r.reading.targets)
            junk = f", junk {r.reading.junk:.1%} (generator {r.reading.base_junk:.1%})" if r.reading.junk is not None else ""
            parts.append(f"the {r.mode}: {figures or f'score {r.reading.score:.3g}'}{junk}")
        kept = next((r.mode for r in mine if r.chosen), mine[-1].mode)
        if len(mine) == 1:
            lines.append(f"{label}: mode=auto trained {parts[0]}; it met its targets, so the mixture was not needed")
        else:
            lines.append(f"{label}: mode=auto trained {'; then '.join(parts)} (judged on {mine[0].reading.n} samples each): kept the {kept}")
    return lines


__all__ = ["MODES", "STASH", "choose", "describe", "done", "stash", "undecided", "unstash"]
