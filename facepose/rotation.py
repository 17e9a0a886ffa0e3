"""Rotation maths: the 6D representation, Euler angles, geodesic distance, mirroring.

Convention (used everywhere in FacePose):

* Camera frame: x to the image's right, y up, z toward the viewer (OpenGL style, right-handed).
* A head's rotation matrix ``R`` maps head coordinates to camera coordinates; its columns are the
  head's axes seen from the camera: x toward the subject's left (image right for a frontal face),
  y toward the top of the head, z out of the face. A frontal face has ``R = I``.
* Angles in degrees, as in AFLW2000, 300W-LP, Hopenet, 6DRepNet and WHENet: pitch > 0 looks up,
  yaw > 0 turns toward the image's left, roll > 0 tilts clockwise as displayed, and
  ``R = Rx(-pitch) @ Ry(-yaw) @ Rz(-roll)`` with right-handed elementary rotations. This is the
  rotation 3DDFA fitted for AFLW2000's ``Pose_Para``; 6DRepNet's ``get_R`` is its transpose.

All functions are pure and batched over any leading dimensions ``(...)``. The conversions a tracker needs on
each frame (6D to matrix and back, mirroring, turning, the in-plane angle, Euler angles) take numpy arrays as
well as torch tensors and return the kind they are given.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .arrays import Array, as_like, at_least, cross, namespace, norm

__all__ = [
    "sixd_to_matrix",
    "matrix_to_sixd",
    "euler_to_matrix",
    "matrix_to_euler",
    "geodesic_distance",
    "mirror_matrix",
    "mirror_euler",
    "mean_rotation",
    "turn_rotations",
    "in_plane_angle",
    "turned_away",
]


def sixd_to_matrix(sixd: Array, eps: float = 1e-8) -> Array:
    """Gram-Schmidt the 6D representation (Zhou et al. 2019, 6DRepNet) into a rotation matrix.

    Args:
        sixd: ``(..., 6)``, two 3D vectors ``a1 = sixd[..., :3]`` and ``a2 = sixd[..., 3:]``.
    Returns:
        ``(..., 3, 3)`` with columns ``b1 = a1/|a1|``, ``b3 = (b1 x a2)/|b1 x a2|``, ``b2 = b3 x b1``.

    Example: the identity's 6D vector, scaled and with ``a2`` not orthogonal to ``a1``, still gives ``I``:

    >>> sixd_to_matrix(torch.tensor([2.0, 0.0, 0.0, 0.5, 3.0, 0.0]))
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    """
    a1, a2 = sixd[..., :3], sixd[..., 3:6]
    b1 = a1 / at_least(norm(a1), eps)
    b3 = cross(b1, a2)
    b3 = b3 / at_least(norm(b3), eps)
    b2 = cross(b3, b1)
    return namespace(sixd).stack((b1, b2, b3), axis=-1)


def matrix_to_sixd(rotation: Array) -> Array:
    """The 6D representation of rotations: the first two columns.

    Args:
        rotation: ``(..., 3, 3)``.
    Returns:
        ``(..., 6)``: column 0 then column 1, so that ``sixd_to_matrix`` inverts it exactly.

    >>> r = euler_to_matrix(torch.tensor(30.0), torch.tensor(-20.0), torch.tensor(10.0))
    >>> torch.allclose(sixd_to_matrix(matrix_to_sixd(r)), r, atol=1e-6)
    True
    """
    return namespace(rotation).concatenate((rotation[..., :, 0], rotation[..., :, 1]), axis=-1)


def _elementary(axis: int, angle: Array) -> Array:
    """Right-handed rotation by ``angle`` (radians, ``(...)``) about axis 0, 1 or 2: ``(..., 3, 3)``."""
    xp = namespace(angle)
    c, s = xp.cos(angle), xp.sin(angle)
    one, zero = xp.ones_like(angle), xp.zeros_like(angle)
    if axis == 0:
        rows = ((one, zero, zero), (zero, c, -s), (zero, s, c))
    elif axis == 1:
        rows = ((c, zero, s), (zero, one, zero), (-s, zero, c))
    else:
        rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from yaw, pitch, roll in degrees (module convention).

    Args:
        yaw, pitch, roll: ``(...)`` tensors (broadcastable), degrees.
    Returns:
        ``(..., 3, 3)``: ``Rx(-pitch) @ Ry(-yaw) @ Rz(-roll)``.

    A head turned 90 degrees toward the image's left (yaw 90) faces the camera's -x direction: its z
    axis (out of the face, the third column) points to the image's left.

    >>> (euler_to_matrix(torch.tensor(90.0), torch.tensor(0.0), torch.tensor(0.0))[:, 2].round(decimals=6) + 0.0).tolist()
    [-1.0, 0.0, 0.0]
    >>> euler_to_matrix(torch.tensor(0.0), torch.tensor(30.0), torch.tensor(0.0))[:, 2].round(decimals=3)  # looks up
    tensor([0.0000, 0.5000, 0.8660])
    """
    yaw, pitch, roll = torch.broadcast_tensors(*(torch.as_tensor(a) for a in (yaw, pitch, roll)))
    if not yaw.is_floating_point():
        yaw, pitch, roll = yaw.double(), pitch.double(), roll.double()
    d = math.pi / 180.0
    return _elementary(0, -pitch * d) @ _elementary(1, -yaw * d) @ _elementary(2, -roll * d)


def matrix_to_euler(rotation: Array) -> Array:
    """Yaw, pitch, roll in degrees from rotation matrices; inverse of ``euler_to_matrix``.

    Args:
        rotation: ``(..., 3, 3)``.
    Returns:
        ``(..., 3)`` as ``(yaw, pitch, roll)``; exact for ``|yaw| < 90``, the gimbal-lock
        branch (``|yaw| = 90``) puts all in-plane rotation into roll.

    >>> angles = torch.tensor([[30.0, -20.0, 10.0], [-75.0, 40.0, -60.0]], dtype=torch.float64)
    >>> matrix_to_euler(euler_to_matrix(*angles.T)).round(decimals=6)
    tensor([[ 30., -20.,  10.],
            [-75.,  40., -60.]], dtype=torch.float64)
    """
    r, xp = rotation, namespace(rotation)
    cos_yaw = xp.hypot(r[..., 1, 2], r[..., 2, 2])
    yaw = -xp.arctan2(r[..., 0, 2], cos_yaw)
    pitch = xp.arctan2(r[..., 1, 2], r[..., 2, 2])
    roll = xp.arctan2(r[..., 0, 1], r[..., 0, 0])
    locked = cos_yaw < 1e-6
    if locked.any():  # pitch is not observable: set it to 0 and read roll from the other block
        pitch = xp.where(locked, xp.zeros_like(pitch), pitch)
        roll = xp.where(locked, xp.arctan2(r[..., 1, 0], r[..., 1, 1]), roll)
    return xp.stack((yaw, pitch, roll), axis=-1) * (180.0 / math.pi)


def geodesic_distance(r1: torch.Tensor, r2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Angle of the rotation taking ``r1`` to ``r2``.

    Args:
        r1, r2: ``(..., 3, 3)``.
    Returns:
        ``(...)`` in radians, in ``[0, pi]``; differentiable (the cosine is clamped off +-1).

    >>> a = euler_to_matrix(torch.tensor(10.0), torch.tensor(0.0), torch.tensor(0.0))
    >>> b = euler_to_matrix(torch.tensor(-15.0), torch.tensor(0.0), torch.tensor(0.0))
    >>> round(math.degrees(geodesic_distance(a, b).item()), 3)
    25.0
    """
    trace = (r1.transpose(-1, -2) @ r2).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.acos(((trace - 1) / 2).clamp(-1 + eps, 1 - eps))


_MIRROR = np.array([-1.0, 1.0, 1.0])


def mirror_matrix(rotation: Array) -> Array:
    """The rotation of the same head seen in the horizontally flipped image.

    Args:
        rotation: ``(..., 3, 3)``.
    Returns:
        ``(..., 3, 3)``: ``M @ R @ M`` with ``M = diag(-1, 1, 1)``; yaw and roll change sign.

    >>> r = euler_to_matrix(torch.tensor(30.0), torch.tensor(-20.0), torch.tensor(10.0))
    >>> matrix_to_euler(mirror_matrix(r)).round(decimals=4)
    tensor([-30., -20., -10.])
    """
    m = as_like(_MIRROR, rotation)
    return rotation * m[:, None] * m[None, :]


def mirror_euler(angles: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` yaw, pitch, roll of the flipped image: ``(-yaw, pitch, -roll)``.

    >>> mirror_euler(torch.tensor([30.0, -20.0, 10.0]))
    tensor([-30., -20., -10.])
    """
    return angles * torch.tensor([-1.0, 1.0, -1.0], dtype=angles.dtype, device=angles.device)


def mean_rotation(rotations: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The chordal mean of rotations: the (weighted) sum of the matrices projected onto SO(3) by SVD.

    Args:
        rotations: ``(..., K, 3, 3)``, K rotations to average.
        weights: ``(..., K)`` non-negative weights (default: equal).
    Returns:
        ``(..., 3, 3)``: the rotation nearest (Frobenius) to the weighted sum.

    >>> a = euler_to_matrix(torch.tensor(20.0), torch.tensor(0.0), torch.tensor(0.0))
    >>> b = euler_to_matrix(torch.tensor(-10.0), torch.tensor(0.0), torch.tensor(0.0))
    >>> matrix_to_euler(mean_rotation(torch.stack((a, b)))).round(decimals=4)
    tensor([5., 0., 0.])
    """
    if weights is not None:
        rotations = rotations * weights[..., None, None]
    u, _, vt = torch.linalg.svd(rotations.sum(-3))
    d = torch.sign(torch.linalg.det(u @ vt))
    fix = torch.ones(*d.shape, 3, dtype=rotations.dtype, device=rotations.device)
    fix[..., 2] = d
    return (u * fix[..., None, :]) @ vt


def turn_rotations(rotation: Array, angles: Array) -> Array:
    """Head rotations ``(N, 3, 3)`` -> the rotations of the same heads in the picture turned counter-clockwise
    (as displayed) by ``angles (N,)`` degrees: ``Rz(angle) R`` (z toward the viewer).

    >>> r = turn_rotations(torch.eye(3)[None], torch.tensor([90.0]))
    >>> [round(v) for v in r[0, :2, 0].tolist()]  # the head's x axis, right before, now points up
    [0, 1]
    """
    return _elementary(2, namespace(rotation).deg2rad(as_like(angles, rotation))) @ rotation


def in_plane_angle(rotation: Array) -> Array:
    """``(..., 3, 3)`` -> ``(...)`` degrees in -180..180: how far the head's up axis, seen in the picture, leans
    clockwise from upright (0 upright, 180 upside down). Turning the picture counter-clockwise by it brings the
    head upright (``turn_rotations``); unlike the Euler roll it stays meaningful at any yaw.

    >>> float(in_plane_angle(euler_to_matrix(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(30.0))).round())
    30.0
    """
    xp = namespace(rotation)
    return xp.rad2deg(xp.arctan2(rotation[..., 0, 1], rotation[..., 1, 1]))


def turned_away(rotation: Array) -> Array:
    """``(..., 3, 3)`` -> ``(...)`` degrees in 0..180: how far the head faces away from the camera, the angle between
    its forward axis (the third column, out of the face) and the camera's (toward the viewer); 0 frontal, 90 a
    profile or a face seen from above or below. Independent of the head's lean in the picture.

    >>> float(turned_away(euler_to_matrix(torch.tensor(60.0), torch.tensor(0.0), torch.tensor(45.0))).round())
    60.0
    """
    xp = namespace(rotation)
    return xp.rad2deg(xp.arccos(xp.clip(rotation[..., 2, 2], -1.0, 1.0)))
