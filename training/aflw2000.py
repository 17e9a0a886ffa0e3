"""AFLW2000-3D, the pose benchmark (evaluation only, never training): labels, boxes, teacher crops."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from support.paths import AFLW2000

__all__ = ["Sample", "load_aflw2000", "five_landmarks", "teacher_box", "crop_square"]


@dataclass
class Sample:
    image: Path
    yaw: float
    pitch: float
    roll: float
    landmarks: np.ndarray  # (K, 2) visible AFLW 21-point landmarks (pt2d), image pixels
    box68: np.ndarray  # (4,) x1 y1 x2 y2 of the 68 fitted landmarks (labels.csv)

    @property
    def angles(self) -> np.ndarray:
        return np.array([self.yaw, self.pitch, self.roll])


def load_aflw2000(root: Path | str = AFLW2000, standard: bool = True) -> list[Sample]:
    """The labelled faces, in file order; ``standard`` keeps the usual 1969 (all angles within 99 deg)."""
    root = Path(root)
    if not (root / "labels.csv").is_file():
        raise FileNotFoundError(f"AFLW2000 not found: {root}/labels.csv")
    samples = []
    with open(root / "labels.csv") as f:
        for row in csv.DictReader(f):
            if standard and row["in_standard_1969_subset"] != "1":
                continue
            image = root / "images" / row["image"]
            pt2d = sio.loadmat(image.with_suffix(".mat"))["pt2d"]
            visible = (pt2d[0] >= 0) & (pt2d[1] >= 0)  # -1 marks an invisible landmark
            box68 = np.array([float(row[f"lmk68_{k}"]) for k in ("x1", "y1", "x2", "y2")])
            samples.append(Sample(image, float(row["yaw_deg"]), float(row["pitch_deg"]), float(row["roll_deg"]),
                                  pt2d[:, visible].T.astype(np.float64), box68))
    return samples


def five_landmarks(image: Path) -> np.ndarray:
    """``(5, 2)`` pixels: the detector's five landmarks (eye centres, the left one as displayed first; nose tip; mouth
    corners, left as displayed first) from the 68 fitted landmarks of the AFLW2000 image (``pt3d_68``'s x and y,
    given for hidden points too): each eye's six points averaged, points 30, 48 and 54."""
    points = sio.loadmat(Path(image).with_suffix(".mat"))["pt3d_68"][:2].T.astype(np.float64)
    return np.stack((points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]))


def teacher_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The benchmark crop for the teacher: the landmarks' box grown by 0.4 of its width left and right,
    0.4 of its height above and 0.12 below, every margin measured on the landmarks' box (not squared).
    With it the WHENet port measures yaw 5.11 / pitch 6.30 / roll 4.76 (the published protocol's numbers;
    Hopenet's code, which measures each margin on the box as already grown, gives 5.38 / 6.44 / 4.87).
    Training data uses the same box, so the teacher sees faces framed as in its benchmark."""
    x_min, y_min = landmarks.min(0)
    x_max, y_max = landmarks.max(0)
    w, h = x_max - x_min, y_max - y_min
    return float(x_min - 0.4 * w), float(y_min - 0.4 * h), float(x_max + 0.4 * w), float(y_max + 0.12 * h)


def crop_square(image: Image.Image, box: tuple[float, float, float, float], size: int = 224) -> np.ndarray:
    """``box`` cut out (black outside the image) and resized to ``size x size``: ``(size, size, 3)`` uint8."""
    return np.asarray(image.convert("RGB").crop(tuple(int(round(v)) for v in box)).resize((size, size), Image.BILINEAR))
