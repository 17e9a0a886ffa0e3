"""Cutting box crops out of an image and resizing them, all boxes at once.

Resizing is area averaging (``F.interpolate(mode="area")``, i.e. adaptive average pooling), done
for every crop in one gather from the image's integral image, so the result equals resizing each crop
separately, as MTCNN implementations do in a Python loop.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .arrays import Array, as_like, kind_of, namespace, to_numpy

__all__ = ["integral_image", "area_bins", "crop_windows", "crop_resize", "cut_crops", "padded_crops", "padded_crops_from",
           "CONTEXT", "grown", "rotate_crops", "turned_crops", "disk_crops", "turn_about", "crops_to_uint8"]


def integral_image(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` integer pixel values 0-255 -> ``(3, H + 1, W + 1)`` exact running sums.

    int32 while the image's total fits (up to 8.4 MP), else int64; row 0 and column 0 are zero. Held
    channels-last in memory (``ii.permute(1, 2, 0)`` is contiguous): a pixel's three sums sit together,
    so crops and pyramid levels gather them at once and come out channels-last. Fastest for an image
    that is itself channels-last in memory (as ``FacePoseDetector`` makes it from an ``H x W x 3`` array).
    """
    c, h, w = image.shape
    dtype = torch.int32 if h * w * 255 < 2**31 else torch.int64
    ii = torch.zeros(h + 1, w + 1, c, dtype=dtype, device=image.device)
    torch.cumsum(image.permute(1, 2, 0), 1, dtype=dtype, out=ii[1:, 1:])  # along each row
    if ii.device.type == "cpu":  # down the columns: one vector add per row, 3x torch's cumsum over rows
        rows = ii.numpy()
        for r in range(2, h + 1):
            np.add(rows[r], rows[r - 1], out=rows[r])
    else:
        ii.cumsum_(0)
    return ii.permute(2, 0, 1)


def crop_windows(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The pixel window each box crops, as facenet-pytorch's MTCNN cuts it.

    Corners are truncated to integers and clipped to the image; the window is
    ``[x1 - 1, x2) x [y1 - 1, y2)`` (MTCNN's 1-based convention). Parts outside the image are not padded:
    the crop is the visible part, stretched to the output size.

    Args:
        boxes: ``(N, 4)`` float.
    Returns:
        ``(N, 4)`` int64 ``(col0, row0, col1, row1)``, half-open; empty when ``col1 <= col0`` or
        ``row1 <= row0``.
    """
    b = boxes.trunc().long()
    x1 = b[:, 0].clamp_min(1) - 1
    y1 = b[:, 1].clamp_min(1) - 1
    x2 = b[:, 2].clamp_max(width)
    y2 = b[:, 3].clamp_max(height)
    return torch.stack((x1, y1, x2, y2), dim=1)


def area_bins(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-pooling (``mode="area"``) bin edges of ``length`` pixels from ``start`` into ``size`` bins:
    ``(N,) -> (N, size)`` int64 begin and end indices (numpy: a few small integer steps, ten times cheaper
    than in torch)."""
    i = np.arange(size, dtype=np.int64)
    start, length = np.asarray(start, dtype=np.int64), np.asarray(length, dtype=np.int64)
    lo = i[None, :] * length[:, None] // size
    hi = ((i[None, :] + 1) * length[:, None] + size - 1) // size
    return start[:, None] + lo, start[:, None] + hi


def crop_resize(ii: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Area-resize the windows of an image to ``size x size``.

    Args:
        ii: ``(3, H + 1, W + 1)`` integral image from ``integral_image``.
        windows: ``(N, 4)`` non-empty windows from ``crop_windows``.
    Returns:
        ``(N, 3, size, size)`` float32 mean pixel values (channels-last in memory, as the networks read
        them): each bin's exact integer sum divided by its area, correctly rounded (in float32 while the
        sums fit its 24 bits exactly, bins up to 65,793 pixels; in float64 beyond).
    """
    width = ii.shape[-1]
    w = windows.cpu().numpy()
    r0, r1 = area_bins(w[:, 1], w[:, 3] - w[:, 1], size)
    c0, c1 = area_bins(w[:, 0], w[:, 2] - w[:, 0], size)
    # the four corners of every bin, in one gather; 32-bit indices while the image allows (half the memory)
    index = np.int32 if ii[0].numel() < 2**31 else np.int64
    rows = np.stack((r1, r0, r1, r0)).astype(index) * index(width)
    cols = np.stack((c1, c1, c0, c0)).astype(index)
    corners = torch.from_numpy((rows[:, :, :, None] + cols[:, :, None, :]).reshape(-1)).to(ii.device)
    pixels = ii.permute(1, 2, 0).reshape(-1, ii.shape[0])  # (H + 1) * (W + 1) rows of 3 sums (a view)
    a, b, c, d = pixels.index_select(0, corners).view(4, -1, ii.shape[0])  # index_select: 2x pixels[corners]
    total = a.sub(b).sub_(c).add_(d)
    area = ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :]).reshape(-1, 1)
    if int(area.max()) * 255 < 2**24:
        mean = total.float().div_(torch.from_numpy(area.astype(np.float32)).to(ii.device))
    else:
        mean = total.double().div_(torch.from_numpy(area).to(ii.device, torch.float64)).float()
    return mean.view(len(w), size, size, ii.shape[0]).permute(0, 3, 1, 2)


def cut_crops(ii: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``size x size`` crops the cascade feeds its next stage for ``boxes`` ``(N, 4)``.

    Returns ``(M, 3, size, size)`` float 0-255 crops of the boxes that overlap the image, and the
    ``(N,)`` bool mask of which boxes those are.
    """
    windows = crop_windows(boxes, ii.shape[-1] - 1, ii.shape[-2] - 1)
    valid = (windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])
    if not valid.any():
        return torch.zeros(0, 3, size, size, device=ii.device), valid
    return crop_resize(ii, windows[valid], size), valid


def padded_crops(image: torch.Tensor, boxes: Array, size: int) -> tuple[torch.Tensor, Array]:
    """``size x size`` area-resized crops of a few ``boxes (N, 4)`` of ``image (1, 3, H, W)`` (0-255), black
    where a box leaves the image: a face at the border is cut whole, not stretched from its visible part.

    One ``adaptive_avg_pool2d`` per box, on the box's pixels copied channel by channel (the pooling's fastest
    layout): for the tracker's handful of boxes a quarter of the time of an integral image of the region around
    them (the means agree with ``crop_resize``'s to float32 rounding). ``boxes``: numpy or torch.
    Returns ``(M, 3, size, size)`` float crops of the boxes with a non-empty window, and the ``(N,)`` bool
    mask (numpy or torch, as ``boxes``) of which boxes those are.
    """
    height, width = image.shape[-2:]
    windows = to_numpy(boxes).astype(np.float64).astype(np.int64)  # truncated toward zero, as torch's trunc
    valid = (windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])
    crops = []
    for x1, y1, x2, y2 in windows[valid].tolist():
        x1, y1 = x1 - 1, y1 - 1  # MTCNN's 1-based corners, as crop_windows
        piece = image[0, :, max(y1, 0):min(y2, height), max(x1, 0):min(x2, width)]
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            piece = F.pad(piece, (max(-x1, 0), max(x2 - width, 0), max(-y1, 0), max(y2 - height, 0)))
        crops.append(F.adaptive_avg_pool2d(piece.contiguous()[None].float(), size))
    crops = torch.cat(crops) if crops else torch.zeros(0, 3, size, size, device=image.device)
    return crops, kind_of(valid, boxes)


def padded_crops_from(ii: torch.Tensor, image: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``padded_crops`` of ``boxes (N, 4)`` of ``image (1, 3, H, W)``: when every box lies inside the image, cut from its
    integral image ``ii`` in one gather (``cut_crops``, the same means to float32 rounding), else each box padded."""
    height, width = image.shape[-2:]
    b = boxes.trunc()
    if bool(((b[:, 0] >= 1) & (b[:, 1] >= 1) & (b[:, 2] <= width) & (b[:, 3] <= height)).all()):
        return cut_crops(ii, boxes, size)
    return padded_crops(image, boxes, size)


CONTEXT = 1.5  # a turned crop is cut from the box grown this much: room for any turn of the box (sqrt 2) and a shift


def grown(boxes: Array, factor: float) -> Array:
    """``(N, 4)`` boxes grown ``factor`` times about their centres."""
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return namespace(boxes).concatenate((centre - half, centre + half), axis=1)


def rotate_crops(context: torch.Tensor, angles: torch.Tensor, size: int, scale: torch.Tensor | None = None,
                 shift: torch.Tensor | None = None) -> torch.Tensor:
    """``size x size`` crops from the middle of wider crops, the picture turned counter-clockwise as displayed.

    Args:
        context: ``(N, C, S, S)`` crops of boxes grown ``S / size`` times about their centres (same scale).
        angles: ``(N,)`` degrees, counter-clockwise as displayed: a head with rotation ``R`` in the context
            has ``Rz(angle) R`` in the crop (camera frame: x right, y up, z toward the viewer).
        scale: ``(N,)`` zoom of the sampled window (1: the box), or None.
        shift: ``(N, 2)`` shift of the window's centre in units of half the crop's side (x right, y down), or None.

    Returns:
        ``(N, C, size, size)``, bilinear; 0 where the window leaves the context. With no turn, zoom or shift,
        exactly the context's middle ``size x size`` pixels.
    """
    n = len(context)
    if n == 0:
        return context.new_zeros(0, context.shape[1], size, size, dtype=torch.float32)
    t = np.deg2rad(to_numpy(angles).astype(np.float32))  # a few numbers: numpy
    c, s = np.cos(t), np.sin(t)
    k = np.float32(size / context.shape[-1]) * (to_numpy(scale) if scale is not None else np.ones(n, np.float32))
    theta = np.zeros((n, 2, 3), np.float32)
    # the output point p (x right, y down) samples the context at M p: M turns the picture counter-clockwise
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = k * c, -k * s, k * s, k * c
    if shift is not None:
        theta[:, :, 2] = np.float32(size / context.shape[-1]) * to_numpy(shift)
    grid = F.affine_grid(torch.from_numpy(theta), [n, context.shape[1], size, size], align_corners=False).to(context.device)
    return F.grid_sample(context.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def turned_crops(image: torch.Tensor, boxes: Array, angles: Array, size: int) -> tuple[torch.Tensor, Array]:
    """``size x size`` crops of ``boxes (N, 4)`` of ``image (1, 3, H, W)`` (0-255), each turned counter-clockwise
    by ``angles (N,)`` degrees about its centre (black outside the image): a head rolled by ``angle`` is cut
    upright. The box grown ``CONTEXT`` times is area-resized first (``padded_crops``), then turned at that
    scale, as training cuts its turned crops. Returns the crops and the ``(N,)`` mask of boxes with any window
    (numpy or torch, as ``boxes``)."""
    context, valid = padded_crops(image, grown(to_numpy(boxes), CONTEXT), round(size * CONTEXT))
    turned = rotate_crops(context, to_numpy(angles)[valid], size)
    return turned, kind_of(valid, boxes)


def disk_crops(turned: torch.Tensor, size: int = 48) -> torch.Tensor:
    """``(N, 3, S, S)`` 0-255 crops (turned windows) -> ``(N, 3, size, size)``: area-resized, black outside the
    inscribed disk, so that a window looks the same at any turn (its corners would hold the image at one turn and
    black at another). ``nets.UpDownNet``'s input, before normalisation."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    disk = ((r[:, None] ** 2 + r[None] ** 2) <= (size / 2) ** 2).to(turned.dtype)
    return F.interpolate(turned, size=(size, size), mode="area") * disk


def turn_about(points: Array, centres: Array, angles: Array) -> Array:
    """Points ``(N, ..., 2)`` (x, y in pixels) found in crops turned by ``angles (N,)`` about ``centres (N, 2)``
    (``turned_crops``), at the crop's scale, as if the crop had not been turned -> the same points in the image.

    >>> turn_about(torch.tensor([[[10.0, 0.0]]]), torch.zeros(1, 2), torch.tensor([90.0])).round().abs().tolist()
    [[[0.0, 10.0]]]
    """
    xp = namespace(points)
    t = xp.deg2rad(as_like(angles, points))
    c, s = xp.cos(t), xp.sin(t)
    shape = (-1,) + (1,) * (points.ndim - 2)
    c, s = c.reshape(shape), s.reshape(shape)
    centres = centres.reshape(centres.shape[:1] + (1,) * (points.ndim - 2) + (2,))
    d = points - centres
    return centres + xp.stack((c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]), axis=-1)


def crops_to_uint8(crops: torch.Tensor) -> torch.Tensor:
    """``(N, 3, S, S)`` float 0-255 crops -> ``(N, S, S, 3)`` uint8, rounded: how crops are stored."""
    return crops.round().clamp(0, 255).byte().permute(0, 2, 3, 1)
