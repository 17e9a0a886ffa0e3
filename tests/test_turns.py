"""Faces at any in-plane angle (``any_rotation``): the quarter-turn geometry, AFLW2000 faces turned by 90,
180 and 270 degrees against their labels turned with the image, and the upside-down crew of an ISS photo."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facepose import FacePoseDetector, load_image
from facepose.cascade import updown_crops
from facepose.rotation import euler_to_matrix, geodesic_distance, in_plane_angle, turn_rotations
from facepose.turns import turn, turn_matrix, unturn_boxes, unturn_points, upright_face_scores

from .conftest import PHOTOS, landmark_roll, needs_photos


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_unturn_points_find_the_same_pixels(k):
    image = torch.arange(5 * 7.0).reshape(5, 7)
    turned = turn(image, k)
    rows, cols = torch.meshgrid(torch.arange(turned.shape[0]), torch.arange(turned.shape[1]), indexing="ij")
    xy = unturn_points(torch.stack((cols, rows), -1).reshape(-1, 2), k, 5, 7).long()
    assert torch.equal(image[xy[:, 1], xy[:, 0]], turned.reshape(-1))


def test_turn_matches_numpy_and_boxes_stay_boxes():
    a = np.random.default_rng(0).integers(0, 255, (4, 6, 3))
    assert np.array_equal(turn(torch.from_numpy(a).permute(2, 0, 1), 1).permute(1, 2, 0).numpy(), np.rot90(a, 1))
    box = torch.tensor([[1.0, 2.0, 3.0, 3.0]])  # x1 y1 x2 y2 in the image turned once (6 wide -> 4 wide)
    assert unturn_boxes(box, 1, 4, 6).tolist() == [[2.0, 1.0, 3.0, 3.0]]
    assert torch.allclose(turn_matrix(1) @ turn_matrix(3), torch.eye(3))
    assert torch.allclose(turn_matrix(1) @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]))  # x turns to y


def test_any_rotation_is_a_setting():
    det = FacePoseDetector(any_rotation=True)
    assert det.config.any_rotation and not det.replace(any_rotation=False).config.any_rotation
    with pytest.raises(ValueError, match="any_rotation"):
        FacePoseDetector(any_rotation="yes")


@pytest.fixture(scope="module")
def any_rotation():
    return FacePoseDetector(any_rotation=True)


def test_turned_aflw2000_faces(any_rotation):
    """Every 200th AFLW2000 face turned by 90, 180 and 270 degrees: found, and its rotation within 15 degrees
    (geodesic, mean) of the label turned with the image; the faces the plain detector finds turned get their
    real pose too (FPNet's orientation head: no face found upside down is reported upright). Turned by 45 and
    225 degrees (between the quarter turns, read again upright): found, within 15 degrees as well."""
    aflw = pytest.importorskip("training.aflw2000")
    from training.turned_proposals import turned_picture
    try:
        samples = aflw.load_aflw2000()[::200]
    except FileNotFoundError:
        pytest.skip("AFLW2000 not in ../shared/data")
    plain = FacePoseDetector()
    errors, plain_errors, between = [], [], []
    for s in samples:
        pixels = load_image(s.image)
        label = euler_to_matrix(torch.tensor(s.yaw), torch.tensor(s.pitch), torch.tensor(s.roll)).float()
        for k in (1, 2, 3):
            turned = np.ascontiguousarray(np.rot90(pixels, k))
            want = (turn_matrix(k) @ label)[None]
            faces = any_rotation.detect(turned)
            assert faces, f"{s.image.name} turned {90 * k}: no face"
            errors.append(math.degrees(geodesic_distance(torch.tensor(faces[0].rotation)[None], want)[0]))
            upright = plain.detect(turned)
            if upright:
                plain_errors.append(math.degrees(geodesic_distance(torch.tensor(upright[0].rotation)[None], want)[0]))
        for angle in (45.0, 225.0):
            turned, _ = turned_picture(pixels, angle)
            faces = any_rotation.detect(turned)
            assert faces, f"{s.image.name} turned {angle:.0f}: no face"
            want = turn_rotations(label[None], torch.tensor([angle]))
            between.append(math.degrees(geodesic_distance(torch.tensor(faces[0].rotation)[None], want)[0]))
    assert np.mean(errors) < 15, errors
    assert np.mean(between) < 15, between
    assert not plain_errors or np.mean(plain_errors) < 20, plain_errors


def test_upright_face_scores_see_a_face_only_upright(any_rotation):
    """``upright_face_scores``, what keeps a face that a quarter turn finds leaning far: every 400th AFLW2000 face,
    turned by 135 and 225 degrees, cut from its labelled box turned upright by its label's lean, is a face to O-Net
    (at least 0.95; ``turns.UPRIGHT_FACE`` is 0.97 and the lean read by FPNet); cut turned a quarter turn off, it
    is not (under 0.5)."""
    aflw = pytest.importorskip("training.aflw2000")
    from training.turned_proposals import turned_box, turned_picture
    try:
        samples = aflw.load_aflw2000()[::400]
    except FileNotFoundError:
        pytest.skip("AFLW2000 not in ../shared/data")
    for s in samples:
        label = euler_to_matrix(torch.tensor(s.yaw), torch.tensor(s.pitch), torch.tensor(s.roll)).float()
        for angle in (135.0, 225.0):
            picture, m = turned_picture(load_image(s.image), angle)
            box = torch.tensor(turned_box(s.box68, m), dtype=torch.float32)[None]
            lean = in_plane_angle(turn_rotations(label[None], torch.tensor([angle])))
            image = any_rotation.prepare(picture)
            with torch.inference_mode():
                upright = float(upright_face_scores(any_rotation.nets.fpnet, image, box, lean)[0])
                sideways = float(upright_face_scores(any_rotation.nets.fpnet, image, box, lean + 90)[0])
            assert upright >= 0.95 and sideways < 0.5, (s.image.name, angle, upright, sideways)


def test_updown_tells_upright_from_upside_down(any_rotation):
    """The up/down check (``nets.UpDownNet``) on every 100th AFLW2000 face, upright and turned by 135 degrees: cut
    from its labelled box turned upright by its label's lean, it says upright (logit > 0); cut turned by the lean
    plus 180 degrees, upside down (logit < 0)."""
    aflw = pytest.importorskip("training.aflw2000")
    from training.turned_proposals import turned_box, turned_picture
    try:
        samples = aflw.load_aflw2000()[::100]
    except FileNotFoundError:
        pytest.skip("AFLW2000 not in ../shared/data")
    updown = any_rotation.nets.updown
    assert updown is not None, "the package ships the up/down check"
    for s in samples:
        label = euler_to_matrix(torch.tensor(s.yaw), torch.tensor(s.pitch), torch.tensor(s.roll)).float()
        for angle in (0.0, 135.0):
            picture, m = turned_picture(load_image(s.image), angle)
            box = torch.tensor(turned_box(s.box68, m), dtype=torch.float32)[None]
            lean = in_plane_angle(turn_rotations(label[None], torch.tensor([angle]))).float()
            image = any_rotation.prepare(picture)
            with torch.inference_mode():
                upright = float(updown(updown_crops(image, box, lean)[0])[0])
                upside_down = float(updown(updown_crops(image, box, lean + 180)[0])[0])
            assert upright > 0 > upside_down, (s.image.name, angle, upright, upside_down)


# Faces a person sees in this photo taken in orbit (the crew floats in every direction): centre (x, y) in
# pixels and roll by eye in degrees (our convention: roll = -(counter-clockwise turn of the face on screen)).
CREW_PHOTO = "nasa_iss_sts_131_and_expedition_23_group_portrait.jpg"
CREW_FACES = [((810, 192), 180), ((695, 226), 180), ((590, 280), 180), ((503, 309), 120), ((837, 273), -90),
              ((850, 388), -60), ((476, 398), 75), ((670, 340), 0), ((525, 518), 0), ((660, 522), 0)]


def roll_difference(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@needs_photos
def test_crew_in_orbit(any_rotation):
    """Each face a person sees in the orbit photo is found once by any_rotation, with the roll a person sees
    (within 30 degrees). The upright detector finds some of the turned faces too: it never reports one of them
    nearer upright than the roll a person sees (within 90 degrees of it; an upside-down face is never upright).
    Either way the landmarks sit where the eyes and mouth are: the line from the mouth up to the eyes leans as the
    roll a person sees (within 30 degrees)."""
    for detector, every_face, tolerance in ((any_rotation, True, 30), (FacePoseDetector(), False, 90)):
        faces = detector.detect(PHOTOS / CREW_PHOTO)
        for (x, y), roll in CREW_FACES:
            hits = [f for f in faces if f.box[0] < x < f.box[2] and f.box[1] < y < f.box[3]]
            assert hits or not every_face, f"no face found at {(x, y)}"
            assert len(hits) <= 1, f"face at {(x, y)} found {len(hits)} times"
            for f in hits:
                assert roll_difference(f.roll, roll) < tolerance, f"face at {(x, y)}: roll {f.roll:.0f}, a person sees {roll}"
                marks = landmark_roll(f.landmarks)
                assert roll_difference(marks, roll) < 30, f"face at {(x, y)}: landmarks lean {marks:.0f}, a person sees {roll}"


def test_any_rotation_bad_input_same_errors(any_rotation, tmp_path):
    from facepose import ImageError

    assert any_rotation.detect(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than P-Net's window: no face
    with pytest.raises(ImageError, match="too large|pixels"):
        any_rotation.replace(max_pixels=1000).detect(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError, match="no such file"):
        any_rotation.detect(tmp_path / "missing.jpg")
