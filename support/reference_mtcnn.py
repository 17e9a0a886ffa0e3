"""facenet-pytorch 2.6.0's MTCNN, the reference FacePose's cascade is ported from.

facenet-pytorch imports torchvision only for ``batched_nms`` and ``to_tensor``; torchvision does not
import beside our CPU torch build, so this module stands in for those two functions with plain,
loop-based reference code (deliberately not FacePose's own NMS) before importing it.
Install it with ``pip install --no-deps facenet-pytorch==2.6.0``.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import torch


def _reference_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """torchvision.ops.nms semantics (IoU without +1), as a plain greedy loop in NumPy."""
    b = boxes.detach().cpu().double().numpy()
    order = np.argsort(-scores.detach().cpu().numpy(), kind="stable")
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        iou = inter / (area[i] + area[rest] - inter)
        order = rest[iou <= threshold]
    return torch.as_tensor(np.array(keep, dtype=np.int64), device=boxes.device)


def _reference_batched_nms(boxes, scores, idxs, threshold):
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return _reference_nms(boxes + offsets[:, None], scores, threshold)


def _to_tensor(pic):
    a = np.asarray(pic, dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def install_torchvision_stub() -> None:
    """Put a minimal ``torchvision`` (``ops.boxes.batched_nms``, ``transforms.functional.to_tensor``)
    into ``sys.modules`` unless a real one imports."""
    try:
        import torchvision.ops  # noqa: F401

        return
    except Exception:
        pass
    tv = types.ModuleType("torchvision")
    ops, boxes = types.ModuleType("torchvision.ops"), types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    boxes.batched_nms = _reference_batched_nms
    functional.to_tensor = _to_tensor
    tv.ops, ops.boxes, tv.transforms, transforms.functional = ops, boxes, transforms, functional
    sys.modules.update({
        "torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
        "torchvision.transforms": transforms, "torchvision.transforms.functional": functional,
    })


def facenet_mtcnn(**kwargs):
    """facenet-pytorch's ``MTCNN(keep_all=True, ...)`` on the CPU, or raise ImportError."""
    install_torchvision_stub()
    from facenet_pytorch.models.mtcnn import MTCNN

    return MTCNN(keep_all=True, device="cpu", **kwargs)
