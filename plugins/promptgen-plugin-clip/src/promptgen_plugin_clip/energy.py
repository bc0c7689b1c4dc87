"""The ``clip`` energy: ``E(x) = 1 − cos(CLIP_image(aug(x)), CLIP_text(t))``, averaged over augmentations.

Spec::

    clip:"a smiling face"                       one text (quote it in the shell if it has a comma)
    clip:smiling,laughing                       several texts: their similarities are averaged
    clip:smiling,template="a photo of {} person"   each text put into the template ("|" separates several)
    'clip:"smiling"-"blurry"'                   a negative text raises the energy: E = 1 − cos(+) + cos(−)
    clip:smiling,neg=blurry                     the same, as an option (repeatable)
    clip:smiling,model=ViT-L-14,pretrained=laion2b_s32b_b82k
    clip:smiling,model=ViT-B-32*0.6+RN50*0.4    several CLIP models, their energies weighted (pretrained= by default)
    clip:smiling,model=ViT-B-16/openai+ViT-B-32/laion2b_s34b_b79k   a tag per model
    clip:smiling,path=my_clip.pt                a local checkpoint for the model
    clip:smiling,augs=50,aug=color+translation  augmentations: how many per image, which
    clip:smiling,dtype=bfloat16                 the image tower's dtype (float32 by default)

The options are declared by :class:`~promptgen_plugin_clip.options.ClipOptions`
and checked by the core; the texts and ``neg=`` reach :func:`build_clip_energy`
in the spec. The text features are computed once, when the energy is built,
and kept: the text tower never runs during training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from promptgen.plugin import AttributeTarget, Registry, Spec, SpecError, closest
from promptgen_plugin_clip.augment import augment, parse_policy
from promptgen_plugin_clip.models import Preprocess, load_clip
from promptgen_plugin_clip.options import DEFAULT_AUGS, DEFAULT_MODEL, DEFAULT_PRETRAINED, ClipOptions

#: The paper weighted its CLIP energy 1000 against the unit-weight prior (its
#: FFHQ configs; ``1 − cos`` moves by a few hundredths between matching and
#: non-matching images, so the weight must be large to matter).
DEFAULT_WEIGHT = 1000.0
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: The one argument besides the options and the texts: a negative text (repeatable).
NEG = "neg"

__all__ = ["DEFAULT_AUGS", "DEFAULT_MODEL", "DEFAULT_PRETRAINED", "DEFAULT_WEIGHT", "ClipEnergy", "ClipOptions", "build_clip_energy"]


@dataclass(frozen=True)
class ModelChoice:
    """One CLIP model of the energy and its share of it."""

    name: str
    pretrained: str
    weight: float = 1.0


class ClipComponent(nn.Module):
    """One CLIP model with its preprocessing and the (fixed) features of the texts."""

    def __init__(self, model: nn.Module, tokenizer, texts: Sequence[str], negatives: Sequence[str], dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.preprocess = Preprocess.of(model)
        self.dtype = dtype
        self.text_encoder_calls = 0
        feats = self.encode_texts(tokenizer, [*texts, *negatives])  # one pass of the text tower for the whole run
        self.register_buffer("positive", feats[: len(texts)])
        self.register_buffer("negative", feats[len(texts) :])
        self.model.visual.to(dtype)

    @torch.no_grad()
    def encode_texts(self, tokenizer, texts: Sequence[str]) -> Tensor:
        """Unit text embeddings (T, D); called at construction only."""
        self.text_encoder_calls += 1
        return F.normalize(self.model.encode_text(tokenizer(list(texts))).float(), dim=-1)

    def image_features(self, x: Tensor) -> Tensor:
        """Unit image embeddings of images already resized to the model's size."""
        x = self.preprocess.normalise(x).to(self.dtype)
        return F.normalize(self.model.encode_image(x).float(), dim=-1)


class ClipEnergy:
    """``1 − mean_t cos(image, t) + mean_n cos(image, n)``, averaged over augmentations and models.

    Args:
        components: (CLIP component, weight) pairs; weights are normalised to sum to 1.
        augs: augmented copies per image (1 with an empty ``policy``: the image itself).
        policy: which augmentations (see :mod:`.augment`).
        label: text for logs.
        seed: seed of the augmentations' random numbers; None (the default) draws them from
            torch's global generator, which compose seeds and a checkpoint restores, so a
            resumed run draws the augmentations the uninterrupted one would have.
    """

    def __init__(self, components: Sequence[tuple[ClipComponent, float]], augs: int, policy: Sequence[str], label: str, seed: int | None = None) -> None:
        total = sum(w for _, w in components)
        self.components = [(c, w / total) for c, w in components]
        self.augs = augs if policy else 1
        self.policy = tuple(policy)
        self.label = label
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    @property
    def text_encoder_calls(self) -> int:
        """How many times any text tower ran (once per text list per model, at construction)."""
        return sum(c.text_encoder_calls for c, _ in self.components)

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        b = images.shape[0]
        total = images.new_zeros(b)
        for comp, w in self.components:
            x = comp.preprocess.resize(images.float())
            if self.policy:
                x = augment(x, self.augs, self.policy, self.generator)
            feats = comp.image_features(x)  # (B·n, D)
            e = 1 - (feats @ comp.positive.T).mean(1)
            if comp.negative.shape[0]:
                e = e + (feats @ comp.negative.T).mean(1)
            total = total + w * e.view(b, -1).mean(1)
        return total

    def targets(self) -> list[AttributeTarget]:
        return []

    def lower_bound(self) -> float:
        # 1 − cos ≥ 0; a negative text can lower it by at most 1.
        return -1.0 if any(c.negative.shape[0] for c, _ in self.components) else 0.0

    def to(self, device: torch.device | str) -> ClipEnergy:
        for c, _ in self.components:
            c.to(device)
        return self


# --- the spec -----------------------------------------------------------------------------------------------


def _texts_of(spec: Spec) -> tuple[list[str], list[str]]:
    pos: list[str] = []
    neg: list[str] = []
    for arg in spec.args:
        if arg.key == NEG:
            neg.append(arg.value)
            continue
        if arg.key is not None:
            continue
        sign = "+"
        for piece in arg.pieces:
            text = piece.text if piece.quoted else piece.text.strip()
            if not piece.quoted and text and set(text) <= {"+", "-"}:
                sign = text[-1]
                continue
            if not text:
                continue
            (neg if sign == "-" else pos).append(text)
            sign = "+"
    return pos, neg


def _models_of(spec: Spec, value: str, pretrained: str) -> list[ModelChoice]:
    out = []
    for part in value.split("+"):
        part = part.strip()
        weight = 1.0
        if "*" in part:
            part, w = part.rsplit("*", 1)
            try:
                weight = float(w)
            except ValueError:
                weight = -1.0
            if not weight > 0:
                raise SpecError(f"{spec.format()!r}: model weight {w!r} must be a positive number, e.g. model=ViT-B-32*0.7+RN50*0.3")
        name, _, tag = part.partition("/")
        if not name:
            raise SpecError(f"{spec.format()!r}: empty model name in model={value!r}; write model=ViT-B-32 or model=ViT-B-32/openai*0.5+RN50*0.5")
        out.append(ModelChoice(name.strip(), tag.strip() or pretrained, weight))
    return out


def _check_arguments(spec: Spec) -> None:
    """Refuse keys that are neither an option (the core checked those) nor ``neg``."""
    for arg in spec.args:
        if arg.key is None or arg.key in ClipOptions.model_fields:
            continue
        if arg.key != NEG:
            known = [*ClipOptions.model_fields, NEG]
            near = closest(arg.key, known)
            hint = f"did you mean {near[0]!r}?" if near else f"clip takes {', '.join(known)}"
            raise SpecError(f"{spec.format()!r}: unknown option {arg.key!r}; {hint}")
        if arg.op != "=":
            raise SpecError(f"{spec.format()!r}: {arg.key}!= is not an option; use {arg.key}=VALUE")


def build_clip_energy(spec: Spec, options: ClipOptions, registry: Registry | None = None) -> ClipEnergy:
    """Build ``clip:TEXT[,TEXT...][,neg=TEXT...][,option=value...]`` (see the module docstring).

    ``options``: the spec's options, checked by the core against :class:`ClipOptions`.
    """
    import open_clip

    _check_arguments(spec)
    pos, neg = _texts_of(spec)
    if not pos:
        raise SpecError(f'{spec.format()!r}: give the text to aim for, e.g. clip:"a smiling face" (negatives alone are not a target)')
    templates = [t.strip() for t in options.template.split("|")]
    for t in templates:
        if "{}" not in t:
            raise SpecError(f"{spec.format()!r}: template {t!r} has no {{}} for the text; write template=\"a photo of {{}}\"")
    pos = [t.replace("{}", p) for p in pos for t in templates]
    neg = [t.replace("{}", n) for n in neg for t in templates]
    try:
        policy = parse_policy(options.aug)
    except ValueError as e:
        raise SpecError(f"{spec.format()!r}: {e}") from None
    models = _models_of(spec, options.model, options.pretrained)
    if options.path is not None and len(models) > 1:
        raise SpecError(f"{spec.format()!r}: path= gives one checkpoint; use it with one model")
    components = []
    for m in models:
        model = load_clip(m.name, m.pretrained, options.path)
        tokenizer = open_clip.get_tokenizer(m.name)
        components.append((ClipComponent(model, tokenizer, pos, neg, DTYPES[options.dtype]), m.weight))
    return ClipEnergy(components, options.augs, policy, label=spec.with_weight(None).format())
