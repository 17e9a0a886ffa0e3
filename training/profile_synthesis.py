"""Profiles made from near-frontal faces, with exact rotation labels (300W-LP's method, Face Mesh's mesh).

    python -m training.profile_synthesis [--data DIR ...] [--out DIR] [--limit N] [--seed 0] [--threads N]

Both teachers fade at profiles and no label of a real profile is exact. A near-frontal face is labelled well
(both teachers agree there), and turning its head about the camera's vertical axis by ``d`` degrees gives a
picture of the same head at ``d`` degrees more yaw whose label is known exactly: ``Ry(-d) R``. As 300W-LP was
made from 300W with a fitted 3D face, this command fits nothing: MediaPipe Face Mesh gives each face's 468
points in 3D (depth at the scale of x), and the picture is warped by that mesh:

- the mesh: the 468 points, a ring of points around the face (``RING`` times the face oval's radius, at the
  oval's depth: hair, ears and the head's sides turn with the face) and the picture's border (the background,
  which stays still), joined by a Delaunay triangulation of the points as seen in the picture;
- the head's points turn about a vertical axis ``AXIS_DEPTH`` face widths behind the face; each triangle of the
  new picture takes its pixels from where it lay in the old one (an affine warp per triangle, nearest triangle
  drawn last);
- the cascade runs on the new picture as on the data set's photos: O-Net's detection near the turned face is its
  box, and up to ``PER_FACE`` of R-Net's proposals with IoU at least 0.65 with it are kept, as positives with
  the turned label (a face O-Net does not find is skipped).

Sources: the AFLW faces of each data set folder (``build_dataset``) whose label is within ``MAX_SOURCE_ANGLE`` of frontal
in yaw, pitch and roll and comes from both teachers, each turned once, further the way it already looks, to a yaw drawn uniformly from
``TARGET_YAW``. The split is the data set's (by photo). Writes a data set folder (``--out``) that ``train --data``
loads beside the others: ``shards/{train,val}_<folder>.npz`` and ``manifest.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facepose.boxes import box_overlap
from facepose.cascade import run_cascade
from facepose.config import DetectorConfig
from facepose.crops import crops_to_uint8
from facepose.nets import CascadeNets
from facepose.rotation import euler_to_matrix, matrix_to_euler, matrix_to_sixd, sixd_to_matrix
from facepose.weights import WEIGHTS_DIR, load_last_stage, load_pnet, load_rnet

from . import sources
from .build_dataset import POS_IOU, context_crops, is_validation, offsets_to
from .mediapipe_teacher import MESH_SIZE, square_context
from .samples import KIND, require_data_sets
from .turned_proposals import SOURCES, face_labels

__all__ = ["FACE_OVAL", "face_points", "turn_head", "head_mesh", "warp_picture", "turned_label", "Synthesiser", "main"]
MAX_SOURCE_ANGLE = 30.0  # degrees of yaw, pitch and roll, at most, of the faces turned (both teachers good there)
TARGET_YAW = (45.0, 95.0)  # degrees of |yaw| the turned faces get, uniformly
RING = 1.35  # the ring of points that turns with the head, in face oval radii from its centre
AXIS_DEPTH = 0.6  # the vertical axis the head turns about, in face widths behind the face oval
PER_FACE = 4  # R-Net proposals kept per turned face
# Face Mesh's face oval, in order around the face (MediaPipe's FACEMESH_FACE_OVAL)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


def face_points(mesh, pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """Face Mesh's 468 points of the face in ``box`` (the teacher's box) of ``pixels (H, W, 3)``, in picture
    pixels: ``(468, 3)`` as (x right, y down, z toward the viewer, at x's scale); None if Face Mesh finds none.
    Face Mesh sees the square around the box (``square_context``), as the teacher does."""
    from PIL import Image

    x0, y0, x1, _ = square_context(box)
    side = x1 - x0
    crop = Image.fromarray(np.ascontiguousarray(pixels)).crop((x0, y0, x0 + side, y0 + side))
    found = mesh.process(np.asarray(crop.resize((MESH_SIZE, MESH_SIZE), Image.BILINEAR)))
    if not found.multi_face_landmarks:
        return None
    n = np.array([(p.x, p.y, p.z) for p in found.multi_face_landmarks[0].landmark], np.float64)
    return np.stack((x0 + n[:, 0] * side, y0 + n[:, 1] * side, -n[:, 2] * side), axis=1)


def turn_head(points: np.ndarray, degrees: float) -> np.ndarray:
    """``points (K, 3)`` (x right, y down, z toward the viewer, pixels) of a head turned by ``degrees`` of yaw
    (positive: toward the picture's left, as ``facepose.rotation``'s yaw) about the vertical axis
    ``AXIS_DEPTH`` face widths behind its face oval's centre."""
    oval = points[list(FACE_OVAL)]
    width = np.ptp(oval[:, 0])
    cx, cz = oval[:, 0].mean(), oval[:, 2].mean() - AXIS_DEPTH * width
    t = math.radians(degrees)
    # yaw + t: the face's normal (0, 0, 1) goes toward -x, i.e. x' = x cos - z sin about the axis
    dx, dz = points[:, 0] - cx, points[:, 2] - cz
    return np.stack((cx + dx * math.cos(t) - dz * math.sin(t), points[:, 1], cz + dx * math.sin(t) + dz * math.cos(t)), 1)


def head_mesh(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The warp's mesh: ``(V, 3)`` vertices (the 468 points, the ring that turns with them, the picture's border)
    and ``(V,)`` bool, True for the vertices that turn."""
    h, w = shape
    oval = points[list(FACE_OVAL)]
    centre = oval.mean(0)
    ring = centre + RING * (oval - centre)
    ring[:, 2] = oval[:, 2].mean()
    k = 9
    t = np.linspace(0, 1, k, endpoint=False)
    border = np.concatenate([np.stack((t * (w - 1), np.zeros(k)), 1), np.stack((np.full(k, w - 1), t * (h - 1)), 1),
                             np.stack(((1 - t) * (w - 1), np.full(k, h - 1)), 1), np.stack((np.zeros(k), (1 - t) * (h - 1)), 1)])
    border = np.concatenate((border, np.full((len(border), 1), oval[:, 2].min())), 1)
    vertices = np.concatenate((points, ring, border))
    turns = np.r_[np.ones(len(points) + len(ring), bool), np.zeros(len(border), bool)]
    return vertices, turns


def warp_picture(pixels: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``pixels (H, W, 3)`` warped so that each triangle of the Delaunay triangulation of ``source (V, 3)``
    (x, y in pixels, z toward the viewer) moves to ``target (V, 3)``: the nearest triangle (by its mean target
    depth) wins where they overlap; pixels no triangle covers keep the source picture's."""
    import cv2
    from scipy.spatial import Delaunay

    h, w = pixels.shape[:2]
    tri = Delaunay(source[:, :2]).simplices
    order = np.argsort(target[tri, 2].mean(1))  # far first
    index = np.full((h, w), -1, np.int32)
    for t in order:
        cv2.fillConvexPoly(index, np.round(target[tri[t], :2] * 16).astype(np.int32), int(t), lineType=cv2.LINE_8, shift=4)
    # per triangle the affine map from target to source pixels: [x y 1] @ A = [sx sy]
    a = np.concatenate((target[tri, :2], np.ones((len(tri), 3, 1))), 2)
    ok = np.abs(np.linalg.det(a)) > 1e-6
    maps = np.zeros((len(tri), 3, 2))
    maps[ok] = np.linalg.solve(a[ok], source[tri[ok], :2])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    covered = (index >= 0) & ok[np.maximum(index, 0)]
    m = maps[np.maximum(index, 0)]
    map_x = np.where(covered, xs * m[..., 0, 0] + ys * m[..., 1, 0] + m[..., 2, 0], xs).astype(np.float32)
    map_y = np.where(covered, xs * m[..., 0, 1] + ys * m[..., 1, 1] + m[..., 2, 1], ys).astype(np.float32)
    return cv2.remap(np.ascontiguousarray(pixels), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def turned_label(sixd: np.ndarray, degrees: float) -> np.ndarray:
    """``(6,)`` rotation label of a head turned by ``degrees`` more yaw about the camera's vertical axis:
    ``Ry(-degrees) R``, 6D."""
    turn = euler_to_matrix(*torch.tensor([float(degrees), 0.0, 0.0], dtype=torch.float64))
    return matrix_to_sixd(turn @ sixd_to_matrix(torch.from_numpy(sixd).double())).numpy()


@dataclass
class Turned:
    """A face turned by ``Synthesiser.turned``."""

    pixels: np.ndarray  # (H, W, 3) uint8: the new picture
    degrees: float  # the turn, degrees of yaw
    sixd: np.ndarray  # (6,) its exact label
    source_yaw: float  # the label's yaw before the turn
    centre: np.ndarray  # (2,) the turned face points' centre, pixels
    shift: float  # how far the face moved to the right, pixels
    rng: np.random.Generator  # the face's own random numbers, for what follows


class Synthesiser:
    """Turns faces and keeps the crops the cascade proposes on them (see the module's text)."""

    def __init__(self, seed: int) -> None:
        import mediapipe as mp

        onet, _ = load_last_stage(WEIGHTS_DIR / "onet.safetensors")
        self.nets = CascadeNets(load_pnet(), load_rnet(), onet.eval())
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
        self.seed = seed

    def turned(self, photo: sources.Photo, teacher_box: tuple, label: np.ndarray, key: str) -> Turned | None:
        """``photo``'s face turned to a larger yaw (``TARGET_YAW``, drawn from ``key`` and the seed), or None where
        Face Mesh misses it."""
        rng = np.random.default_rng([self.seed, int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)])
        yaw = float(matrix_to_euler(sixd_to_matrix(torch.from_numpy(label).double()))[0])
        points = face_points(self.mesh, photo.pixels, teacher_box)
        if points is None:
            return None
        side = 1.0 if yaw >= 0 else -1.0
        if abs(yaw) < 2:
            side = float(rng.choice((-1.0, 1.0)))
        degrees = side * float(rng.uniform(*TARGET_YAW)) - yaw
        vertices, turns = head_mesh(points, photo.pixels.shape[:2])
        moved = vertices.copy()
        moved[turns] = turn_head(vertices[turns], degrees)
        return Turned(warp_picture(photo.pixels, vertices, moved), degrees, turned_label(label, degrees), yaw,
                      moved[:468, :2].mean(0), float(moved[:468, 0].mean() - points[:, 0].mean()), rng)

    @torch.inference_mode()
    def samples(self, photo: sources.Photo, teacher_box: tuple, label: np.ndarray, key: str) -> dict | None:
        """The positives of ``photo``'s face turned to a larger yaw, or None where Face Mesh or O-Net miss it."""
        t = self.turned(photo, teacher_box, label, key)
        if t is None:
            return None
        image = torch.from_numpy(t.pixels).permute(2, 0, 1)[None].float()
        run = run_cascade(self.nets, image, DetectorConfig(), flip_pose=False)
        det = run.detections.boxes.numpy().astype(np.float64).reshape(-1, 4)
        near = np.flatnonzero(np.all((det[:, :2] < t.centre) & (det[:, 2:] > t.centre), axis=1))
        if not len(near):
            return None
        face = det[near[int(run.detections.scores.numpy()[near].argmax())]]
        boxes, crops = run.last_stage_input()
        boxes = boxes.numpy().astype(np.float64)
        iou = box_overlap(torch.from_numpy(boxes), torch.from_numpy(face[None]))[:, 0].numpy()
        on = np.flatnonzero(iou >= POS_IOU)
        if not len(on):
            return None
        on = t.rng.choice(on, min(PER_FACE, len(on)), replace=False)
        angles = matrix_to_euler(sixd_to_matrix(torch.from_numpy(t.sixd).double())).numpy()
        n = len(on)
        return {"crops": crops_to_uint8(crops[on] * 128 + 127.5).numpy(), "context": context_crops(image, boxes[on]),
                "kind": np.full(n, KIND["positive"], np.int8), "box": offsets_to(boxes[on], np.repeat(face[None], n, 0)),
                "sixd": np.repeat(t.sixd[None], n, 0).astype(np.float32), "angles": np.repeat(angles[None], n, 0).astype(np.float32),
                "has_pose": np.ones(n, bool), "face_key": np.array([key] * n, dtype="<U48"),
                "source_yaw": np.full(n, t.source_yaw, np.float32), "turn": np.full(n, t.degrees, np.float32)}


def source_faces(folder: Path, limit: int | None = None) -> Iterator[tuple[sources.Photo, str, np.ndarray]]:
    """The faces of the data set in ``folder`` that are turned: ``(photo, face key, (6,) label)`` of each AFLW face
    whose label comes from both teachers and lies within ``MAX_SOURCE_ANGLE`` of frontal; at most ``limit`` per
    source."""
    labels = face_labels(folder)
    two = _two_teacher_keys(folder)
    for prefix in sorted({key.split("/")[0] for key in labels} & set(SOURCES)):
        done = 0
        for photo in tqdm(sources.aflw_faces(SOURCES[prefix], prefix=prefix), desc=f"{folder.name} {prefix} profiles", unit="photo"):
            key = f"{photo.key}#0"
            if key not in labels or key not in two:
                continue
            angles = matrix_to_euler(sixd_to_matrix(torch.from_numpy(labels[key]).double())).numpy()
            if np.abs(angles).max() >= MAX_SOURCE_ANGLE:
                continue
            yield photo, key, labels[key]
            done += 1
            if limit and done >= limit:
                break


def build(folder: Path, out: Path, synth: Synthesiser, limit: int | None) -> dict[str, int]:
    """``out/shards/{train,val}_<folder name>.npz`` from the AFLW faces of the data set in ``folder``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    parts: dict[str, list] = {"train": [], "val": []}
    for photo, key, label in source_faces(folder, limit):
        s = synth.samples(photo, photo.teacher_boxes[0], label, key)
        if s is not None:
            parts["val" if is_validation(photo.key) else "train"].append(s)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    out_manifest = json.loads(path.read_text()) if path.exists() else {"shards": {}, "made_by": "training.profile_synthesis"}
    counts = {}
    for split, p in parts.items():
        if not p:
            continue
        data = {k: np.concatenate([s[k] for s in p]) for k in p[0]}
        name = f"{split}_{folder.name}"
        np.savez(out / "shards" / f"{name}.npz", **data)
        out_manifest["shards"][name] = {"split": split, "samples": int(len(data["kind"])), "positive": int(len(data["kind"])),
                                        "pose": int(len(data["kind"])), "faces": len(p), "from": str(folder)}
        counts[split] = len(p)
    out_manifest["teacher_box"] = manifest.get("teacher_box")
    path.write_text(json.dumps(out_manifest, indent=1))
    return counts


def _two_teacher_keys(folder: Path) -> set[str]:
    """The face keys of ``folder``'s data set whose label came from both teachers."""
    keys: set[str] = set()
    for shard in sorted((folder / "shards").glob("*.npz")):
        with np.load(shard) as z:
            if "label_source" in z.files:
                keys.update(str(k) for k in z["face_key"][z["label_source"] == 2])
    return keys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", default=[Path("data_cache/fpnet")],
                   help="data set folders (build_dataset --out, after landmark_pose) whose AFLW faces are turned")
    p.add_argument("--out", type=Path, default=Path("data_cache/profiles"), help="the profiles' data set folder")
    p.add_argument("--limit", type=int, default=None, help="at most this many faces per source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    require_data_sets(args.data)
    try:
        synth = Synthesiser(args.seed)
    except ImportError:
        raise SystemExit("profile synthesis needs MediaPipe: bash scripts/setup.sh dev") from None
    for folder in args.data:
        print(f"{folder}: {build(folder, args.out, synth, args.limit)} turned faces (train, val) -> {args.out}")


if __name__ == "__main__":
    main()
