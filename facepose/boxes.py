"""Box geometry in torch: IoU, non-maximum suppression, regression offsets, squaring.

Boxes are ``(N, 4)`` float tensors ``(x1, y1, x2, y2)`` in pixels.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["box_area", "box_overlap", "nms", "apply_offsets", "square"]


def box_area(boxes: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """``(N, 4) -> (N,)``; ``plus_one`` counts inclusive pixel coordinates (MTCNN's last stage)."""
    one = 1.0 if plus_one else 0.0
    return (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)


def box_overlap(a: torch.Tensor, b: torch.Tensor, mode: str = "union", plus_one: bool = False) -> torch.Tensor:
    """Pairwise overlap ``(N, 4), (M, 4) -> (N, M)``: intersection over union, or over the smaller
    area (``mode="min"``)."""
    one = 1.0 if plus_one else 0.0
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt + one).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area_a, area_b = box_area(a, plus_one), box_area(b, plus_one)
    if mode == "min":
        denom = torch.minimum(area_a[:, None], area_b[None, :])
    elif mode == "union":
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        raise ValueError(f"mode must be 'union' or 'min', not {mode!r}")
    return inter / denom.clamp_min(1e-12)


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    threshold: float,
    mode: str = "union",
    plus_one: bool = False,
    block: int = 2048,
) -> torch.Tensor:
    """Greedy non-maximum suppression, exact.

    A box is dropped when it overlaps a kept, higher-scoring box by more than ``threshold``. Boxes are
    taken in blocks of ``block`` in score order (memory ``O(block^2)``): a block's boxes that a box kept
    from earlier blocks suppresses go first, then one pass in score order over the block's overlap matrix
    decides the rest.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``.
    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_boxes = boxes[order]
    kept: list[torch.Tensor] = []
    kept_boxes = sorted_boxes[:0]
    for start in range(0, len(order), block):
        idx = torch.arange(start, min(start + block, len(order)), device=boxes.device)
        cand = sorted_boxes[idx]
        if len(kept_boxes):
            alive = ~(box_overlap(kept_boxes, cand, mode, plus_one) > threshold).any(0)
            idx, cand = idx[alive], cand[alive]
        suppress = box_overlap(cand, cand, mode, plus_one) > threshold
        keep = torch.from_numpy(_greedy(suppress.cpu().numpy())).to(boxes.device)
        kept.append(idx[keep])
        kept_boxes = torch.cat((kept_boxes, cand[keep]))
    return order[torch.cat(kept)] if kept else order[:0]


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
