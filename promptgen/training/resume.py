"""Resuming from a checkpoint: checking, before anything is restored, that its state fits this run, and
giving the energies their saved states. Every problem is a one-line :class:`~promptgen.core.errors.ArtifactError`."""

from __future__ import annotations

import math

import torch

from promptgen.core.errors import ArtifactError, PromptgenError, one_line
from promptgen.training.checkpoint import check_tensors, describe
from promptgen.training.config import TrainConfig
from promptgen.training.ebm import WeightedEnergy
from promptgen.training.flow import CouplingFlow
from promptgen.training.optim import adam

RESUME_HINT = "the checkpoint is damaged or from another run; start the run again without --resume"

#: What the trainer reads from a checkpoint to resume, besides load_checkpoint's required keys.
RESUME_KEYS = (
    "scheduler", "generator", "torch_rng", "energies", "fits", "history", "adaptations", "eval_eps", "skipped",
    "rollbacks", "resumed_at", "seconds", "checkpoint_seconds",
)


def load_energy_states(terms: list[WeightedEnergy], states: object, where: str) -> None:
    """Give each energy the fitted state a checkpoint kept for it; one-line errors for states that do not fit."""
    if not isinstance(states, dict):
        raise ArtifactError(f"{where!r}: 'energies' is a {type(states).__name__}, not {{energy label: state}}; {RESUME_HINT}")
    by_label = {t.label: t for t in terms}
    for label, state in states.items():
        term = by_label.get(label)
        if term is None:
            raise ArtifactError(f"{where!r} holds state for energy {str(label)[:80]!r}, which this run does not have; {RESUME_HINT}")
        if not term.caps.stateful:
            raise ArtifactError(f"{where!r} holds state for energy {str(label)[:80]!r}, which keeps none; {RESUME_HINT}")
        try:
            term.caps.load_state(state)
        except PromptgenError:
            raise
        except Exception as exc:  # noqa: BLE001 - an energy's own loader may fail in many ways on edited numbers
            raise ArtifactError(
                f"{where!r}: the state of energy {str(label)[:80]!r} does not fit it ({type(exc).__name__}: {one_line(str(exc))[:120]}); {RESUME_HINT}"
            ) from None


def same_layout(found: object, want: object, where: str) -> None:
    """Raise a one-line :class:`ArtifactError` unless ``found`` has the structure of ``want``.

    Same keys, lengths, tensor shapes and kinds of value (numbers finite);
    the numbers themselves may differ. Used on optimiser and scheduler states
    read from a checkpoint, against the state of fresh ones.
    """

    def fail(what: str) -> None:
        raise ArtifactError(f"'checkpoint': {where} {what}; {RESUME_HINT}")

    if isinstance(want, torch.Tensor):
        if not isinstance(found, torch.Tensor) or found.shape != want.shape or found.is_floating_point() != want.is_floating_point():
            fail(f"holds {describe(found)} where {describe(want)} belongs")
        if found.is_floating_point() and not bool(torch.isfinite(found).all()):
            fail("holds NaN or infinite values")
    elif isinstance(want, dict):
        if not isinstance(found, dict) or set(found) != set(want):
            fail(f"has keys {sorted(map(str, found))[:6] if isinstance(found, dict) else describe(found)}, not {sorted(map(str, want))[:6]}")
        for k in want:
            same_layout(found[k], want[k], f"{where}[{str(k)[:40]}]")
    elif isinstance(want, (list, tuple)):
        if not isinstance(found, (list, tuple)) or len(found) != len(want):
            fail(f"is {describe(found)}, not a list of {len(want)}")
        for i, (a, b) in enumerate(zip(found, want)):
            same_layout(a, b, f"{where}[{i}]")
    elif isinstance(want, bool) or want is None or isinstance(want, str):
        if type(found) is not type(want):
            fail(f"is {describe(found)}, not {describe(want)}")
    elif isinstance(want, (int, float)) and (
        isinstance(found, bool) or not isinstance(found, (int, float)) or not math.isfinite(found)
    ):
        fail(f"is {describe(found)}, not a finite number")


def check_resumable(resume: dict, flow: CouplingFlow, opt: torch.optim.Optimizer, schedule: object,
                    g: torch.Generator, config: TrainConfig) -> None:
    """Check, before anything is restored, that a checkpoint's state fits this run's flow, optimiser and settings."""
    missing = [k for k in RESUME_KEYS if k not in resume]
    if missing:
        raise ArtifactError(f"'checkpoint' has no {missing[0]!r}, which resuming needs; {RESUME_HINT}")
    check_tensors(resume["flow"], flow.state_dict(), "checkpoint", "it was written for another flow; start a new run")
    # The optimiser's state after a step: a moment per parameter, of its shape.
    params = [torch.zeros_like(p, device="cpu", requires_grad=True) for p in flow.parameters()]
    fresh = adam(params, config.lr)
    for q in params:
        q.grad = torch.zeros_like(q)
    fresh.step()
    want = fresh.state_dict()
    found = resume["optimizer"]
    if found["state"]:  # empty before the first step
        same_layout(dict(found["state"]), dict(want["state"]), "optimizer state")
    groups, fresh_groups = list(found["param_groups"]), list(opt.state_dict()["param_groups"])
    if len(groups) != len(fresh_groups):
        raise ArtifactError(f"'checkpoint': the optimiser has {len(groups)} parameter groups, the flow needs {len(fresh_groups)}; {RESUME_HINT}")
    for i, (group, fresh_group) in enumerate(zip(groups, fresh_groups)):
        # Only what Adam reads: flags such as fused/foreach differ between devices and torch versions.
        keys = [k for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "params", "initial_lr") if k in fresh_group]
        missing = [k for k in keys if k not in group]
        if missing:
            raise ArtifactError(f"'checkpoint': the optimiser's group {i} has no {missing[0]!r}; {RESUME_HINT}")
        same_layout({k: group[k] for k in keys}, {k: fresh_group[k] for k in keys}, f"optimizer param_groups[{i}]")
    if [g_["params"] for g_ in found["param_groups"]] != [g_["params"] for g_ in opt.state_dict()["param_groups"]]:
        raise ArtifactError(f"'checkpoint': the optimiser's parameter groups do not match the flow; {RESUME_HINT}")
    for group in found["param_groups"]:
        if not 0 <= group["lr"] <= 10:  # the cosine schedule ends at 0
            raise ArtifactError(f"'checkpoint': the optimiser's learning rate is {group['lr']!r}; {RESUME_HINT}")
    fresh_schedule = schedule.state_dict()
    if not isinstance(resume["scheduler"], dict):
        raise ArtifactError(f"'checkpoint': 'scheduler' is not a scheduler's state; {RESUME_HINT}")
    # The keys this torch's scheduler reads; torch versions add private ones (_is_initial...): compare those both have.
    core = [k for k in ("base_lrs", "last_epoch", "T_max", "eta_min", "_last_lr") if k in fresh_schedule]
    missing = [k for k in core if k not in resume["scheduler"]]
    if missing:
        raise ArtifactError(f"'checkpoint': the scheduler's state has no {missing[0]!r}; {RESUME_HINT}")
    shared = [k for k in fresh_schedule if k in resume["scheduler"]]
    same_layout({k: resume["scheduler"][k] for k in shared}, {k: fresh_schedule[k] for k in shared}, "scheduler")
    same_layout(resume["generator"], g.get_state(), "generator state")
    same_layout(resume["torch_rng"], torch.get_rng_state(), "torch_rng")
    same_layout(resume["eval_eps"], torch.zeros((config.eval_batch, *flow.latent_shape)), "eval_eps")
    conditions = flow.config.conditions
    found_condition = resume.get("eval_condition")
    if conditions or found_condition is not None:
        if found_condition is None or not conditions:
            have = "no condition" if found_condition is None else "a condition"
            raise ArtifactError(f"'checkpoint' was written with {have}, this run's flow takes {conditions or 'none'}; {RESUME_HINT}")
        same_layout(found_condition, torch.zeros((config.eval_batch, conditions)), "eval_condition")
    if not 0 <= resume["step"] <= config.steps:
        raise ArtifactError(f"'checkpoint' is at step {resume['step']}, outside this run's {config.steps} steps; {RESUME_HINT}")
    bank = resume.get("bank")
    if bank is not None:
        latents, log_weights = bank["latents"], bank["log_weights"]
        n = latents.shape[0] if latents.dim() else 0
        same_layout(latents, torch.zeros((max(n, 1), *flow.latent_shape)), "bank latents")
        same_layout(log_weights, torch.zeros(max(n, 1)), "bank log_weights")


__all__ = ["RESUME_HINT", "RESUME_KEYS", "check_resumable", "load_energy_states", "same_layout"]
