"""The conformance check of an energy (:func:`check_energy`)."""

from __future__ import annotations

import math
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
    _rebuild,
    _round_trip,
    _seeded,
)
from promptgen.testing.generators import _check_to

# -- energies -------------------------------------------------------------------------------------------


def check_energy(
    registry: Any,
    spec: str,
    generator: str | Any = "mnist",
    *,
    devices: Sequence[str | torch.device] = DEFAULT_DEVICES,
    seed: int = 0,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    check_options: bool = True,
) -> Any:
    """Check the energy that ``spec`` names (``"classifier:digit=3"``) on 2 images of ``generator``.

    ``generator``: a spec to build with the registry, or a generator. Built with
    ``registry.build_energy(spec)``. Torch's global RNG is seeded with ``seed``
    before each call of the energy (random augmentations and shifts are drawn
    from it; the caller's RNG state is restored). Checked:

    - :func:`~promptgen.core.capabilities.capabilities` accepts it and ``label`` is text;
    - on 2 images decoded from seeded latents it returns a (2,) finite float
      tensor, identical when called again the same way;
    - a gradient reaches the images, and (through ``decode``) the latent: finite,
      and not all zero unless the energy is fitted before training (it may be flat until then);
    - its capabilities hold what they promise: ``lower_bound()`` is finite and
      below the values, ``acceptance(images)`` is (2,) in [0, 1], ``state()``
      loaded back with ``load_state`` leaves the values as they were,
      ``targets()`` are AttributeTargets;
    - ``to(device)`` returns the energy itself, for each of ``devices`` this
      machine has, and the values there and after moving back agree (``atol``, ``rtol``);
    - the spec round trip: its canonical text parses to the same spec and builds
      an energy with the same values;
    - with ``check_options``: each value outside a declared option's range or
      choices is refused in one line naming the option; and, for an energy
      without free ``arguments`` (which takes unknown keys as its own
      arguments), ``spec`` plus ``no_such_option=1`` is refused too.

    Returns:
        the energy.

    Raises:
        AssertionError: one line naming the energy and what failed.
        PromptgenError: building the generator or the energy from its spec failed
            (e.g. weights that cannot be downloaded offline): propagated unchanged.
    """
    from promptgen.core.capabilities import capabilities
    from promptgen.core.errors import PromptgenError
    from promptgen.core.protocols import AttributeTarget
    from promptgen.core.spec import parse_spec

    who = f"energy {spec!r}"
    moves = _devices(devices)
    gen = registry.build_generator(generator) if isinstance(generator, str) else generator
    energy = _build(who, lambda: registry.build_energy(spec))
    try:
        caps = capabilities(energy)
    except PromptgenError as exc:
        _fail(who, f"capabilities() refuses it: {exc}")
    if not isinstance(getattr(energy, "label", None), str):
        _fail(who, f"label must be text, not {getattr(energy, 'label', None)!r}")

    home = gen.device
    _check_to(who, energy, home)  # built on the CPU; the generator given may be elsewhere
    z = _gaussian((2, *gen.latent_shape), seed).to(home)
    with torch.no_grad():
        images = gen.decode(z)

    # A Contextual energy (one that reads a prompt's condition, or the twin at the reference condition)
    # is called as conditional prompts call it: with a condition and the twin's images.
    context = None
    if caps.contextual:
        from promptgen.core.capabilities import EnergyContext

        with torch.no_grad():
            twin = gen.decode(_gaussian((2, *gen.latent_shape), seed + 1).to(home))
        names = caps.condition_names or ("yaw", "pitch")  # the names it reads, or any
        values = torch.tensor([[0.1, -0.1, 0.05], [-0.2, 0.05, 0.1]], device=home)
        values = values.repeat(1, len(names) // 3 + 1)[:, : len(names)]
        context = EnergyContext(condition=values, condition_names=tuple(names), reference=twin)

    def call(e: Any, x: torch.Tensor, latents: torch.Tensor, grad: bool = False) -> torch.Tensor:
        def run() -> Any:
            with torch.enable_grad() if grad else torch.no_grad():
                if context is None:
                    return e(x, latents)
                here = type(context)(
                    condition=context.condition.to(x.device), condition_names=context.condition_names,
                    reference=context.reference.to(x.device),
                )
                return e.context_energy(x, latents, here)

        try:
            value = _seeded(seed, run)
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's energy that fails
            _fail(who, f"calling it on images {tuple(x.shape)} raised {_exc(exc)}")
        if not isinstance(value, torch.Tensor):
            _fail(who, f"returned {type(value).__name__}, not a torch.Tensor of shape (2,)")
        if tuple(value.shape) != (x.shape[0],):
            _fail(
                who,
                f"returned shape {tuple(value.shape)} for {x.shape[0]} images; an energy returns one value per image, shape ({x.shape[0]},)",
            )
        if not value.is_floating_point():
            _fail(who, f"returned {value.dtype} values; an energy returns floats")
        if not bool(torch.isfinite(value).all()):
            _fail(who, f"returned non-finite values {value.tolist()} for 2 images of {gen.info.name!r}")
        return value

    values = call(energy, images, z)
    again = call(energy, images, z)
    if not torch.equal(values, again):
        _fail(
            who,
            f"is not deterministic: the same images (and torch's seed) gave {values.tolist()} then {again.tolist()}",
        )

    # Gradients: to the images, and through decode to the latent.
    x = images.detach().clone().requires_grad_(True)
    _backward(who, "the images", call(energy, x, z, grad=True).sum())
    flat = caps.fittable  # an energy fitted before training (debias:...,realism=0) may be flat until then
    _grad_ok(who, "the images", x.grad, "energy(images, latents).sum().backward()", zero_ok=flat)
    zg = z.clone().requires_grad_(True)
    with torch.enable_grad():
        decoded = gen.decode(zg)
    _backward(who, "the latent (through decode)", call(energy, decoded, zg, grad=True).sum())
    _grad_ok(who, "the latent (through decode)", zg.grad, "energy(decode(z), z).sum().backward()", zero_ok=flat)

    # What its capabilities promise.
    try:
        if caps.bounded:
            bound = caps.lower_bound()
            if bound is None or not math.isfinite(bound):
                _fail(who, f"lower_bound() must be a finite number, not {bound!r}")
            if bool((values < bound - atol - rtol * abs(bound)).any()):
                _fail(
                    who,
                    f"lower_bound() is {bound:.6g} but it returned {values.min().item():.6g}; the bound must hold for every image",
                )
        if caps.accepting:
            with torch.no_grad():
                accept = _seeded(seed, lambda: caps.acceptance(images))
            if not isinstance(accept, torch.Tensor) or tuple(accept.shape) != (2,):
                _fail(
                    who,
                    f"acceptance(images) must return a tensor of shape (2,), not {getattr(accept, 'shape', type(accept).__name__)}",
                )
            if not bool(((accept >= 0) & (accept <= 1)).all()):
                _fail(who, f"acceptance(images) must be in [0, 1], not {accept.tolist()}")
        if caps.has_targets:
            targets = caps.targets()
            if not all(isinstance(t, AttributeTarget) for t in targets):
                _fail(who, f"targets() must return promptgen AttributeTargets, not {targets!r:.80}")
        if caps.stateful:
            state = caps.state()
            caps.load_state(state)
            reloaded = call(energy, images, z)
            if not _close(reloaded, values, atol, rtol):
                _fail(who, f"load_state(state()) changed its values from {values.tolist()} to {reloaded.tolist()}")
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001
        _fail(who, f"a capability method raised {_exc(exc)}")

    # Devices, and back.
    for device in moves:
        _check_to(who, energy, device)
        there = call(energy, images.to(device), z.to(device))
        if not _close(there, values, atol, rtol):
            _fail(who, f"after to({str(device)!r}) it returns {there.tolist()}, not {values.tolist()}")
    _check_to(who, energy, home)
    back = call(energy, images, z)
    if not _close(back, values, atol, rtol):
        _fail(who, f"after moving back to {str(home)!r} it returns {back.tolist()}, not {values.tolist()}")

    # The spec round trip.
    text = _round_trip(who, spec)
    twin = _rebuild(who, f"rebuilding from its canonical text {text!r}", lambda: registry.build_energy(text))
    twin.to(home)
    twin_values = call(twin, images, z)
    if not _close(twin_values, values, atol, rtol):
        _fail(who, f"rebuilt from {text!r} it returns {twin_values.tolist()}, not {values.tolist()}")

    if check_options:
        parsed = parse_spec(spec)
        entry = _entry_model(who, lambda: registry.energy(parsed.name))
        _check_spec_options(who, parsed, entry.options, registry.build_energy, unknown=not entry.arguments)
    return energy


