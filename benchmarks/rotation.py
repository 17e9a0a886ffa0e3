"""Faces at any in-plane angle (``any_rotation=True``): what it finds, how good its pose is, what it costs.

    python -m benchmarks.rotation [--every 4] [--repeats 3] [--size 640x480] [--skip-cost] [--skip-aflw]

- **AFLW2000** (the standard 1969 faces, every ``--every``-th): each face once upright and once turned in
  the image plane by 90, 180 or 270 degrees (in turn). Found: a detection whose box, turned back, overlaps
  the labelled box (IoU > 0.3, centre inside; as ``training.evaluate``). Pose error: geodesic angle between
  the detection's rotation and the label turned with the image (``Rz(90 k) R_label``). Rows: the plain
  upright detector on upright faces (the reference), ``any_rotation`` on the upright faces, and
  ``any_rotation`` on the turned faces.
- **Cost**: the photos of ``../shared/data/photos`` resized to ``--size``, the plain detector and
  ``any_rotation`` in alternation in one process; seconds per image and their ratio.
"""
from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from facepose import FacePoseDetector, load_image
from facepose.boxes import box_overlap
from facepose.rotation import euler_to_matrix, geodesic_distance
from facepose.turns import turn_matrix, unturn_boxes
from support.paths import AFLW2000, PHOTOS
from support.timing import alternated
from training.aflw2000 import load_aflw2000


def match(faces, truth_box: np.ndarray, k: int, height: int, width: int):
    """The best-scoring face whose box (turned back by ``k`` quarter turns into the ``height x width``
    original) overlaps ``truth_box`` (IoU > 0.3, centre inside), or None."""
    if not faces:
        return None
    boxes = unturn_boxes(torch.tensor([f.box for f in faces], dtype=torch.float32), k, height, width)
    iou = box_overlap(boxes, torch.tensor(truth_box[None], dtype=torch.float32))[:, 0]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    g = truth_box
    inside = (centre[:, 0] > g[0]) & (centre[:, 0] < g[2]) & (centre[:, 1] > g[1]) & (centre[:, 1] < g[3])
    ok = torch.nonzero((iou > 0.3) & inside).flatten()
    return faces[int(ok[0])] if len(ok) else None


def aflw2000(every: int) -> dict[str, dict]:
    plain, anyrot = FacePoseDetector(), FacePoseDetector(any_rotation=True)
    samples = load_aflw2000(AFLW2000)[::every]
    rows = {"plain detector, upright faces": [], "any_rotation, upright faces": [], "any_rotation, turned faces": []}
    for i, s in enumerate(tqdm(samples, desc="AFLW2000 turned", unit="face")):
        pixels = load_image(s.image)
        h, w = pixels.shape[:2]
        label = euler_to_matrix(torch.tensor(s.yaw), torch.tensor(s.pitch), torch.tensor(s.roll)).float()
        k = 1 + i % 3
        turned = np.ascontiguousarray(np.rot90(pixels, k))  # counter-clockwise, as facepose.turns.turn
        for name, det, image, kk in ((list(rows)[0], plain, pixels, 0), (list(rows)[1], anyrot, pixels, 0),
                                     (list(rows)[2], anyrot, turned, k)):
            face = match(det.detect(image), s.box68, kk, h, w)
            error = None
            if face is not None:
                want = turn_matrix(kk) @ label
                error = math.degrees(geodesic_distance(torch.tensor(face.rotation)[None], want[None])[0])
            rows[name].append(error)
    return {name: {"faces": len(e), "found": sum(x is not None for x in e) / len(e),
                   "error": statistics.mean(x for x in e if x is not None)} for name, e in rows.items()}


def cost(size: tuple[int, int], repeats: int) -> dict[str, float]:
    files = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    images = [np.asarray(Image.open(p).convert("RGB").resize(size, Image.BILINEAR)) for p in files]
    plain, anyrot = FacePoseDetector(), FacePoseDetector(any_rotation=True)
    return alternated({"plain": (plain.detect, images), "any_rotation": (anyrot.detect, images)}, repeats)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=4, help="every n-th AFLW2000 face (4: 493 faces)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", default="640x480")
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-aflw", action="store_true")
    args = p.parse_args(argv)
    if not args.skip_cost:
        size = tuple(int(v) for v in args.size.split("x"))
        t = cost(size, args.repeats)
        print(f"cost at {args.size} ({torch.get_num_threads()} threads): plain {1000 * t['plain']:.0f} ms, any_rotation "
              f"{1000 * t['any_rotation']:.0f} ms per image: {t['any_rotation'] / t['plain']:.2f}x", flush=True)
    if not args.skip_aflw:
        res = aflw2000(args.every)
        print(f"| AFLW2000, every {args.every}th face | faces | found | pose error (geodesic, deg) |")
        print("|---|---|---|---|")
        for name, r in res.items():
            print(f"| {name} | {r['faces']} | {100 * r['found']:.1f}% | {r['error']:.2f} |")
        ref, turned = res["plain detector, upright faces"], res["any_rotation, turned faces"]
        print(f"turned vs upright: found {turned['found'] / ref['found']:.3f}x, error {turned['error'] / ref['error']:.2f}x")


if __name__ == "__main__":
    main()
