"""Reading DECA's ``deca_model.tar`` without running code from it.

DECA saves its model with ``torch.save`` as a dict of state dicts (``E_flame``:
the coarse encoder; ``E_detail``, ``D_detail``: the detail encoder and decoder;
a training run's file may add the optimiser's state and counters). Only
``E_flame`` is read, strictly: every key of the encoder, nothing else, each of
the right shape. The file is read with ``torch.load(weights_only=True)``
(``plugin.load_torch_file``): a pickle that asks to import or call anything
beyond tensors is refused before anything in it runs.

What a hostile file can cost is bounded: its pickle is scanned first and one
larger, or making more calls, than a real ``deca_model.tar`` could is refused
before it is read (:mod:`promptgen.core.pickle_budget`); the encoder's keys, shapes and dtypes
are checked against the network built on the ``meta`` device (nothing
allocated), and the network is built for real only through
``plugin.build_matching``, once the file's tensors fill it. Every failure is one
line (:class:`CheckpointError`), within a second and a few hundred MB.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from promptgen import plugin
from promptgen.plugin import (
    COUNTERS,
    COUNTS,
    PickleBudgetError,
    all_finite,
    check_pickle_budget,
    tensor_problem,
)
from promptgen_plugin_deca.network import FlameEncoder

WHAT = "DECA's deca_model.tar"
#: Batch-norm counters: used in training only; a file saved without them (torch < 0.4.1) is still complete.
OPTIONAL_SUFFIX = ".num_batches_tracked"
#: The most bytes and calls the pickle of a deca_model.tar may have. DECA's file (E_flame, E_detail, D_detail:
#: about 700 tensors) has about 80 KB and 2,100 calls; a training run's, with the optimiser's state, a few times
#: that. Reading a pickle at the bounds takes about a second.
MAX_PICKLE_BYTES = 2 * 2**20
MAX_PICKLE_CALLS = 20_000


class CheckpointError(plugin.PromptgenError):
    """A deca_model.tar that cannot be used."""


def _examples(keys: list[str], n: int = 2) -> str:
    return ", ".join(repr(k) for k in sorted(keys)[:n]) + (", ..." if len(keys) > n else "")


def _read_error(e: plugin.WeightsFileError, source: str) -> CheckpointError:
    """The loader's one line, or, for a training checkpoint that stores its arguments, what the file really is."""
    if re.search(r"\bargparse\.Namespace\b", str(e)):
        # The loader refuses any global beyond tensors and containers, a plain namespace of arguments included:
        # right for DECA, whose files hold none, but the file asks for a container, not for code to run.
        return CheckpointError(
            f"{source} holds an argparse.Namespace (the stored arguments of another tool's training checkpoint, "
            f"e.g. NVAE's checkpoint.pt), which {WHAT} does not; it was not loaded: give {WHAT}"
        )
    return CheckpointError(str(e))


def read_encoder_state(path: str | Path) -> dict[str, Tensor]:
    """``E_flame``'s state dict from a deca_model.tar."""
    path = Path(path)
    source = repr(path.name)
    try:
        check_pickle_budget(path, max_bytes=MAX_PICKLE_BYTES, max_calls=MAX_PICKLE_CALLS)
    except PickleBudgetError as e:
        raise CheckpointError(
            f"{source}: {e}, more than {WHAT} could need (it holds about 700 tensors); refused before reading it: "
            f"the file is damaged or not {WHAT}"
        ) from None
    try:
        ckpt = plugin.load_torch_file(path, what=WHAT, mmap=True)
    except plugin.WeightsFileError as e:
        raise _read_error(e, source) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source} holds {type(ckpt).__name__}, not a dict of state dicts; give {WHAT}")
    if "E_flame" not in ckpt:
        keys = [str(k) for k in ckpt]
        hint = " (it looks like a bare state dict)" if keys and all("." in k for k in keys[:5]) else ""
        raise CheckpointError(
            plugin.one_line(
                f"{source} has no 'E_flame' (it holds {_examples(keys, 3) or 'nothing'}){hint}; give {WHAT}"
            )
        )
    state = ckpt["E_flame"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: 'E_flame' holds {type(state).__name__}, not a state dict; give {WHAT}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{source}: 'E_flame' is not a state dict of tensors (e.g. entry {str(bad[0])[:60]!r}); give {WHAT}"
        )
    return state


def check_encoder_state(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """``state`` checked against DECA's encoder built on the ``meta`` device; the state to load, float32.

    Every key of the encoder (batch-norm counters may be absent: zeros are put in), no other, each of the
    encoder's shape, floating point (counters: any real number) and finite.
    """
    with torch.device("meta"):  # the keys and shapes, nothing allocated
        expected = FlameEncoder().state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = (
            f"{len(missing)} of its {len(expected)} keys {'is' if len(missing) == 1 else 'are'} missing ({_examples(missing)})"
            if missing
            else ""
        )
        if unexpected:
            what += (
                ("; " if what else "")
                + f"{len(unexpected)} {'is' if len(unexpected) == 1 else 'are'} not DECA's ResNet-50 encoder's ({_examples(unexpected)})"
            )
        raise CheckpointError(plugin.one_line(f"{source}: 'E_flame' is not DECA's coarse encoder: {what}"))
    # First what the file says of each tensor (shape, dtype, layout), then its values: a file whose tensors
    # claim other shapes is refused before any value is read.
    for key, want in expected.items():
        if key not in state:
            continue
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source}: 'E_flame' {key!r} has shape {tuple(got.shape)}, DECA's encoder has {tuple(want.shape)}; "
                "another architecture or parameter count (DECA regresses 236 FLAME parameters)"
            )
        counter = key.endswith(OPTIONAL_SUFFIX)
        problem = tensor_problem(got, COUNTERS, COUNTS) if counter else tensor_problem(got)
        if problem is not None:
            raise CheckpointError(f"{source}: 'E_flame' {key!r} holds {problem}; give {WHAT}")
    full: dict[str, Tensor] = {}
    for key, want in expected.items():
        if key not in state:  # an absent batch-norm counter: never read in evaluation
            full[key] = torch.zeros((), dtype=want.dtype)
            continue
        got = state[key]
        if not key.endswith(OPTIONAL_SUFFIX) and not all_finite(got):
            raise CheckpointError(
                f"{source}: 'E_flame' {key!r} holds non-finite values; the file is damaged, download it again"
            )
        full[key] = got.to(want.dtype)
    return full


def load_encoder(path: str | Path) -> FlameEncoder:
    """DECA's coarse encoder with the weights of ``path``, float32, frozen, in eval mode."""
    source = repr(Path(path).name)
    full = check_encoder_state(read_encoder_state(path), source)
    # The architecture is fixed (no size is read from the file); build_matching checks again, on the meta
    # device, that the file's tensors fill it before the 26 M parameters are allocated.
    net = plugin.build_matching(FlameEncoder, full, source)
    net.load_state_dict(full, strict=True)
    return net.eval().requires_grad_(False)
