"""The pose label of a training face, from its teachers and, for AFLW crops, its annotated landmarks.

WHENet's flip-averaged angles label every face it is shown; MediaPipe Face Mesh (flip-averaged, Procrustes
on the canonical face) labels the faces it finds (``teacher_labels``: their rotation mean, equal weights,
where both answer; WHENet's alone elsewhere). Both fade at profiles, Face Mesh most. AFLW crops also carry
hand-placed landmarks and an annotated yaw: ``face_labels`` adds the rotation fitted to the landmarks
(``training.landmark_pose``) and weights the three per bin of annotated |yaw| by how well each one's yaw
agrees with the annotated yaw on the training split (weight 1 / mean error squared). Below 30 degrees the
two teachers keep equal weights and the fit none: there they agree well and the label stays as it was.
"""
from __future__ import annotations

import torch

from facepose.rotation import euler_to_matrix, mean_rotation

__all__ = ["TEACHERS", "YAW_EDGES", "teacher_labels", "yaw_bins", "face_labels"]

TEACHERS = ("whenet", "mediapipe")
NONE, WHENET, BOTH, LANDMARKS = 0, 1, 2, 3  # what a label is made of (LANDMARKS: the teachers and the fit)
YAW_EDGES = (30.0, 60.0, 75.0)  # bins of annotated |yaw|: 0-30, 30-60, 60-75, beyond 75
UPRIGHT_WEIGHTS = (1.0, 1.0, 0.0)  # below 30 degrees: WHENet, Face Mesh, landmark fit


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


def yaw_bins(yaw: torch.Tensor) -> torch.Tensor:
    """``(N,)`` yaw in degrees -> ``(N,)`` int64 bin of ``|yaw|`` (0: below 30, ..., 3: 75 and beyond).

    >>> yaw_bins(torch.tensor([0.0, -45.0, 70.0, -90.0])).tolist()
    [0, 1, 2, 3]
    """
    return sum((yaw.abs() >= e).long() for e in YAW_EDGES)


def face_labels(whenet_angles: torch.Tensor, mesh_rotations: torch.Tensor, landmark_rotations: torch.Tensor,
                annotated_yaw: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for N faces from the teachers and, where there is one, the landmark fit.

    Args:
        whenet_angles, mesh_rotations: as in ``teacher_labels``.
        landmark_rotations: ``(N, 3, 3)`` the rotation fitted to the face's landmarks, NaN where none.
        annotated_yaw: ``(N,)`` degrees, NaN where none; it picks the bin.
        weights: ``(len(YAW_EDGES) + 1, 3)`` per bin, the weights of WHENet, Face Mesh and the fit.
    Returns:
        ``(N, 3, 3)`` float64 rotations and ``(N,)`` int64 sources (``teacher_labels``'s, or 3 where the fit
        has weight in the label). Without a fit or an annotated yaw the label is ``teacher_labels``'.
    """
    rotations, source = teacher_labels(whenet_angles, mesh_rotations)
    has_fit = ~torch.isnan(landmark_rotations).flatten(1).any(1) & ~torch.isnan(annotated_yaw) & (source > 0)
    w = weights.double()[yaw_bins(torch.nan_to_num(annotated_yaw))] * has_fit[:, None]
    use = has_fit & (w[:, 2] > 0)
    if use.any():
        whenet = euler_to_matrix(*torch.nan_to_num(whenet_angles.double()).T)
        mesh = torch.nan_to_num(mesh_rotations.double())
        w[:, 1] = w[:, 1] * (source == BOTH)
        three = torch.stack((whenet, mesh, torch.nan_to_num(landmark_rotations.double())), 1)
        rotations[use] = mean_rotation(three[use], w[use])
        source = torch.where(use, LANDMARKS, source)
    return rotations, source
