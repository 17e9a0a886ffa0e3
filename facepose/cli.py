"""Command line: ``facepose detect SRC DEST`` annotates an image or a folder of images."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .detector import FacePoseDetector
from .draw import draw_faces
from .image import ImageError, load_image
from .weights import WeightsError

__all__ = ["main", "detect_files", "collect_inputs"]

JSON_NAME = "detections.json"


def collect_inputs(src: Path, dest: Path, recursive: bool) -> list[Path]:
    """Every regular, non-hidden file to try: ``src`` itself, or the files of folder ``src`` (its
    subfolders too when ``recursive``), leaving out ``dest`` when it lies inside ``src``. Sorted."""
    if src.is_file():
        return [src]
    dest = dest.resolve()
    found = []
    for root, dirs, files in os.walk(src):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (root_path / d).resolve() != dest)
        found += [root_path / f for f in files if not f.startswith(".") and (root_path / f).is_file()]
        if not recursive:
            break
    return sorted(found)


def output_path(src: Path, path: Path, dest: Path) -> Path:
    """Where the annotated copy of ``path`` goes: same relative path under ``dest``; formats other than
    JPEG and PNG are written as PNG with ``.png`` appended."""
    rel = Path(path.name) if src.is_file() else path.relative_to(src)
    if rel.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        rel = rel.with_name(rel.name + ".png")
    return dest / rel


def detect_files(
    src: Path, dest: Path, detector: FacePoseDetector, recursive: bool = False, overwrite: bool = False,
    progress: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Detect faces in every input, write annotated images and ``detections.json`` to ``dest``.

    Returns (results, errors): one dict per processed image and one per file that could not be read.
    Raises ``FileExistsError`` before touching anything if an output would replace an input or, unless
    ``overwrite``, an existing file.
    """
    inputs = collect_inputs(src, dest, recursive)
    outputs = [output_path(src, p, dest) for p in inputs]
    input_set = {p.resolve() for p in inputs}
    for out in outputs + [dest / JSON_NAME]:
        if out.resolve() in input_set:
            raise FileExistsError(f"writing {out} would overwrite an input image; choose another DEST")
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace earlier results")
    results, errors = [], []
    for path, out in tqdm(list(zip(inputs, outputs)), desc="detecting", unit="img", disable=not progress):
        name = str(path.name if src.is_file() else path.relative_to(src))
        try:
            pixels = load_image(path, detector.config.max_pixels)
        except ImageError as e:
            errors.append({"file": name, "error": str(e)})
            continue
        faces = detector.detect(pixels)
        out.parent.mkdir(parents=True, exist_ok=True)
        annotated = draw_faces(pixels, faces)
        if out.suffix.lower() in (".jpg", ".jpeg"):
            annotated.save(out, quality=95)
        else:
            annotated.save(out)
        results.append({
            "file": name, "annotated": str(out.relative_to(dest)), "width": pixels.shape[1],
            "height": pixels.shape[0], "faces": [f.to_dict() for f in faces],
        })
    dest.mkdir(parents=True, exist_ok=True)
    report = {
        "facepose_version": __version__, "weights": str(detector.weights), "pose_available": detector.pose_available,
        "images": results, "errors": errors,
    }
    (dest / JSON_NAME).write_text(json.dumps(report, indent=1))
    return results, errors


def run_detect(args: argparse.Namespace) -> int:
    src, dest = Path(args.src), Path(args.dest)
    if not src.exists():
        print(f"facepose: error: SRC {src} does not exist", file=sys.stderr)
        return 2
    if dest.exists() and not dest.is_dir():
        print(f"facepose: error: DEST {dest} exists and is not a folder", file=sys.stderr)
        return 2
    if src.is_dir() and dest.resolve() == src.resolve():
        print("facepose: error: DEST must differ from SRC, or the annotated images would replace the inputs", file=sys.stderr)
        return 2
    try:
        detector = FacePoseDetector(
            min_face_size=args.min_face_size, thresholds=(0.6, 0.7, args.threshold), weights=args.weights,
            device=args.device, flip_pose=not args.no_flip_pose,
        )
        results, errors = detect_files(src, dest, detector, args.recursive, args.overwrite)
    except (WeightsError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"facepose: error: {e}", file=sys.stderr)
        return 2
    n_faces = sum(len(r["faces"]) for r in results)
    print(f"{n_faces} faces in {len(results)} images; annotated images and {JSON_NAME} in {dest}")
    if not detector.pose_available:
        print("note: these weights have no trained pose head: yaw, pitch, roll and rotation are null")
    if errors:
        print(f"{len(errors)} files could not be read:", file=sys.stderr)
        for e in errors:
            print(f"  {e['file']}: {e['error']}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facepose", description="Find faces and their 3D head pose (MTCNN cascade with FPNet)."
    )
    parser.add_argument("--version", action="version", version=f"facepose {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "detect", help="annotate an image or a folder of images",
        description="Detect faces in SRC (an image, or every file of a folder) and write annotated copies "
        f"(box, score, landmarks, head axes: x red, y green, z blue) plus {JSON_NAME} with every face's box, "
        "score, landmarks, rotation and yaw/pitch/roll to the folder DEST. Files that cannot be read are "
        "listed at the end and the exit status is 1; inputs are never overwritten.",
    )
    d.add_argument("src", metavar="SRC", help="an image file or a folder")
    d.add_argument("dest", metavar="DEST", help="output folder (created if missing)")
    d.add_argument("--recursive", "-r", action="store_true", help="also process subfolders of SRC")
    d.add_argument("--weights", type=Path, default=None, help="FPNet weights (.safetensors); default: packaged")
    d.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    d.add_argument("--min-face-size", type=float, default=20, help="smallest face in pixels (default: 20)")
    d.add_argument("--threshold", type=float, default=0.7, help="last-stage face probability threshold (default: 0.7)")
    d.add_argument("--no-flip-pose", action="store_true",
                   help="pose from the crop alone, without averaging in its mirror image (slightly faster, less accurate)")
    d.add_argument("--overwrite", action="store_true", help="replace results already in DEST")
    d.set_defaults(func=run_detect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
