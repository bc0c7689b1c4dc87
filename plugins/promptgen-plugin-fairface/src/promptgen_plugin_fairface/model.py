"""The FairFace ResNet-34, its preprocessing and its weights file.

FairFace (Kärkkäinen & Joo, "FairFace: Face Attribute Dataset for Balanced
Race, Gender, and Age for Bias Measurement and Mitigation", WACV 2021)
released a torchvision ResNet-34 whose last layer ``fc`` is
``Linear(512, 18)``: logits 0:7 are race, 7:9 gender, 9:18 age (see
:mod:`promptgen_plugin_fairface.attributes`), each a softmax of its own. It was
trained on face chips (dlib's ``get_face_chip``, padding 0.25) resized to
224×224, converted to [0, 1] and normalised with the ImageNet mean and
standard deviation. The weights file ``res34_fair_align_multi_7_20190809.pt``
is a plain ``torch.save`` of the model's ``state_dict()``.

Here the same preprocessing is applied differentiably to generator images
(B, 3, H, W) in [0, 1]: :class:`promptgen.plugin.ModuleClassifier`
resizes them to 224×224 (bilinear, antialiased when shrinking) and
:class:`FairFaceNet` normalises them before the ResNet.

A weights file is checked before anything large is built (issue 25): its
pickle is scanned, not run, and one larger or making more calls than the real
file could is refused before it is read (:mod:`promptgen.core.pickle_budget`); a zip-format
file is mapped, not read; every key, shape and dtype is compared with the
ResNet-34 built on the ``meta`` device, and the network is built for real only
through ``plugin.build_matching``. The architecture is fixed (18 outputs, the
ResNet-34's depth): no size is read from the file.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import ResNet, resnet34

from promptgen.plugin import (
    COUNTERS,
    COUNTS,
    ModuleClassifier,
    PickleBudgetError,
    PromptgenError,
    RemoteFile,
    all_finite,
    build_matching,
    check_pickle_budget,
    fetch,
    one_line,
    tensor_problem,
)
from promptgen_plugin_fairface.attributes import HEADS, OUTPUTS

INPUT_SIZE = (224, 224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_SUBDIR = "fairface"
FILENAME = "res34_fair_align_multi_7_20190809.pt"
#: The most bytes and calls the pickle of a weights file may have. The released one (218 tensors) has about
#: 25 KB and 650 calls. Reading a pickle at the bounds takes well under a second.
MAX_PICKLE_BYTES = 2**20
MAX_PICKLE_CALLS = 10_000

#: The FairFace authors publish the weights on Google Drive: their README
#: (github.com/dchen236/FairFace, linked from github.com/joojs/fairface) linked
#: this file as https://drive.google.com/file/d/113QMzQzkBDmYMs9LwzvD-jxEZdBQ5J4X/view
#: (it now links the Drive folder 1F_pXfbzWvG-bhCpNsRj6F_xsdjpesiFu with the
#: models); below is that file's direct-download form, ``confirm=t`` skipping
#: Drive's "cannot scan for viruses" page. If Drive moves or throttles it,
#: users get fetch's one-line error naming the cache path to put a copy at.
#: No checksum is published, so
#: sha256=None: only the size (Content-Length) is checked, and loading checks
#: every key and shape of the state dict.
WEIGHTS = RemoteFile(
    "https://drive.google.com/uc?export=download&id=113QMzQzkBDmYMs9LwzvD-jxEZdBQ5J4X&confirm=t",
    FILENAME,
    sha256=None,
)


def fairface_resnet34() -> ResNet:
    """The FairFace architecture with random weights: torchvision's ResNet-34 with ``fc = Linear(512, 18)``."""
    return resnet34(weights=None, num_classes=OUTPUTS)


class FairFaceNet(nn.Module):
    """(B, 3, 224, 224) RGB in [0, 1] -> (B, 18) logits: ImageNet normalisation, then the ResNet-34.

    Args:
        resnet: the ResNet-34 with FairFace's weights.
    """

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.resnet = resnet
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.resnet((images - self.mean) / self.std)

    def features(self, images: Tensor) -> Tensor:
        """(B, 512): the pooled activations the last layer reads (for `promptgen eval`'s diversity)."""
        r = self.resnet
        h = r.maxpool(r.relu(r.bn1(r.conv1((images - self.mean) / self.std))))
        h = r.layer4(r.layer3(r.layer2(r.layer1(h))))
        return torch.flatten(r.avgpool(h), 1)


def _unreadable(path: Path, exc: Exception) -> str:
    """A few words on why ``torch.load`` refused ``path`` (its own messages run to paragraphs)."""
    with contextlib.suppress(OSError), path.open("rb") as f:
        if f.read(64).lstrip().startswith(b"<"):
            return "it is a web page, not the weights: a download that got a sign-in or confirmation page?"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return f"it holds pickled Python objects such as {found.group(1)} (a whole model?), not only tensors"
        return "not a PyTorch file, or a damaged one"
    if "zip archive" in text or "unexpected EOF" in text:
        return "the file is damaged or cut short"
    first = one_line(text).split(". ")[0]
    return (first[:120] + "...") if len(first) > 120 else first or type(exc).__name__


def _kind(obj: object) -> str:
    """'a dict', 'an int', ...: what a file held, for error messages."""
    name = "dict" if isinstance(obj, Mapping) else type(obj).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _expected_file(hint: str) -> str:
    return f"expected {FILENAME}, a torch.save of FairFace's ResNet-34 state dict; {hint}"


def read_state_dict(path: Path, hint: str) -> dict[str, Tensor]:
    """The tensors saved in ``path``, loaded without running any pickled code.

    Raises:
        PromptgenError: the file is not a PyTorch file (or is cut short), or
            holds something other than a flat ``{name: tensor}`` mapping.
    """
    if Path(path).exists() and not Path(path).is_file():  # a folder, a FIFO or a device would fail or block
        raise PromptgenError(f"{str(path)!r} is not a regular file; {_expected_file(hint)}")
    try:
        check_pickle_budget(path, max_bytes=MAX_PICKLE_BYTES, max_calls=MAX_PICKLE_CALLS)
    except PickleBudgetError as e:
        raise PromptgenError(
            f"{str(path)!r}: {e}, more than FairFace's weights could need (218 tensors); refused before reading it; "
            f"{_expected_file(hint)}"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's warnings about an odd file would print before our one line
            # A zip-format file is mapped, not read: tensors that are not FairFace's cost nothing.
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except MemoryError:
        raise PromptgenError(
            f"{str(path)!r} claims more memory than this machine has; {_expected_file(hint)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a bad file; all mean "wrong file"
        reason = _unreadable(path, exc)
        raise PromptgenError(
            f"{str(path)!r} cannot be read as PyTorch weights ({reason}); {_expected_file(hint)}"
        ) from None
    if not isinstance(state, Mapping):
        raise PromptgenError(f"{str(path)!r} holds {_kind(state)}, not a state dict; {_expected_file(hint)}")
    odd = next(((k, v) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)), None)
    if odd is not None:
        raise PromptgenError(
            f"{str(path)!r} is not a state dict: entry {odd[0]!r} holds {_kind(odd[1])}, not a tensor "
            f"(a training checkpoint?); {_expected_file(hint)}"
        )
    return dict(state)


def check_fairface_state(state: Mapping[str, Tensor], path: Path, hint: str) -> dict[str, Tensor]:
    """``state`` checked against FairFace's ResNet-34 built on the ``meta`` device; the state to load, float32.

    Every key, none other, each of the network's shape; weights floating point and finite.
    """
    with torch.device("meta"):  # the keys and shapes, nothing allocated
        expected = fairface_resnet34().state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        raise PromptgenError(f"{str(path)!r} is not FairFace's ResNet-34: {', '.join(parts)}; {_expected_file(hint)}")
    # First what the file says of each tensor (shape, dtype, layout), then its values: a file whose tensors
    # claim other shapes is refused before any value is read.
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape:
            raise PromptgenError(
                f"{str(path)!r} is not FairFace's ResNet-34: {key} has shape {tuple(got.shape)}, "
                f"expected {tuple(want.shape)}; {_expected_file(hint)}"
            )
        counter = not want.is_floating_point()  # batch norm's num_batches_tracked: a step count
        problem = tensor_problem(got, COUNTERS, COUNTS) if counter else tensor_problem(got)
        if problem is not None:
            raise PromptgenError(f"{str(path)!r} is not FairFace's ResNet-34: {key} holds {problem}; {_expected_file(hint)}")
    out: dict[str, Tensor] = {}
    for key, want in expected.items():
        got = state[key]
        if want.is_floating_point() and not all_finite(got):
            raise PromptgenError(
                f"{str(path)!r}: {key} holds non-finite values, the file is damaged; {_expected_file(hint)}"
            )
        out[key] = got.to(want.dtype)
    return out


def load_fairface(path: Path, hint: str = "pass path= a good copy") -> FairFaceNet:
    """FairFace's network with the weights in ``path``, every key, shape and dtype checked.

    Args:
        path: a file like ``res34_fair_align_multi_7_20190809.pt``.
        hint: what the user should do about a wrong file (ends the error message).

    Raises:
        PromptgenError: one line, for a file that is not FairFace's ResNet-34 weights.
    """
    state = check_fairface_state(read_state_dict(path, hint), path, hint)
    # The architecture is fixed; build_matching checks again, on the meta device, that the file's tensors
    # fill it before the 21 M parameters are allocated.
    net = build_matching(fairface_resnet34, state, repr(str(path)))
    net.load_state_dict(state, strict=True)
    return FairFaceNet(net)


def build_fairface(path: str | Path | None = None) -> ModuleClassifier:
    """The FairFace classifier on the CPU, frozen.

    Args:
        path: a local weights file; without it the file is downloaded once
            into ``promptgen.plugin.cache_root()/fairface/``.

    ``log_probs(images)`` takes (B, C, H, W) in [0, 1] of any size (grey is
    repeated to RGB) and returns ``race`` (B, 7), ``gender`` (B, 2) and ``age``
    (B, 9) log-probabilities.
    """
    file = fetch(WEIGHTS, subdir=CACHE_SUBDIR, path=path)
    hint = (
        "pass path= a good copy"
        if path is not None
        else f"delete {file} to download it again, or pass path= a good copy"
    )
    return ModuleClassifier(load_fairface(file, hint), HEADS, INPUT_SIZE, channels=3)
