"""Loading CLIP models through open_clip, with one-line errors, and CLIP's preprocessing made differentiable."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from promptgen.plugin import PromptgenError, closest

#: "Random weights": for tests and benchmarks, never for real control.
RANDOM = ("none", "random")


class ClipLoadError(PromptgenError):
    """A CLIP model that could not be built or whose weights could not be had."""


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
    elif pretrained is None or pretrained.lower() in RANDOM:
        tag = None
    else:
        tag = pretrained
        cfg = open_clip.get_pretrained_cfg(name, tag)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ClipLoadError(f"CLIP model {name!r} has no pretrained weights {tag!r}; known: {', '.join(tags) or 'none'} (or path=FILE)")
        with _cache_only_if_unreachable():
            _fetch(open_clip, name, tag, cfg)
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()), _cache_only_if_unreachable():
            model = open_clip.create_model(name, pretrained=tag, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign checkpoint fails in many ways; each gets one line
        what = f"{str(path)!r}" if path else f"{name}/{tag}"
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ClipLoadError(f"cannot load CLIP weights {what} ({type(e).__name__}: {first}); give a state dict of this model") from None
    return model.eval().requires_grad_(False)


def _fetch(open_clip, name: str, tag: str, cfg: dict) -> None:
    """Make sure the weights are cached, downloading them if allowed; one line if not."""
    from open_clip.pretrained import download_pretrained

    source = cfg.get("hf_hub") or cfg.get("url") or "?"
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if _offline() and not cfg.get("hf_hub"):
                # Plain URLs do not read HF_HUB_OFFLINE: look in open_clip's own URL cache only.
                target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
                if not target.is_file():
                    raise OSError("HF_HUB_OFFLINE is set and the file is not cached")
                return
            download_pretrained(cfg, cache_dir=None)
    except Exception as e:  # noqa: BLE001 - any failure to get the file gets the same advice
        where = f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}" if cfg.get("hf_hub") else source
        raise ClipLoadError(
            f"CLIP weights {name}/{tag} are not in the cache {hf_cache()} and could not be downloaded from {where} ({_why(e)}); "
            f"on a machine with internet run python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\" "
            f"and copy that cache folder here, or pass path=FILE"
        ) from None


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
