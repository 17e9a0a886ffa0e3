"""The image pyramid that P-Net scans: which scales, and the resized levels."""
from __future__ import annotations

import torch

from .crops import area_bins

__all__ = ["pyramid_scales", "pyramid_level"]


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """MTCNN's scales: the first maps a ``min_face_size`` face to P-Net's 12 px window; each next one
    is ``factor`` times smaller, while the short side stays at least 12 px."""
    if not 0 < factor < 1:
        raise ValueError(f"pyramid factor must be in (0, 1), got {factor}")
    if min_face_size <= 0:
        raise ValueError(f"min_face_size must be positive, got {min_face_size}")
    scale = 12.0 / min_face_size
    short = min(height, width) * scale
    scales = []
    while short >= 12:
        scales.append(scale)
        scale *= factor
        short *= factor
    return scales


def pyramid_level(ii: torch.Tensor, scale: float) -> torch.Tensor:
    """The image of integral image ``ii`` (``(3, H + 1, W + 1)``, ``crops.integral_image``) area-resampled
    to ``(1, 3, int(H * scale + 1), int(W * scale + 1))`` float 0-255.

    Bit for bit ``F.interpolate(image, size, mode="area")`` (adaptive average pooling: the same bins, the
    bin's exact integer sum divided by its height, then by its width, in float32), at a third of its time:
    each output pixel reads four sums instead of its whole bin, and the integral image is the one the
    later stages cut their crops from.
    """
    height, width = ii.shape[-2] - 1, ii.shape[-1] - 1
    r0, r1 = (torch.from_numpy(b[0]).to(ii.device) for b in area_bins([0], [height], int(height * scale + 1)))
    c0, c1 = (torch.from_numpy(b[0]).to(ii.device) for b in area_bins([0], [width], int(width * scale + 1)))
    sums = ii.permute(1, 2, 0)  # (H + 1, W + 1, 3), contiguous for integral_image's output
    rows = sums.index_select(0, r1) - sums.index_select(0, r0)
    total = rows.index_select(1, c1) - rows.index_select(1, c0)
    level = total.float() / (r1 - r0).float()[:, None, None] / (c1 - c0).float()[None, :, None]
    return level[None].permute(0, 3, 1, 2)  # channels-last with the standard strides, as P-Net reads it fastest
