"""Loading CLIP models through open_clip, with one-line errors, and CLIP's preprocessing made differentiable.

A CLIP model's architecture is fixed by its name: one of open_clip's built-in
configurations (``hf-hub:`` and ``local-dir:`` names, which read a
configuration from a file, are not accepted). A file contributes weights only,
but open_clip reads them in ways a crafted file can abuse: it interpolates a
stored position embedding of any shape onto the model's grid before checking
anything, and ``torch.load`` inflates deflated zip records. So every weights
file (``path=`` or a cached download) is checked by :func:`check_checkpoint`
first, without building the model or reading the numbers: each tensor's name
and shape against the model built on the ``meta`` device.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import socket
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from promptgen.plugin import PromptgenError, closest

#: "Random weights": for tests and benchmarks, never for real control.
RANDOM = ("none", "random")


class ClipLoadError(PromptgenError):
    """A CLIP model that could not be built or whose weights could not be had."""


class ClipCheckpointError(ClipLoadError):
    """A weights file that does not hold the weights of the model it is given for (or would cost more than its size)."""


def hf_cache() -> str:
    """The Hugging Face hub cache open_clip downloads into (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - only for the message
        return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _hub_unreachable() -> bool:
    """Whether the hub's host name (``HF_ENDPOINT``, default huggingface.co) does not even resolve.

    huggingface_hub retries a failed request five times with back-off (about
    25 s per file, twice per model) even when there is no network at all; a
    name that does not resolve says so at once. Behind a proxy the proxy
    resolves names, so nothing is probed.
    """
    if any(os.environ.get(k) for k in _PROXIES):
        return False
    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    except Exception:  # noqa: BLE001 - without huggingface_hub there is nothing to retry
        return False
    try:
        socket.getaddrinfo(host, 443)
    except OSError:  # socket.gaierror: no DNS, no network
        return True
    return False


@contextlib.contextmanager
def _cache_only_if_unreachable() -> Iterator[None]:
    """Within: huggingface_hub reads its cache only (as with HF_HUB_OFFLINE) when the hub cannot be reached."""
    if _offline() or not _hub_unreachable():
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read by every request it makes (constants.is_offline_mode)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _quiet():
    """open_clip and huggingface_hub log warnings (random weights, each failed request); the CLI's one line is ours."""
    stack = contextlib.ExitStack()
    for name in ("", "huggingface_hub", "open_clip", "urllib3"):
        logger = logging.getLogger(name)
        level = logger.level
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, level)
    return stack


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if _offline():
        return "HF_HUB_OFFLINE is set"
    for needle in ("Name or service not known", "Temporary failure in name resolution", "Connection", "connect", "timed out", "Max retries", "LocalEntryNotFound", "offline"):
        if needle.lower() in (text + type(e).__name__).lower():
            return "no connection"
    return (text or type(e).__name__)[:120]


def load_clip(name: str, pretrained: str | None, path: str | None = None) -> nn.Module:
    """An open_clip model in eval mode with frozen weights.

    Args:
        name: an open_clip model name, e.g. ``ViT-B-32``.
        pretrained: a pretrained tag (``openai``, ``laion2b_s34b_b79k``...), or ``none`` for random weights.
        path: a local checkpoint (state dict, ``.pt``/``.bin``/``.safetensors``) instead of the tag's download.

    Raises:
        ClipLoadError: unknown model or tag, weights neither cached nor downloadable, a damaged file.
    """
    import open_clip

    if name not in open_clip.list_models():
        near = closest(name, open_clip.list_models())
        hint = f"did you mean {near[0]!r}?" if near else "see open_clip.list_models()"
        raise ClipLoadError(f"unknown CLIP model {name!r}; {hint}")
    tag: str | None
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ClipLoadError(f"CLIP checkpoint {str(file)!r} does not exist; pass path= an existing file or drop it to use pretrained={pretrained or 'openai'}")
        tag = str(file)
        check_checkpoint(name, file, repr(str(file)))
    elif pretrained is None or pretrained.lower() in RANDOM:
        tag = None
    else:
        tag = pretrained
        cfg = open_clip.get_pretrained_cfg(name, tag)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ClipLoadError(f"CLIP model {name!r} has no pretrained weights {tag!r}; known: {', '.join(tags) or 'none'} (or path=FILE)")
        with _cache_only_if_unreachable():
            cached = _fetch(open_clip, name, tag, cfg)
        if cached and Path(cached).is_file():
            check_checkpoint(name, Path(cached), f"{name}/{tag} ({cached})")
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()), _cache_only_if_unreachable():
            model = open_clip.create_model(name, pretrained=tag, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign checkpoint fails in many ways; each gets one line
        what = f"{str(path)!r}" if path else f"{name}/{tag}"
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ClipLoadError(f"cannot load CLIP weights {what} ({type(e).__name__}: {first}); give a state dict of this model") from None
    return model.eval().requires_grad_(False)


def _fetch(open_clip, name: str, tag: str, cfg: dict) -> str | None:
    """Make sure the weights are cached, downloading them if allowed; one line if not. Returns the cached file."""
    from open_clip.pretrained import download_pretrained

    source = cfg.get("hf_hub") or cfg.get("url") or "?"
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if _offline() and not cfg.get("hf_hub"):
                # Plain URLs do not read HF_HUB_OFFLINE: look in open_clip's own URL cache only.
                target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
                if not target.is_file():
                    raise OSError("HF_HUB_OFFLINE is set and the file is not cached")
                return str(target)
            return download_pretrained(cfg, cache_dir=None) or None
    except Exception as e:  # noqa: BLE001 - any failure to get the file gets the same advice
        where = f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}" if cfg.get("hf_hub") else source
        raise ClipLoadError(
            f"CLIP weights {name}/{tag} are not in the cache {hf_cache()} and could not be downloaded from {where} ({_why(e)}); "
            f"on a machine with internet run python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\" "
            f"and copy that cache folder here, or pass path=FILE"
        ) from None


# --- weights files: checked against the model before open_clip reads them -------------------------------------------

#: What open_clip's loader drops from a file (transformers no longer stores it) or fills in when absent.
_DROPPED = frozenset({"text.transformer.embeddings.position_ids"})
_FILLED = frozenset({"logit_bias"})
#: What open_clip reshapes when only the number of its elements matches.
_RESHAPED = frozenset({"logit_scale", "logit_bias"})
#: Position embeddings open_clip interpolates to the model's grid or context length: their width must be the model's.
_VISUAL_POS = "visual.positional_embedding"
_TEXT_POS = frozenset({"positional_embedding", "text.positional_embedding"})


def _refuse(source: str, what: str, hint: str = "give a state dict of this model") -> ClipCheckpointError:
    return ClipCheckpointError(f"{source} {what}; {hint}" if hint else f"{source} {what}")


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(int(n) for n in t.shape)


def _check_archive(file: Path, source: str) -> None:
    """A zip (torch.save's format, numpy's .npz) must not unpack to more than twice its size.

    torch.save and numpy's ``savez`` store their records uncompressed; a deflated record of a few kilobytes
    can claim gigabytes, which ``torch.load`` or ``numpy.load`` would inflate before anything is checked.
    """
    try:
        with zipfile.ZipFile(file) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip, or not a readable one: the loader says it is damaged
    size = file.stat().st_size
    if unpacked > 2 * size + 2**20:
        raise _refuse(source, f"unpacks to {unpacked:,} bytes from {size:,}; torch.save and numpy never compress this much, so the file is damaged or crafted", hint="")


def _stored_tensors(file: Path, source: str) -> dict[str, Tensor]:
    """The file's tensors as open_clip would see them, without reading their numbers.

    safetensors: shapes from the header (the library checks them against the file's size), as meta tensors.
    torch.save: memory-mapped (nothing read until used), or read whole for the old format, which cannot be mapped.
    """
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    try:
        ckpt: Any = torch.load(str(file), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the pre-zip format (or a deflated zip): no memory map; its storages are read at their stored size
        ckpt = torch.load(str(file), map_location="cpu", weights_only=True)
    # What open_clip's load_state_dict unwraps: a training checkpoint's "state_dict", DataParallel's "module." prefix.
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping) or not ckpt:
        raise _refuse(source, f"holds {'an empty dict' if isinstance(ckpt, Mapping) else f'a {type(ckpt).__name__}'}, not a state dict")
    keys = list(ckpt)
    bad = next((k for k in keys if not isinstance(k, str)), None)
    if bad is not None:
        raise _refuse(source, f"has a key that is a {type(bad).__name__}, not a tensor name")
    if keys[0].startswith("module"):
        ckpt = {k[7:]: v for k, v in ckpt.items()}
    return dict(ckpt)


def _check_stored(state: Mapping[str, Any], source: str) -> None:
    """Every tensor must be numbers the file holds: a stride-0 view claims a tensor of any size in a few bytes."""
    for name, t in state.items():
        if not isinstance(t, Tensor):
            raise _refuse(source, f"holds a {type(t).__name__} under {name!r}, not a tensor")
        if t.device.type == "meta":
            continue
        storage = t.untyped_storage().nbytes()
        if t.numel() * t.element_size() > storage:
            raise _refuse(source, f"claims shape {_shape(t)} for {name!r} ({t.numel():,} numbers) but stores {storage // max(t.element_size(), 1):,}; the file is damaged or crafted", hint="")


def _skeleton(name: str) -> nn.Module:
    """The model on the meta device: every tensor's name and shape, nothing allocated."""
    import open_clip

    with _quiet(), contextlib.redirect_stdout(io.StringIO()), torch.device("meta"):
        return open_clip.create_model(name, device="meta", pretrained_text=False)


def _compare(model: nn.Module, state: Mapping[str, Tensor], name: str, source: str) -> None:
    """Refuse, in one line, a file whose tensors are not the model's (names, then shapes), as open_clip would load it."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and k not in _FILLED]
    if missing:
        more = f" and {len(missing) - 3:,} more" if len(missing) > 3 else ""
        raise _refuse(source, f"is not a {name} checkpoint: it has no {', '.join(repr(k) for k in missing[:3])}{more}")
    extra = [k for k in state if k not in own and k not in _DROPPED]
    if extra:
        more = f" and {len(extra) - 3:,} more" if len(extra) > 3 else ""
        raise _refuse(source, f"is not a {name} checkpoint: it holds {', '.join(repr(k[:80]) for k in extra[:3])}{more}, which {name} does not have")
    visual_grid = hasattr(getattr(model, "visual", None), "grid_size")
    for k, want in own.items():
        got = state.get(k)
        if got is None or _shape(got) == _shape(want):
            continue
        if (k in _RESHAPED and got.numel() == want.numel()) or _resized(k, got, want, visual_grid):
            continue
        raise _refuse(source, f"is not a {name} checkpoint: {k!r} has shape {_shape(got)} in the file but {_shape(want)} in {name}")


def _resized(key: str, got: Tensor, want: Tensor, visual_grid: bool) -> bool:
    """Whether open_clip interpolates ``got`` to ``want``'s length: a position embedding of the model's width.

    The result has the model's size and is computed from the file's numbers, so it costs what the file holds.
    """
    if got.ndim != 2 or want.ndim != 2 or got.shape[1] != want.shape[1] or got.shape[0] < 1:
        return False
    if key in _TEXT_POS:
        return True
    grid = got.shape[0] - 1  # a class token, then a square grid
    return key == _VISUAL_POS and visual_grid and grid > 0 and math.isqrt(grid) ** 2 == grid


def check_checkpoint(name: str, file: Path, source: str) -> None:
    """Refuse, before the model is built or the file read, weights that are not ``name``'s or that claim more than they hold.

    Checks, in this order: the file is not a zip that unpacks to more than twice its size; each tensor is numbers the
    file stores (no stride-0 views); after the renames open_clip applies, the file has exactly the model's tensors,
    each of the model's shape (the position embeddings open_clip resizes may differ in length, not in width). The
    model is built on the meta device for this (well under a second); if that fails, on the CPU, as open_clip would.
    big_vision ``.npz`` files are only checked as archives: open_clip converts their names itself.
    """
    import open_clip
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    _check_archive(file, source)
    if file.suffix in (".npz", ".npy"):
        return
    try:
        state = _stored_tensors(file, source)
    except ClipLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file fails torch.load in many ways; each gets one line
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ClipLoadError(f"cannot load CLIP weights {source} ({type(e).__name__}: {first}); give a state dict of this model") from None
    _check_stored(state, source)
    try:
        model = _skeleton(name)
    except Exception:  # noqa: BLE001 - a model that needs real numbers to be built: compare with the real one (its size is the name's)
        with _quiet(), contextlib.redirect_stdout(io.StringIO()), _cache_only_if_unreachable():
            model = open_clip.create_model(name, pretrained_text=False)
    try:
        state = convert_state_dict(model, state)
        if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
            state = convert_to_custom_text_state_dict(state)
    except Exception as e:  # noqa: BLE001 - open_clip's conversions of other formats, on a file that is none of them
        raise _refuse(source, f"cannot be converted to {name}'s names ({type(e).__name__})") from None
    _check_stored(state, source)
    _compare(model, state, name, source)


class Preprocess(nn.Module):
    """CLIP's own preprocessing, differentiable: any size in [0, 1] -> the model's input.

    Resize the shortest side to the model's size (bicubic, antialiased when
    shrinking), centre-crop, normalise with the model's mean and spread. Grey
    images are repeated to three channels.
    """

    def __init__(self, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.size = tuple(size)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    @classmethod
    def of(cls, model: nn.Module) -> Preprocess:
        import open_clip

        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        size = (size, size) if isinstance(size, int) else tuple(size)
        return cls(size, tuple(cfg["mean"]), tuple(cfg["std"]))

    def resize(self, x: Tensor) -> Tensor:
        """Shortest side to the model's size, then the centre crop; (B, C, H, W) -> (B, 3, *size)."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        th, tw = self.size
        scale = max(th / h, tw / w)
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=scale < 1)
        top, left = (nh - th) // 2, (nw - tw) // 2
        return x[..., top : top + th, left : left + tw]

    def normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.normalise(self.resize(x))
