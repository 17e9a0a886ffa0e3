"""Make ``facepose/data/head_mesh.json``, the small 3D head the app's 3D view draws for each face.

    python scripts/head_mesh.py [--vertices 160]

MediaPipe's canonical face (``../shared/data/mediapipe``, Apache-2.0; in FacePose's head frame: x toward
the subject's left, y up, z out of the face) thinned to ``--vertices`` points by farthest-point sampling
from the nose tip, then triangulated once by Delaunay on its frontal (x, y) projection: the face is a
height field seen from the front, so that projection's triangles are the surface's. Vertices are
centred on the face's middle and scaled to unit width. Needs SciPy (a development dependency).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import Delaunay

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support.paths import MEDIAPIPE  # noqa: E402

NOSE_TIP = 1  # Face Mesh's landmark order


def farthest_points(points: np.ndarray, count: int, first: int) -> np.ndarray:
    """Indices of ``count`` of ``points (N, 3)`` spread as evenly as possible, starting at ``first``."""
    chosen = [first]
    distance = np.linalg.norm(points - points[first], axis=1)
    for _ in range(count - 1):
        chosen.append(int(distance.argmax()))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.array(sorted(chosen))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vertices", type=int, default=160)
    parser.add_argument("--out", type=Path, default=REPO / "facepose" / "data" / "head_mesh.json")
    args = parser.parse_args(argv)
    rows = [line.split()[1:4] for line in (MEDIAPIPE / "canonical_face_model_vertices.txt").read_text().splitlines()
            if line.startswith("v ")]
    vertices = np.array(rows, dtype=np.float64)
    keep = farthest_points(vertices, args.vertices, NOSE_TIP)
    v = vertices[keep]
    v -= (v.max(0) + v.min(0)) / 2
    v /= v[:, 0].max() - v[:, 0].min()
    triangles = Delaunay(v[:, :2]).simplices
    args.out.write_text(json.dumps({
        "source": "MediaPipe canonical face model (Apache-2.0, Copyright The MediaPipe Authors), "
                  f"{args.vertices} of its 468 vertices, triangulated by scripts/head_mesh.py",
        "frame": "x toward the subject's left, y up, z out of the face; unit width, centred",
        "vertices": np.round(v, 4).tolist(), "triangles": triangles.tolist()}, separators=(",", ":")))
    print(f"{args.out}: {len(v)} vertices, {len(triangles)} triangles")


if __name__ == "__main__":
    main()
