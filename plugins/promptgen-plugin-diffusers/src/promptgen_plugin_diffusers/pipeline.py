"""Reading a diffusers pipeline folder: its UNet and its noise schedule, checked before anything runs.

A pipeline saved by ``save_pretrained`` is a folder with ``model_index.json`` (which classes make the pipeline),
``unet/config.json`` with the weights beside it, and ``scheduler/scheduler_config.json``. promptgen reads the
unconditional kind only (``UNet2DModel``; ``google/ddpm-*``, a ``DDPMPipeline`` or ``DDIMPipeline`` of one's own)
and samples it with a DDIM whatever scheduler it was saved with, as diffusers' ``DDIMPipeline`` does.

Weights are read from safetensors; a folder with only the older ``diffusion_pytorch_model.bin`` is read through
``torch.load(weights_only=True)``, which refuses any pickle that would run code. Every problem is one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from promptgen.plugin import DownloadError, PromptgenError, WeightsFileError, load_torch_file, one_line

#: The schedulers whose configuration a DDIM can be built from (the noise schedule they share).
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler")
#: The UNet class read; the conditional kinds (text, class labels) are refused.
UNET = "UNet2DModel"
#: The files of a pipeline a download fetches (no other weights formats, no code).
HUB_FILES = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"]


class PipelineError(PromptgenError):
    """A pipeline folder promptgen cannot read: one line, naming the file and what to give instead."""


def _json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{str(path)!r} is missing: {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{str(path)!r} is not a readable JSON file ({one_line(str(exc))}); save the pipeline again with save_pretrained") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{str(path)!r} is not a JSON object; save the pipeline again with save_pretrained")
    return data


def _class_of(entry: Any) -> str | None:
    # model_index.json: "unet": ["diffusers", "UNet2DModel"]
    if isinstance(entry, list | tuple) and len(entry) == 2 and all(isinstance(e, str) for e in entry):
        return entry[1]
    return None


def check_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the UNet's config, the scheduler's config) of a pipeline folder, or one line saying what is wrong."""
    if not folder.is_dir():
        raise PipelineError(f"{str(folder)!r} is not a folder; give path= a folder saved by a diffusers pipeline's save_pretrained, or repo= a hub id")
    index = _json(folder / "model_index.json", "not a diffusers pipeline folder (save one with pipeline.save_pretrained(DIR))")
    unet_class, scheduler_class = _class_of(index.get("unet")), _class_of(index.get("scheduler"))
    if unet_class is None:
        found = ", ".join(k for k in index if not k.startswith("_")) or "nothing"
        raise PipelineError(f"{str(folder)!r}: the pipeline has no unet (it has {found}); promptgen reads unconditional UNet2DModel pipelines such as google/ddpm-cifar10-32")
    if unet_class != UNET:
        raise PipelineError(
            f"{str(folder)!r}: the pipeline's unet is a {unet_class}, a conditional or latent model; promptgen-plugin-diffusers "
            f"reads unconditional {UNET} pipelines (DDPMPipeline, DDIMPipeline) such as google/ddpm-cifar10-32"
        )
    if scheduler_class not in SCHEDULERS:
        raise PipelineError(
            f"{str(folder)!r}: unknown scheduler {scheduler_class!r}; promptgen samples with a DDIM built from a "
            f"{', '.join(SCHEDULERS)} configuration"
        )
    unet = _json(folder / "unet" / "config.json", "the pipeline's UNet configuration")
    if unet.get("_class_name") != UNET:
        raise PipelineError(f"{str(folder / 'unet' / 'config.json')!r} describes a {unet.get('_class_name')!r}, not a {UNET}")
    if unet.get("class_embed_type") is not None or unet.get("num_class_embeds") is not None:
        raise PipelineError(f"{str(folder)!r}: the UNet takes class labels (a class-conditional model); promptgen-plugin-diffusers reads unconditional ones")
    scheduler = _json(folder / "scheduler" / "scheduler_config.json", "the pipeline's noise schedule")
    if scheduler.get("_class_name") not in SCHEDULERS:
        raise PipelineError(f"{str(folder / 'scheduler' / 'scheduler_config.json')!r}: unknown scheduler {scheduler.get('_class_name')!r}; give one of {', '.join(SCHEDULERS)}")
    return unet, scheduler


def load_unet(folder: Path, config: dict[str, Any]) -> Any:
    """The UNet, built from its configuration and its weights loaded without running code from any file."""
    import torch
    from diffusers import UNet2DModel
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    legacy = folder / "unet" / "diffusion_pytorch_model.bin"
    try:
        unet = UNet2DModel.from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise PipelineError(f"{str(folder / 'unet' / 'config.json')!r} does not build a UNet2DModel ({one_line(str(exc))})") from None
    try:
        if weights.is_file():
            state = load_file(str(weights))
        elif legacy.is_file():
            state = load_torch_file(legacy, what="a diffusers UNet2DModel diffusion_pytorch_model.bin")
        else:
            raise PipelineError(f"{str(folder / 'unet')!r} has no weights (diffusion_pytorch_model.safetensors); save the pipeline again with save_pretrained")
    except WeightsFileError as exc:
        raise PipelineError(one_line(str(exc))) from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise PipelineError(f"{str(weights)!r} is damaged or truncated ({one_line(str(exc))}); download or save it again") from None
    try:
        missing, unexpected = unet.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not match the configuration
        raise PipelineError(f"the weights in {str(folder / 'unet')!r} do not fit its config.json ({one_line(str(exc))})") from None
    if missing or unexpected:
        names = [*missing[:2], *unexpected[:2]]
        raise PipelineError(
            f"the weights in {str(folder / 'unet')!r} do not fit its config.json: {len(missing)} missing and "
            f"{len(unexpected)} unexpected tensors (e.g. {', '.join(names)})"
        )
    if not all(bool(torch.isfinite(t).all()) for t in unet.state_dict().values() if t.is_floating_point()):
        raise PipelineError(f"the weights in {str(folder / 'unet')!r} hold NaN or infinite numbers; download or save them again")
    return unet.eval().requires_grad_(False)


def hub_folder(repo: str, revision: str | None) -> Path:
    """A hub pipeline's folder in the Hugging Face cache (downloaded if missing): the four files promptgen reads."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - a dependency of this plugin and of diffusers
        raise DownloadError("huggingface_hub is not installed; pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=HUB_FILES))
    except RepositoryNotFoundError:
        raise DownloadError(f"no model {repo!r} on the Hugging Face Hub (or it is private); check the id, e.g. google/ddpm-cifar10-32") from None
    except RevisionNotFoundError:
        raise DownloadError(f"the Hugging Face Hub model {repo!r} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        raise DownloadError(
            f"cannot download {repo!r} from the Hugging Face Hub (offline, or HF_HUB_OFFLINE=1 without it in the cache); "
            f"download it elsewhere with `hf download {repo}` and pass path= its folder"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise DownloadError(f"cannot download {repo!r} from the Hugging Face Hub ({one_line(str(exc))}); pass path= a local copy") from None
