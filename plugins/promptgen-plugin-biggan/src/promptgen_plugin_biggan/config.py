"""``config.json`` of a BigGAN-deep checkpoint in the pytorch-pretrained-BigGAN format, checked with pydantic.

The official files (``biggan-deep-{128,256,512}-config.json``) hold exactly
these nine keys. A config with other keys (another architecture's, e.g. a
transformer's ``vocab_size``) or with a layer plan the network cannot be built
from is refused in one line by :func:`read_config`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from promptgen import plugin


class ConfigError(plugin.PromptgenError):
    """A config.json that is not a BigGAN-deep configuration."""


class BigGANConfig(BaseModel):
    """The architecture of a BigGAN-deep generator.

    ``layers``: one ``(upsample, in, out)`` per residual block, channels as
    multiples of ``channel_width``; the first block takes ``16 × channel_width``
    channels (what ``gen_z`` makes) and the last gives ``1 × channel_width``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    output_dim: int = Field(gt=0)
    z_dim: int = Field(gt=0)
    class_embed_dim: int = Field(gt=0)
    channel_width: int = Field(gt=0)
    num_classes: int = Field(gt=0)
    # Bounds on what sets how many modules are built (the official models have 13 to 16 layers and
    # at most 1,000 classes, 128 channels a width): far above those, small enough to build at once.
    layers: tuple[tuple[bool, int, int], ...] = Field(min_length=1, max_length=64)
    attention_layer_position: int
    eps: float = Field(gt=0)
    n_stats: int = Field(ge=2)

    @pydantic.model_validator(mode="after")
    def _buildable(self) -> BigGANConfig:
        ch = self.channel_width
        if self.layers[0][1] != 16:
            raise ValueError(f"layers[0] must take 16 channel widths (what gen_z makes), not {self.layers[0][1]}")
        if self.layers[-1][2] != 1:
            raise ValueError(f"the last layer must give 1 channel width, not {self.layers[-1][2]}")
        if ch < 3:
            raise ValueError(f"channel_width {ch} is less than the 3 colour channels")
        for i, (_, cin, cout) in enumerate(self.layers):
            if cin <= 0 or cout <= 0 or (cout != cin and 2 * cout != cin):
                raise ValueError(f"layers[{i}] goes from {cin} to {cout} channel widths; a block keeps or halves them")
            if (ch * cin) // 4 == 0:
                raise ValueError(f"layers[{i}] has fewer than 4 channels")
            if i > 0 and self.layers[i - 1][2] != cin:
                raise ValueError(f"layers[{i}] takes {cin} channel widths but layers[{i - 1}] gives {self.layers[i - 1][2]}")
        if 0 <= self.attention_layer_position < len(self.layers) and (ch * self.layers[self.attention_layer_position][1]) // 8 == 0:
            raise ValueError("the attention layer has fewer than 8 channels")
        expected = 4 * 2 ** sum(up for up, _, _ in self.layers)
        if self.output_dim != expected:
            raise ValueError(f"output_dim {self.output_dim} does not match the layers, which upsample 4 px to {expected} px")
        return self

    @property
    def has_attention(self) -> bool:
        return 0 <= self.attention_layer_position < len(self.layers)


def parse_config(data: object, source: str) -> BigGANConfig:
    """A :class:`BigGANConfig` from parsed JSON, or the one-line :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} is not a BigGAN-deep config (a JSON object with output_dim, layers, ...)")
    try:
        return BigGANConfig.model_validate(data)
    except pydantic.ValidationError as e:
        errs = e.errors()
        extra = sorted(str(err["loc"][0]) for err in errs if err["type"] == "extra_forbidden")
        if extra:
            raise ConfigError(
                f"{source} is not a BigGAN-deep config (keys {', '.join(extra[:4])} are not BigGAN's); "
                "give the config.json of a pytorch-pretrained-BigGAN model"
            ) from None
        err = errs[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(plugin.one_line(f"{source}: {where}: {msg}; not a BigGAN-deep config this plugin can build")) from None


def read_config(path: str | Path) -> BigGANConfig:
    """Read and check ``config.json``."""
    path = Path(path)
    source = repr(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {source}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source} is not a text file; config.json should be JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source} is not valid JSON ({e.msg} at line {e.lineno}); download it again") from None
    return parse_config(data, source)


def to_json(config: BigGANConfig) -> str:
    """The config as pytorch-pretrained-BigGAN writes it (``json.dumps(indent=2, sort_keys=True)``)."""
    data = config.model_dump()
    data["layers"] = [list(layer) for layer in config.layers]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


#: The official configurations (pytorch_pretrained_biggan/convert_tf_to_pytorch.py: BigGAN128/256/512).
_STEM = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8)]
_TAIL = [(True, 4, 2), (False, 2, 2), (True, 2, 1)]
OFFICIAL: dict[int, BigGANConfig] = {
    res: BigGANConfig(
        output_dim=res, z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000,
        layers=tuple(layers), attention_layer_position=8, eps=1e-4, n_stats=51,
    )
    for res, layers in {
        128: [*_STEM, (True, 8, 4), (False, 4, 4), *_TAIL],
        256: [*_STEM, (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), *_TAIL],
        512: [*_STEM, (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), *_TAIL, (False, 1, 1), (True, 1, 1)],
    }.items()
}
