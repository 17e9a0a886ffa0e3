"""The 3D view: one head per face, where the face is in the photo, turned by its rotation, numbered as in
the annotated picture."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facepose.draw import face_numbers
from facepose.plot3d import HEAD_WIDTH, head_figure, head_mesh
from facepose.tracker import TrackedFace

from .conftest import PHOTOS, needs_photos

pytest.importorskip("plotly")

CREW = "nasa_iss_expedition_1.jpg"


def test_head_mesh_is_a_unit_wide_face_looking_out():
    vertices, triangles = head_mesh()
    assert vertices.shape[1] == 3 and triangles.shape[1] == 3 and triangles.max() == len(vertices) - 1
    assert np.isclose(vertices[:, 0].max() - vertices[:, 0].min(), 1.0, atol=1e-3)
    nose = vertices[vertices[:, 2].argmax()]  # the point nearest the viewer is the nose, in the middle
    assert abs(nose[0]) < 0.05 and abs(nose[1]) < 0.3


def test_numbers_are_track_ids_for_tracked_faces():
    face = dict(box=(0, 0, 10, 10), score=0.9, landmarks=[], rotation=None, yaw=None, pitch=None, roll=None)
    from facepose.detector import Face

    assert face_numbers([Face(**face), Face(**face)]) == [1, 2]
    assert face_numbers([TrackedFace(**face, track_id=7), TrackedFace(**face, track_id=3)]) == [7, 3]


@needs_photos
def test_each_face_gets_its_head_where_it_is_turned_by_its_rotation(detector):
    from PIL import Image

    size = Image.open(PHOTOS / CREW).size
    faces = detector.detect(PHOTOS / CREW)
    figure = head_figure(faces, *size)
    heads = [t for t in figure.data if t.type == "mesh3d"]
    assert len(heads) == len(faces) >= 3
    assert list(figure.data[-1].text) == [str(n) for n in face_numbers(faces)]
    vertices, _ = head_mesh()
    for face, head in zip(faces, heads):
        x1, y1, x2, y2 = face.box
        centre = np.array([(x1 + x2) / 2, size[1] - (y1 + y2) / 2, 0.0])
        points = np.stack([np.asarray(head.x), np.asarray(head.y), np.asarray(head.z)], axis=1)
        back = (points - centre) @ np.asarray(face.rotation) / (HEAD_WIDTH * (x2 - x1))  # camera -> head frame
        assert np.abs(back - vertices).max() < 1e-3  # float32
        assert f"yaw {face.yaw:+.1f}" in head.hovertemplate


@needs_photos
def test_thirty_faces_stay_light(detector):
    """A 30-face view: 30 heads, and a spec small enough to send with every photo request."""
    faces = detector.detect(PHOTOS / "nasa_astronaut_class_photo_b.png")
    many = (faces * 8)[:30]
    figure = head_figure(many, 2000, 1500)
    assert sum(t.type == "mesh3d" for t in figure.data) == 30
    assert len(json.dumps(figure.to_plotly_json(), default=str)) < 600_000
