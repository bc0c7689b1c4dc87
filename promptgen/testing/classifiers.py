"""The conformance check of an attribute classifier (:func:`check_classifier`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    _grad_ok,
    _max_diff,
    _module_tensors,
)
from promptgen.testing.generators import _check_to

# -- attribute classifiers ---------------------------------------------------------------------------------

#: The image shapes (C, H, W) a classifier is given: it must resize and convert channels itself.
CLASSIFIER_SHAPES: tuple[tuple[int, int, int], ...] = ((3, 32, 32), (1, 28, 28))


def check_classifier(
    registry: Any,
    name: str,
    options: Mapping[str, str] | None = None,
    *,
    devices: Sequence[str | torch.device] = DEFAULT_DEVICES,
    seed: int = 0,
    shapes: Sequence[tuple[int, int, int]] = CLASSIFIER_SHAPES,
    atol: float = 1e-3,
    check_options: bool = True,
) -> Any:
    """Check the attribute classifier ``name`` (built with ``options``, as text) does what promptgen relies on.

    Built with ``registry.build_classifier(name, options)``. Checked:

    - ``attributes`` has the entry's declared attributes and class labels, in order;
    - ``log_probs`` of 2 random images of each of ``shapes`` (RGB 32×32 and grey
      28×28 by default: a classifier adapts size and channels itself) gives, for
      each attribute, a finite (2, K) tensor, K its number of labels, whose rows
      logsumexp to 0 (within ``atol``); the same again when called again;
    - for a ``control`` classifier (energies differentiate through it) a
      gradient reaches the images: finite, not all zero. Evaluators only judge
      results, and may threshold;
    - its optional members, if present: ``log_probs_in_domain`` agrees with
      ``log_probs`` and gives (2,) log-probabilities <= 0; ``features`` gives
      (2, D), ``realism`` (2,), finite;
    - ``to(device)`` returns the classifier itself, for each of ``devices`` this
      machine has, and the log-probabilities there and after moving back agree;
    - with ``check_options``: ``no_such_option="1"``, and each value outside a
      declared option's range or choices, are refused in one line naming the option.

    Returns:
        the classifier.

    Raises:
        AssertionError: one line naming the classifier and what failed.
        PromptgenError: building it failed (e.g. weights that cannot be
            downloaded offline): propagated unchanged.
    """
    who = f"classifier {name!r}" + (f" with {dict(options)!r}" if options else "")
    moves = _devices(devices)
    given = {k: str(v) for k, v in (options or {}).items()}
    entry = _entry_model(who, lambda: registry.classifier(name))
    clf = _build(who, lambda: registry.build_classifier(name, dict(given)))

    declared = {a: [str(c) for c in labels] for a, labels in entry.attributes.items()}
    attributes = getattr(clf, "attributes", None)
    if not isinstance(attributes, Mapping):
        _fail(who, f"attributes must be a mapping of attribute -> class labels, not {type(attributes).__name__}")
    have = {a: [str(c) for c in labels] for a, labels in attributes.items()}
    if list(have) != list(declared) or have != declared:
        _fail(who, f"attributes {have} are not the ones its entry declares, {declared} (names and labels, in order)")

    def run(x: torch.Tensor, grad: bool = False) -> dict[str, torch.Tensor]:
        try:
            with torch.enable_grad() if grad else torch.no_grad():
                out = clf.log_probs(x)
        except Exception as exc:  # noqa: BLE001 - a plugin's classifier that fails
            _fail(
                who,
                f"log_probs of images {tuple(x.shape)} raised {_exc(exc)}; a classifier resizes and converts channels itself",
            )
        if not isinstance(out, Mapping):
            _fail(
                who, f"log_probs returned {type(out).__name__}, not a mapping of attribute -> (B, K) log-probabilities"
            )
        if set(out) != set(declared):
            _fail(who, f"log_probs gave attributes {sorted(out)}, not its declared {sorted(declared)}")
        for attribute, labels in declared.items():
            v = out[attribute]
            k = len(labels)
            if not isinstance(v, torch.Tensor) or tuple(v.shape) != (x.shape[0], k):
                _fail(
                    who,
                    f"log_probs[{attribute!r}] for images {tuple(x.shape)} has shape "
                    f"{tuple(getattr(v, 'shape', ()))}, not ({x.shape[0]}, {k}): one row per image, one column per label",
                )
            if not v.is_floating_point() or not bool(torch.isfinite(v).all()):
                _fail(who, f"log_probs[{attribute!r}] must be finite floats, not {v.detach().cpu().tolist()}")
            total = torch.logsumexp(v.detach().double(), 1)
            if not bool((total.abs() <= atol).all()):
                _fail(
                    who,
                    f"log_probs[{attribute!r}] are not normalised: each row must logsumexp to 0, not {total.tolist()} "
                    "(return log_softmax of the logits, not the logits)",
                )
        return dict(out)

    rng = torch.Generator().manual_seed(seed)
    batches = [torch.rand((2, *shape), generator=rng) for shape in shapes]
    home = _classifier_device(clf)
    results = []
    for x in batches:
        first = run(x.to(home))
        again = run(x.to(home))
        for a in declared:
            if not torch.equal(first[a], again[a]):
                _fail(
                    who,
                    f"log_probs is not deterministic: the same images gave log_probs[{a!r}] differing by {_max_diff(first[a], again[a])}",
                )
        results.append(first)

    if entry.role == "control":
        for x in batches:
            xg = x.to(home).clone().requires_grad_(True)
            out = run(xg, grad=True)
            w = torch.randn(
                (2, sum(len(v) for v in declared.values())), generator=torch.Generator().manual_seed(seed + 1)
            ).to(home)
            loss = (torch.cat([out[a] for a in declared], 1) * w).sum()
            _backward(who, f"the images {tuple(x.shape)}", loss)
            _grad_ok(who, f"the images {tuple(x.shape)}", xg.grad, "log_probs(images) weighted and summed, backward()")

    _check_classifier_extras(who, clf, batches[0].to(home), results[0])

    for device in moves:
        _check_to(who, clf, device)
        for x, expected in zip(batches, results, strict=True):
            there = run(x.to(device))
            for a in declared:
                if not _close(there[a], expected[a], atol, atol):
                    _fail(
                        who, f"after to({str(device)!r}) log_probs[{a!r}] differ by {_max_diff(there[a], expected[a])}"
                    )
    _check_to(who, clf, home)
    back = run(batches[0].to(home))
    for a in declared:
        if not _close(back[a], results[0][a], atol, atol):
            _fail(
                who,
                f"after moving back to {str(home)!r} log_probs[{a!r}] differ by {_max_diff(back[a], results[0][a])}",
            )

    if check_options:
        from promptgen.core.spec import Arg, Piece, Spec

        base = Spec(name, tuple(Arg((Piece(v),), k) for k, v in given.items()))

        def build(text: str) -> Any:
            from promptgen.core.spec import parse_spec

            return registry.build_classifier(name, parse_spec(text).options())

        _check_spec_options(who, base, entry.options, build, unknown=True)
    return clf


def _classifier_device(clf: Any) -> torch.device:
    for _, t in _module_tensors(clf):
        return t.device
    return torch.device("cpu")


def _check_classifier_extras(who: str, clf: Any, x: torch.Tensor, logp: Mapping[str, torch.Tensor]) -> None:
    """The optional members (``log_probs_in_domain``, ``features``, ``realism``), where present."""
    try:
        both = getattr(clf, "log_probs_in_domain", None)
        if callable(both):
            with torch.no_grad():
                got = both(x)
            if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], Mapping)):
                _fail(who, "log_probs_in_domain must return (log_probs, log p(in domain) or None)")
            out, domain = got
            for a, v in logp.items():
                if a not in out or not _close(out[a], v, 1e-4, 1e-4):
                    _fail(who, f"log_probs_in_domain's {a!r} disagrees with log_probs'")
            if domain is not None:
                if not isinstance(domain, torch.Tensor) or tuple(domain.shape) != (x.shape[0],):
                    _fail(
                        who,
                        f"log_probs_in_domain's log p(in domain) must have shape ({x.shape[0]},), not {getattr(domain, 'shape', domain)!r}",
                    )
                if not bool(torch.isfinite(domain).all()) or bool((domain > 1e-4).any()):
                    _fail(who, f"log_probs_in_domain's log p(in domain) must be finite and <= 0, not {domain.tolist()}")
        for member, ndim in (("features", 2), ("realism", 1)):
            fn = getattr(clf, member, None)
            if not callable(fn):
                continue
            with torch.no_grad():
                v = fn(x)
            if not isinstance(v, torch.Tensor) or v.ndim != ndim or v.shape[0] != x.shape[0]:
                want = "(B, D)" if ndim == 2 else "(B,)"
                _fail(
                    who,
                    f"{member}(images) must return {want} for {x.shape[0]} images, not {getattr(v, 'shape', type(v).__name__)}",
                )
            if not bool(torch.isfinite(v).all()):
                _fail(who, f"{member}(images) returned non-finite values")
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001
        _fail(who, f"an optional member raised {_exc(exc)}")


