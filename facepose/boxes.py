"""Box geometry: IoU, non-maximum suppression, regression offsets, squaring.

Boxes are ``(N, 4)`` float tensors ``(x1, y1, x2, y2)`` in pixels. ``box_overlap`` also takes numpy arrays:
NMS runs its overlaps and its greedy pass in numpy, where an operation on the few hundred boxes of a
pyramid level costs a microsecond instead of torch's ten (the same float arithmetic, so the same boxes).
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ["box_area", "box_overlap", "nms", "apply_offsets", "square"]


Boxes = TypeVar("Boxes", torch.Tensor, np.ndarray)


def box_area(boxes: Boxes, plus_one: bool = False) -> Boxes:
    """``(N, 4) -> (N,)``; ``plus_one`` counts inclusive pixel coordinates (MTCNN's last stage)."""
    one = 1.0 if plus_one else 0.0
    return (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)


def box_overlap(a: Boxes, b: Boxes, mode: str = "union", plus_one: bool = False) -> Boxes:
    """Pairwise overlap ``(N, 4), (M, 4) -> (N, M)``: intersection over union, or over the smaller
    area (``mode="min"``). Torch tensors or numpy arrays (both of one kind), in their dtype."""
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', not {mode!r}")
    xp = np if isinstance(a, np.ndarray) else torch
    one = 1.0 if plus_one else 0.0
    a, b = a.T[:, :, None], b.T[:, None, :]  # (4, N, 1), (4, 1, M): each coordinate an (N, M) plane
    w = _at_least(xp.minimum(a[2], b[2]) - xp.maximum(a[0], b[0]) + one, 0.0)
    h = _at_least(xp.minimum(a[3], b[3]) - xp.maximum(a[1], b[1]) + one, 0.0)
    inter = w * h
    area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)  # (N, 1), as box_area
    area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)  # (1, M)
    if mode == "min":
        denom = xp.minimum(area_a, area_b)
    else:
        denom = area_a + area_b - inter
    return inter / _at_least(denom, 1e-12)


def _at_least(x: Boxes, low: float) -> Boxes:
    """``max(x, low)`` elementwise, in ``x``'s dtype (``np.clip`` costs ten times more on small arrays)."""
    return np.maximum(x, low) if isinstance(x, np.ndarray) else x.clamp_min(low)


def nms(
    boxes: Boxes,
    scores: Boxes,
    threshold: float,
    mode: str = "union",
    plus_one: bool = False,
    block: int = 2048,
) -> Boxes:
    """Greedy non-maximum suppression, exact.

    A box is dropped when it overlaps a kept, higher-scoring box by more than ``threshold``. Boxes are
    taken in blocks of ``block`` in score order (memory ``O(block^2)``): a block's boxes that a box kept
    from earlier blocks suppresses go first, then one pass in score order over the block's overlap matrix
    decides the rest. Runs in numpy on the CPU, in the boxes' dtype.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``; torch tensors or numpy arrays.
    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score (a tensor on the boxes' device, or an
        array).
    """
    numpy_in = isinstance(boxes, np.ndarray)
    b, s = (boxes, scores) if numpy_in else (boxes.detach().cpu().numpy(), scores.detach().cpu().numpy())
    threshold = np.asarray(threshold, dtype=b.dtype)  # compared in the boxes' precision, as torch does
    order = np.argsort(-s, kind="stable")  # ties keep their input order
    sorted_boxes = b[order]
    kept: list[np.ndarray] = []
    kept_boxes = sorted_boxes[:0]
    for start in range(0, len(order), block):
        idx = np.arange(start, min(start + block, len(order)))
        cand = sorted_boxes[idx]
        if len(kept_boxes):
            alive = ~(box_overlap(kept_boxes, cand, mode, plus_one) > threshold).any(0)
            idx, cand = idx[alive], cand[alive]
        keep = _greedy(box_overlap(cand, cand, mode, plus_one) > threshold)
        kept.append(idx[keep])
        kept_boxes = np.concatenate((kept_boxes, cand[keep]))
    chosen = (order[np.concatenate(kept)] if kept else order[:0]).astype(np.int64)
    return chosen if numpy_in else torch.from_numpy(chosen).to(boxes.device)


def _greedy(suppress: np.ndarray) -> np.ndarray:
    """``(n, n)`` bool "row box suppresses column box" of boxes in score order -> ``(n,)`` bool kept: each
    box not suppressed by a kept box before it (a pass in score order, work only for the kept boxes)."""
    n = len(suppress)
    keep = np.zeros(n, dtype=bool)
    removed = np.zeros(n, dtype=bool)
    for i in range(n):
        if not removed[i]:
            keep[i] = True
            removed[i + 1:] |= suppress[i, i + 1:]
    return keep


def apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool = True) -> torch.Tensor:
    """MTCNN box regression: move each corner by ``offset * box size``. ``(N, 4), (N, 4) -> (N, 4)``."""
    one = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + one
    h = boxes[:, 3] - boxes[:, 1] + one
    return boxes + offsets * torch.stack((w, h, w, h), dim=1)


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square of its longer side around the same centre. ``(N, 4) -> (N, 4)``."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) * 0.5
    y1 = boxes[:, 1] + (h - side) * 0.5
    return torch.stack((x1, y1, x1 + side, y1 + side), dim=1)
