"""Box geometry: IoU, non-maximum suppression, regression offsets, squaring.

Boxes are ``(N, 4)`` float torch tensors or numpy arrays ``(x1, y1, x2, y2)`` in pixels (each function
returns the kind it is given, in its dtype). NMS runs its overlaps and its greedy pass in numpy, where an
operation on the few hundred boxes of a pyramid level costs a microsecond instead of torch's ten (the same float
arithmetic, so the same boxes).
"""
from __future__ import annotations

import numpy as np
import torch

from .arrays import Array as Boxes
from .arrays import at_least as _at_least
from .arrays import namespace

__all__ = ["box_area", "box_overlap", "nms", "apply_offsets", "square"]


def box_area(boxes: Boxes, plus_one: bool = False) -> Boxes:
    """``(N, 4) -> (N,)``; ``plus_one`` counts inclusive pixel coordinates (MTCNN's last stage)."""
    one = 1.0 if plus_one else 0.0
    return (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)


def box_overlap(a: Boxes, b: Boxes, mode: str = "union", plus_one: bool = False) -> Boxes:
    """Pairwise overlap ``(N, 4), (M, 4) -> (N, M)``: intersection over union, or over the smaller
    area (``mode="min"``). Torch tensors or numpy arrays (both of one kind), in their dtype."""
    return _overlap(a.T[:, :, None], b.T[:, None, :], mode, plus_one)  # each coordinate an (N, M) plane


def _overlap(a: Boxes, b: Boxes, mode: str, plus_one: bool) -> Boxes:
    """The overlap of boxes given as coordinate stacks ``(4, ...)``, broadcast against each other."""
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', not {mode!r}")
    xp = namespace(a)
    one = 1.0 if plus_one else 0.0
    w = _at_least(xp.minimum(a[2], b[2]) - xp.maximum(a[0], b[0]) + one, 0.0)
    h = _at_least(xp.minimum(a[3], b[3]) - xp.maximum(a[1], b[1]) + one, 0.0)
    inter = w * h
    area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)  # as box_area
    area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
    if mode == "min":
        denom = xp.minimum(area_a, area_b)
    else:
        denom = area_a + area_b - inter
    return inter / _at_least(denom, 1e-12)


def nms(boxes: Boxes, scores: Boxes, threshold: float, mode: str = "union", plus_one: bool = False,
        dense_up_to: int = 256) -> Boxes:
    """Greedy non-maximum suppression, exact.

    A box is dropped when it overlaps a kept, higher-scoring box by more than ``threshold``. Runs in numpy
    on the CPU, in the boxes' dtype. Up to ``dense_up_to`` boxes, the overlaps of all pairs are computed;
    beyond, only of the pairs whose x-ranges meet (found by sorting on x1: a pyramid level's thousand
    boxes have tens of neighbours each, not a thousand). Then one pass in score order over the pairs
    that overlap enough decides.

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
    ranked = b[order]
    if len(ranked) < 2:
        first = second = np.zeros(0, dtype=np.int64)
    elif len(ranked) <= dense_up_to or threshold < 0:
        first, second = np.nonzero(np.triu(box_overlap(ranked, ranked, mode, plus_one) > threshold, 1))
    else:
        first, second = _overlapping_pairs(ranked, threshold, mode, plus_one)
    chosen = order[_greedy(len(ranked), first, second)].astype(np.int64)
    return chosen if numpy_in else torch.from_numpy(chosen).to(boxes.device)


def _overlapping_pairs(ranked: np.ndarray, threshold: np.ndarray, mode: str, plus_one: bool,
                       chunk: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``i < j`` of ``ranked (N, 4)`` boxes that overlap by more than ``threshold`` (>= 0), from the
    pairs whose x-ranges meet, ``chunk`` candidate pairs at a time. The overlaps are ``box_overlap``'s
    float arithmetic, value for value."""
    one = 1.0 if plus_one else 0.0
    n = len(ranked)
    by_x = np.argsort(ranked[:, 0], kind="stable")
    x1 = ranked[by_x, 0]
    # a box that starts after another's x2 (+1 inclusive) cannot overlap it: the later candidates in x order
    reach = np.searchsorted(x1, ranked[by_x, 2] + np.asarray(one, ranked.dtype), side="right")
    counts = np.maximum(reach - np.arange(1, n + 1), 0)
    ends = np.cumsum(counts)
    firsts, seconds = [], []
    start = 0
    while start < n:
        stop = max(int(np.searchsorted(ends, ends[start] - counts[start] + chunk, side="right")), start + 1)
        c = counts[start:stop]
        p = np.repeat(np.arange(start, stop), c)
        q = p + 1 + np.arange(len(p)) - np.repeat(np.cumsum(c) - c, c)
        a, z = by_x[p], by_x[q]
        i, j = np.minimum(a, z), np.maximum(a, z)
        over = _overlap(ranked[i].T, ranked[j].T, mode, plus_one) > threshold
        firsts.append(i[over])
        seconds.append(j[over])
        start = stop
    return np.concatenate(firsts), np.concatenate(seconds)


def _greedy(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Boxes ``0..n-1`` in score order and the pairs ``first[k] < second[k]`` where the first suppresses the
    second -> the kept boxes' indices: each box not suppressed by a kept box before it."""
    by_first = np.argsort(first, kind="stable")
    targets = second[by_first].tolist()
    starts = np.searchsorted(first[by_first], np.arange(n + 1)).tolist()
    removed = bytearray(n)
    keep = []
    for k in range(n):
        if not removed[k]:
            keep.append(k)
            for t in targets[starts[k]:starts[k + 1]]:
                removed[t] = 1
    return np.array(keep, dtype=np.int64)


def apply_offsets(boxes: Boxes, offsets: Boxes, plus_one: bool = True) -> Boxes:
    """MTCNN box regression: move each corner by ``offset * box size``. ``(N, 4), (N, 4) -> (N, 4)``."""
    one = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + one
    h = boxes[:, 3] - boxes[:, 1] + one
    return boxes + offsets * namespace(boxes).stack((w, h, w, h), axis=1)


def square(boxes: Boxes) -> Boxes:
    """Grow each box to a square of its longer side around the same centre. ``(N, 4) -> (N, 4)``."""
    xp = namespace(boxes)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = xp.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) * 0.5
    y1 = boxes[:, 1] + (h - side) * 0.5
    return xp.stack((x1, y1, x1 + side, y1 + side), axis=1)
