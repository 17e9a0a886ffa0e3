"""The few array operations whose torch and numpy spellings differ, for geometry that takes either.

The geometry functions (``boxes``, ``rotation``, ``crops.turn_about``) run on torch tensors or numpy arrays
alike: batched detection works in torch, and a tracker's frame, a few numbers per face, in numpy, where one
small operation costs about a microsecond against torch's five to ten.
"""
from __future__ import annotations

from types import ModuleType
from typing import TypeVar

import numpy as np
import torch

__all__ = ["Array", "namespace", "as_like", "kind_of", "to_numpy", "at_least", "norm", "cross"]

Array = TypeVar("Array", torch.Tensor, np.ndarray)


def namespace(x: Array) -> ModuleType:
    """``numpy`` for a numpy array, else ``torch`` (whose functions also take numpy's ``axis`` and ``keepdims``)."""
    return np if isinstance(x, np.ndarray) else torch


def as_like(values, like: Array) -> Array:
    """``values`` (an array, tensor or sequence) as the kind of ``like``, in its dtype (and, for torch, on its device)."""
    return np.asarray(values, dtype=like.dtype) if isinstance(like, np.ndarray) else torch.as_tensor(values).to(like)


def kind_of(values: np.ndarray, like: Array) -> Array:
    """A numpy array as the kind of ``like``, its dtype kept: itself, or a tensor on ``like``'s device."""
    return values if isinstance(like, np.ndarray) else torch.from_numpy(values).to(like.device)


def to_numpy(t: Array) -> np.ndarray:
    """A tensor's values as a numpy array (from any device, outside autograd); a numpy array as it is."""
    return t if isinstance(t, np.ndarray) else t.detach().cpu().numpy()


def at_least(x: Array, low: float) -> Array:
    """``max(x, low)`` elementwise, in ``x``'s dtype (``np.clip`` costs ten times more on small arrays)."""
    return np.maximum(x, low) if isinstance(x, np.ndarray) else x.clamp_min(low)


def norm(x: Array) -> Array:
    """``(..., D) -> (..., 1)`` Euclidean length along the last axis."""
    return np.linalg.norm(x, axis=-1, keepdims=True) if isinstance(x, np.ndarray) else x.norm(dim=-1, keepdim=True)


def cross(a: Array, b: Array) -> Array:
    """``(..., 3) x (..., 3) -> (..., 3)`` cross product (numpy's by its components: ``np.cross`` spends about 20 us
    on a few vectors moving axes about, this 5)."""
    if not isinstance(a, np.ndarray):
        return torch.linalg.cross(a, b, dim=-1)
    a0, a1, a2, b0, b1, b2 = a[..., 0], a[..., 1], a[..., 2], b[..., 0], b[..., 1], b[..., 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b))
    out[..., 0], out[..., 1], out[..., 2] = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0
    return out
