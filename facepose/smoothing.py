"""Steady pose on video: the One Euro filter (Casiez et al., CHI 2012) for vectors and for rotations.

The filter is a low-pass whose cutoff rises with speed: a still head is smoothed strongly (no jitter), a
turning head lightly (little lag). Rotations are filtered as rotations, on the geodesic between the last
filtered rotation and the new one (never on Euler angles, which wrap and lock).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OneEuro", "OneEuroRotation", "smoothing_factor", "rotation_log", "rotation_exp"]


def smoothing_factor(cutoff_hz: float, dt: float) -> float:
    """The exponential smoothing factor of a first-order low-pass at ``cutoff_hz`` for a step of ``dt`` s."""
    tau = 1.0 / (2 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuro:
    """One Euro filter of a vector signal (any shape). ``min_cutoff`` (Hz) sets the smoothing at rest,
    ``beta`` how fast the cutoff rises with speed (units of the signal per second)."""

    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0
    value: np.ndarray | None = field(default=None, repr=False)
    speed: np.ndarray | None = field(default=None, repr=False)

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or dt <= 0:
            self.value, self.speed = x.copy(), np.zeros_like(x)
            return x
        speed = (x - self.value) / dt
        self.speed = self.speed + smoothing_factor(self.d_cutoff, dt) * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * float(np.abs(self.speed).max(initial=0.0))
        self.value = self.value + smoothing_factor(cutoff, dt) * (x - self.value)
        return self.value


def rotation_log(r: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation -> ``(3,)`` axis times angle (radians)."""
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    angle = math.acos(cos)
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if math.pi - angle < 1e-6:  # half turn: the antisymmetric part vanishes; read the axis off R + I
        m = (r + np.eye(3)) / 2
        axis = m[:, int(np.argmax(np.diag(m)))]
        return angle * axis / np.linalg.norm(axis)
    return angle * axis / (2 * math.sin(angle))


def rotation_exp(v: np.ndarray) -> np.ndarray:
    """``(3,)`` axis times angle -> ``(3, 3)`` rotation (Rodrigues)."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


@dataclass
class OneEuroRotation:
    """One Euro filter of a rotation: each step moves the filtered rotation toward the new one along
    the geodesic by the filter's factor; the speed is the angular speed (radians per second)."""

    min_cutoff: float = 1.0
    beta: float = 0.3
    d_cutoff: float = 1.0
    value: np.ndarray | None = field(default=None, repr=False)
    speed: float = 0.0

    def __call__(self, r: np.ndarray | list, dt: float) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        if self.value is None or dt <= 0:
            self.value, self.speed = r.copy(), 0.0
            return r
        step = rotation_log(self.value.T @ r)
        self.speed += smoothing_factor(self.d_cutoff, dt) * (float(np.linalg.norm(step)) / dt - self.speed)
        alpha = smoothing_factor(self.min_cutoff + self.beta * self.speed, dt)
        self.value = self.value @ rotation_exp(alpha * step)
        u, _, vt = np.linalg.svd(self.value)  # keep it exactly orthonormal over long runs
        self.value = u @ vt
        return self.value
