"""Rotation maths, on random rotations and on AFLW2000's labels and 3D landmarks."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio
import torch

from facepose.rotation import (
    euler_to_matrix,
    geodesic_distance,
    matrix_to_euler,
    matrix_to_sixd,
    mirror_euler,
    mirror_matrix,
    sixd_to_matrix,
)

from .conftest import AFLW2000, needs_aflw2000


def random_angles(n: int, limit: float = 89.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * limit


def test_sixd_gives_proper_rotations():
    r = sixd_to_matrix(torch.randn(1000, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand_as(r)
    assert torch.allclose(r.transpose(-1, -2) @ r, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(1000, dtype=torch.float64), atol=1e-12)


def test_sixd_gram_schmidt_definition():
    a1, a2 = torch.tensor([2.0, 0.0, 0.0]), torch.tensor([1.0, 3.0, 0.0])
    r = sixd_to_matrix(torch.cat((a1, a2)))
    assert torch.allclose(r, torch.eye(3))  # b1 = x, b3 = x cross (x + 3y) ~ z, b2 = z cross x = y


def test_sixd_round_trip_and_batch_shapes():
    r = euler_to_matrix(*random_angles(24).T).reshape(2, 3, 4, 3, 3)
    assert matrix_to_sixd(r).shape == (2, 3, 4, 6)
    assert torch.allclose(sixd_to_matrix(matrix_to_sixd(r)), r, atol=1e-12)


def test_euler_round_trip():
    angles = random_angles(2000)
    back = matrix_to_euler(euler_to_matrix(*angles.T))
    assert torch.allclose(back, angles, atol=1e-9)


def test_euler_signs_follow_the_label_convention():
    """Camera frame x right, y up, z toward the viewer; column 2 is the direction the face looks."""
    def forward(yaw, pitch, roll):
        return euler_to_matrix(torch.tensor(float(yaw)), torch.tensor(float(pitch)), torch.tensor(float(roll)))[:, 2]

    assert forward(30, 0, 0)[0] < 0  # yaw > 0: looks toward the image's left
    assert forward(0, 30, 0)[1] > 0  # pitch > 0: looks up
    x_axis = euler_to_matrix(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(30.0))[:, 0]
    assert x_axis[1] < 0  # roll > 0: the eye line turns clockwise as displayed (right end goes down)
    assert torch.allclose(euler_to_matrix(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)), torch.eye(3))


def test_geodesic_distance():
    a = euler_to_matrix(*random_angles(50).T)
    assert torch.allclose(geodesic_distance(a, a), torch.zeros(50, dtype=torch.float64), atol=1e-3)
    b = euler_to_matrix(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))
    c = euler_to_matrix(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(40.0))
    assert geodesic_distance(b, c).item() == pytest.approx(np.radians(40), abs=1e-5)


def test_mirror_flips_yaw_and_roll():
    angles = random_angles(500)
    mirrored = matrix_to_euler(mirror_matrix(euler_to_matrix(*angles.T)))
    assert torch.allclose(mirrored, mirror_euler(angles), atol=1e-9)
    assert torch.allclose(mirror_matrix(mirror_matrix(euler_to_matrix(*angles.T))), euler_to_matrix(*angles.T))


# --- against real geometry: AFLW2000's fitted 3D landmarks -------------------------------------------------

# index of each of the 68 landmarks' mirror partner (jaw, brows, nose, eyes, mouth)
FLIP_68 = (
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + list(range(27, 31)) + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


def landmark_frame(points: np.ndarray) -> torch.Tensor:
    """Head axes estimated from 68 3D landmarks ``(68, 3)`` in camera coordinates: x from the
    subject's right eye to the left one, y from the mouth up to the eyes, z = x cross y."""
    x = points[42:48].mean(0) - points[36:42].mean(0)
    y = points[36:48].mean(0) - points[48:68].mean(0)
    x /= np.linalg.norm(x)
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    return torch.tensor(np.stack([x, y, np.cross(x, y)], axis=1))


@needs_aflw2000
def test_label_matrix_matches_the_faces_3d_landmarks(aflw2000_rows):
    """``euler_to_matrix`` of AFLW2000's labels is the head rotation seen in the images (to within the
    ~13 degree offset of the eye/mouth frame); 6DRepNet's transposed matrix is not; mirroring the
    image (landmarks flipped and re-indexed) is matched by ``mirror_matrix``."""
    ours, transposed, mirrored = [], [], []
    for row in aflw2000_rows[:150]:
        pts = sio.loadmat(AFLW2000 / "images" / row["image"].replace(".jpg", ".mat"))["pt3d_68"].astype(float)
        r = euler_to_matrix(*(torch.tensor(float(row[k])) for k in ("yaw_deg", "pitch_deg", "roll_deg"))).double()
        frame = landmark_frame(np.stack([pts[0], -pts[1], pts[2]], axis=1))  # image y down -> camera y up
        ours.append(geodesic_distance(r, frame).item())
        transposed.append(geodesic_distance(r.T, frame).item())
        flipped = np.stack([450 - pts[0], -pts[1], pts[2]], axis=1)[FLIP_68]
        mirrored.append(geodesic_distance(mirror_matrix(r), landmark_frame(flipped)).item())
    assert np.degrees(np.median(ours)) < 16
    assert np.degrees(np.median(transposed)) > 35
    assert np.degrees(np.median(mirrored)) < 16


@needs_aflw2000
def test_label_order_holds_at_profiles(aflw2000_rows):
    """The order of the Euler angles (pitch about the camera's x axis last, roll about the head's own z axis first)
    is AFLW2000's at every yaw: its near-frontal faces' 68 fitted 3D landmarks, averaged, turned by
    ``euler_to_matrix`` of each profile's label, lie on that profile's landmarks (Procrustes' rotation within 4
    degrees on average, 60-75 and 75-99 degrees of |yaw| alike); with roll about the camera's axis last, the same
    angles miss by tens of degrees there (near frontal the two orders agree)."""
    def points(row):  # (3, 68) centred, unit size, camera y up
        p = sio.loadmat(AFLW2000 / "images" / row["image"].replace(".jpg", ".mat"))["pt3d_68"].astype(float)
        p = p * np.array([[1.0], [-1.0], [1.0]])
        p = p - p.mean(1, keepdims=True)
        return p / np.linalg.norm(p)

    def angles(row):
        return [torch.tensor(float(row[k]), dtype=torch.float64) for k in ("yaw_deg", "pitch_deg", "roll_deg")]

    frontal = [r for r in aflw2000_rows if max(abs(float(r[k])) for k in ("yaw_deg", "pitch_deg", "roll_deg")) < 5]
    template = np.mean([points(r) for r in frontal], axis=0)
    for lo, hi in ((60, 75), (75, 100)):
        ours, other = [], []
        for row in [r for r in aflw2000_rows if lo <= abs(float(r["yaw_deg"])) < hi][::2]:
            u, _, vt = np.linalg.svd(points(row) @ template.T)  # Procrustes: the face's points ~ R template
            seen = torch.tensor(u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt)
            yaw, pitch, roll = angles(row)
            ours.append(geodesic_distance(euler_to_matrix(yaw, pitch, roll), seen).item())
            zero = torch.zeros((), dtype=torch.float64)
            roll_last = euler_to_matrix(zero, zero, roll) @ euler_to_matrix(yaw, zero, zero) @ euler_to_matrix(zero, pitch, zero)
            other.append(geodesic_distance(roll_last, seen).item())
        assert np.degrees(np.mean(ours)) < 4, (lo, hi)
        assert np.degrees(np.mean(other)) > 25, (lo, hi)


def test_geometry_gives_the_same_numbers_in_numpy_and_torch():
    """The tracker works out its few numbers per face in numpy, detection in torch: the same functions, the same
    results (float32, to rounding)."""
    from facepose.boxes import apply_offsets, square
    from facepose.cascade import mean_with_mirrored, place_in_image
    from facepose.crops import turn_about
    from facepose.rotation import in_plane_angle, turn_rotations

    g = torch.Generator().manual_seed(0)
    sixd, other = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    boxes = torch.rand(5, 2, generator=g) * 300
    boxes = torch.cat((boxes, boxes + 20 + torch.rand(5, 2, generator=g) * 100), 1)
    offsets, marks = torch.randn(5, 4, generator=g) * 0.1, torch.rand(5, 10, generator=g)
    angles = torch.rand(5, generator=g) * 360 - 180
    r = sixd_to_matrix(sixd)
    cases = {
        "sixd_to_matrix": lambda t: sixd_to_matrix(t(sixd)),
        "matrix_to_sixd": lambda t: matrix_to_sixd(t(r)),
        "mirror_matrix": lambda t: mirror_matrix(t(r)),
        "matrix_to_euler": lambda t: matrix_to_euler(t(r)),
        "in_plane_angle": lambda t: in_plane_angle(t(r)),
        "turn_rotations": lambda t: turn_rotations(t(r), t(angles)),
        "mean_with_mirrored": lambda t: mean_with_mirrored(t(sixd), t(other)),
        "square": lambda t: square(t(boxes)),
        "apply_offsets": lambda t: apply_offsets(t(boxes), t(offsets)),
        "place_in_image": lambda t: place_in_image(t(offsets), t(marks), t(boxes))[1],
        "turn_about": lambda t: turn_about(t(marks.reshape(5, 5, 2)), t(boxes[:, :2]), t(angles)),
    }
    for name, f in cases.items():
        in_torch, in_numpy = f(lambda x: x), f(lambda x: x.numpy())
        assert isinstance(in_numpy, np.ndarray), name
        np.testing.assert_allclose(in_numpy, in_torch.numpy(), rtol=1e-5, atol=1e-4, err_msg=name)
