"""The conformance check of a generator (:func:`check_generator`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from promptgen.testing.common import (
    DEFAULT_DEVICES,
    _backward,
    _build,
    _check_spec_options,
    _close,
    _devices,
    _entry_model,
    _exc,
    _fail,
    _gaussian,
    _grad_ok,
    _max_diff,
    _module_tensors,
    _rebuild,
    _round_trip,
    _same_device,
)

# -- generators -----------------------------------------------------------------------------------------


def check_generator(
    registry: Any,
    spec: str,
    *,
    devices: Sequence[str | torch.device] = DEFAULT_DEVICES,
    seed: int = 0,
    atol: float = 1e-3,
    check_options: bool = True,
) -> Any:
    """Check the generator that ``spec`` names (``"mnist"``, ``"stylegan2:path=/tmp/x.pkl"``) does what promptgen relies on.

    Built with ``registry.build_generator(spec)`` (a
    :class:`~promptgen.core.latents.BoundGenerator` for one with latent parts or
    noise of its own: then its noise is part of the flat latent fed to it). Checked:

    - ``latent_shape`` is a tuple of positive ints; ``info`` is a
      :class:`~promptgen.core.protocols.GeneratorInfo` with a (height, width)
      resolution and a channel count; ``device`` and ``dtype`` exist, ``dtype``
      is floating point, and both agree with the parameters of its modules;
    - ``decode`` of 2 seeded latents returns float images (2, C, H, W) as the
      info promises, finite, in [0, 1] (:func:`~promptgen.core.generators.check_images`),
      and leaves the latent unchanged;
    - determinism: decoding the same latents again gives identical images, and
      ``sample_images(generator, 2, seed=0)`` twice gives identical images;
    - a gradient reaches the latent (its controlled part): finite, not all zero;
    - ``to(device)`` returns the generator itself, for each of ``devices`` this
      machine has (the CPU always; ``meta`` is refused), and the images there
      and after moving back agree with the first ones within ``atol``;
    - the spec round trip: its canonical text parses to the same spec, and
      building from it gives the same latent_shape, info and images;
    - with ``check_options``: ``spec`` plus ``no_such_option=1``, and each value
      outside a declared option's range or choices, are refused with a one-line
      PromptgenError naming the option.

    Returns:
        the generator, on the CPU (or where it was built).

    Raises:
        AssertionError: one line naming the generator and what failed.
        PromptgenError: building from ``spec`` itself failed (e.g. weights that
            cannot be downloaded offline): propagated unchanged.
    """
    from promptgen.artifacts.prompt import sample_images
    from promptgen.core.generators import GeneratorOutputError, check_images
    from promptgen.core.latents import controlled_size
    from promptgen.core.protocols import GeneratorInfo
    from promptgen.core.spec import parse_spec

    who = f"generator {spec!r}"
    moves = _devices(devices)
    gen = _build(who, lambda: registry.build_generator(spec))

    # What it says about itself.
    try:
        shape = gen.latent_shape
    except Exception as exc:  # noqa: BLE001
        _fail(who, f"latent_shape raised {_exc(exc)}")
    if (
        not isinstance(shape, tuple)
        or not shape
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        _fail(who, f"latent_shape must be a non-empty tuple of positive ints, not {shape!r}")
    info = getattr(gen, "info", None)
    if not isinstance(info, GeneratorInfo):
        _fail(who, f"info must be a promptgen GeneratorInfo, not {type(info).__name__}")
    res = info.resolution
    if not (
        isinstance(res, tuple)
        and len(res) == 2
        and all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in res)
    ):
        _fail(who, f"info.resolution must be (height, width) as two positive ints, not {res!r}")
    if not (isinstance(info.channels, int) and not isinstance(info.channels, bool) and info.channels > 0):
        _fail(who, f"info.channels must be a positive int (1 grey, 3 RGB), not {info.channels!r}")
    _check_device_dtype(who, gen, None)
    home = gen.device

    # Decoding.
    z = _gaussian((2, *shape), seed).to(home)
    original = z.clone()
    try:
        with torch.no_grad():
            images = check_images(_decode(who, gen, z), gen, 2)
    except GeneratorOutputError as exc:
        _fail(who, f"decode of 2 latents: {exc}")
    if not torch.equal(z, original):
        _fail(who, "decode changed the latent it was given, in place; it must leave its input alone")
    with torch.no_grad():
        again = _decode(who, gen, z)
    if not (isinstance(again, torch.Tensor) and torch.equal(again, images)):
        _fail(
            who,
            f"decode is not deterministic: the same latents gave different images (max difference {_max_diff(images, again)}); "
            "draw randomness from the latent (declare noise_shapes) rather than from torch's generator",
        )
    try:
        first, second = (sample_images(gen, 2, seed=seed) for _ in range(2))
    except Exception as exc:  # noqa: BLE001
        _fail(who, f"sample_images(generator, 2, seed={seed}) raised {_exc(exc)}")
    if not torch.equal(first, second):
        _fail(
            who,
            f"sample_images(generator, 2, seed={seed}) is not deterministic: twice gave different images "
            f"(max difference {_max_diff(first, second)})",
        )
    gen.to(home)  # sample_images moves it to its own device: it stays

    # The gradient reaches the latent.
    zg = z.clone().requires_grad_(True)
    out = _decode(who, gen, zg)
    _backward(who, "the latent", out.sum())
    grad = zg.grad
    controlled = controlled_size(gen)
    _grad_ok(who, "the latent", None if grad is None else grad.flatten(1)[:, :controlled], "images.sum().backward()")

    # Devices, and back.
    for device in moves:
        _check_to(who, gen, device)
        _check_device_dtype(who, gen, device)
        with torch.no_grad():
            there = _decode(who, gen, z.to(device))
        if not _close(there, images, atol, 0.0):
            _fail(
                who,
                f"after to({str(device)!r}) decode disagrees with the first images by {_max_diff(there, images)} (atol {atol})",
            )
    _check_to(who, gen, home)
    with torch.no_grad():
        back = _decode(who, gen, z)
    if not _close(back, images, atol, 0.0):
        _fail(
            who,
            f"after moving back to {str(home)!r} decode disagrees with the first images by {_max_diff(back, images)}",
        )

    # The spec round trip.
    text = _round_trip(who, spec)
    twin = _rebuild(who, f"rebuilding from its canonical text {text!r}", lambda: registry.build_generator(text))
    if tuple(twin.latent_shape) != tuple(shape) or twin.info != info:
        _fail(
            who,
            f"rebuilt from {text!r} it has latent_shape {tuple(twin.latent_shape)} and info {twin.info!r}, "
            f"not {tuple(shape)} and {info!r}",
        )
    twin.to(home)
    with torch.no_grad():
        twin_images = _decode(who, twin, z)
    if not _close(twin_images, images, atol, 0.0):
        _fail(
            who,
            f"rebuilt from {text!r} it decodes different images (max difference {_max_diff(twin_images, images)}); "
            "a spec must always build the same generator (fixed weights, seeded initialisation)",
        )

    if check_options:
        parsed = parse_spec(spec)
        entry = _entry_model(who, lambda: registry.generator(parsed.name))
        _check_spec_options(who, parsed, entry.options, registry.build_generator, unknown=True)
    return gen


def _decode(who: str, gen: Any, z: torch.Tensor) -> torch.Tensor:
    try:
        images = gen.decode(z)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's decode that fails
        _fail(who, f"decode of {z.shape[0]} latents of shape {tuple(z.shape[1:])} raised {_exc(exc)}")
    if not isinstance(images, torch.Tensor):
        _fail(who, f"decode returned {type(images).__name__}, not a torch.Tensor")
    if not images.is_floating_point():
        _fail(who, f"decode returned {images.dtype} images; images are floats in [0, 1]")
    return images


def _check_to(who: str, obj: Any, device: torch.device) -> None:
    try:
        moved = obj.to(device)
    except Exception as exc:  # noqa: BLE001
        _fail(who, f"to({str(device)!r}) raised {_exc(exc)}")
    if moved is not obj:
        _fail(
            who,
            f"to({str(device)!r}) returned {type(moved).__name__} {moved!r:.60}, not the object itself; "
            "promptgen calls .to(device) and goes on using the same object, so it must move in place and return self",
        )


def _check_device_dtype(who: str, gen: Any, expected: torch.device | None) -> None:
    try:
        device, dtype = gen.device, gen.dtype
    except Exception as exc:  # noqa: BLE001
        _fail(who, f"the device/dtype properties raised {_exc(exc)}")
    if not isinstance(device, torch.device):
        _fail(who, f"device must be a torch.device, not {type(device).__name__} {device!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        _fail(who, f"dtype must be a floating-point torch.dtype, not {dtype!r}")
    if expected is not None and not _same_device(device, expected):
        _fail(who, f"after to({str(expected)!r}) its device says {str(device)!r}")
    tensors = _module_tensors(gen)
    for name, t in tensors:
        if not _same_device(t.device, device):
            _fail(who, f"its device says {str(device)!r} but {name} is on {str(t.device)!r}")
    floats = {t.dtype for _, t in tensors if t.is_floating_point()}
    if floats and dtype not in floats:
        _fail(who, f"its dtype says {dtype} but its parameters are {sorted(map(str, floats))}")


