"""The cascade's three networks as plain ``nn.Module``s: P-Net, R-Net and FPNet.

Inputs are RGB crops normalised as MTCNN expects: ``(pixel - 127.5) / 128``, shape ``(N, 3, H, W)``.
P-Net and R-Net are MTCNN's (Zhang et al. 2016) in the layout of facenet-pytorch. FPNet is O-Net's
trunk with a fourth head that regresses the head's rotation in the 6D representation.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["PNet", "RNet", "FPNet", "FPNetOutput"]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC memory layout: the same tensor, about twice as fast through these small convolutions on CPU."""
    return x.contiguous(memory_format=torch.channels_last)


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten ``(N, C, H, W)`` in the (N, W, H, C) order that the converted Caffe dense layers expect."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal network, fully convolutional: a 12x12 window every 2 pixels.

    ``forward(x: (N, 3, H, W)) -> (face_prob (N, H', W'), box_offsets (N, 4, H', W'))`` with
    ``H' = ceil((H - 2) / 2) - 4``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.score = nn.Conv2d(32, 2, kernel_size=1)
        self.box = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(_channels_last(x))))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.score(x), dim=1)[:, 1], self.box(x)


class RNet(nn.Module):
    """Refinement network on 24x24 crops.

    ``forward(x: (N, 3, 24, 24)) -> (face_prob (N,), box_offsets (N, 4))``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.score = nn.Linear(128, 2)
        self.box = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(_channels_last(x))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_caffe_flatten(x)))
        return torch.softmax(self.score(x), dim=1)[:, 1], self.box(x)


class FPNetOutput(NamedTuple):
    """FPNet's four heads for ``N`` crops."""

    face_logits: torch.Tensor  # (N, 2) non-face / face logits
    box: torch.Tensor  # (N, 4) offsets of x1, y1, x2, y2 in units of the crop's size
    landmarks: torch.Tensor  # (N, 10) five x in [0, 1] then five y, relative to the crop
    sixd: torch.Tensor  # (N, 6) rotation in the 6D representation (see rotation.sixd_to_matrix)


class FPNet(nn.Module):
    """O-Net's trunk (conv 32-64-64-128, dense 256, PReLU) with four heads on 48x48 crops.

    Dropout sits before the heads (active in training only). With ``pose_head=False`` the module is
    exactly MTCNN's O-Net (``sixd`` is then an empty ``(N, 0)`` tensor).

    ``pose_hidden > 0`` adds a pose branch read by the rotation head only, next to the 256 shared units:
    ``pose_hidden`` dense units (PReLU) on the 1152 features of conv4, or with ``pose_channels > 0`` on
    a 2x2 convolution of its own (``pose_channels`` maps of 3x3) over the third pooling's 64x4x4 maps.
    Trained with the O-Net part frozen (``training.train --freeze-detection``), face score, box and
    landmarks stay O-Net's exactly and the branch gives the rotation head capacity of its own.
    """

    def __init__(self, dropout: float = 0.25, pose_head: bool = True, pose_hidden: int = 0,
                 pose_channels: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(256, 2)
        self.box = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)
        self.pose_hidden = pose_hidden if pose_head else 0
        self.pose_channels = pose_channels if self.pose_hidden else 0
        self.pose_conv = nn.Conv2d(64, self.pose_channels, kernel_size=2) if self.pose_channels else None
        self.pose_conv_prelu = nn.PReLU(self.pose_channels) if self.pose_channels else None
        branch_in = 9 * self.pose_channels if self.pose_channels else 1152
        self.pose_dense = nn.Linear(branch_in, self.pose_hidden) if self.pose_hidden else None
        self.pose_prelu = nn.PReLU(self.pose_hidden) if self.pose_hidden else None
        self.rotation = nn.Linear(256 + self.pose_hidden, 6) if pose_head else None
        if self.rotation is not None:
            reset_rotation_head(self.rotation)

    def _pooled3(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 48, 48) -> (N, 64, 4, 4)``: the first three convolutions and poolings."""
        x = self.pool1(self.prelu1(self.conv1(_channels_last(x))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        return self.pool3(self.prelu3(self.conv3(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 48, 48) -> (N, 256)``: the shared trunk."""
        return self.prelu5(self.dense5(_caffe_flatten(self.prelu4(self.conv4(self._pooled3(x))))))

    def forward(self, x: torch.Tensor) -> FPNetOutput:
        p3 = self._pooled3(x)
        c = _caffe_flatten(self.prelu4(self.conv4(p3)))
        f = self.dropout(self.prelu5(self.dense5(c)))
        if self.rotation is None:
            sixd = f.new_zeros(f.shape[0], 0)
        elif self.pose_dense is None:
            sixd = self.rotation(f)
        else:
            if self.pose_conv is not None:
                c = _caffe_flatten(self.pose_conv_prelu(self.pose_conv(p3)))
            sixd = self.rotation(torch.cat((f, self.dropout(self.pose_prelu(self.pose_dense(c)))), dim=1))
        return FPNetOutput(self.score(f), self.box(f), self.landmarks(f), sixd)

    def detection_parameters(self) -> list[nn.Parameter]:
        """O-Net's parameters: everything but the rotation head and the pose branch."""
        pose = {"rotation", "pose_dense", "pose_prelu", "pose_conv", "pose_conv_prelu"}
        return [p for name, p in self.named_parameters() if name.split(".")[0] not in pose]


def reset_rotation_head(layer: nn.Linear) -> None:
    """Small random weights and a bias of the identity's 6D vector: an untrained head says 'frontal'."""
    nn.init.normal_(layer.weight, std=1e-3)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
