"""The pose label of a training face, from its teachers.

WHENet's flip-averaged angles label every face it is shown; MediaPipe Face Mesh (flip-averaged, Procrustes
on the canonical face) labels the faces it finds. Where both answer, the label is their rotation mean
(``facepose.rotation.mean_rotation``, equal weights): on AFLW2000 the two err differently and their mean
beats either (see MODEL_CARD.md). Elsewhere WHENet's alone.
"""
from __future__ import annotations

import torch

from facepose.rotation import euler_to_matrix, mean_rotation

__all__ = ["TEACHERS", "teacher_labels"]

TEACHERS = ("whenet", "mediapipe")
NONE, WHENET, BOTH = 0, 1, 2  # what a label is made of


def teacher_labels(whenet_angles: torch.Tensor, mesh_rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for N faces.

    Args:
        whenet_angles: ``(N, 3)`` yaw, pitch, roll in degrees, NaN where WHENet was not asked.
        mesh_rotations: ``(N, 3, 3)``, NaN where Face Mesh found no face (or was not asked).
    Returns:
        ``(N, 3, 3)`` float64 rotations (the identity where there is no label) and ``(N,)`` int64 sources:
        0 no label, 1 WHENet alone, 2 the mean of both.
    """
    whenet_angles, mesh_rotations = whenet_angles.double(), mesh_rotations.double()
    has_whenet = ~torch.isnan(whenet_angles).any(1)
    has_mesh = ~torch.isnan(mesh_rotations).flatten(1).any(1) & has_whenet
    rotations = euler_to_matrix(*torch.nan_to_num(whenet_angles).T)
    if has_mesh.any():
        pair = torch.stack((rotations[has_mesh], mesh_rotations[has_mesh]), dim=1)
        rotations[has_mesh] = mean_rotation(pair)
    source = torch.where(has_mesh, BOTH, torch.where(has_whenet, WHENET, NONE))
    return rotations, source
