"""Turn photos into FPNet training samples, as the thesis does.

    python -m training.build_dataset [--out data_cache/fpnet] [--sources aflw wider] [--celeba DIR]
                                     [--wider DIR ...] [--limit N]

For every photo: P-Net and R-Net propose boxes exactly as at inference; each proposal's 48x48 crop is
labelled by IoU with the true faces (>= 0.65 positive, 0.4-0.65 part face for box regression only,
< 0.3 negative, faces too small to learn from are neither), and negatives are also cut from inside
faces, around the eyes. Every positive gets the teacher's (WHENet) rotation, computed on a 224x224 crop
of its face (``aflw2000.teacher_box``, the benchmark's framing) with flip averaging. Samples go to
compact ``.npz`` shards with a ``manifest.json``; a rerun skips finished shards (resumable) and teacher
outputs are cached in ``teacher_cache.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facepose.boxes import box_overlap
from facepose.cascade import run_cascade
from facepose.config import DetectorConfig
from facepose.crops import CONTEXT, crops_to_uint8, cut_crops, grown, integral_image, padded_crops
from facepose.nets import CascadeNets
from facepose.rotation import matrix_to_euler, matrix_to_sixd
from facepose.weights import WEIGHTS_DIR, load_last_stage, load_pnet, load_rnet
from support.paths import AFLW_FACES, AFLW_FACES_EXTRA, WIDER_TRAIN

from . import sources
from .aflw2000 import crop_square
from .labels import TEACHERS, teacher_labels
from .mediapipe_teacher import FaceMeshTeacher
from .samples import KIND
from .teacher import find_whenet_h5, flip_averaged, load_whenet

__all__ = ["Labeller", "is_validation", "label_proposals", "offsets_to", "main"]
POS_IOU, PART_IOU, NEG_IOU = 0.65, 0.4, 0.3
# Median box of the teacher crop relative to O-Net's face box (x1, y1, x2, y2 offsets in units of the
# box's width/height), measured on AFLW face crops; recomputed by each build and stored in the manifest.
DEFAULT_TEACHER_BOX = (-0.25, -0.3, 0.25, 0.05)
# Each sample also keeps a wider crop, its box grown CONTEXT times at the same scale (CONTEXT_SIZE px), black
# outside the photo: training turns and shifts the face inside it and cuts the 48x48 crop from real surroundings.
CONTEXT_SIZE = round(48 * CONTEXT)


def context_crops(pixels: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    """``(N, CONTEXT_SIZE, CONTEXT_SIZE, 3)`` uint8 crops of ``boxes (N, 4)`` grown ``CONTEXT`` times about their
    centre, from ``pixels (1, 3, H, W)``, black where they leave it."""
    out = np.zeros((len(boxes), CONTEXT_SIZE, CONTEXT_SIZE, 3), np.uint8)
    if len(boxes):
        crops, valid = padded_crops(pixels, grown(torch.as_tensor(boxes, dtype=torch.float32), CONTEXT), CONTEXT_SIZE)
        out[valid.numpy()] = crops_to_uint8(crops).numpy()
    return out


def is_validation(key: str, every: int = 20) -> bool:
    """Deterministic 1-in-``every`` split by photo."""
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % every == 0


def teacher_box_from(face: np.ndarray, rel: tuple[float, float, float, float]) -> tuple[float, ...]:
    w, h = face[2] - face[0], face[3] - face[1]
    return (face[0] + rel[0] * w, face[1] + rel[1] * h, face[2] + rel[2] * w, face[3] + rel[3] * h)


def face_from_teacher_box(box, rel) -> np.ndarray:
    """Inverse of ``teacher_box_from``."""
    w = (box[2] - box[0]) / (1 + rel[2] - rel[0])
    h = (box[3] - box[1]) / (1 + rel[3] - rel[1])
    return np.array([box[0] - rel[0] * w, box[1] - rel[1] * h, box[2] - rel[2] * w, box[3] - rel[3] * h])


@dataclass
class Cascade:
    """What the cascade sees of one photo: R-Net's proposals, their 48x48 crops, O-Net's detections."""

    boxes: np.ndarray  # (N, 4) squared R-Net boxes (FPNet's input windows)
    crops: np.ndarray  # (N, 48, 48, 3) uint8
    detections: np.ndarray  # (D, 4) O-Net's final boxes
    det_marks: np.ndarray  # (D, 5, 2)
    det_scores: np.ndarray  # (D,)


class Labeller:
    """Runs the cascade with MTCNN's O-Net on photos, as at inference, and labels the proposals."""

    def __init__(self, seed: int = 0) -> None:
        self.nets = CascadeNets(load_pnet(), load_rnet(), load_last_stage(WEIGHTS_DIR / "onet.safetensors")[0])
        self.rng = np.random.default_rng(seed)

    @torch.inference_mode()
    def cascade(self, pixels: np.ndarray, min_face_size: float = 20) -> Cascade:
        """Stages 1-2 with the default settings but ``min_face_size``, then O-Net once on the crops."""
        config = DetectorConfig(min_face_size=min_face_size)
        image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()
        run = run_cascade(self.nets, image, config, flip_pose=False)
        boxes, crops = run.last_stage_input()  # normalised: (x - 127.5) / 128, exact in float32 both ways
        det = run.detections
        return Cascade(boxes.numpy().astype(np.float64), crops_to_uint8(crops * 128 + 127.5).numpy(),
                       det.boxes.numpy().astype(np.float64), det.landmarks.numpy(), det.scores.numpy())

    def inside_boxes(self, face: np.ndarray, eyes: np.ndarray | None, count: int) -> np.ndarray:
        """``count`` square boxes around the eyes of ``face`` (0.3-0.5 of its width, jittered)."""
        w, h = face[2] - face[0], face[3] - face[1]
        if eyes is None:
            eyes = np.array([[face[0] + 0.3 * w, face[1] + 0.4 * h], [face[0] + 0.7 * w, face[1] + 0.4 * h]])
        out = []
        for _ in range(count):
            cx, cy = eyes[self.rng.integers(2)] + self.rng.uniform(-0.1, 0.1, 2) * w
            side = self.rng.uniform(0.3, 0.5) * w
            out.append([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
        return np.array(out).reshape(-1, 4)


def label_proposals(proposals: np.ndarray, faces: np.ndarray, ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label proposals ``(N, 4)`` by IoU with the faces ``(F, 4)``.

    Returns ``kind`` (N,): positive (IoU >= 0.65), part (0.4-0.65), negative (< 0.3 with every face,
    ignored ones included), -1 for the rest and for proposals on ignored faces; and ``face`` (N,): index
    of the best-overlapping face (-1 without faces).
    """
    n = len(proposals)
    kind = np.full(n, -1, np.int8)
    if not len(faces):
        kind[:] = KIND["negative"]
        return kind, np.full(n, -1)
    iou = box_overlap(torch.from_numpy(proposals).double(), torch.from_numpy(faces).double()).numpy()
    best = iou.argmax(1)
    best_iou = iou[np.arange(n), best]
    good = ~ignore[best]
    kind[(best_iou >= POS_IOU) & good] = KIND["positive"]
    kind[(best_iou >= PART_IOU) & (best_iou < POS_IOU) & good] = KIND["part"]
    kind[iou.max(1) < NEG_IOU] = KIND["negative"]
    return kind, best


def offsets_to(boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """MTCNN regression targets: corner moves in units of the (inclusive) box size."""
    size = (boxes[:, 2:] - boxes[:, :2] + 1)
    return ((targets - boxes) / np.concatenate([size, size], 1)).astype(np.float32)


class Builder:
    def __init__(self, out: Path, teacher_path: Path | None, max_negatives: int, seed: int,
                 teachers: list[str] | None = None) -> None:
        self.out = out
        (out / "shards").mkdir(parents=True, exist_ok=True)
        self.manifest_path = out / "manifest.json"
        self.manifest = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {"shards": {}}
        self.cache_path = out / "teacher_cache.json"
        self.cache = json.loads(self.cache_path.read_text()) if self.cache_path.exists() else {}
        self.mp_cache_path = out / "mediapipe_cache.json"
        self.mp_cache = json.loads(self.mp_cache_path.read_text()) if self.mp_cache_path.exists() else {}
        recorded = self.manifest.get("teachers", ["whenet"] if self.manifest["shards"] else None)
        if teachers and recorded and list(teachers) != recorded:
            raise SystemExit(f"{out} was built with the teachers {recorded}, not {list(teachers)}: use another --out")
        self.teachers = list(teachers or recorded or TEACHERS)
        self.manifest["teachers"] = self.teachers
        self.facemesh = None
        self.labeller = Labeller(seed=seed)
        self.teacher_path = teacher_path
        self.teacher = None
        self.max_negatives = max_negatives
        self.rng = np.random.default_rng(seed)
        self.teacher_box = tuple(self.manifest.get("teacher_box", DEFAULT_TEACHER_BOX))

    # -- teacher -------------------------------------------------------------------------------------
    def teach(self, requests: list[tuple[str, np.ndarray, tuple]]) -> None:
        """Teacher outputs for (key, pixels, box) not cached yet: WHENet's flip-averaged angles on the box
        (batched), and with the MediaPipe teacher its flip-averaged rotation on a square around the box
        (None where Face Mesh finds no face)."""
        from PIL import Image

        todo = [r for r in requests if r[0] not in self.cache]
        if todo and self.teacher is None:
            self.teacher = load_whenet(find_whenet_h5(self.teacher_path))
        for i in range(0, len(todo), 32):
            batch = todo[i:i + 32]
            x = np.stack([crop_square(Image.fromarray(p), box) for _, p, box in batch])
            with torch.inference_mode():
                angles = flip_averaged(self.teacher, torch.from_numpy(x).permute(0, 3, 1, 2).float())
            for (key, _, _), a in zip(batch, angles.tolist()):
                self.cache[key] = a
        if "mediapipe" not in self.teachers:
            return
        todo = [r for r in requests if r[0] not in self.mp_cache]
        if todo and self.facemesh is None:
            self.facemesh = FaceMeshTeacher()
        for key, pixels, box in todo:
            r = self.facemesh.teach(pixels, box)
            self.mp_cache[key] = None if r is None else r.reshape(-1).tolist()

    # -- calibration ---------------------------------------------------------------------------------
    def calibrate(self, photos: list[sources.Photo]) -> None:
        """Median teacher box relative to O-Net's detection, on AFLW crops where O-Net finds the face."""
        rel = []
        for photo in tqdm(photos, desc="calibrating teacher box", unit="img"):
            c = self.labeller.cascade(photo.pixels, 40)
            tb = np.array(photo.teacher_boxes[0])
            centre = (tb[:2] + tb[2:]) / 2
            for det in c.detections:
                dc = (det[:2] + det[2:]) / 2
                w, h = det[2] - det[0], det[3] - det[1]
                if np.all(np.abs(dc - centre) < 0.25 * w):
                    rel.append([(tb[0] - det[0]) / w, (tb[1] - det[1]) / h, (tb[2] - det[2]) / w, (tb[3] - det[3]) / h])
                    break
        if len(rel) >= 20:
            self.teacher_box = tuple(float(v) for v in np.median(np.array(rel), 0))
        self.manifest["teacher_box"] = list(self.teacher_box)
        print(f"teacher box relative to O-Net's face box: {np.round(self.teacher_box, 3).tolist()} ({len(rel)} faces)")

    # -- labelling -----------------------------------------------------------------------------------
    def label(self, photo: sources.Photo, min_face: float) -> tuple[dict, list]:
        c = self.labeller.cascade(photo.pixels, min_face)
        faces, ignore = photo.boxes.reshape(-1, 4).astype(np.float64), photo.ignore
        teacher_boxes = list(photo.teacher_boxes)
        if len(faces) == 0 and teacher_boxes:  # AFLW crop: the face is O-Net's detection near the landmarks
            expected = face_from_teacher_box(teacher_boxes[0], self.teacher_box)
            face = expected
            if len(c.detections):
                iou = box_overlap(torch.from_numpy(c.detections), torch.from_numpy(expected[None]))[:, 0].numpy()
                if iou.max() > 0.4:
                    face = c.detections[iou.argmax()]
            faces, ignore = face[None], np.zeros(1, bool)
        if ignore is None:
            ignore = np.zeros(len(faces), bool)
        eyes: list = [None] * len(faces)
        if len(c.detections) and len(faces):  # match O-Net's detections to faces: eyes, teacher boxes
            iou = box_overlap(torch.from_numpy(faces), torch.from_numpy(c.detections)).numpy()
            for f in range(len(faces)):
                d = iou[f].argmax()
                if iou[f, d] >= 0.5:
                    eyes[f] = c.det_marks[d][:2]
                    if teacher_boxes[f] is None and not ignore[f] and faces[f][2] - faces[f][0] >= 40:
                        teacher_boxes[f] = teacher_box_from(c.detections[d], self.teacher_box)
        requests = [(f"{photo.key}#{f}", photo.pixels, tuple(teacher_boxes[f])) for f in range(len(faces))
                    if teacher_boxes[f] is not None and not ignore[f]]

        kind, face_of = label_proposals(c.boxes, faces, ignore)
        target = faces[np.maximum(face_of, 0)] if len(faces) else np.zeros((len(kind), 4))
        face_of = np.where(kind == KIND["positive"], face_of, -1)
        negatives = np.flatnonzero(kind == KIND["negative"])
        if len(negatives) > self.max_negatives:
            kind[self.rng.choice(negatives, len(negatives) - self.max_negatives, replace=False)] = -1
        keep = kind >= 0
        image = torch.from_numpy(np.ascontiguousarray(photo.pixels)).permute(2, 0, 1).float()
        samples = {  # context crops for the kept samples only: most proposals are dropped negatives
            "crops": c.crops[keep], "context": context_crops(image[None], c.boxes[keep]), "kind": kind[keep],
            "box": offsets_to(c.boxes[keep], target[keep]),
            "face_key": np.array([f"{photo.key}#{f}" if f >= 0 else "" for f in face_of[keep]]),
        }
        # negatives from inside faces, around the eyes: one per learnable face of at least 30 px
        inside = [self.labeller.inside_boxes(faces[f], eyes[f], 1) for f in range(len(faces))
                  if not ignore[f] and faces[f][2] - faces[f][0] >= 30]
        if inside:
            boxes = torch.from_numpy(np.concatenate(inside)).float()
            crops, ok = cut_crops(integral_image(image), boxes, 48)
            if ok.any():
                m = len(crops)
                extra = {"crops": crops_to_uint8(crops).numpy(), "context": context_crops(image[None], boxes[ok].numpy()),
                         "kind": np.full(m, KIND["inside"], np.int8),
                         "box": np.zeros((m, 4), np.float32), "face_key": np.array([""] * m)}
                samples = {k: np.concatenate([samples[k], extra[k]]) for k in samples}
        return samples, requests

    def finish_shard(self, name: str, parts: list[dict], split: str) -> None:
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        if not data:
            return
        keys = data["face_key"]  # kept in the shard: labels can be made again from the teacher caches
        whenet = np.array([self.cache.get(k, [np.nan] * 3) if k else [np.nan] * 3 for k in keys], np.float64)
        mesh = np.array([self.mp_cache.get(k) or [np.nan] * 9 if k else [np.nan] * 9 for k in keys], np.float64)
        rot, source = teacher_labels(torch.from_numpy(whenet), torch.from_numpy(mesh.reshape(-1, 3, 3)))
        source = source.numpy()
        has_pose = source > 0
        angles = np.where(has_pose[:, None], matrix_to_euler(rot).numpy(), np.nan).astype(np.float32)
        data.update(angles=angles, has_pose=has_pose, sixd=matrix_to_sixd(rot).float().numpy(),
                    whenet_angles=whenet.astype(np.float32), label_source=source.astype(np.int8))
        np.savez(self.out / "shards" / f"{name}.npz", **data)
        counts = {k: int((data["kind"] == v).sum()) for k, v in KIND.items()}
        counts["pose"] = int(has_pose.sum())
        counts["pose_two_teachers"] = int((source == 2).sum())
        self.manifest["shards"][name] = {"split": split, "samples": int(len(data["kind"])), **counts}
        self.manifest_path.write_text(json.dumps(self.manifest, indent=1))
        self.cache_path.write_text(json.dumps(self.cache))
        self.mp_cache_path.write_text(json.dumps(self.mp_cache))

    def run(self, name: str, photos, min_face: float, chunk: int, total: int | None) -> None:
        bar = tqdm(total=total, desc=name, unit="img")
        for index in itertools.count():
            batch = list(itertools.islice(photos, chunk))
            if not batch:
                break
            shard = f"{name}_{index:04d}"
            if all(f"{shard}_{s}" in self.manifest["shards"] for s in ("train", "val")):
                bar.update(len(batch))
                continue
            parts = {"train": [], "val": []}
            requests = []
            for photo in batch:
                samples, req = self.label(photo, min_face)
                parts["val" if is_validation(photo.key) else "train"].append(samples)
                requests += req
                bar.update(1)
            self.teach(requests)
            for split, p in parts.items():
                self.finish_shard(f"{shard}_{split}", p, split)
                self.manifest["shards"].setdefault(f"{shard}_{split}", {"split": split, "samples": 0})
            self.manifest_path.write_text(json.dumps(self.manifest, indent=1))
        bar.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data_cache/fpnet"))
    parser.add_argument("--sources", nargs="*", default=["aflw", "aflw_extra", "wider"],
                        choices=["aflw", "aflw_extra", "wider"], help="the shared data sets to use (default: all)")
    parser.add_argument("--teachers", nargs="+", choices=list(TEACHERS), default=None,
                        help="label sources (default: both, or what an existing --out was built with): the mean "
                             "rotation of WHENet and MediaPipe Face Mesh where Face Mesh finds the face, WHENet elsewhere")
    parser.add_argument("--aflw", type=Path, default=AFLW_FACES)
    parser.add_argument("--aflw-extra", type=Path, default=AFLW_FACES_EXTRA)
    parser.add_argument("--wider", type=Path, nargs="*", default=[WIDER_TRAIN],
                        help="folders in WIDER FACE layout (default: ../shared/data/wider/train)")
    parser.add_argument("--celeba", type=Path, nargs="*", default=[], help="folders in CelebA layout")
    parser.add_argument("--teacher", type=Path, default=None, help="WHENet.h5 (default: found or fetched)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per source")
    parser.add_argument("--chunk", type=int, default=500, help="photos per shard")
    parser.add_argument("--max-negatives", type=int, default=40, help="outside negatives kept per photo")
    parser.add_argument("--calibration-photos", type=int, default=300,
                        help="AFLW crops used to place the teacher's crop relative to O-Net's box")
    parser.add_argument("--wider-min-face", type=float, default=20,
                        help="P-Net's minimum face size on WIDER/CelebA photos (below 20: more small crops)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    for folder in [*args.wider, *args.celeba]:
        if "val" in Path(folder).name.lower() or "aflw2000" in str(folder).lower():
            raise SystemExit(f"refusing to train on evaluation data: {folder}")
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    builder = Builder(args.out, args.teacher, args.max_negatives, args.seed, args.teachers)
    start = time.time()
    if "aflw" in args.sources:
        if "teacher_box" not in builder.manifest:
            builder.calibrate(list(sources.aflw_faces(args.aflw, limit=args.calibration_photos)))
        n = args.limit or sum(1 for _ in open(args.aflw / "faces.csv")) - 1
        builder.run("aflw", sources.aflw_faces(args.aflw, limit=args.limit), 40, args.chunk, n)
    if "aflw_extra" in args.sources:
        if "teacher_box" not in builder.manifest:
            builder.calibrate(list(sources.aflw_faces(args.aflw, limit=args.calibration_photos)))
        n = args.limit or sum(1 for _ in open(args.aflw_extra / "faces.csv")) - 1
        builder.run("aflw_extra", sources.aflw_faces(args.aflw_extra, limit=args.limit, prefix="aflw_extra"), 40,
                    args.chunk, n)
    if "wider" in args.sources:
        for folder in args.wider:
            suffix = "" if args.wider_min_face == 20 else f"-mf{args.wider_min_face:g}"
            builder.run(f"wider-{folder.name}{suffix}", sources.wider_face(folder, limit=args.limit), args.wider_min_face,
                        args.chunk // 5, None)
    for folder in args.celeba:
        builder.run(f"celeba-{folder.name}", sources.celeba(folder, limit=args.limit), 20, args.chunk, None)
    totals: dict[str, int] = {}
    for info in builder.manifest["shards"].values():
        for k, v in info.items():
            if k != "split":
                totals[f"{info['split']}_{k}"] = totals.get(f"{info['split']}_{k}", 0) + v
    builder.manifest["totals"] = totals
    builder.manifest_path.write_text(json.dumps(builder.manifest, indent=1))
    print(f"done in {time.time() - start:.0f} s: {totals}")


if __name__ == "__main__":
    main()
