"""DECA's coarse image encoder (``E_flame``) in plain PyTorch, with the parameter names of the official checkpoint.

The network is a ResNet-50 trunk without its classifier (a 2,048-d feature
after average pooling over the 7×7 map of a 224×224 input) followed by a
two-layer regressor 2,048 → 1,024 → 236, the FLAME parameters of the image in
DECA's order (:data:`LAYOUT`). The state dict's keys are those of
``deca_model.tar['E_flame']``: ``encoder.conv1.weight``,
``encoder.layer3.5.bn2.running_var``, ``layers.2.bias``...

Written from the architecture's description (He et al. 2016, the "v1.5"
bottleneck with the stride on the 3×3 convolution, as torchvision's), not
from DECA's code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: DECA's parameter vector, in order: name -> size (DECA's config: n_shape, n_tex, n_exp, n_pose, n_cam, n_light).
LAYOUT: dict[str, int] = {"shape": 100, "tex": 50, "exp": 50, "pose": 6, "cam": 3, "light": 27}
#: Length of the vector E_flame regresses.
N_PARAMS = sum(LAYOUT.values())
#: DECA's input side in pixels (``cfg.dataset.image_size``); the average pool assumes it.
INPUT_SIZE = 224
#: ResNet-50: bottleneck blocks per stage.
RESNET50_BLOCKS = (3, 4, 6, 3)


def param_slice(name: str) -> slice:
    """Where ``name`` (one of :data:`LAYOUT`) lies in the 236-d vector."""
    start = 0
    for key, size in LAYOUT.items():
        if key == name:
            return slice(start, start + size)
        start += size
    raise KeyError(name)


#: The global head rotation (axis-angle): the first three pose parameters.
GLOBAL_ROTATION = slice(param_slice("pose").start, param_slice("pose").start + 3)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, each with batch norm; identity or projected shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(y + shortcut)


class ResNetTrunk(nn.Module):
    """ResNet-50 up to the pooled 2,048-d feature (no classifier)."""

    def __init__(self, blocks: tuple[int, ...] = RESNET50_BLOCKS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, n in enumerate(blocks):
            width = 64 * 2**i
            stage = []
            for j in range(n):
                stage.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = 4 * width
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.n_stages = len(blocks)
        self.features = cin

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(x, 3, stride=2, padding=1)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        # DECA pools with a fixed 7×7 window (stride 1): one value per channel at 224 px.
        x = nn.functional.avg_pool2d(x, 7, stride=1)
        return x.flatten(1)


class FlameEncoder(nn.Module):
    """``E_flame``: (B, 3, 224, 224) RGB in [0, 1] -> (B, 236) FLAME parameters in DECA's :data:`LAYOUT`."""

    def __init__(self, outputs: int = N_PARAMS) -> None:
        super().__init__()
        self.encoder = ResNetTrunk()
        self.layers = nn.Sequential(nn.Linear(self.encoder.features, 1024), nn.ReLU(), nn.Linear(1024, outputs))

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(self.encoder(images))

    def global_rotation(self, images: Tensor) -> Tensor:
        """(B, 3) the head's global rotation as an axis-angle vector (radians)."""
        return self(images)[:, GLOBAL_ROTATION]
