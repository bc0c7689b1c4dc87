"""Networks built from a configuration someone else's file holds: bounded before anything is allocated.

A 1 KB ``config.json`` can describe a network of a trillion weights, and a
checkpoint's stored arguments can ask for 200,000 layers; building either
would take the machine's memory or minutes before any check ran. Two guards,
applied by every plugin that builds a network from a file's configuration:

1. **Declared bounds** on each configuration value that sets how many modules
   are built (layers, groups, blocks): far above any published model, small
   enough that building stays fast. The plugin declares them on its pydantic
   config (``Field(le=...)``), so a value past them is a one-line error.
2. **The sizes checked against the stored weights** (:func:`build_matching`):
   the network is first built on PyTorch's ``meta`` device, which allocates
   nothing, and each of its tensors' names and shapes is compared with the
   weights the file actually holds. Only a network whose tensors the file
   fills is built for real, so its memory is bounded by the file's own size.

>>> import torch
>>> from torch import nn
>>> state = {"weight": torch.zeros(3, 2), "bias": torch.zeros(3)}
>>> build_matching(lambda: nn.Linear(2, 3), state, "'toy.bin'").weight.shape
torch.Size([3, 2])
>>> one = torch.zeros(()).expand(10**9, 2)  # 8 GB claimed by a view of one stored number
>>> build_matching(lambda: nn.Linear(2, 10**9, bias=False), {"weight": one}, "'toy.bin'")
Traceback (most recent call last):
  ...
promptgen.core.budget.ConfigSizeError: 'toy.bin' describes a network of 8,000,000,000 bytes, but the file stores 4 bytes for it (views that repeat their values, or one array under many names); the file is damaged or crafted
>>> build_matching(lambda: nn.Linear(2, 10**9), state, "'toy.bin'")
Traceback (most recent call last):
  ...
promptgen.core.budget.ConfigSizeError: 'toy.bin' describes a network its weights do not fill: 'weight' would have shape (1000000000, 2) but the file holds (3, 2); the configuration is damaged or from another model
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import Tensor, nn

from promptgen.core.errors import ArtifactError

M = TypeVar("M", bound=nn.Module)

#: The most weights (elements) a network built from a file's configuration may have, whatever the file holds.
MAX_ELEMENTS = 4 * 10**9
#: How many bytes more than the file stores its network may take (broadcast stand-ins in test fixtures).
MAX_UNSTORED_BYTES = 512 * 2**20


class ConfigSizeError(ArtifactError):
    """A configuration read from a file that describes a network other than the file's weights."""


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def build_matching(
    build: Callable[[], M],
    state: Mapping[str, Tensor],
    source: str,
    *,
    skip: Callable[[str], bool] = lambda name: name.endswith("num_batches_tracked"),
) -> M:
    """``build()``, once every entry of its ``state_dict()`` is in ``state`` with the same shape.

    ``build`` is called twice: first on the ``meta`` device (nothing is allocated, whatever sizes the
    configuration claims), then, when every tensor it would make is one the file holds with that shape, for real.
    Entries for which ``skip(name)`` is true need not be in the file (BatchNorm's step counters, by default);
    tensors of the file the network does not have are the caller's to judge. ``source`` names the file in the
    one-line :class:`ConfigSizeError`. Nothing is loaded: the caller loads ``state`` into what is returned.
    """
    with torch.device("meta"):
        skeleton = build()
    tensors = {k: v for k, v in skeleton.state_dict(keep_vars=True).items() if not skip(k)}
    total = sum(math.prod(_shape(t)) for t in tensors.values())
    if total > MAX_ELEMENTS:
        raise ConfigSizeError(
            f"{source} describes a network of {total:,} weights, more than promptgen builds from a file "
            f"({MAX_ELEMENTS:,}); the configuration is damaged or not a model promptgen knows"
        )
    for name, want in tensors.items():
        got = state.get(name)
        if got is not None and not isinstance(got, Tensor):
            raise ConfigSizeError(f"{source}: {name!r} is a {type(got).__name__}, not a tensor; the file is damaged or from another model")
        if got is None:
            raise ConfigSizeError(
                f"{source} describes a network its weights do not fill: it holds no {name!r}; the configuration is damaged or from another model"
            )
        if _shape(got) != _shape(want):
            raise ConfigSizeError(
                f"{source} describes a network its weights do not fill: {name!r} would have shape {_shape(want)} "
                f"but the file holds {_shape(got)}; the configuration is damaged or from another model"
            )
    # A tensor the file stores in fewer bytes than its shape claims (a stride-0 view of one number, one array
    # under many names) passes the shape check, and the real network would then be as large as it claims.
    # Test fixtures do store broadcast stand-ins, so what the file does not store may add up to
    # MAX_UNSTORED_BYTES (the network then stays within the file's size plus that), no more.
    held: dict[int, int] = {}
    for name in tensors:
        storage = state[name].untyped_storage()
        held[storage.data_ptr()] = max(held.get(storage.data_ptr(), 0), storage.nbytes())
    claimed = sum(math.prod(_shape(t)) * t.element_size() for t in {id(t): t for t in tensors.values()}.values())
    stored = sum(held.values())
    if claimed > stored + MAX_UNSTORED_BYTES:
        raise ConfigSizeError(
            f"{source} describes a network of {claimed:,} bytes, but the file stores {stored:,} bytes for it "
            "(views that repeat their values, or one array under many names); the file is damaged or crafted"
        )
    return build()


__all__ = ["MAX_ELEMENTS", "MAX_UNSTORED_BYTES", "ConfigSizeError", "build_matching"]
