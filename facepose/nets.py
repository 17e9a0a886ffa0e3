"""The cascade's networks as plain ``nn.Module``s: P-Net, R-Net, FPNet, and the up/down check.

Inputs are RGB crops normalised as MTCNN expects: ``(pixel - 127.5) / 128``, shape ``(N, 3, H, W)``.
P-Net, R-Net and O-Net are MTCNN's (Zhang et al. 2016) in the layout of facenet-pytorch. FPNet, the
last stage that also tells the head's rotation (6D representation, see ``rotation.sixd_to_matrix``),
comes in two architectures, one class each:

- ``FPNet``: the thesis' network, O-Net whose last layer also outputs the 6 rotation numbers;
- ``FPNetBranch``: the shipped one, O-Net unchanged plus a small pose branch that only the rotation
  head reads, so it can be trained with O-Net frozen (detection stays MTCNN's bit for bit).

``UpDownNet`` checks a face cut upright by FPNet's orientation head: is it really upright, or upside down?

``ARCHITECTURES`` names the last stages; ``create_last_stage`` builds one from its name and sizes, as recorded in
a weights file's metadata.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PNet", "RNet", "ONet", "FPNet", "FPNetBranch", "FPNetOutput", "LastStageFeatures", "CascadeNets",
           "UpDownNet", "UPDOWN_WINDOW", "REQUIRED_NETS", "ARCHITECTURES", "create_last_stage", "face_probability", "select_rows",
           "reset_rotation_head"]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC memory layout: the same tensor, about twice as fast through these small convolutions on CPU."""
    return x.contiguous(memory_format=torch.channels_last)


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten ``(N, C, H, W)`` in the (N, W, H, C) order that the converted Caffe dense layers expect."""
    return x.permute(0, 3, 2, 1).flatten(1)


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``nn.MaxPool2d(2, 2, ceil_mode=True)`` on a channels-last ``(N, C, H, W)`` map, bit for bit: three
    elementwise maxima of strided views. 2.5-3.5x torch's kernel on P-Net's 10-channel maps of a large
    pyramid level (it computes indices too), slower on small ones."""
    n, c, height, width = x.shape
    h, w = height // 2, width // 2
    top = torch.empty((n, c, height - h, width - w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    bottom = torch.empty((n, c, h, width - w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    for rows, out in ((x[:, :, 0::2], top), (x[:, :, 1::2], bottom)):
        torch.maximum(rows[..., 0:2 * w:2], rows[..., 1::2], out=out[..., :w])
        if width % 2:  # ceil mode: the last window holds one column
            out[..., w:].copy_(rows[..., -1:])
    torch.maximum(top[:, :, :h], bottom, out=top[:, :, :h])
    return top


class PNet(nn.Module):
    """Proposal network, fully convolutional: a 12x12 window every 2 pixels.

    ``forward(x: (N, 3, H, W)) -> (face_prob (N, H', W'), box_offsets (N, 4, H', W'))`` with
    ``H' = ceil((H - 2) / 2) - 4``.
    """

    arch = "pnet"

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
        x = self.prelu1(self.conv1(_channels_last(x)))
        fast = x.shape[-2] * x.shape[-1] >= 10_000 and not x.requires_grad and not torch.onnx.is_in_onnx_export()
        x = _max_pool_2x2(x) if fast else self.pool1(x)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.score(x), dim=1)[:, 1], self.box(x)


class RNet(nn.Module):
    """Refinement network on 24x24 crops.

    ``forward(x: (N, 3, 24, 24)) -> (face_prob (N,), box_offsets (N, 4))``.
    """

    arch = "rnet"

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
    """The last stage's four heads for ``N`` crops."""

    face_logits: torch.Tensor  # (N, 2) non-face / face logits
    box: torch.Tensor  # (N, 4) offsets of x1, y1, x2, y2 in units of the crop's size
    landmarks: torch.Tensor  # (N, 10) five x in [0, 1] then five y, relative to the crop
    sixd: torch.Tensor  # (N, 6) rotation in the 6D representation, (N, 0) for plain O-Net


class LastStageFeatures(NamedTuple):
    """What the last stage's heads read for ``N`` crops: O-Net's second and third poolings and its 256
    units. Indexing every field alike selects crops (``select_rows``)."""

    pooled2: torch.Tensor  # (N, 64, 10, 10)
    pooled3: torch.Tensor  # (N, 64, 4, 4)
    units: torch.Tensor  # (N, 256), dropout applied


def select_rows(batch: NamedTuple, index: torch.Tensor):
    """The same named tuple of ``(N, ...)`` tensors for the rows ``index`` (bool mask or indices) only."""
    return type(batch)(*(t[index] for t in batch))


def replace_rows(batch: NamedTuple, index: torch.Tensor, rows: NamedTuple):
    """A copy of the named tuple of ``(N, ...)`` tensors ``batch`` whose rows ``index`` (indices) are ``rows``'."""
    out = type(batch)(*(t.clone() for t in batch))
    for t, r in zip(out, rows):
        t[index] = r
    return out


def face_probability(face_logits: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` non-face / face logits -> ``(N,)`` probability of "face"."""
    return torch.softmax(face_logits, dim=1)[:, 1]


class ONet(nn.Module):
    """MTCNN's output network on 48x48 crops: conv 32-64-64-128, dense 256, PReLU, and the score, box
    and landmark heads. Dropout sits before the heads (active in training only).

    ``forward(x: (N, 3, 48, 48)) -> FPNetOutput`` with an empty ``(N, 0)`` ``sixd``.
    """

    arch = "onet"

    def __init__(self, dropout: float = 0.25) -> None:
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

    @property
    def has_rotation(self) -> bool:
        """Whether this network outputs a rotation."""
        return False

    def sizes(self) -> dict[str, int]:
        """The architecture's sizes, as ``create_last_stage`` takes them (recorded in weights files)."""
        return {}

    def _pooled2(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 48, 48) -> (N, 64, 10, 10)``: the first two convolutions and poolings."""
        x = self.pool1(self.prelu1(self.conv1(_channels_last(x))))
        return self.pool2(self.prelu2(self.conv2(x)))

    def _pool3_from(self, p2: torch.Tensor) -> torch.Tensor:
        """``(N, 64, 10, 10) -> (N, 64, 4, 4)``: the third convolution and pooling."""
        return self.pool3(self.prelu3(self.conv3(p2)))

    def _trunk(self, p3: torch.Tensor) -> torch.Tensor:
        """``(N, 64, 4, 4) -> (N, 256)``: conv4 and the dense layer, dropout applied."""
        return self.dropout(self.prelu5(self.dense5(_caffe_flatten(self.prelu4(self.conv4(p3))))))

    def features(self, x: torch.Tensor) -> LastStageFeatures:
        """``(N, 3, 48, 48)`` crops -> what the heads read (``detection`` and ``rotation_6d``)."""
        p2 = self._pooled2(x)
        p3 = self._pool3_from(p2)
        return LastStageFeatures(p2, p3, self._trunk(p3))

    def detection(self, f: LastStageFeatures) -> FPNetOutput:
        """Face score, box and landmarks from ``features``; ``sixd`` left empty ``(N, 0)``."""
        u = f.units
        return FPNetOutput(self.score(u), self.box(u), self.landmarks(u), u.new_zeros(u.shape[0], 0))

    def rotation_6d(self, f: LastStageFeatures) -> torch.Tensor:
        """``(N, 6)`` rotation from ``features`` (``(N, 0)`` for O-Net). The cascade asks it only for the
        faces that pass the face score and NMS: a pose branch costs nothing on the other crops."""
        return f.units.new_zeros(f.units.shape[0], 0)

    @property
    def has_orientation(self) -> bool:
        """Whether ``in_plane`` tells how far a face leans in its crop (an orientation head)."""
        return False

    def in_plane(self, f: LastStageFeatures) -> torch.Tensor:
        """``(N,)`` degrees: how far each face leans in its crop, clockwise as displayed (``rotation.in_plane_angle``
        of its head), from an orientation head that learnt crops at any roll; zeros without one."""
        return f.units.new_zeros(f.units.shape[0])

    def forward(self, x: torch.Tensor) -> FPNetOutput:
        f = self.features(x)
        return self.detection(f)._replace(sixd=self.rotation_6d(f))

    def detection_parameters(self) -> list[nn.Parameter]:
        """O-Net's own parameters: everything but what a rotation needs."""
        return [p for name, p in self.named_parameters() if not name.startswith(("rotation.", "pose_", "orient_"))]


class FPNet(ONet):
    """The thesis' FPNet: O-Net whose last layer also outputs the rotation, 6 numbers read from the
    same 256 units as the score, box and landmarks.

    ``forward(x: (N, 3, 48, 48)) -> FPNetOutput`` with ``sixd (N, 6)``.
    """

    arch = "fpnet"

    def __init__(self, dropout: float = 0.25) -> None:
        super().__init__(dropout)
        self.rotation = nn.Linear(256, 6)
        reset_rotation_head(self.rotation)

    @property
    def has_rotation(self) -> bool:
        return True

    def rotation_6d(self, f: LastStageFeatures) -> torch.Tensor:
        return self.rotation(f.units)


class FPNetBranch(ONet):
    """The shipped FPNet: O-Net unchanged plus a pose branch read by the rotation head only.

    The branch is a 2x2 convolution of its own (``pose_channels`` maps of 3x3) over the third pooling's
    64x4x4 maps, then ``pose_hidden`` dense units (PReLU). With ``pose_early`` > 0 it also reads finer
    maps: a 3x3 convolution with ``pose_early`` maps over the second pooling's 64x10x10 (PReLU, 2x2 max
    pooling to 4x4), stacked on the third pooling's maps before the branch's 2x2 convolution. The rotation
    head reads the branch's units and O-Net's 256. Trained with the O-Net part frozen, face score, box and
    landmarks stay O-Net's exactly.

    With ``orient_hidden`` > 0 an orientation head of its own (a 3x3 convolution over the second pooling,
    pooled and stacked on the third pooling's maps, a 2x2 convolution, ``orient_hidden`` dense units, and a
    2-vector with O-Net's 256 units) tells how far the face leans in its crop at any roll (``in_plane``): the
    pose branch stays the upright expert, and the cascade cuts a leaning face again, turned upright, for it.

    ``forward(x: (N, 3, 48, 48)) -> FPNetOutput`` with ``sixd (N, 6)``.
    """

    arch = "fpnet_branch"

    def __init__(self, pose_channels: int = 64, pose_hidden: int = 96, pose_early: int = 0,
                 orient_hidden: int = 0, dropout: float = 0.25) -> None:
        super().__init__(dropout)
        if pose_channels < 1 or pose_hidden < 1 or pose_early < 0:
            raise ValueError("the pose branch needs at least one map and unit (and no negative early maps), "
                             f"got {pose_channels}, {pose_hidden}, {pose_early}")
        self.pose_channels, self.pose_hidden, self.pose_early = int(pose_channels), int(pose_hidden), int(pose_early)
        if pose_early:
            self.pose_early_conv = nn.Conv2d(64, pose_early, kernel_size=3)
            self.pose_early_prelu = nn.PReLU(pose_early)
            self.pose_early_pool = nn.MaxPool2d(2, 2)
        self.pose_conv = nn.Conv2d(64 + pose_early, pose_channels, kernel_size=2)
        self.pose_conv_prelu = nn.PReLU(pose_channels)
        self.pose_dense = nn.Linear(9 * pose_channels, pose_hidden)
        self.pose_prelu = nn.PReLU(pose_hidden)
        self.rotation = nn.Linear(256 + pose_hidden, 6)
        reset_rotation_head(self.rotation)
        self.orient_hidden = int(orient_hidden)
        if orient_hidden:
            self.orient_early_conv = nn.Conv2d(64, 32, kernel_size=3)
            self.orient_early_prelu = nn.PReLU(32)
            self.orient_conv = nn.Conv2d(64 + 32, 48, kernel_size=2)
            self.orient_conv_prelu = nn.PReLU(48)
            self.orient_dense = nn.Linear(9 * 48, orient_hidden)
            self.orient_prelu = nn.PReLU(orient_hidden)
            self.orient_out = nn.Linear(256 + orient_hidden, 2)

    @property
    def has_rotation(self) -> bool:
        return True

    @property
    def has_orientation(self) -> bool:
        return self.orient_hidden > 0

    def sizes(self) -> dict[str, int]:
        sizes = {"pose_channels": self.pose_channels, "pose_hidden": self.pose_hidden}
        sizes = {**sizes, "pose_early": self.pose_early} if self.pose_early else sizes
        return {**sizes, "orient_hidden": self.orient_hidden} if self.orient_hidden else sizes

    def orientation_vector(self, f: LastStageFeatures) -> torch.Tensor:
        """``(N, 2)``: the orientation head's (cos, sin) of the lean, unnormalised."""
        early = F.max_pool2d(self.orient_early_prelu(self.orient_early_conv(f.pooled2)), 2)
        maps = self.orient_conv_prelu(self.orient_conv(torch.cat((f.pooled3, early), dim=1)))
        hidden = self.orient_prelu(self.orient_dense(_caffe_flatten(maps)))
        return self.orient_out(torch.cat((f.units, hidden), dim=1))

    def in_plane(self, f: LastStageFeatures) -> torch.Tensor:
        if not self.orient_hidden:
            return super().in_plane(f)
        v = self.orientation_vector(f)
        return torch.atan2(v[:, 1], v[:, 0]) * (180 / math.pi)  # rad2deg has no ONNX export

    def rotation_6d(self, f: LastStageFeatures) -> torch.Tensor:
        pose_in = f.pooled3
        if self.pose_early:
            early = self.pose_early_pool(self.pose_early_prelu(self.pose_early_conv(f.pooled2)))
            pose_in = torch.cat((pose_in, early), dim=1)
        branch = self.pose_dense(_caffe_flatten(self.pose_conv_prelu(self.pose_conv(pose_in))))
        return self.rotation(torch.cat((f.units, self.dropout(self.pose_prelu(branch))), dim=1))

    def load_smaller_branch(self, state: dict[str, torch.Tensor]) -> None:
        """Start from a trained ``FPNetBranch`` without early maps (``state``, same other sizes): every
        weight copied, the early maps' weights in the branch's 2x2 convolution zero, so the output is that
        network's exactly until training moves them."""
        own = self.state_dict()
        conv = own["pose_conv.weight"].zero_()
        conv[:, :state["pose_conv.weight"].shape[1]] = state["pose_conv.weight"]
        missing, unexpected = self.load_state_dict({**state, "pose_conv.weight": conv}, strict=False)
        if unexpected or any(not k.startswith("pose_early_") for k in missing):
            raise ValueError(f"not a smaller FPNetBranch: missing {missing}, unexpected {unexpected}")


ARCHITECTURES: dict[str, type[ONet]] = {cls.arch: cls for cls in (ONet, FPNet, FPNetBranch)}


def create_last_stage(arch: str, dropout: float = 0.25, **sizes: Any) -> ONet:
    """The last-stage network named ``arch`` ("onet", "fpnet" or "fpnet_branch") with ``sizes``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown last-stage architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](dropout=dropout, **sizes)


class UpDownNet(nn.Module):
    """Is a face crop upright or upside down? A small CNN trained from scratch (``training.updown``).

    Input: ``(N, 3, 48, 48)`` normalised crops of a face's box grown 1.5 times (``UPDOWN_WINDOW``), turned so that
    FPNet's orientation head sees the face upright, area-resized to 48x48 and black outside the inscribed disk
    (the same at any turn: ``cascade.updown_crops``). Output: ``(N,)`` logits that the face is upright as cut
    (below 0: upside down). It sees more of the head than FPNet's crop (hair, chin, neck), which is where up
    and down show when the face alone looks alike both ways.
    """

    arch = "updown"

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.width = width

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                                 nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

        self.b1, self.b2 = block(3, width), block(width, 2 * width)
        self.b3, self.b4 = block(2 * width, 4 * width), block(4 * width, 8 * width)
        self.fc = nn.Linear(8 * width * 3 * 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in (self.b1, self.b2, self.b3, self.b4):  # 48 -> 24 -> 12 -> 6 -> 3
            x = F.max_pool2d(block(x), 2)
        return self.fc(x.flatten(1)).squeeze(1)


UPDOWN_WINDOW = 1.5  # UpDownNet sees the face's square box grown this much


class CascadeNets(NamedTuple):
    """The cascade's networks, by name; ``updown`` (the up/down check) may be absent."""

    pnet: PNet
    rnet: RNet
    fpnet: ONet
    updown: UpDownNet | None = None


REQUIRED_NETS = ("pnet", "rnet", "fpnet")  # every detector has these; ``updown`` is optional


def reset_rotation_head(layer: nn.Linear) -> None:
    """Small random weights and a bias of the identity's 6D vector: an untrained head says 'frontal'."""
    nn.init.normal_(layer.weight, std=1e-3)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
