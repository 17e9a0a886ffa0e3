"""Live video: FacePose's tracker against MediaPipe Face Mesh in video mode, on the same frames, in one process.

    python -m benchmarks.live [--frames 150] [--size 640x480] [--every 30] [--repeats 3] [--threads N]

The clips are cut from real photos of ``../shared/data/photos`` (``support.clips``, kind "moving": panned,
zoomed and turned slowly, as a webcam drifts): one face (``ONE_FACE_PHOTO``) and two faces (``PHOTO``).
On each frame the two take turns (FacePose first on even frames, Face Mesh first on odd ones), so the
machine's drift hits both alike. FacePose: ``FacePoseTracker.update`` with the frame's time. Face Mesh:
``FaceMesh(static_image_mode=False, refine_landmarks=False)`` (its video mode, tracking from frame to frame)
plus the head rotation from its 468 landmarks by Procrustes against MediaPipe's canonical face, as a user
of Face Mesh gets a head pose. Prints ms per frame, faces per frame and the ratio FacePose / Face Mesh
(below 1: FacePose is faster) of the run with the median ratio of ``--repeats``, and how far the tracked
pose is from ``detect`` run on each frame alone (mean geodesic angle over the faces both report, matched by
IoU > 0.5; untimed). Needs mediapipe
(``requirements-train.txt``).

Each clip is timed in two settings: **searching** (the tracker looks for new faces once every ``--every``
frames; Face Mesh's ``max_num_faces`` one more than the clip's faces, so its face detector runs on every
frame, as it does until that many are found) and **at most the clip's faces** (the tracker's ``max_faces`` and
Face Mesh's ``max_num_faces`` both the clip's number of faces: neither searches while it follows them all;
Face Mesh's default is one face).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from facepose import FacePoseDetector
from facepose.boxes import box_overlap
from facepose.rotation import geodesic_distance
from facepose.tracker import FacePoseTracker
from support.clips import ONE_FACE_PHOTO, PHOTO, frames


class FaceMeshVideo:
    """Face Mesh in video mode with the head rotation of each face found (Procrustes)."""

    def __init__(self, max_faces: int) -> None:
        import mediapipe as mp

        from training.mediapipe_teacher import landmarks_to_camera, load_canonical_face, procrustes_rotation

        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces, refine_landmarks=False)
        self.canonical, self.to_camera, self.fit = load_canonical_face(), landmarks_to_camera, procrustes_rotation

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        result = self.mesh.process(pixels)
        h, w = pixels.shape[:2]
        return [self.fit(self.to_camera(np.array([(p.x, p.y, p.z) for p in face.landmark]), w, h), self.canonical)
                for face in (result.multi_face_landmarks or [])]

    def close(self) -> None:
        self.mesh.close()


def pose_difference(tracked: list[list], detector: FacePoseDetector, clip: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean geodesic angle (degrees) between the tracker's rotations and ``detect``'s on the same frames, over
    the faces both report (matched by IoU above 0.5): all of them, and those whose box lies inside the frame
    (a face cut by the frame's edge is cut differently by the two: padded by the tracker, clamped by ``detect``);
    and the faces per frame ``detect`` finds."""
    angles, inside, found = [], [], []
    for faces, frame in zip(tracked, clip):
        alone = detector.detect(frame)
        found.append(len(alone))
        if not faces or not alone:
            continue
        h, w = frame.shape[:2]
        iou = box_overlap(torch.tensor([f.box for f in faces]), torch.tensor([f.box for f in alone]))
        for i, j in enumerate(iou.argmax(1).tolist()):
            if iou[i, j] > 0.5 and faces[i].rotation is not None:
                r = torch.tensor([faces[i].rotation, alone[j].rotation], dtype=torch.float64)
                angles.append(float(torch.rad2deg(geodesic_distance(r[:1], r[1:]))[0]))
                x1, y1, x2, y2 = alone[j].box
                if x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h:
                    inside.append(angles[-1])
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return mean(angles), mean(inside), mean(found)


def compare(clip: list[np.ndarray], every: int, max_faces: int | None, mesh_faces: int,
            fps: float = 30.0) -> dict[str, float]:
    """Mean ms per frame and mean faces per frame of the tracker (``max_faces``) and of Face Mesh
    (``max_num_faces=mesh_faces``), taking turns per frame, and the tracked pose's difference from ``detect`` on
    each frame."""
    detector = FacePoseDetector()
    tracker = FacePoseTracker(detector, every=every, max_faces=max_faces)
    tracked = []
    mesh = FaceMeshVideo(mesh_faces)
    times: dict[str, list[float]] = {"facepose": [], "facemesh": []}
    faces: dict[str, list[int]] = {"facepose": [], "facemesh": []}
    runs = {"facepose": lambda i, f: tracker.update(f, timestamp=i / fps), "facemesh": lambda i, f: mesh(f)}
    with torch.inference_mode():
        for i, frame in enumerate(clip):
            for name in (("facepose", "facemesh") if i % 2 == 0 else ("facemesh", "facepose")):
                start = time.perf_counter()
                found = runs[name](i, frame)
                times[name].append(time.perf_counter() - start)
                faces[name].append(len(found))
                if name == "facepose":
                    tracked.append(found)
    mesh.close()
    skip = min(10, len(clip) // 5)  # both start up on the first frames
    out = {f"{k}_ms": 1000 * statistics.mean(v[skip:]) for k, v in times.items()}
    out |= {f"{k}_faces": float(np.mean(v)) for k, v in faces.items()}
    out["ratio"] = out["facepose_ms"] / out["facemesh_ms"]
    out["pose_difference"], out["pose_difference_inside"], out["detect_faces"] = pose_difference(tracked, detector, clip)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--size", default="640x480")
    p.add_argument("--every", type=int, default=30, help="the tracker's search for new faces once every N frames")
    p.add_argument("--repeats", type=int, default=3, help="runs of each clip; the run with the median ratio is shown")
    p.add_argument("--threads", type=int, default=None, help="threads torch uses (default: torch's own, one per core)")
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    print(f"{args.frames} frames of {args.size}, {torch.get_num_threads()} threads, tracker every={args.every}, "
          f"median of {args.repeats} runs")
    print("| clip | setting | FacePose tracker ms/frame | faces/frame | Face Mesh (video mode + Procrustes) ms/frame "
          "| faces/frame | ratio | tracked pose vs detect, degrees (faces inside the frame) | detect: faces/frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, photo, faces in (("one face", ONE_FACE_PHOTO, 1), ("two faces", PHOTO, 2)):
        clip = frames("moving", args.frames, size, photo)
        for limit in (None, faces):
            setting = f"searching (Face Mesh max_num_faces={faces + 1})" if limit is None else f"max_faces={faces} (both)"
            runs = sorted((compare(clip, args.every, limit, limit or faces + 1) for _ in range(args.repeats)),
                          key=lambda r: r["ratio"])
            r = runs[len(runs) // 2]
            print(f"| {name} | {setting} | {r['facepose_ms']:.1f} | {r['facepose_faces']:.2f} | {r['facemesh_ms']:.1f} | "
                  f"{r['facemesh_faces']:.2f} | {r['ratio']:.2f} | {r['pose_difference']:.2f} "
                  f"({r['pose_difference_inside']:.2f}) | {r['detect_faces']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
