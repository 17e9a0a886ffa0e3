"""The image pyramid that P-Net scans: which scales, and the resized levels."""
from __future__ import annotations

import numpy as np
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
    bin's exact integer sum divided by its height, then by its width, in float32), at a fifth of its time:
    each output pixel reads four sums instead of its whole bin (whole rows of sums first, then the columns
    of each), and the integral image is the one the later stages cut their crops from.
    """
    channels, height, width = ii.shape[0], ii.shape[-2] - 1, ii.shape[-1] - 1
    h, w = int(height * scale + 1), int(width * scale + 1)
    (r0, r1), (c0, c1) = ((b[0] for b in area_bins([0], [n], size)) for n, size in ((height, h), (width, w)))
    sums = ii.permute(1, 2, 0).reshape(height + 1, -1)  # a row of sums per image row, channels interleaved (a view)
    channel = np.arange(channels)
    if h * w < 10_000 and ii.device.type == "cpu":  # a small level: the same arithmetic in numpy, at a tenth of the calls' cost
        s = sums.numpy()
        rows = s[r1] - s[r0]
        total = rows[:, (c1[:, None] * channels + channel).ravel()] - rows[:, (c0[:, None] * channels + channel).ravel()]
        level = total.astype(np.float32) / (r1 - r0).astype(np.float32)[:, None]
        level /= np.repeat(c1 - c0, channels).astype(np.float32)[None]
        return torch.from_numpy(level).view(1, h, w, channels).permute(0, 3, 1, 2)
    rows = sums.index_select(0, _index(r1, ii)) - sums.index_select(0, _index(r0, ii))

    def columns(c: np.ndarray) -> torch.Tensor:  # gather is 2x faster than index_select along a row here
        return torch.gather(rows, 1, _index((c[:, None] * channels + channel).reshape(1, -1), ii).expand(h, -1))

    level = (columns(c1) - columns(c0)).float().div_(_index(r1 - r0, ii, torch.float32)[:, None])
    level.div_(_index(np.repeat(c1 - c0, channels)[None], ii, torch.float32))
    return level.view(1, h, w, channels).permute(0, 3, 1, 2)  # channels-last, standard strides: P-Net's fastest


def _index(values: np.ndarray, like: torch.Tensor, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """A numpy array as a tensor of ``dtype`` on ``like``'s device."""
    return torch.from_numpy(values).to(like.device, dtype)
