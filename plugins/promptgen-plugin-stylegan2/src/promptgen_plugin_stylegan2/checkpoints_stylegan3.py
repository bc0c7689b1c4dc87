"""Reading an official StyleGAN3 generator (configs T and R) from an unpickled NVIDIA network pickle.

NVlabs/stylegan3's pickles hold the same persistent objects as StyleGAN2's
(:class:`~.stored.PersistentObject`, never run), with a synthesis network of
an ``input`` (``SynthesisInput``) and layers ``L0_36_512`` ... ``L14_1024_3``
(``SynthesisLayer``). Its architecture is read from the synthesis network's
stored constructor arguments (``_init_kwargs``: ``channel_base``,
``conv_kernel``, ``use_radial_filters``...; the ones NVIDIA's constructor
defaults are not stored), checked against bounds, and rebuilt here
(:func:`~.stylegan3.synthesis_plan`). Then every stored attribute the forward
pass depends on (each layer's sizes, sampling rates, cutoffs, up/down factors,
filter taps, padding, clamp; the input's size, rate and bandwidth; the layer
names) must equal what was rebuilt, once every tensor has been found to fill
the network (:func:`~.stored.build_checked`): a file that says one thing in its arguments
and another in its layers is refused in one line, as is a configuration other
than T (3×3 convolutions, separable filters) and R (1×1 convolutions, radial
filters).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np
from pydantic import ValidationError
from torch import Tensor

from promptgen_plugin_stylegan2.network import MAX_MAPPING_LAYERS, MAX_RESOLUTION, MAX_WIDTH
from promptgen_plugin_stylegan2.stored import (
    CheckpointError,
    PersistentObject,
    as_bool,
    as_float,
    as_int,
    build_checked,
    check_gains,
    show,
    validation_line,
)
from promptgen_plugin_stylegan2.stylegan3 import (
    MAX_FILTER_SIZE,
    MAX_KERNEL,
    MAX_LRELU_UPSAMPLING,
    MAX_MARGIN,
    MAX_SYNTHESIS_LAYERS,
    LayerPlan,
    StyleGAN3,
    StyleGAN3Config,
    synthesis_plan,
)

#: What StyleGAN3 configs T and R are, for messages.
EXPECTED = (
    "promptgen runs config T (conv_kernel=3, separable filters) and config R (conv_kernel=1, use_radial_filters=True) "
    "as NVlabs/stylegan3's train.py --cfg=stylegan3-t/-r builds them"
)

#: NVlabs/stylegan3's ``SynthesisNetwork`` and ``SynthesisLayer`` constructor arguments: how each is read, and the
#: field of :class:`~.stylegan3.StyleGAN3Config` it sets (None: training only, not read).
SYNTHESIS_ARGUMENTS: dict[str, tuple[str, str | None, int]] = {
    # name: (kind, config field, upper bound for whole numbers)
    "w_dim": ("int", None, MAX_WIDTH),
    "img_resolution": ("int", None, MAX_RESOLUTION),
    "img_channels": ("int", None, MAX_WIDTH),
    "channel_base": ("int", "channel_base", MAX_WIDTH * MAX_RESOLUTION),
    "channel_max": ("int", "channel_max", MAX_WIDTH),
    "num_layers": ("int", "num_layers", MAX_SYNTHESIS_LAYERS),
    "num_critical": ("int", "num_critical", MAX_SYNTHESIS_LAYERS),
    "first_cutoff": ("float", "first_cutoff", 0),
    "first_stopband": ("float", "first_stopband", 0),
    "last_stopband_rel": ("float", "last_stopband_rel", 0),
    "margin_size": ("int", "margin_size", MAX_MARGIN),
    "output_scale": ("float", "output_scale", 0),
    "num_fp16_res": ("int", "num_fp16_res", 64),
    "conv_kernel": ("int", "conv_kernel", MAX_KERNEL),
    "filter_size": ("int", "filter_size", MAX_FILTER_SIZE),
    "lrelu_upsampling": ("int", "lrelu_upsampling", MAX_LRELU_UPSAMPLING),
    "use_radial_filters": ("bool", "use_radial_filters", 0),
    "conv_clamp": ("float or None", "conv_clamp", 0),
    "magnitude_ema_beta": ("training", None, 0),
}

#: The stored attributes of each layer that its forward pass depends on, and of the input.
LAYER_ATTRIBUTES = tuple(f.name for f in fields(LayerPlan) if f.name != "name")
INPUT_ATTRIBUTES = ("channels", "size", "sampling_rate", "bandwidth")


def is_stylegan3(g: PersistentObject) -> bool:
    """Whether an official ``Generator`` is a StyleGAN3 one: its synthesis network starts with a Fourier input."""
    syn = g.module("synthesis")
    return syn is not None and syn.module("input") is not None and syn.module("b4") is None


def _kwargs(obj: PersistentObject, what: str) -> Mapping[str, Any]:
    kwargs = obj.attr("_init_kwargs")
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(
            f"the {what} has no stored constructor arguments (_init_kwargs is {show(kwargs)}); "
            "the file is damaged or not written by NVlabs/stylegan3"
        )
    for k in kwargs:
        if not isinstance(k, str):
            raise CheckpointError(
                f"the {what}'s stored constructor arguments have a key that is {show(k)}; the file is damaged"
            )
    return kwargs


def config_from_persistent(g: PersistentObject) -> StyleGAN3Config:
    """The architecture of an official StyleGAN3 ``Generator``, read from its stored arguments and attributes.

    Every number that decides how many modules are built, or how large, is checked before anything is built.

    Raises:
        CheckpointError: one line, for a damaged file or a StyleGAN3 variant other than configs T and R.
    """
    if g.class_name != "Generator":
        raise CheckpointError(f"G_ema is a {g.class_name!r}, not a Generator")
    syn, mapping = g.module("synthesis"), g.module("mapping")
    if syn is None or mapping is None:
        raise CheckpointError("the Generator has no synthesis or mapping network; the file is damaged")
    for obj, name in ((syn, "SynthesisNetwork"), (syn.module("input"), "SynthesisInput"), (mapping, "MappingNetwork")):
        if obj is None or obj.class_name != name:
            raise CheckpointError(
                f"a StyleGAN3-shaped generator whose {name} is a {show(obj.class_name if obj else None)}; "
                f"it is a variant promptgen does not run: {EXPECTED}"
            )
    res = as_int(
        g.attr("img_resolution"), "img_resolution", 4, MAX_RESOLUTION, "published StyleGAN3 models have at most 1024"
    )
    if res & (res - 1):
        raise CheckpointError(f"img_resolution is {res:,}, not a power of two; the file is damaged")
    z_dim = as_int(g.attr("z_dim"), "z_dim", 1, MAX_WIDTH)
    c_dim = as_int(g.attr("c_dim", 0), "c_dim", 0, MAX_WIDTH)
    w_dim = as_int(g.attr("w_dim"), "w_dim", 1, MAX_WIDTH)
    img_channels = as_int(g.attr("img_channels"), "img_channels", 1, MAX_WIDTH)
    layers = as_int(
        mapping.attr("num_layers"), "mapping.num_layers", 1, MAX_MAPPING_LAYERS, "published StyleGAN3 models have 2"
    )
    fcs = [mapping.module(f"fc{i}") for i in range(layers)]
    if None in fcs:
        raise CheckpointError(
            f"mapping.num_layers is {layers} but the mapping network has no fc{fcs.index(None)}; the file is damaged"
        )
    acts = {a if isinstance(a, str) else show(a) for a in (fc.attr("activation") for fc in fcs)}
    if acts != {"lrelu"}:
        raise CheckpointError(
            f"unsupported mapping activations {sorted(acts)}; StyleGAN3's mapping network uses leaky ReLU"
        )
    if c_dim and mapping.module("embed") is None:
        raise CheckpointError(
            f"c_dim is {c_dim:,} but the mapping network has no label embedding (embed); the file is damaged"
        )

    kwargs = _kwargs(syn, "synthesis network")
    unknown = [k for k in kwargs if k not in SYNTHESIS_ARGUMENTS]
    if unknown:
        raise CheckpointError(
            f"a StyleGAN3 generator built with {show(unknown[0])}, an argument NVlabs/stylegan3's SynthesisNetwork "
            "does not "
            f"have: a variant promptgen does not run; {EXPECTED}"
        )
    values: dict[str, Any] = {}
    for name, raw in kwargs.items():
        kind, target, hi = SYNTHESIS_ARGUMENTS[name]
        what = f"synthesis argument {name}"
        if kind == "int":
            value: Any = as_int(raw, what, 0, hi)
        elif kind == "float":
            value = as_float(raw, what)
        elif kind == "bool":
            value = as_bool(raw, what)
        elif kind == "float or None":
            value = None if raw is None else as_float(raw, what)
        else:
            continue
        if target is not None:
            values[target] = value
    for name, own in (("w_dim", w_dim), ("img_resolution", res), ("img_channels", img_channels)):
        if name in kwargs and int(kwargs[name]) != own:
            raise CheckpointError(
                f"the synthesis network was built with {name}={show(kwargs[name])} but the Generator has {own:,}; "
                "the file is damaged"
            )
    try:
        cfg = StyleGAN3Config(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_channels=img_channels,
            resolution=res,
            mapping_layers=layers,
            mapping_lr=as_float(fcs[0].attr("bias_gain", 0.01), "mapping.fc0.bias_gain"),
            **values,
        )
    except ValidationError as e:
        raise CheckpointError(
            f"the stored StyleGAN3 configuration {validation_line(e)}; the file is damaged or not StyleGAN3"
        ) from None
    if cfg.kind is None:
        raise CheckpointError(
            f"a StyleGAN3 generator of an unknown configuration (conv_kernel={cfg.conv_kernel}, "
            f"use_radial_filters={cfg.use_radial_filters}); {EXPECTED}"
        )
    return cfg


def _plain(x: Any) -> Any:
    """A stored value as plain Python for comparing, or a :class:`_Unreadable` (any type, any size)."""
    if x is None or isinstance(x, str):
        return x if x is None or len(x) <= 100 else _Unreadable(x)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, np.ndarray) and x.ndim == 1 and x.size <= 8 and x.dtype.kind in "biuf":
        return [_plain(v) for v in x.tolist()]
    if (
        isinstance(x, (list, tuple))
        and len(x) <= 2 * MAX_SYNTHESIS_LAYERS
        and all(isinstance(v, (str, numbers.Real)) for v in x)
    ):
        return [_plain(v) for v in x]
    return _Unreadable(x)


class _Unreadable:
    """A stored value of a type or size no StyleGAN3 attribute has: equal to nothing."""

    def __init__(self, x: Any) -> None:
        self.shown = show(x)

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


def _same(stored: Any, expected: Any) -> bool:
    if isinstance(stored, list) and isinstance(expected, list):
        return len(stored) == len(expected) and all(_same(a, b) for a, b in zip(stored, expected))
    if isinstance(expected, bool) or isinstance(stored, bool):
        return isinstance(stored, bool) and isinstance(expected, bool) and stored == expected
    if isinstance(stored, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(stored, expected, rel_tol=1e-9, abs_tol=1e-12)
    return stored == expected


def _text(x: Any) -> str:
    if isinstance(x, _Unreadable):
        return x.shown
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, list):
        return "[" + ", ".join(_text(v) for v in x[:8]) + (", ..." if len(x) > 8 else "") + "]"
    return repr(x)


def _compare(obj: PersistentObject, where: str, attrs: Mapping[str, Any], cfg: StyleGAN3Config) -> None:
    for attr, expected in attrs.items():
        if attr not in obj.state:
            raise CheckpointError(
                f"{where} has no stored {attr}; the file is damaged or not written by NVlabs/stylegan3"
            )
        stored = _plain(obj.state[attr])
        if not _same(stored, expected):
            raise CheckpointError(
                f"a StyleGAN3 generator whose {where}.{attr} is {_text(stored)} but {_text(expected)} "
                f"in the config {cfg.kind} "
                "network its constructor arguments describe: the file is damaged or from modified code; "
                "promptgen runs StyleGAN3 as NVlabs/stylegan3 builds it"
            )


def check_geometry(g: PersistentObject, cfg: StyleGAN3Config) -> None:
    """Every stored attribute the forward pass depends on must be what ``cfg`` builds (see the module's docstring)."""
    syn = g.module("synthesis")
    assert syn is not None  # config_from_persistent checked it
    inp, plans = synthesis_plan(cfg)
    _compare(
        syn,
        "synthesis",
        {
            "num_ws": cfg.num_ws,
            "num_layers": cfg.num_layers,
            "output_scale": cfg.output_scale,
            "layer_names": [p.name for p in plans],
        },
        cfg,
    )
    stored_input = syn.module("input")
    assert stored_input is not None
    expected_input = {
        "channels": inp.channels,
        "size": [inp.size, inp.size],
        "sampling_rate": inp.sampling_rate,
        "bandwidth": inp.bandwidth,
    }
    _compare(stored_input, "synthesis.input", expected_input, cfg)
    for p in plans:
        layer = syn.module(p.name)
        if layer is None or layer.class_name != "SynthesisLayer":
            raise CheckpointError(
                f"synthesis.{p.name} is {show(layer.class_name if layer else None)}, not a SynthesisLayer; "
                "the file is damaged"
            )
        expected: dict[str, Any] = {a: _plain(getattr(p, a)) for a in LAYER_ATTRIBUTES}
        expected["in_size"] = [p.in_size, p.in_size]
        expected["out_size"] = [p.out_size, p.out_size]
        expected["conv_clamp"] = cfg.conv_clamp
        _compare(layer, f"synthesis.{p.name}", expected, cfg)


def generator_from_persistent(g: PersistentObject, state: Mapping[str, Tensor], source: str) -> StyleGAN3:
    """A :class:`~.stylegan3.StyleGAN3` from an official StyleGAN3 ``G_ema`` and its tensors (checked stored)."""
    cfg = config_from_persistent(g)
    # Sizes first (a network past the bounds is refused before anything is compared), then the geometry.
    model = build_checked(
        lambda: StyleGAN3(cfg, design_filters=False), state, source, f"a StyleGAN3 config {cfg.kind} generator"
    )
    check_geometry(g, cfg)
    for name, buf in model.named_buffers():
        if name.endswith("magnitude_ema") and not float(buf) > 0:
            raise CheckpointError(
                f"{source}: {name} is {float(buf):g}, not a positive mean square; the file is damaged"
            )
    check_gains(g, model, "StyleGAN3")
    return model
