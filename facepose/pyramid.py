"""The image pyramid that P-Net scans: which scales, and the resized levels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

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


def pyramid_level(image: torch.Tensor, scale: float) -> torch.Tensor:
    """``(1, 3, H, W)`` -> ``(1, 3, int(H * scale + 1), int(W * scale + 1))``, area-resampled."""
    h, w = image.shape[-2:]
    return F.interpolate(image, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
