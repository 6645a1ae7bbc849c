"""OSNet (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019) in torch.

Written for this project with the module names of Torchreid's ``osnet.py``, so that a
Torchreid state dict (e.g. ``osnet_x0_25_msmt17.pth``) loads as is. Only the plain
(no instance norm) variants are built; the output in eval mode is the 512-d feature
(global average pool -> Linear -> BatchNorm1d -> ReLU), not the id classifier.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn
from torch.nn import functional as F

# width variants: channels of conv1 and of the three stages
WIDTHS: Dict[str, Sequence[int]] = {
    "osnet_x1_0": (64, 256, 384, 512),
    "osnet_x0_75": (48, 192, 288, 384),
    "osnet_x0_5": (32, 128, 192, 256),
    "osnet_x0_25": (16, 64, 96, 128),
}


class _ConvBN(nn.Module):
    """conv -> BatchNorm (-> ReLU); attribute names ``conv`` and ``bn`` as in Torchreid."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.act else x


class _LightConv(nn.Module):
    """Pointwise conv, then depthwise 3x3 conv, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, groups=cout)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class _Gate(nn.Module):
    """Channel gate shared by the four streams of a block (squeeze, excite, sigmoid)."""

    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // reduction, 1, bias=True)
        self.fc2 = nn.Conv2d(c // reduction, c, 1, bias=True)

    def forward(self, x):
        g = F.adaptive_avg_pool2d(x, 1)
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(g))))
        return x * g


class _OSBlock(nn.Module):
    """Omni-scale residual block: four streams of 1..4 light 3x3 convs, gated and summed."""

    def __init__(self, cin: int, cout: int, reduction: int = 4):
        super().__init__()
        mid = cout // reduction
        self.conv1 = _ConvBN(cin, mid, 1)
        self.conv2a = _LightConv(mid, mid)
        self.conv2b = nn.Sequential(*[_LightConv(mid, mid) for _ in range(2)])
        self.conv2c = nn.Sequential(*[_LightConv(mid, mid) for _ in range(3)])
        self.conv2d = nn.Sequential(*[_LightConv(mid, mid) for _ in range(4)])
        self.gate = _Gate(mid)
        self.conv3 = _ConvBN(mid, cout, 1, relu=False)
        self.downsample = _ConvBN(cin, cout, 1, relu=False) if cin != cout else None

    def forward(self, x):
        y = self.conv1(x)
        g = self.gate
        y = g(self.conv2a(y)) + g(self.conv2b(y)) + g(self.conv2c(y)) + g(self.conv2d(y))
        y = self.conv3(y)
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


def _stage(cin: int, cout: int, blocks: int, reduce: bool) -> nn.Sequential:
    layers = [_OSBlock(cin, cout)] + [_OSBlock(cout, cout) for _ in range(blocks - 1)]
    if reduce:
        layers.append(nn.Sequential(_ConvBN(cout, cout, 1), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    """OSNet feature extractor: float (N, 3, 256, 128) normalised RGB -> (N, feature_dim).

    Args:
        arch: one of ``WIDTHS``.
        feature_dim: size of the embedding layer (512 in the model zoo).
        num_classes: ids of the training set (the classifier is kept only so that a
            checkpoint with it loads strictly; 0 = no classifier).
    """

    def __init__(self, arch: str = "osnet_x0_25", feature_dim: int = 512, num_classes: int = 0):
        super().__init__()
        c = WIDTHS[arch]
        self.conv1 = _ConvBN(3, c[0], 7, stride=2, pad=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(c[0], c[1], 2, True)
        self.conv3 = _stage(c[1], c[2], 2, True)
        self.conv4 = _stage(c[2], c[3], 2, False)
        self.conv5 = _ConvBN(c[3], c[3], 1)
        self.fc = nn.Sequential(nn.Linear(c[3], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU())
        self.classifier = nn.Linear(feature_dim, num_classes) if num_classes else None
        self.feature_dim = feature_dim

    def forward(self, x):
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.maxpool(self.conv1(x))))))
        v = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(v)


def load_osnet(path, arch: str = "osnet_x0_25") -> OSNet:
    """Build ``arch`` and load a Torchreid checkpoint (state dict, or a dict with ``state_dict``), eval mode.

    Raises:
        ValueError: the file is not an OSNet state dict of that width (names the missing keys).
    """
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors: all "not a checkpoint"
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    classes = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 0
    dim = int(state["fc.0.weight"].shape[0]) if "fc.0.weight" in state else 512
    model = OSNet(arch, feature_dim=dim, num_classes=classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:2]
        raise ValueError(f"{path}: not an {arch} checkpoint ({' '.join(first)[:300]})") from None
    return model.eval()
