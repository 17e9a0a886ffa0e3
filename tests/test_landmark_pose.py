"""Pose labels from AFLW's annotated landmarks, and how the label sources are weighted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facepose.rotation import euler_to_matrix, geodesic_distance, matrix_to_euler
from training.labels import face_labels, teacher_labels
from training.landmark_pose import fit_rotations, mesh_template, read_landmarks, read_yaw, yaw_starts
from training.mediapipe_teacher import load_canonical_face

from .conftest import SHARED

needs_aflw = pytest.mark.skipif(not (SHARED / "aflw_faces" / "yaw.csv").is_file() or not (SHARED / "mediapipe").is_dir(),
                                reason="../shared/data/aflw_faces (with yaw.csv) or mediapipe is not here")


@needs_aflw
def test_the_fit_recovers_a_known_rotation_from_some_points():
    """The template turned, scaled and projected, with a third of its points hidden and a little noise: the
    fit, started from upright heads, gives the rotation back."""
    template = torch.tensor(mesh_template(load_canonical_face()))
    truth = euler_to_matrix(torch.tensor([70.0, -25.0]), torch.tensor([-15.0, 10.0]), torch.tensor([20.0, -5.0])).double()
    image = 6.0 * (template @ truth.transpose(1, 2))[..., :2] * torch.tensor([1.0, -1.0]) + 60.0
    image = image + torch.randn(image.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    image[0, [0, 1, 2, 6, 7, 8, 12]] = float("nan")  # the far side of a head turned toward the image's left
    rotations, residual = fit_rotations(image, template, yaw_starts(2))
    assert torch.rad2deg(geodesic_distance(rotations, truth)).max() < 3.0
    assert residual.max() < 1.0


@needs_aflw
def test_the_fit_agrees_with_the_annotated_yaw_of_profiles():
    """On 60 AFLW training crops annotated beyond 60 degrees of yaw, the landmark fit (no teacher involved)
    has the annotated yaw's sign on nearly all and is within 15 degrees of it on average (the annotation is
    itself noisy at profiles)."""
    root = SHARED / "aflw_faces"
    marks, yaws = read_landmarks(root), read_yaw(root)
    names = [n for n in sorted(marks) if abs(yaws.get(n, 0.0)) >= 60][:60]
    points = torch.tensor(np.stack([marks[n] for n in names]))
    rotations, _ = fit_rotations(points, torch.tensor(mesh_template(load_canonical_face())), yaw_starts(len(names)))
    fitted, annotated = matrix_to_euler(rotations)[:, 0], torch.tensor([yaws[n] for n in names], dtype=torch.float64)
    assert (torch.sign(fitted) == torch.sign(annotated)).double().mean() >= 0.95
    assert (fitted - annotated).abs().mean() < 15.0


def test_labels_weigh_the_sources_per_bin_of_annotated_yaw():
    """Below 30 degrees the label is the teachers' (the fit has no weight); beyond, the sources weigh as given;
    without a fit or an annotated yaw it is the teachers' label; Face Mesh counts only where it answered."""
    whenet = torch.tensor([[10.0, 0.0, 0.0], [50.0, 0.0, 0.0], [80.0, 0.0, 0.0], [80.0, 0.0, 0.0], [70.0, 0.0, 0.0]])
    mesh = euler_to_matrix(*torch.tensor([[20.0, 0.0, 0.0]] * 5).T).double()
    mesh[4] = float("nan")
    fit = euler_to_matrix(*torch.tensor([[40.0, 0.0, 0.0]] * 5).T).double()
    fit[3] = float("nan")
    annotated = torch.tensor([5.0, 45.0, 85.0, 85.0, 70.0], dtype=torch.float64)
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    labels, source = face_labels(whenet, mesh, fit, annotated, weights)
    yaw = matrix_to_euler(labels)[:, 0]
    teachers, _ = teacher_labels(whenet, mesh)
    assert source.tolist() == [2, 3, 3, 2, 3]
    assert yaw[0] == pytest.approx(15.0, abs=1e-4)  # the teachers' mean
    assert yaw[1] == pytest.approx(36.7, abs=0.1)  # the chordal mean of 50, 20 and 40: atan2 of the summed sines, cosines
    assert yaw[2] == pytest.approx(40.0, abs=1e-4)  # the fit alone
    assert torch.allclose(labels[3], teachers[3])  # no fit: the teachers'
    assert yaw[4] == pytest.approx(40.0, abs=1e-4)  # bin 60-75: the fit alone (Face Mesh did not answer)


def test_relabelling_a_folder_that_is_not_a_data_set_says_so(tmp_path):
    from training.landmark_pose import main

    with pytest.raises(SystemExit, match="not a data set of build_dataset"):
        main(["--data", str(tmp_path)])
