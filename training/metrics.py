"""Measures and their tables: angle errors (yaw wrapped), geodesic errors, per-axis summaries, detection AP, and the
Markdown tables that ``training.evaluate`` prints and ``training.model_card`` puts in the card."""
from __future__ import annotations

import numpy as np
import torch

from facepose.boxes import box_overlap
from facepose.rotation import euler_to_matrix, geodesic_distance

__all__ = ["angle_errors", "geodesic_errors", "summary", "average_precision", "pose_table", "ap_table", "aflw2000_rows", "common_table"]


def angle_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(N, 3)`` yaw, pitch, roll in degrees -> ``(N, 3)`` absolute errors; yaw wraps around at 360,
    so 179 and -179 are 2 degrees apart.

    >>> angle_errors(np.array([[179.0, 10.0, -5.0]]), np.array([[-179.0, 12.0, 5.0]])).tolist()
    [[2.0, 2.0, 10.0]]
    """
    d = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64))
    d[:, 0] = np.minimum(d[:, 0], 360 - d[:, 0])
    return d


def geodesic_errors(rotations: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` rotations found and ``(N, 3)`` true yaw, pitch, roll -> ``(N,)`` angles (degrees) between each
    rotation and the true one: the error of the head's orientation itself, whatever the Euler angles make of it."""
    t = torch.from_numpy(np.asarray(truth, dtype=np.float64))
    true = euler_to_matrix(t[:, 0], t[:, 1], t[:, 2])
    return torch.rad2deg(geodesic_distance(torch.from_numpy(np.asarray(rotations, dtype=np.float64)), true)).numpy()


def summary(errors: np.ndarray) -> dict:
    """Mean error per axis, their mean, and the number of faces, from ``(N, 3)`` errors."""
    m = errors.mean(0) if len(errors) else np.full(3, np.nan)
    return {"yaw": float(m[0]), "pitch": float(m[1]), "roll": float(m[2]), "mean": float(m.mean()), "faces": int(len(errors))}


def average_precision(dets: list[tuple[float, int, np.ndarray]], gts: dict[int, tuple[np.ndarray, np.ndarray]],
                      iou_threshold: float = 0.5) -> float:
    """VOC-style AP (all-point interpolation). ``dets``: (score, image, box); ``gts``: image -> (boxes
    ``(F, 4)``, ignore ``(F,)``). A detection matching an ignored face counts neither way."""
    n_pos = sum(int((~ig).sum()) for _, ig in gts.values())
    used = {k: np.zeros(len(b), bool) for k, (b, _) in gts.items()}
    tp, fp = [], []
    for _, img, box in sorted(dets, key=lambda d: -d[0]):
        boxes, ignore = gts[img]
        if len(boxes):
            iou = box_overlap(torch.tensor(box[None]).double(), torch.from_numpy(boxes).double())[0].numpy()
            j = int(iou.argmax())
            if iou[j] >= iou_threshold:
                if ignore[j]:
                    continue
                if not used[img][j]:
                    used[img][j] = True
                    tp.append(1), fp.append(0)
                    continue
        tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / max(n_pos, 1)
    precision = tp / np.maximum(tp + fp, 1e-9)
    mrec = np.concatenate([[0], recall, [1]])
    mpre = np.concatenate([[0], precision, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]).sum())


def pose_table(rows: list[tuple[str, dict]], faces: bool = True) -> str:
    """Markdown table of mean absolute errors: one row per ``(name, summary(...))``."""
    head = "| model | yaw | pitch | roll | mean |" + (" faces |" if faces else "")
    lines = [head, "|---" * (6 if faces else 5) + "|"]
    for name, r in rows:
        cells = f"| {name} | {r['yaw']:.2f} | {r['pitch']:.2f} | {r['roll']:.2f} | **{r['mean']:.2f}** |"
        lines.append(cells + (f" {r['faces']} |" if faces else ""))
    return "\n".join(lines)


def ap_table(rows: list[tuple[str, float]]) -> str:
    """Markdown table of detection AP: one row per ``(last stage, AP at IoU 0.5)``."""
    return "\n".join(["| last stage | AP at IoU 0.5 |", "|---|---|", *(f"| {n} | {ap:.4f} |" for n, ap in rows)])


def aflw2000_rows(a: dict) -> list[tuple[str, dict]]:
    """The AFLW2000 pose rows of ``training.evaluate``'s metrics, named for a reader."""
    return [("FacePose FPNet, end to end (detected faces)", a["end_to_end"]),
            ("FacePose FPNet, end to end, without flip averaging", a["end_to_end_without_flip"]),
            ("FPNet on crops from the ground-truth boxes", a["fpnet_on_ground_truth_crops"]),
            ("WHENet teacher on the same detected faces", a["teacher_on_detected"]),
            ("WHENet teacher, all faces", a["teacher"]),
            ("WHENet teacher with flip averaging, all faces", a["teacher_flip_averaged"])] + ([
            ("MediaPipe Face Mesh teacher (square around the face, flip-averaged), faces it finds", a["mediapipe_teacher"]),
            ("Teachers' label: mean rotation of both (WHENet alone where Face Mesh finds none), all faces",
             a["teachers_mean"]),
            ("MediaPipe Face Mesh as a user runs it (whole image, Procrustes), faces it finds", a["mediapipe"]),
        ] if "mediapipe" in a else [])


def common_table(a: dict) -> list[str]:
    """Lines of the head-to-head table: FacePose and MediaPipe on the AFLW2000 faces both find (none
    without MediaPipe's numbers)."""
    if "common_with_mediapipe" not in a:
        return []
    c = a["common_with_mediapipe"]
    return [f"On the {c['fpnet']['faces']} faces that both FacePose and MediaPipe Face Mesh find:", "",
            pose_table([("FacePose FPNet, end to end", c["fpnet"]), ("MediaPipe Face Mesh + Procrustes", c["mediapipe"])]),
            ""]
