"""Augmentation of normalised 48x48 crops: photometric (the pose and box labels stay valid), jitter, and
turns in the image plane cut from wider context crops (the rotation label turns with the crop).

Used with the O-Net detection teacher, which answers for the augmented crop itself, so every augmented
crop is a fresh, correctly labelled detection sample. The low-resolution step imitates the small,
blurred faces of crowd photos (R-Net proposals of 12-30 px upsampled to 48 px), where FPNet's face
scores drift furthest from O-Net's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from facepose.crops import rotate_crops
from facepose.rotation import matrix_to_sixd, sixd_to_matrix, turn_rotations

__all__ = ["augment_crops", "jitter_crops", "turn_crops", "turned_labels"]

_LOW, _HIGH = -127.5 / 128, 127.5 / 128  # the normalised range of 0..255


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def augment_crops(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Augment a random share ``p`` of the crops.

    Args:
        x: ``(N, 3, 48, 48)`` crops normalised as the cascade feeds them (``(v - 127.5) / 128``).
        gen: random generator (reproducible runs).
        p: probability that a crop is augmented at all; each chosen crop then gets, independently,
            low resolution (half of them; area-downscaled to 12-40 px and bilinearly upscaled back),
            contrast x0.6-1.4 and brightness +-0.25 (always), grey (one in ten) and pixel noise
            (one in five, sigma 0-0.04).

    Returns:
        ``(N, 3, 48, 48)``, a new tensor; crops not chosen are unchanged.
    """
    n, _, h, w = x.shape
    chosen = torch.rand(n, generator=gen) < p
    if not chosen.any():
        return x
    y = x[chosen].clone()
    m = len(y)
    low_res = torch.rand(m, generator=gen) < 0.5
    if low_res.any():
        size = int(torch.randint(12, 41, (1,), generator=gen))  # one size per batch keeps it one call
        small = F.interpolate(y[low_res], size=(size, size), mode="area")
        y[low_res] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(m, 0.6, 1.4, gen)[:, None, None, None]
    brightness = _uniform(m, -0.25, 0.25, gen)[:, None, None, None]
    y = (y - mean) * contrast + mean + brightness
    grey = torch.rand(m, generator=gen) < 0.1
    if grey.any():
        y[grey] = y[grey].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    noisy = torch.rand(m, generator=gen) < 0.2
    if noisy.any():
        sigma = _uniform(int(noisy.sum()), 0, 0.04, gen)[:, None, None, None]
        y[noisy] = y[noisy] + sigma * torch.randn(y[noisy].shape, generator=gen)
    out = x.clone()
    out[chosen] = y.clamp(_LOW, _HIGH)
    return out


def jitter_crops(x: torch.Tensor, gen: torch.Generator, shift: float = 0.06, zoom: float = 0.08) -> torch.Tensor:
    """Random small shifts (up to ``shift`` of the crop's side) and zooms (``1 +- zoom``) of every crop,
    as R-Net's boxes vary around a face; border pixels repeat. Moves the face: use only where no box or
    landmark target is learned (the head's rotation does not change).

    Args:
        x: ``(N, 3, H, W)`` crops.
    Returns:
        ``(N, 3, H, W)``.
    """
    n = len(x)
    scale = 1 + zoom * (2 * torch.rand(n, generator=gen) - 1)
    tx, ty = (shift * 2 * (2 * torch.rand(2, n, generator=gen) - 1))  # grid units: the side is 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def turn_crops(context: torch.Tensor, angles: torch.Tensor, gen: torch.Generator | None = None, shift: float = 0.0,
               zoom: float = 0.0, size: int = 48) -> torch.Tensor:
    """``size x size`` crops cut from wider crops (``facepose.crops.rotate_crops``), each turned counter-clockwise
    by ``angles (N,)`` degrees (the head's rotation becomes ``Rz(angle) R``, ``turned_labels``), with random
    shifts up to ``shift`` of the side and zooms ``1 +- zoom`` (as ``jitter_crops``) when ``gen`` is given.
    ``context``: ``(N, 3, S, S)`` 0-255 crops of each box grown ``S / size`` times, at the box's scale; where a
    window leaves it, the crop is black."""
    n = len(context)
    scale = shifts = None
    if gen is not None and (shift or zoom):
        scale = 1 + zoom * (2 * torch.rand(n, generator=gen) - 1)
        shifts = shift * 2 * (2 * torch.rand(n, 2, generator=gen) - 1)
    return rotate_crops(context, angles, size, scale, shifts)


def turned_labels(sixd: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """``(N, 6)`` head rotations -> the rotations of the same heads in the picture turned counter-clockwise by
    ``angles (N,)`` degrees: ``Rz(angle) R`` (``facepose.rotation.turn_rotations``), as 6D."""
    return matrix_to_sixd(turn_rotations(sixd_to_matrix(sixd), angles))
