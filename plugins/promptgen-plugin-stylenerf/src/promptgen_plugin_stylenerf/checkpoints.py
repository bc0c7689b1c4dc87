"""Reading official StyleNeRF checkpoints without running code from them.

A StyleNeRF checkpoint (``ffhq_256.pkl`` ...) is a training snapshot written
the StyleGAN2-ADA way: a ``pickle`` of ``{"G", "D", "G_ema", "augment_pipe",
"training_set_kwargs"}`` whose networks are ``torch_utils.persistence``
objects (class name, the defining module's source, the object's ``__dict__``).
``G_ema`` is a ``Generator`` whose ``synthesis`` is a ``NeRFSynthesisNetwork``
(a StyleGAN2 or StyleGAN3 file has a ``SynthesisNetwork``). Besides the
modules, the synthesis network holds three plain persistent objects: ``C``
(``CameraRay``: the camera prior and lens), ``V`` (``VolumeRenderer``: the
sample counts) and ``U`` (``Upsampler``: the 2-D blocks' widths). The "nn_cat"
upsampling layers hold a ``torch.nn.Sequential``, pickled by class rather than
by persistence: it is read into a data-only stand-in.

Everything is read with ``promptgen-plugin-stylegan2``'s allow-listed unpickler
(:func:`promptgen_plugin_stylegan2.stored.load_nvidia_pickle`): the stored
source is never run, and a file asking for anything else is refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from promptgen_plugin_stylegan2 import checkpoints_stylegan3
from promptgen_plugin_stylegan2.stored import (
    CheckpointError,
    PersistentObject,
    as_bool,
    as_float,
    as_int,
    build_checked,
    load_nvidia_pickle,
    read_checkpoint,
    show,
    validation_line,
)
from pydantic import ValidationError

from .camera import CameraPrior
from .network import MAX_RESOLUTION, MAX_WIDTH, StyleNeRF, StyleNeRFConfig

WHAT = "a StyleNeRF generator (facebookresearch/StyleNeRF network pickle)"


class StoredModule(PersistentObject):
    """A ``torch.nn`` container pickled by class (``Sequential``, ``ModuleList``): its ``__dict__``, never its code."""

    stored_name = "Module"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"a stored torch.nn.{self.stored_name} has no state; the file is damaged")
        self.class_name, self.state, self.source_lines, self.children = self.stored_name, dict(state), 0, {}


class StoredSequential(StoredModule):
    stored_name = "Sequential"


class StoredModuleList(StoredModule):
    stored_name = "ModuleList"


# -- omegaconf containers, as data --------------------------------------------------------------------------------
# StyleNeRF builds its networks from a hydra configuration: ``run_train.py`` keeps the settings in an OmegaConf
# ``DictConfig``, so the kwargs a network was built with (``_init_kwargs``) and the lists it stored as attributes
# (``CameraRay.range_u`` ...) are ``DictConfig`` / ``ListConfig`` objects holding ``AnyNode`` leaves. They pickle
# as plain state (``_content``, ``_val``, ``_metadata``, ``_parent``), so they are read into plain dicts and lists
# here: omegaconf is never imported and nothing of it runs. An interpolation (``${spec.map}``) stays its text.


class StoredDictConfig(dict):
    """An ``omegaconf.DictConfig`` as stored: a plain dict of its leaves' values."""

    def __setstate__(self, state: Any) -> None:
        content = state.get("_content") if isinstance(state, dict) else None
        if isinstance(content, dict):
            self.update({k: _omega_value(v) for k, v in content.items()})


class StoredListConfig(list):
    """An ``omegaconf.ListConfig`` as stored: a plain list of its leaves' values."""

    def __setstate__(self, state: Any) -> None:
        content = state.get("_content") if isinstance(state, dict) else None
        if isinstance(content, list):
            self.extend(_omega_value(v) for v in content)


class StoredValueNode:
    """An omegaconf leaf (``AnyNode``, ``IntegerNode`` ...) as stored: its ``_val``."""

    value: Any = None

    def __setstate__(self, state: Any) -> None:
        self.value = state.get("_val") if isinstance(state, dict) else None


class StoredMetadata:
    """omegaconf's ``Metadata`` / ``ContainerMetadata`` (key, types, flags): kept as data, never read."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _omega_value(x: Any) -> Any:
    return x.value if isinstance(x, StoredValueNode) else x


def _stored_defaultdict(factory: Any = None) -> dict:
    """``collections.defaultdict(dict)`` (omegaconf's resolver cache) as an empty plain dict: the factory is not called."""
    return {}


#: Type references omegaconf's metadata stores (``ref_type=typing.Any``, ``object_type=dict``): names only.
_TYPE_NAMES = {("typing", "Any"), *(("builtins", t) for t in ("dict", "list", "int", "float", "str", "bool", "bytes"))}
OMEGACONF_GLOBALS: dict[tuple[str, str], Any] = {
    ("omegaconf.dictconfig", "DictConfig"): StoredDictConfig,
    ("omegaconf.listconfig", "ListConfig"): StoredListConfig,
    **{("omegaconf.nodes", n): StoredValueNode for n in (
        "AnyNode", "IntegerNode", "FloatNode", "StringNode", "BooleanNode", "BytesNode", "PathNode", "EnumNode", "ValueNode",
    )},
    ("omegaconf.base", "Metadata"): StoredMetadata,
    ("omegaconf.base", "ContainerMetadata"): StoredMetadata,
    ("collections", "defaultdict"): _stored_defaultdict,
    **{key: f"{key[0]}.{key[1]}" for key in _TYPE_NAMES},
}

#: What a StyleNeRF pickle needs beyond a StyleGAN one: the fields' ``nn.ModuleList`` of layers and the upsampler's
#: ``nn.Sequential`` adapters, pickled by class, and the omegaconf containers of its hydra configuration.
EXTRA_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch.nn.modules.container", "Sequential"): StoredSequential,
    ("torch.nn.modules.container", "ModuleList"): StoredModuleList,
    **OMEGACONF_GLOBALS,
}

#: The official classes' defaults for the attributes read here (a persistent object stores only what was set).
CAMERA_DEFAULTS = {
    "range_u": (0, 0),
    "range_v": (0.25, 0.25),
    "range_radius": (2.732, 2.732),
    "depth_range": (0.5, 6.0),
    "gaussian_camera": False,
    "angular_camera": False,
    "fov": 49.13,
    "bg_start": 1.0,
    "depth_transform": None,
    "dists_normalized": False,
    "ray_align_corner": True,
}
RENDERER_DEFAULTS = {
    "n_ray_samples": 14,
    "n_bg_samples": 4,
    "hierarchical": True,
    "no_background": False,
    "white_background": False,
    "sigma_type": "relu",
    "fine_only": False,
}
NERF_DEFAULTS = {
    "hidden_size": 128,
    "n_blocks": 8,
    "n_freq_posenc": 10,
    "positional_encoding": "normal",
    "use_viewdirs": False,
    "predict_rgb": False,
    "use_skip": False,
    "use_sdf": False,
    "merge_sigma_feat": False,
    "no_sigma": False,
    "tcnn_backend": False,
    "use_pos": False,
    "downscale_p_by": 1,
    "normalized_feat": False,
    "final_sigmoid_act": False,
    "add_rgb": False,
    "use_normal": False,
    "shuffle_factor": 1,
    "disable_latents": False,
    "inverse_sphere": False,
    "magnitude_ema_beta": -1,
    "img_channels": 3,
}
UPSAMPLER_DEFAULTS = {
    "no_2d_renderer": False,
    "no_residual_img": False,
    "block_reses": None,
    "shared_rgb_style": False,
    "channel_base_sz": None,
    "channel_dict": None,
    "out_channel_dict": None,
    "channel_base": 1,
    "channel_max": 512,
}


def _attr(obj: PersistentObject, name: str, defaults: dict[str, Any]) -> Any:
    return obj.state[name] if name in obj.state else defaults[name]


def _pair(x: Any, what: str) -> tuple[float, float]:
    if not isinstance(x, (list, tuple)) or len(x) != 2:
        raise CheckpointError(f"{what} is {show(x)}, not two numbers; the file is damaged")
    return as_float(x[0], what), as_float(x[1], what)


def _require(obj: PersistentObject, defaults: dict[str, Any], where: str, **wanted: Any) -> None:
    """Settings this implementation runs only at the FFHQ models' values: anything else is a variant it refuses."""
    for name, value in wanted.items():
        got = _attr(obj, name, defaults)
        same = (got is None and value is None) or (
            got is not None and value is not None and not isinstance(got, (dict, list, tuple)) and got == value
        )
        if not same:
            raise CheckpointError(
                f"{where}.{name} is {show(got)}: this StyleNeRF variant is not supported "
                f"(only {show(value)}, the FFHQ models' setting)"
            )


#: The fields' settings that are read (sizes) or differ between the two fields, not required of both.
_FIELD_OWN = ("hidden_size", "n_blocks", "n_freq_posenc", "inverse_sphere", "img_channels")


def _require_field(field: PersistentObject, where: str, inverse_sphere: bool) -> None:
    """A field (``fg_nerf`` or ``bg_nerf``) at the FFHQ models' settings: ``inverse_sphere`` as given (the background
    field's only), ``predict_rgb`` set, and every other flag at the official default."""
    wanted = {
        name: True if name == "predict_rgb" else value
        for name, value in NERF_DEFAULTS.items()
        if name not in _FIELD_OWN
    }
    _require(field, NERF_DEFAULTS, where, inverse_sphere=inverse_sphere, **wanted)


def _part(parent: PersistentObject, name: str, class_name: str, where: str) -> PersistentObject:
    obj = parent.state.get(name)
    if not isinstance(obj, PersistentObject) or obj.class_name != class_name:
        got = obj.class_name if isinstance(obj, PersistentObject) else type(obj).__name__
        raise CheckpointError(f"{where}.{name} is a {got!r}, not StyleNeRF's {class_name}; the file is damaged")
    return obj


def identify(g: Any, source: str) -> PersistentObject:
    """``G_ema``'s synthesis network if it is StyleNeRF's; otherwise one line naming what the file holds instead."""
    if not isinstance(g, PersistentObject) or g.class_name != "Generator":
        got = g.class_name if isinstance(g, PersistentObject) else type(g).__name__
        raise CheckpointError(f"{source}: G_ema is a {got!r}, not a Generator; it is not a StyleNeRF network pickle")
    synthesis = g.module("synthesis")
    if synthesis is None:
        raise CheckpointError(f"{source}: the Generator has no synthesis network; the file is damaged")
    if synthesis.class_name == "NeRFSynthesisNetwork":
        return synthesis
    if checkpoints_stylegan3.is_stylegan3(g):
        raise CheckpointError(
            f"{source} is a StyleGAN3 network pickle, not StyleNeRF; load it with --gen stylegan3-t:path=FILE "
            "(or stylegan3-r)"
        )
    if synthesis.class_name == "SynthesisNetwork":
        raise CheckpointError(
            f"{source} is a StyleGAN2 network pickle, not StyleNeRF; load it with --gen stylegan2:path=FILE"
        )
    raise CheckpointError(
        f"{source}: the synthesis network is a {synthesis.class_name!r}, not StyleNeRF's NeRFSynthesisNetwork"
    )


def config_from_persistent(g: PersistentObject, synthesis: PersistentObject, source: str) -> StyleNeRFConfig:
    """The architecture a StyleNeRF ``G_ema`` describes, read from its stored attributes (never its code)."""
    where = "synthesis"
    if as_int(g.attr("c_dim", 0), "G_ema.c_dim", 0, 0) != 0:
        raise CheckpointError(
            f"{source}: G_ema is class-conditional; only unconditional StyleNeRF models are supported"
        )
    mapping = g.module("mapping")
    if mapping is None or mapping.module("fc0") is None:
        raise CheckpointError(f"{source}: the Generator has no mapping network; the file is damaged")
    if synthesis.attr("I") is not None:
        raise CheckpointError(
            f"{source}: {where} encodes its inputs with a NeRFInput (not an FFHQ model); this variant is not supported"
        )
    for flag in ("predict_camera", "freeze_nerf"):
        if synthesis.attr(flag, False):
            raise CheckpointError(f"{source}: {where}.{flag} is set; this StyleNeRF variant is not supported")
    if (
        synthesis.attr("rectangular_crop") is not None
        or as_int(synthesis.attr("z_dim", 0), f"{where}.z_dim", 0, MAX_WIDTH) != 0
    ):
        raise CheckpointError(
            f"{source}: {where} crops to a rectangle or gives the foreground a latent code; "
            "this variant is not supported"
        )
    camera, renderer, upsampler = (
        _part(synthesis, n, c, where) for n, c in (("C", "CameraRay"), ("V", "VolumeRenderer"), ("U", "Upsampler"))
    )
    fg, bg = synthesis.module("fg_nerf"), synthesis.module("bg_nerf")
    if fg is None or bg is None:
        raise CheckpointError(
            f"{source}: {where} has no foreground and background fields (fg_nerf, bg_nerf); the file is damaged"
        )
    _require(
        camera,
        CAMERA_DEFAULTS,
        f"{where}.C",
        angular_camera=True,
        depth_transform=None,
        dists_normalized=False,
        ray_align_corner=False,
    )
    _require(
        renderer,
        RENDERER_DEFAULTS,
        f"{where}.V",
        no_background=False,
        white_background=False,
        sigma_type="relu",
        fine_only=False,
    )
    _require(
        upsampler,
        UPSAMPLER_DEFAULTS,
        f"{where}.U",
        no_2d_renderer=False,
        no_residual_img=False,
        block_reses=None,
        shared_rgb_style=False,
        channel_base_sz=None,
        channel_dict=None,
        out_channel_dict=None,
    )
    _require_field(fg, f"{where}.fg_nerf", inverse_sphere=False)
    _require_field(bg, f"{where}.bg_nerf", inverse_sphere=True)
    first = synthesis.module(
        f"b{2 * as_int(synthesis.attr('resolution_vol'), f'{where}.resolution_vol', 2, MAX_RESOLUTION)}"
    )
    conv0 = first.module("conv0") if first is not None else None
    if first is None or conv0 is None:
        raise CheckpointError(
            f"{source}: {where} has no upsampler block above the volume resolution; the file is damaged"
        )
    if first.attr("upsample_mode") != "nn_cat" or first.attr("architecture") != "skip" or conv0.attr("use_noise"):
        raise CheckpointError(
            f"{source}: the upsampler is {show(first.attr('upsample_mode'))} / {show(first.attr('architecture'))} "
            f"with noise "
            f"{show(conv0.attr('use_noise'))}; only the FFHQ models' 'nn_cat' / 'skip' without noise is supported"
        )
    magnitude = as_float(conv0.attr("magnitude_ema_beta", -1), f"{where}.b*.conv0.magnitude_ema_beta") > 0
    clamp = conv0.attr("conv_clamp")
    alpha = synthesis.tensors().get("alpha")
    if alpha is None or alpha.numel() != 1:
        raise CheckpointError(f"{source}: {where} has no progressive-growing state (alpha); the file is damaged")
    fc0 = mapping.module("fc0")
    assert fc0 is not None
    lr = as_float(fc0.attr("bias_gain", 0.01), "G_ema.mapping.fc0.bias_gain")
    range_radius = _pair(_attr(camera, "range_radius", CAMERA_DEFAULTS), f"{where}.C.range_radius")
    if range_radius[0] != range_radius[1]:
        raise CheckpointError(
            f"{source}: {where}.C.range_radius is {range_radius}; only a fixed camera distance is supported"
        )
    try:
        prior = CameraPrior(
            range_u=_pair(_attr(camera, "range_u", CAMERA_DEFAULTS), f"{where}.C.range_u"),
            range_v=_pair(_attr(camera, "range_v", CAMERA_DEFAULTS), f"{where}.C.range_v"),
            radius=range_radius[0],
            fov=as_float(_attr(camera, "fov", CAMERA_DEFAULTS), f"{where}.C.fov"),
            gaussian=as_bool(_attr(camera, "gaussian_camera", CAMERA_DEFAULTS), f"{where}.C.gaussian_camera"),
        )
        channel_base = as_float(_attr(upsampler, "channel_base", UPSAMPLER_DEFAULTS), f"{where}.U.channel_base")
        return StyleNeRFConfig(
            z_dim=as_int(g.attr("z_dim"), "G_ema.z_dim", 1, MAX_WIDTH),
            w_dim=as_int(g.attr("w_dim"), "G_ema.w_dim", 1, MAX_WIDTH),
            mapping_layers=as_int(mapping.attr("num_layers"), "G_ema.mapping.num_layers", 1, 32),
            mapping_lr=lr,
            resolution=as_int(synthesis.attr("img_resolution"), f"{where}.img_resolution", 8, MAX_RESOLUTION),
            img_channels=as_int(synthesis.attr("img_channels", 3), f"{where}.img_channels", 1, 4),
            resolution_vol=as_int(synthesis.attr("resolution_vol"), f"{where}.resolution_vol", 2, MAX_RESOLUTION),
            z_dim_bg=as_int(synthesis.attr("z_dim_bg"), f"{where}.z_dim_bg", 1, MAX_WIDTH),
            rgb_out_dim=as_int(synthesis.attr("rgb_out_dim"), f"{where}.rgb_out_dim", 1, MAX_WIDTH),
            rgb_out_dim_bg=as_int(synthesis.attr("rgb_out_dim_bg"), f"{where}.rgb_out_dim_bg", 1, MAX_WIDTH),
            fg_hidden=as_int(_attr(fg, "hidden_size", NERF_DEFAULTS), f"{where}.fg_nerf.hidden_size", 1, MAX_WIDTH),
            fg_blocks=as_int(_attr(fg, "n_blocks", NERF_DEFAULTS), f"{where}.fg_nerf.n_blocks", 2, 32),
            bg_hidden=as_int(_attr(bg, "hidden_size", NERF_DEFAULTS), f"{where}.bg_nerf.hidden_size", 1, MAX_WIDTH),
            bg_blocks=as_int(_attr(bg, "n_blocks", NERF_DEFAULTS), f"{where}.bg_nerf.n_blocks", 2, 32),
            n_freq=as_int(_attr(fg, "n_freq_posenc", NERF_DEFAULTS), f"{where}.fg_nerf.n_freq_posenc", 1, 16),
            n_ray_samples=as_int(
                _attr(renderer, "n_ray_samples", RENDERER_DEFAULTS), f"{where}.V.n_ray_samples", 3, 256
            ),
            n_bg_samples=as_int(_attr(renderer, "n_bg_samples", RENDERER_DEFAULTS), f"{where}.V.n_bg_samples", 2, 256),
            hierarchical=as_bool(_attr(renderer, "hierarchical", RENDERER_DEFAULTS), f"{where}.V.hierarchical"),
            depth_range=_pair(_attr(camera, "depth_range", CAMERA_DEFAULTS), f"{where}.C.depth_range"),
            bg_start=as_float(_attr(camera, "bg_start", CAMERA_DEFAULTS), f"{where}.C.bg_start"),
            channel_base=int(channel_base * 32768),
            channel_max=as_int(
                _attr(upsampler, "channel_max", UPSAMPLER_DEFAULTS), f"{where}.U.channel_max", 1, MAX_WIDTH
            ),
            conv_clamp=None if clamp is None else as_float(clamp, f"{where}.b*.conv0.conv_clamp"),
            magnitude_ema=magnitude,
            alpha=float(alpha.reshape(())),
            camera=prior,
        )
    except ValidationError as e:
        raise CheckpointError(
            f"{source}: {where} describes a network promptgen cannot build: {validation_line(e)}"
        ) from None


def load_stylenerf(path: str | Path) -> StyleNeRF:
    """Load the ``G_ema`` of an official StyleNeRF pickle, running no code from it (one-line CheckpointError if not)."""
    raw, source = read_checkpoint(path)
    try:
        data = load_nvidia_pickle(raw, extra_globals=EXTRA_GLOBALS, kind="StyleNeRF")
        if not isinstance(data, dict) or "G_ema" not in data:
            raise CheckpointError(f"{source} holds no G_ema network; it is not a StyleNeRF training snapshot")
        g = data["G_ema"]
        synthesis = identify(g, source)
        cfg = config_from_persistent(g, synthesis, source)
        state = g.tensors()
        model = build_checked(lambda: StyleNeRF(cfg), state, source, WHAT)
    except CheckpointError as e:  # every refusal names the file
        if source in str(e):
            raise
        raise CheckpointError(f"{source}: {e}") from None
    if not math.isfinite(float(model.synthesis.alpha)):
        raise CheckpointError(f"{source}: the progressive-growing state is not a number; the file is damaged")
    return model


__all__ = [
    "EXTRA_GLOBALS",
    "WHAT",
    "CheckpointError",
    "StoredModuleList",
    "StoredSequential",
    "config_from_persistent",
    "identify",
    "load_stylenerf",
]
