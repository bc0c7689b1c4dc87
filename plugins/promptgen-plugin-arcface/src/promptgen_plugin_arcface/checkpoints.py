"""Reading ``model_ir_se50.pth`` without running code from it, and checking it is IR-SE50.

The file is a plain state dict (TreB1eN's ``Learner.save_state``:
``torch.save(self.model.state_dict(), ...)``). It is read with
:func:`promptgen.plugin.load_torch_file` (``weights_only=True``): a pickle that
would import or call anything beyond tensors is refused before anything in it
runs. Then the keys and shapes must be IR-SE50's, strictly, with two allowances
that change no number the network computes: a ``module.`` prefix on every key
(a file saved from ``nn.DataParallel``) is removed, and missing
``num_batches_tracked`` counters (files of PyTorch < 0.4.1) are filled in, since
batch norm in eval mode never reads them. Every failure is one line.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from promptgen import plugin
from promptgen_plugin_arcface.network import IRSE50

WHAT = "an IR-SE50 model_ir_se50.pth"


class CheckpointError(plugin.PromptgenError):
    """An IR-SE50 file that cannot be used."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path``, read with ``weights_only=True``."""
    path = Path(path)
    source = repr(path.name)
    try:
        state = plugin.load_torch_file(path, what=WHAT)
    except plugin.WeightsFileError as e:
        raise CheckpointError(str(e)) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source} does not hold a state dict (it holds {type(state).__name__}); give {WHAT}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source} is not a state dict of tensors (e.g. entry {str(bad[0])[:60]!r}); give {WHAT}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _examples(keys: list[str], n: int = 2) -> str:
    return ", ".join(repr(k) for k in sorted(keys)[:n]) + (", ..." if len(keys) > n else "")


def _looks_like(state: dict[str, Tensor]) -> str:
    """What the file seems to be instead, when that can be told from its keys ('' if not)."""
    if any(k.startswith(("conv1.conv.", "conv_6_dw.", "conv_23.")) for k in state):
        return "; it looks like MobileFaceNet (model_mobilefacenet.pth), not IR-SE50"
    units = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    if units and not any(".res_layer.5.fc1." in k for k in state):
        return "; it looks like IR (no squeeze-and-excitation), not IR-SE"
    if units and len(units) != 24:
        return f"; it has {len(units)} residual units, IR-SE50 has 24 (IR-SE100 has 49, IR-SE152 has 50)"
    return ""


def load_network(path: str | Path) -> IRSE50:
    """IR-SE50 with the weights of ``path``, frozen, in eval mode."""
    state = read_state_dict(path)
    source = repr(Path(path).name)
    with torch.device("meta"):  # no random initialisation of 44 M parameters that the file replaces
        net = IRSE50()
    expected = net.state_dict()
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"{len(missing)} of its {len(expected)} keys are missing ({_examples(missing)})" if missing else ""
        if unexpected:
            what += ("; " if what else "") + f"{len(unexpected)} are not IR-SE50's ({_examples(unexpected)})"
        raise CheckpointError(plugin.one_line(f"{source} is not {WHAT}: {what}{_looks_like(state)}"))
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            hint = " (a 224 px IR-SE50?)" if key == "output_layer.3.weight" else ""
            raise CheckpointError(f"{source} is not {WHAT}: {key!r} has shape {tuple(got.shape)}, IR-SE50's is {tuple(want.shape)}{hint}")
        if not key.endswith("num_batches_tracked") and not got.is_floating_point():
            raise CheckpointError(f"{source}: {key!r} holds {got.dtype} values, not floating point; not {WHAT}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{source}: {key!r} holds non-finite values; the file is damaged: download it again")
    net.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()}, strict=True, assign=True)
    return net.eval().requires_grad_(False)
