"""ArcFace IR-SE50 in plain PyTorch, with the parameter names of ``model_ir_se50.pth``.

The network is the ``Backbone(50, drop_ratio, 'ir_se')`` of TreB1eN/InsightFace_Pytorch
(``model.py``): a 3×3 stem, 24 improved-residual units with squeeze-and-excitation
in four stages (3, 4, 14 and 3 units; 64, 128, 256, 512 channels; the first unit of
each stage halves the resolution), and a head that flattens the 512×7×7 map into a
512-d embedding of unit length. It takes (B, 3, 112, 112) faces in [-1, 1].

The module tree is laid out so that ``state_dict()`` has exactly the file's keys::

    input_layer.{0: conv, 1: bn, 2: prelu}
    body.N.shortcut_layer.{0: conv 1×1, 1: bn}        (units that change the width; else a strided identity)
    body.N.res_layer.{0: bn, 1: conv, 2: prelu, 3: conv, 4: bn, 5: se.fc1/se.fc2}
    output_layer.{0: bn2d, 1: dropout, 2: flatten, 3: linear 25088→512, 4: bn1d}
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: (input width, output width, units) of the four stages of IR-SE50.
STAGES_50: tuple[tuple[int, int, int], ...] = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))
INPUT_SIZE = 112
EMBEDDING = 512
#: The dropout of ``Backbone(50, 0.6, 'ir_se')``; it does nothing in eval mode, which is how the energy runs.
DROP_RATIO = 0.6


class SqueezeExcite(nn.Module):
    """Channel gates: global mean, 1×1 conv down by ``reduction``, ReLU, 1×1 conv up, sigmoid; no biases."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(gate))))
        return x * gate


class StridedIdentity(nn.Module):
    """The shortcut of a unit that keeps its width: every ``stride``-th pixel (a 1×1 max pool); no parameters."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x


class IRSEUnit(nn.Module):
    """One improved-residual unit with squeeze-and-excitation: BN, 3×3 conv, PReLU, 3×3 conv (strided), BN, SE; plus the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_in == c_out:
            self.shortcut_layer: nn.Module = StridedIdentity(stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            SqueezeExcite(c_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """(B, 3, 112, 112) faces in [-1, 1] -> (B, 512) embeddings of unit length."""

    def __init__(self, stages: tuple[tuple[int, int, int], ...] = STAGES_50, drop_ratio: float = DROP_RATIO) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units: list[nn.Module] = []
        for c_in, c_out, n in stages:
            units.append(IRSEUnit(c_in, c_out, 2))
            units.extend(IRSEUnit(c_out, c_out, 1) for _ in range(n - 1))
        self.body = nn.Sequential(*units)
        side = INPUT_SIZE // 2 ** len(stages)
        width = stages[-1][1]
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(width * side * side, EMBEDDING),
            nn.BatchNorm1d(EMBEDDING),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"IR-SE50 takes {INPUT_SIZE}×{INPUT_SIZE} faces, not {tuple(x.shape[-2:])}")
        e = self.output_layer(self.body(self.input_layer(x)))
        return e / e.norm(dim=1, keepdim=True)
