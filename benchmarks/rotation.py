"""Faces at any in-plane angle: what is found, how good its pose is, what it costs.

    python -m benchmarks.rotation [--every 4] [--repeats 3] [--size 640x480] [--skip-cost] [--skip-aflw]
                                  [--skip-wider] [--validation] [--weights FILE]

- **AFLW2000** (the standard 1969 faces, every ``--every``-th), each face upright and turned in the image
  plane (the picture turned counter-clockwise, grown to hold it all). Found: a detection whose box overlaps
  the labelled box turned alike (IoU > 0.3, centre inside; as ``training.evaluate``). Pose error: geodesic
  angle between the detection's rotation and the label turned with the picture (``Rz(angle) R_label``).
  Rows: the plain detector on upright faces (the reference), ``any_rotation`` on upright faces, on faces
  turned by 90, 180 or 270 degrees, and on faces turned by 45, 135, 225 or 315 degrees (in turn); and the
  plain detector on faces turned by 180 degrees (the faces it finds upside down must get their real pose).
  Landmark error: the mean distance of the five landmarks from AFLW2000's (``aflw2000.five_landmarks``, turned
  alike), over the square root of the 68-landmark box's area.
- **Validation** (``--validation``, in place of AFLW2000): the same rows on the validation split of the AFLW
  training crops (``training.build_dataset.is_validation``, 761 faces), each labelled by the teacher (WHENet,
  flip-averaged, on the face's teacher box); found: a detection centred within 0.3 of the box's side of its
  centre. Settings are chosen here; AFLW2000 only measures.
- **WIDER FACE val** (AP at IoU 0.5, faces of 20 px or more): the plain detector and ``any_rotation`` on the
  scenes upright, and ``any_rotation`` on the scenes turned by 90, 180 or 270 degrees (in turn).
- **Cost**: the photos of ``../shared/data/photos`` resized to ``--size``, the plain detector and
  ``any_rotation`` taking turns photo by photo in one process (``support.timing.interleaved``); seconds per
  image and the median over ``--repeats`` passes of their ratio within a pass.
"""
from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from facepose import FacePoseDetector, load_image
from facepose.boxes import box_overlap
from facepose.rotation import euler_to_matrix, geodesic_distance, turn_rotations
from support.paths import AFLW2000, AFLW_FACES, AFLW_FACES_EXTRA, PHOTOS, WIDER_VAL
from support.timing import interleaved, median_ratio
from training.aflw2000 import five_landmarks, load_aflw2000
from training.metrics import average_precision
from training.sources import read_wider_boxes, small_faces
from training.turned_proposals import turned_box, turned_picture


def match(faces, truth_box: np.ndarray):
    """The best-scoring face whose box overlaps ``truth_box`` (IoU > 0.3, centre inside), or None."""
    if not faces:
        return None
    boxes = torch.tensor([f.box for f in faces], dtype=torch.float32)
    iou = box_overlap(boxes, torch.tensor(truth_box[None], dtype=torch.float32))[:, 0]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    g = truth_box
    inside = (centre[:, 0] > g[0]) & (centre[:, 0] < g[2]) & (centre[:, 1] > g[1]) & (centre[:, 1] < g[3])
    ok = torch.nonzero((iou > 0.3) & inside).flatten()
    return faces[int(ok[0])] if len(ok) else None


ROWS = {  # row: (detector, angles taken in turn)
    "plain detector, upright faces": ("plain", (0,)),
    "any_rotation, upright faces": ("any", (0,)),
    "any_rotation, faces turned by 90, 180 or 270": ("any", (90, 180, 270)),
    "any_rotation, faces turned by 45, 135, 225 or 315": ("any", (45, 135, 225, 315)),
    "plain detector, faces turned by 180": ("plain", (180,)),
}


def pose_rows(samples: Iterable[tuple[np.ndarray, torch.Tensor, np.ndarray, np.ndarray | None]], total: int, find,
              weights: str | None = None, desc: str = "faces turned") -> dict[str, dict]:
    """Each row of ``ROWS`` on ``total`` ``samples`` of ``(pixels, label (3, 3), box, five landmarks (5, 2) or None)``
    (read one at a time): share found, mean and median pose error, how many faces found are over 90 degrees off, and
    the mean landmark error (NaN without landmarks). ``find(faces, box, m)``: the detection of the face in ``box``
    of the picture turned by ``m``, or None."""
    detectors = {"plain": FacePoseDetector(weights=weights), "any": FacePoseDetector(weights=weights, any_rotation=True)}
    errors: dict[str, list] = {name: [] for name in ROWS}
    landmark_errors: dict[str, list] = {name: [] for name in ROWS}
    for i, (pixels, label, box, five) in enumerate(tqdm(samples, total=total, desc=desc, unit="face")):
        for name, (which, angles) in ROWS.items():
            angle = angles[i % len(angles)]
            image, m = turned_picture(pixels, angle)
            face = find(detectors[which].detect(image), box, m)
            error = None
            if face is not None:
                want = turn_rotations(label[None], torch.tensor([float(angle)]))
                error = math.degrees(geodesic_distance(torch.tensor(face.rotation)[None], want)[0])
                if five is not None:
                    side = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
                    landmark_errors[name].append(float(np.linalg.norm(np.array(face.landmarks) - five @ m[:, :2].T - m[:, 2],
                                                                      axis=1).mean()) / side)
            errors[name].append(error)
    out = {}
    for name, e in errors.items():
        found = [x for x in e if x is not None]
        out[name] = {"faces": len(e), "found": len(found) / len(e), "error": statistics.mean(found) if found else math.nan,
                     "median": statistics.median(found) if found else math.nan, "flipped": sum(x > 90 for x in found),
                     "landmarks": statistics.mean(landmark_errors[name]) if landmark_errors[name] else math.nan}
    return out


def aflw2000(every: int, weights: str | None = None) -> dict[str, dict]:
    """``pose_rows`` on every ``every``-th AFLW2000 face (found: IoU > 0.3 with the turned 68-landmark box)."""
    faces = load_aflw2000(AFLW2000)[::every]
    samples = ((load_image(s.image), euler_to_matrix(torch.tensor(s.yaw), torch.tensor(s.pitch), torch.tensor(s.roll)).float(),
                s.box68, five_landmarks(s.image)) for s in faces)
    return pose_rows(samples, len(faces), lambda found, box, m: match(found, turned_box(box, m)), weights, "AFLW2000 turned")


def near(faces, box: np.ndarray, m: np.ndarray):
    """The best-scoring face centred within 0.3 of the side of ``box`` (as turned by ``m``) of its centre, or None
    (a teacher's box is larger than a detection's: turned by 45 degrees its bounding box overlaps one by IoU < 0.3)."""
    centre = m @ np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.0])
    side = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    close = [f for f in faces if np.hypot(*((np.array(f.box[:2]) + np.array(f.box[2:])) / 2 - centre)) < 0.3 * side]
    return max(close, key=lambda f: f.score) if close else None


def validation(every: int, weights: str | None = None) -> dict[str, dict]:
    """``pose_rows`` on every ``every``-th face of the validation split of the AFLW training crops
    (``build_dataset.is_validation``), each labelled by the teacher (WHENet, flip-averaged, on its teacher box)."""
    from training.aflw2000 import crop_square
    from training.build_dataset import is_validation
    from training.sources import aflw_faces
    from training.teacher import find_whenet_h5, flip_averaged, load_whenet

    photos = [p for root, prefix in ((AFLW_FACES, "aflw"), (AFLW_FACES_EXTRA, "aflw_extra"))
              for p in aflw_faces(root, prefix=prefix) if is_validation(p.key)][::every]
    teacher = load_whenet(find_whenet_h5()).eval()
    labels = []
    with torch.inference_mode():
        for k in tqdm(range(0, len(photos), 32), desc="teacher labels", unit="batch"):
            x = np.stack([crop_square(Image.fromarray(p.pixels), p.teacher_boxes[0]) for p in photos[k:k + 32]])
            labels.append(flip_averaged(teacher, torch.from_numpy(x).permute(0, 3, 1, 2).float()))
    labels = torch.cat(labels)
    samples = ((p.pixels, euler_to_matrix(*label).float(), np.array(p.teacher_boxes[0]), None) for p, label in zip(photos, labels))
    return pose_rows(samples, len(photos), near, weights, "validation turned")


def wider(limit: int | None = None, weights: str | None = None) -> dict[str, float]:
    """WIDER FACE val AP at IoU 0.5 (faces under 20 px ignored): plain and any_rotation upright, any_rotation
    on the scenes turned by 90, 180 or 270 degrees in turn."""
    plain, anyrot = FacePoseDetector(weights=weights), FacePoseDetector(weights=weights, any_rotation=True)
    gt = list(read_wider_boxes(next(WIDER_VAL.glob("wider_face_*_bbx_gt.txt"))).items())[:limit]
    dets: dict[str, list] = {"plain, upright": [], "any_rotation, upright": [], "any_rotation, turned": []}
    truth: dict[str, dict] = {k: {} for k in dets}
    for i, (name, (boxes, invalid)) in enumerate(tqdm(gt, desc="WIDER val turned", unit="img")):
        pixels = load_image(WIDER_VAL / "images" / name)
        ignore = invalid | small_faces(boxes, 20)
        angle = 90 * (1 + i % 3)
        image, m = turned_picture(pixels, angle)
        turned = np.array([turned_box(b, m) for b in boxes]).reshape(-1, 4)
        for key, det, img, gts in (("plain, upright", plain, pixels, boxes), ("any_rotation, upright", anyrot, pixels, boxes),
                                   ("any_rotation, turned", anyrot, image, turned)):
            truth[key][i] = (gts, ignore)
            dets[key] += [(f.score, i, np.array(f.box)) for f in det.detect(img)]
    return {key: average_precision(dets[key], truth[key]) for key in dets}


def cost(size: tuple[int, int], repeats: int, weights: str | None = None) -> dict[str, float]:
    files = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    images = [np.asarray(Image.open(p).convert("RGB").resize(size, Image.BILINEAR)) for p in files]
    plain, anyrot = FacePoseDetector(weights=weights), FacePoseDetector(weights=weights, any_rotation=True)
    times = interleaved({"plain": plain.detect, "any_rotation": anyrot.detect}, images, repeats)
    return {name: statistics.median(t) for name, t in times.items()} | {"ratio": median_ratio(times["any_rotation"], times["plain"])}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, default=4, help="every n-th face (4: 493 of AFLW2000, 190 of the validation split)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", default="640x480")
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-aflw", action="store_true")
    p.add_argument("--skip-wider", action="store_true")
    p.add_argument("--validation", action="store_true", help="the face rows on the validation split of the AFLW training "
                   "crops (labelled by the teacher) instead of AFLW2000: where settings are chosen")
    p.add_argument("--weights", default=None, help="FPNet weights (default: the packaged ones)")
    p.add_argument("--wider-limit", type=int, default=None, help="the first N WIDER val images (default: all 300)")
    args = p.parse_args(argv)
    if not args.skip_cost:
        size = tuple(int(v) for v in args.size.split("x"))
        t = cost(size, args.repeats, args.weights)
        print(f"cost at {args.size} ({torch.get_num_threads()} threads): plain {1000 * t['plain']:.0f} ms, any_rotation "
              f"{1000 * t['any_rotation']:.0f} ms per image (medians); any_rotation / plain in the same pass: {t['ratio']:.2f}x "
              "(median)", flush=True)
    if not args.skip_aflw:
        res = validation(args.every, args.weights) if args.validation else aflw2000(args.every, args.weights)
        which = "validation split of the AFLW training crops" if args.validation else "AFLW2000"
        print(f"| {which}, every {args.every}th face | faces | found | pose error (geodesic, deg) | median | over 90 off "
              "| landmark error |")
        print("|---|---|---|---|---|---|---|")
        for name, r in res.items():
            landmarks = "-" if math.isnan(r["landmarks"]) else f"{100 * r['landmarks']:.2f}%"  # none on validation
            print(f"| {name} | {r['faces']} | {100 * r['found']:.1f}% | {r['error']:.2f} | {r['median']:.2f} | {r['flipped']} "
                  f"| {landmarks} |")
        ref = res["plain detector, upright faces"]
        for name, r in list(res.items())[1:]:
            print(f"{name} vs the plain detector upright: found {r['found'] / ref['found']:.3f}x, error {r['error'] / ref['error']:.2f}x")
    if not args.skip_wider:
        for key, ap in wider(args.wider_limit, args.weights).items():
            print(f"WIDER val AP@0.5, {key}: {ap:.4f}", flush=True)


if __name__ == "__main__":
    main()
