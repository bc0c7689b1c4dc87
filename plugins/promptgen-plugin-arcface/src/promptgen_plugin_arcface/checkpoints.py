"""Reading ``model_ir_se50.pth`` without running code from it, and checking it is IR-SE50.

The file is a plain state dict (TreB1eN's ``Learner.save_state``:
``torch.save(self.model.state_dict(), ...)``). It is read with
:func:`promptgen.plugin.load_torch_file` (``weights_only=True``): a pickle that
would import or call anything beyond tensors is refused before anything in it
runs. Then the keys and shapes must be IR-SE50's, strictly, with two allowances
that change no number the network computes: a ``module.`` prefix on every key
(a file saved from ``nn.DataParallel``) is removed, and missing
``num_batches_tracked`` counters (files of PyTorch < 0.4.1) are filled in, since
batch norm in eval mode never reads them. What the file seems to be instead
(MobileFaceNet, a ResNet, IR without SE...) is told from its keys as they are,
before any counter is filled in.

What a hostile file can cost is bounded: its pickle is scanned first and one
larger, or making more calls, than a real file could is refused before it is
read (:mod:`promptgen.core.pickle_budget`); zip-format files are mapped, not read, so tensors
that are not IR-SE50's cost nothing; keys, shapes and dtypes are checked
against IR-SE50 built on the ``meta`` device, and the network is built for real
only through ``plugin.build_matching``, once the file's tensors fill it. The
architecture is fixed: no size is read from the file. Every failure is one line,
within a second or two and a few hundred MB.
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
from promptgen_plugin_arcface.network import IRSE50

WHAT = "an IR-SE50 model_ir_se50.pth"
#: The most bytes and calls the pickle of a model_ir_se50.pth may have. The real one (397 tensors) has about
#: 45 KB and 1,200 calls; a training checkpoint wrapping it with the optimiser's state, a few times that.
MAX_PICKLE_BYTES = 2**20
MAX_PICKLE_CALLS = 10_000


class CheckpointError(plugin.PromptgenError):
    """An IR-SE50 file that cannot be used."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path``, read with ``weights_only=True`` (``module.`` prefixes removed)."""
    path = Path(path)
    source = repr(path.name)
    try:
        check_pickle_budget(path, max_bytes=MAX_PICKLE_BYTES, max_calls=MAX_PICKLE_CALLS)
    except PickleBudgetError as e:
        raise CheckpointError(
            f"{source}: {e}, more than {WHAT} could need (it holds 397 tensors); refused before reading it: "
            f"the file is damaged or not {WHAT}"
        ) from None
    try:
        state = plugin.load_torch_file(path, what=WHAT, mmap=True)
    except plugin.WeightsFileError as e:
        raise CheckpointError(str(e)) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source} does not hold a state dict (it holds {type(state).__name__}); give {WHAT}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        hint = " (DECA's deca_model.tar?)" if "E_flame" in state else ""
        raise CheckpointError(
            f"{source} is not a state dict of tensors (e.g. entry {str(bad[0])[:60]!r}){hint}; give {WHAT}"
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _examples(keys: list[str], n: int = 2) -> str:
    return ", ".join(repr(k) for k in sorted(keys)[:n]) + (", ..." if len(keys) > n else "")


#: (blocks per stage, bottleneck) -> depth of torchvision's ResNets (DECA's encoder, FairFace's classifier...).
RESNETS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}
_RESNET_BLOCK = re.compile(r"(?:^|\.)layer([1-4])\.(\d+)\.conv([13])\.weight$")


def _resnet(keys: list[str]) -> str:
    """'ResNet-50' (or 'ResNet') if ``keys`` are a torchvision-style ResNet's, else ''."""
    blocks: dict[int, int] = {}
    bottleneck = False
    for key in keys:
        if m := _RESNET_BLOCK.search(key):
            stage, block = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
            bottleneck = bottleneck or m.group(3) == "3"
    if not blocks:
        return ""
    depth = RESNETS.get((tuple(blocks.get(i, 0) for i in range(1, 5)), bottleneck))
    return f"ResNet-{depth}" if depth else "ResNet"


def _looks_like(keys: list[str]) -> str:
    """What a file with ``keys`` (as the file holds them) seems to be instead, when that can be told ('' if not)."""
    if any(k.startswith(("conv1.conv.", "conv_6_dw.", "conv_23.")) for k in keys):
        return "; it looks like MobileFaceNet (model_mobilefacenet.pth), not IR-SE50"
    if resnet := _resnet(keys):
        example = next(k for k in sorted(keys) if _RESNET_BLOCK.search(k))
        return f"; it looks like a {resnet} (keys such as {example!r}), not IR-SE50"
    units = {int(m.group(1)) for k in keys if (m := re.match(r"body\.(\d+)\.", k))}
    if units and not any(".res_layer.5.fc1." in k for k in keys):
        return "; it looks like IR (no squeeze-and-excitation), not IR-SE"
    if units and len(units) != 24:
        return f"; it has {len(units)} residual units, IR-SE50 has 24 (IR-SE100 has 49, IR-SE152 has 50)"
    return ""


def check_state(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """``state`` checked against IR-SE50 built on the ``meta`` device; the state to load, float32."""
    with torch.device("meta"):  # the keys and shapes, nothing allocated
        expected = IRSE50().state_dict()
    as_given = list(state)  # what the file is, before any counter is filled in
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"{len(missing)} of its {len(expected)} keys are missing ({_examples(missing)})" if missing else ""
        if unexpected:
            what += ("; " if what else "") + f"{len(unexpected)} are not IR-SE50's ({_examples(unexpected)})"
        raise CheckpointError(plugin.one_line(f"{source} is not {WHAT}: {what}{_looks_like(as_given)}"))
    # First what the file says of each tensor (shape, dtype, layout), then its values: a file whose tensors
    # claim other shapes is refused before any value is read.
    for key, want in expected.items():
        if key not in state:  # an absent counter
            continue
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            hint = " (a 224 px IR-SE50?)" if key == "output_layer.3.weight" else ""
            raise CheckpointError(f"{source} is not {WHAT}: {key!r} has shape {tuple(got.shape)}, IR-SE50's is {tuple(want.shape)}{hint}")
        counter = key.endswith("num_batches_tracked")
        problem = tensor_problem(got, COUNTERS, COUNTS) if counter else tensor_problem(got)
        if problem is not None:
            raise CheckpointError(f"{source}: {key!r} holds {problem}; not {WHAT}")
    out: dict[str, Tensor] = {}
    for key, want in expected.items():
        if key not in state:  # PyTorch < 0.4.1 saved no counters; eval mode never reads them
            out[key] = torch.zeros((), dtype=torch.long)
            continue
        got = state[key]
        if not key.endswith("num_batches_tracked") and not all_finite(got):
            raise CheckpointError(f"{source}: {key!r} holds non-finite values; the file is damaged: download it again")
        out[key] = got.to(want.dtype)
    return out


def load_network(path: str | Path) -> IRSE50:
    """IR-SE50 with the weights of ``path``, frozen, in eval mode."""
    source = repr(Path(path).name)
    state = check_state(read_state_dict(path), source)
    # The architecture is fixed; build_matching checks again, on the meta device, that the file's tensors fill
    # it before the 44 M parameters are allocated. They are copied from the file, which is mapped, not kept.
    net = plugin.build_matching(IRSE50, state, source)
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)
