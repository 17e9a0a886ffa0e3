"""FPNet at profiles on the validation split, with the two labels there that neither teacher made.

    python -m training.profile_check --weights A.safetensors [B.safetensors ...] [--data DIR ...] [--profiles DIR ...]

Per bin of |yaw|, for each weights file, FPNet's pose (the mean with the mirrored crop's, as the detector
reads it) on the validation split's positives:

- real AFLW faces (``--data``, ``build_dataset``'s folders): FPNet's yaw against AFLW's annotated yaw
  (``yaw.csv``, human-based; binned by it), and pitch and roll against the data set's label (the teachers and
  the landmark fit, ``training.labels``);
- turned faces (``--profiles``, ``training.profile_synthesis``'s folders): yaw, pitch, roll and the geodesic
  angle against their exact label (binned by it).

With ``--teachers``, also the teachers on the turned validation faces made again (``profile_synthesis`` with
its seed 0, the whole picture): WHENet (flip-averaged), Face Mesh (the second teacher, where it finds the face)
and their mean (the data set's label rule), each against the exact label.

The validation split is the data set's (by photo); AFLW2000 is not read. Prints tables, returns the numbers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from facepose.cascade import mean_with_mirrored
from facepose.rotation import euler_to_matrix, matrix_to_euler, sixd_to_matrix
from facepose.weights import load_last_stage

from .landmark_pose import read_yaw
from .metrics import angle_errors, geodesic_errors
from .samples import KIND, require_data_sets
from .train import to_input
from .turned_proposals import SOURCES

__all__ = ["BINS", "read_split", "pose", "main"]
BINS = (0, 30, 60, 75, 100)


def read_split(folder: Path, split: str = "val") -> dict[str, np.ndarray]:
    """The positives with a pose label of ``split`` in ``folder``'s shards: ``crops``, ``angles``, ``face_key``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    parts = []
    for name, info in sorted(manifest["shards"].items()):
        if info["split"] != split or not info.get("samples"):
            continue
        with np.load(folder / "shards" / f"{name}.npz") as z:
            keep = (z["kind"] == KIND["positive"]) & z["has_pose"]
            parts.append({k: z[k][keep] for k in ("crops", "angles", "face_key")})
    return {k: np.concatenate([p[k] for p in parts]) for k in ("crops", "angles", "face_key")}


@torch.inference_mode()
def pose(fpnet, crops: np.ndarray, batch: int = 512) -> np.ndarray:
    """``(N, 3, 3)`` rotations FPNet reads in ``crops (N, 48, 48, 3)`` uint8, averaged with the mirrored crops'."""
    out = []
    for i in range(0, len(crops), batch):
        x = to_input(torch.from_numpy(crops[i:i + batch]))
        out.append(mean_with_mirrored(fpnet.rotation_6d(fpnet.features(x)), fpnet.rotation_6d(fpnet.features(x.flip(-1)))))
    return torch.cat(out).double().numpy()


def _bins(yaw: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero((np.abs(yaw) >= lo) & (np.abs(yaw) < hi)) for lo, hi in zip(BINS[:-1], BINS[1:])]


def check(weights: Path, real: dict | None, turned: dict | None, annotated: dict[str, float]) -> dict:
    fpnet, _ = load_last_stage(weights)
    fpnet.eval()
    out: dict = {}
    if real is not None:
        keys = [k.split("#")[0] for k in real["face_key"]]
        has = np.array([k in annotated for k in keys])
        truth = np.array([annotated.get(k, np.nan) for k in keys])
        angles = matrix_to_euler(pose(fpnet, real["crops"][has]))
        label = real["angles"][has]
        rows = []
        for idx in _bins(truth[has]):
            rows.append({"samples": len(idx), "yaw_vs_annotated": float(np.abs(angles[idx, 0] - truth[has][idx]).mean()),
                         **dict(zip(("yaw_vs_label", "pitch_vs_label", "roll_vs_label"),
                                    angle_errors(angles[idx], label[idx]).mean(0).tolist()))})
        out["real"] = rows
    if turned is not None:
        rotations = pose(fpnet, turned["crops"])
        angles, truth = matrix_to_euler(rotations), turned["angles"].astype(np.float64)
        errors = angle_errors(angles, truth)
        geodesic = geodesic_errors(rotations, truth)
        out["turned"] = [{"samples": len(idx), **dict(zip(("yaw", "pitch", "roll"), errors[idx].mean(0).tolist())),
                          "geodesic": float(geodesic[idx].mean())} for idx in _bins(truth[:, 0])]
    return out


@torch.inference_mode()
def teachers_on_turned(folders: list[Path], seed: int = 0) -> dict:
    """Per bin of the exact |yaw|: WHENet's, Face Mesh's and the teachers' label's errors (yaw, pitch, roll,
    geodesic) on the validation faces of ``folders`` turned as ``profile_synthesis`` turns them."""
    from PIL import Image

    from .aflw2000 import crop_square
    from .build_dataset import is_validation
    from .labels import teacher_labels
    from .mediapipe_teacher import FaceMeshTeacher
    from .profile_synthesis import Synthesiser, source_faces
    from .teacher import find_whenet_h5, flip_averaged, load_whenet

    synth, whenet, facemesh = Synthesiser(seed), load_whenet(find_whenet_h5()), FaceMeshTeacher()
    truth, wh, fm = [], [], []
    for folder in folders:
        for photo, key, label in source_faces(folder):
            if not is_validation(photo.key):
                continue
            t = synth.turned(photo, photo.teacher_boxes[0], label, key)
            if t is None:
                continue
            b = photo.teacher_boxes[0]
            box = (b[0] + t.shift, b[1], b[2] + t.shift, b[3])
            x = torch.from_numpy(crop_square(Image.fromarray(t.pixels), box)[None]).permute(0, 3, 1, 2).float()
            truth.append(t.sixd)
            wh.append(flip_averaged(whenet, x)[0].numpy())
            found = facemesh.teach(t.pixels, box)
            fm.append(np.full((3, 3), np.nan) if found is None else found)
    facemesh.close()
    truth = sixd_to_matrix(torch.from_numpy(np.stack(truth)).double()).numpy()
    true_angles = matrix_to_euler(truth)
    wh, fm = torch.from_numpy(np.stack(wh)).double(), torch.from_numpy(np.stack(fm)).double()
    label, _ = teacher_labels(wh, fm)
    readers = {"WHENet": euler_to_matrix(*wh.T).numpy(), "Face Mesh": fm.numpy(), "teachers' label": label.numpy()}
    out = {}
    for name, rot in readers.items():
        rows = []
        for idx in _bins(true_angles[:, 0]):
            ok = idx[~np.isnan(rot[idx]).any((1, 2))]
            err = angle_errors(matrix_to_euler(rot[ok]), true_angles[ok]) if len(ok) else np.full((0, 3), np.nan)
            rows.append({"faces": len(idx), "read": len(ok), **dict(zip(("yaw", "pitch", "roll"), err.mean(0).tolist())),
                         "geodesic": float(geodesic_errors(rot[ok], true_angles[ok]).mean()) if len(ok) else float("nan")})
        out[name] = rows
    return out


def _print(name: str, result: dict) -> None:
    labels = [f"{lo}-{hi}" for lo, hi in zip(BINS[:-1], BINS[1:])]
    print(f"\n{name}")
    if "real" in result:
        print("| AFLW |yaw| (annotated) | samples | yaw vs annotated | yaw / pitch / roll vs label |")
        for b, r in zip(labels, result["real"]):
            print(f"| {b} | {r['samples']} | {r['yaw_vs_annotated']:.2f} | "
                  f"{r['yaw_vs_label']:.2f} / {r['pitch_vs_label']:.2f} / {r['roll_vs_label']:.2f} |")
    if "turned" in result:
        print("| turned |yaw| (exact) | samples | yaw | pitch | roll | geodesic |")
        for b, r in zip(labels, result["turned"]):
            if r["samples"]:
                print(f"| {b} | {r['samples']} | {r['yaw']:.2f} | {r['pitch']:.2f} | {r['roll']:.2f} | {r['geodesic']:.2f} |")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, nargs="*", default=[], help="FPNet weights files to compare")
    p.add_argument("--data", type=Path, nargs="*", default=[], help="build_dataset folders (real AFLW faces)")
    p.add_argument("--profiles", type=Path, nargs="*", default=[], help="profile_synthesis folders (turned faces)")
    p.add_argument("--teachers", action="store_true", help="also the teachers on the turned validation faces")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    require_data_sets(args.data)
    require_data_sets(args.profiles, made_by="training.profile_synthesis")
    annotated = {f"{prefix}/{name}": yaw for prefix, root in SOURCES.items() for name, yaw in read_yaw(root).items()}
    real = turned = None
    if args.data:
        parts = [read_split(f) for f in args.data]
        real = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if args.profiles:
        parts = [read_split(f) for f in args.profiles]
        turned = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    results = {}
    for w in args.weights:
        results[str(w)] = check(w, real, turned, annotated)
        _print(str(w), results[str(w)])
    if args.teachers:
        if not args.data:
            raise SystemExit("--teachers turns the validation faces of the --data folders: give them")
        results["teachers_on_turned"] = teachers_on_turned(args.data)
        labels = [f"{lo}-{hi}" for lo, hi in zip(BINS[:-1], BINS[1:])]
        print("\n| teacher on turned faces | exact |yaw| | read / faces | yaw | pitch | roll | geodesic |")
        for name, rows in results["teachers_on_turned"].items():
            for b, r in zip(labels, rows):
                if r["faces"]:
                    print(f"| {name} | {b} | {r['read']} / {r['faces']} | {r['yaw']:.2f} | {r['pitch']:.2f} | "
                          f"{r['roll']:.2f} | {r['geodesic']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
