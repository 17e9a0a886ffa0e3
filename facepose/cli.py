"""Command line: ``facepose detect SRC DEST`` annotates an image or a folder of images (see ``batch``)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .batch import JSONL_NAME, RUN_NAME, Job, ResultLog, plan, read_results, run_local
from .config import FIELD_HELP, DetectorConfig
from .hub import write_config
from .tracker import CONFIRM_FRAMES, CONFIRM_SCORE, IDLE_EVERY, SURE_SCORE
from .weights import WeightsError

__all__ = ["main", "build_parser", "add_detector_options", "config_from_args"]


def _fail(message: str) -> int:
    print(f"facepose: error: {message}", file=sys.stderr)
    return 2


def run_detect(args: argparse.Namespace) -> int:
    src, dest = Path(args.src), Path(args.dest)
    if not src.exists():
        return _fail(f"SRC {src} does not exist")
    if dest.exists() and not dest.is_dir():
        return _fail(f"DEST {dest} exists and is not a folder")
    if src.is_dir() and dest.resolve() == src.resolve():
        return _fail("DEST must differ from SRC, or the annotated images would replace the inputs")
    if args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    try:
        config = config_from_args(args)
        job = Job(src, dest, str(args.weights) if args.weights else None, args.device, config, args.recursive,
                  not args.no_images, args.backend)
        detector = job.detector()  # a bad weights file or device fails here, before any work
        pose_available = detector.pose_available
        pending = plan(job, args.overwrite)
        if args.ray:
            from .ray_runner import run_ray

            records = run_ray(job, pending)
        else:
            records = run_local(job, pending, args.workers, detector)
        with ResultLog(dest / JSONL_NAME) as log:
            for record in tqdm(records, total=len(pending), desc="detecting", unit="img", disable=not pending):
                log.append(record)
        results = read_results(dest / JSONL_NAME)
        if args.format == "parquet":
            from .ray_runner import write_parquet

            write_parquet(list(results.values()), dest / "detections.parquet")
    except (WeightsError, FileExistsError, ValueError, RuntimeError, ImportError) as e:
        return _fail(str(e))
    errors = [r for r in results.values() if "error" in r]
    images = [r for r in results.values() if "error" not in r]
    skipped = len(results) - len(pending)
    faces = sum(len(r["faces"]) for r in images)
    print(f"{_count(faces, 'face')} in {_count(len(images), 'image')}"
          + (f" ({skipped} done by an earlier run)" if skipped else "")
          + f"; {JSONL_NAME}{' and annotated images' if job.annotate else ''} in {dest}")
    if not pose_available:
        print("note: these weights have no trained pose head: yaw, pitch, roll and rotation are null")
    if errors:
        print(f"{_count(len(errors), 'file')} could not be read:", file=sys.stderr)
        for e in errors:
            print(f"  {e['image']}: {e['error']}", file=sys.stderr)
        return 1
    return 0


def _count(n: int, noun: str) -> str:
    """``3 faces``, ``1 face``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    """The options that make a detector, shared by ``detect`` and ``video``: weights, device, backend, and
    one option per ``DetectorConfig`` setting, with its default and help from ``config.py``."""
    g = parser.add_argument_group("detector")
    g.add_argument("--weights", type=Path, default=None, help="FPNet weights (.safetensors); default: packaged")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    g.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="what runs the networks (default: torch); onnxruntime needs pip install 'facepose[onnx]'")
    defaults = DetectorConfig()
    for f in dataclasses.fields(DetectorConfig):
        value, flag = getattr(defaults, f.name), "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            on = not value
            g.add_argument(flag if on else f"--no-{flag[2:]}", dest=f.name, action="store_true" if on else "store_false",
                           help=FIELD_HELP[f.name] + ("" if on else " (on by default)"))
            continue
        flags = (flag, "--threshold") if f.name == "fpnet_threshold" else (flag,)
        kind = int if f.name == "max_pixels" else float
        g.add_argument(*flags, dest=f.name, type=kind, default=value, metavar=kind.__name__.upper(),
                       help=FIELD_HELP[f.name] + " (default: %(default)s)")


def config_from_args(args: argparse.Namespace) -> DetectorConfig:
    """The ``DetectorConfig`` of the options ``add_detector_options`` added."""
    return DetectorConfig(**{name: getattr(args, name) for name in DetectorConfig.names()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facepose", description="Find faces and their 3D head pose (MTCNN cascade with FPNet)."
    )
    parser.add_argument("--version", action="version", version=f"facepose {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "detect", help="annotate an image or a folder of images",
        description="Detect faces in SRC (an image, or every file of a folder) and write to the folder DEST "
        "annotated copies (face number, box, score, landmarks, head axes: x red, y green, z blue) and "
        f"{JSONL_NAME}, one line per image as it finishes: image (path relative to SRC), width, height and "
        "every face's box, score, landmarks, rotation and yaw/pitch/roll. A stopped run started again with "
        f"the same command continues where it was ({RUN_NAME} records the settings). Files that cannot be "
        "read are listed at the end and the exit status is 1; inputs are never overwritten.",
    )
    d.add_argument("src", metavar="SRC", help="an image file or a folder")
    d.add_argument("dest", metavar="DEST", help="output folder (created if missing)")
    d.add_argument("--recursive", "-r", action="store_true", help="also process subfolders of SRC")
    d.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes decoding and detecting in parallel (default: the cores, here %(default)s)")
    d.add_argument("--ray", action="store_true",
                   help="run on a Ray cluster (RAY_ADDRESS, or a local one started for the run) with Ray Data; "
                        "needs pip install facepose[ray]")
    d.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl",
                   help=f"parquet: also write detections.parquet (needs pyarrow) beside {JSONL_NAME}")
    d.add_argument("--no-images", action="store_true", help=f"write {JSONL_NAME} only, no annotated copies")
    add_detector_options(d)
    d.add_argument("--overwrite", action="store_true", help="start again, replacing results already in DEST")
    d.set_defaults(func=run_detect)
    v = sub.add_parser("video", help="track faces through a video file",
                       description="Track the faces of the video IN and write OUT: the annotated video (same size and "
                       "frame rate, the audio kept) and OUT's stem + .jsonl, one line per frame: {frame, time, faces: "
                       "[{track_id, box, score, landmarks, rotation, yaw, pitch, roll}]}. Known faces are followed "
                       "from frame to frame; new ones are searched for once every N frames and reported once sure "
                       f"(a detection scoring {SURE_SCORE}, or a face followed {CONFIRM_FRAMES} frames at a mean "
                       f"score of {CONFIRM_SCORE}).")
    v.add_argument("input", metavar="IN", help="a video file (anything FFmpeg reads)")
    v.add_argument("output", metavar="OUT", help="the annotated video to write (.mp4, .mkv, ...)")
    v.add_argument("--every", type=int, default=30, help="search for new faces once every N frames, spread over three of them "
                   "(default: 30: within a second at 30 frames/s; again at once when a face followed for a while is lost, "
                   f"and a part on one frame in {IDLE_EVERY} while no face is known)")
    v.add_argument("--max-faces", type=int, default=None, metavar="N", help="follow at most N faces (the best first) "
                   "and search for new ones only while fewer are followed (default: every face)")
    v.add_argument("--no-smooth", action="store_true", help="no smoothing of boxes, landmarks and pose")
    v.add_argument("--threads", type=int, default=None, help="threads the networks use (default: all cores but one, "
                   "which decoding and encoding use: the tracker's small networks gain less from a second core than the "
                   "codec does)")
    add_detector_options(v)
    v.add_argument("--overwrite", action="store_true", help="replace OUT and its .jsonl if they exist")
    v.set_defaults(func=run_video)
    e = sub.add_parser("export", help="export the networks for other runtimes",
                       description="Write pnet.onnx (any image size), rnet.onnx and fpnet.onnx (any batch), each taking "
                       "0-255 RGB pixels with MTCNN's normalisation inside the graph, plus config.json, to DIR; "
                       "each file is checked with onnx.checker. Needs pip install 'facepose[onnx]'.")
    e.add_argument("format", choices=["onnx"], help="the format (onnx)")
    e.add_argument("dir", metavar="DIR", help="output folder (created if missing)")
    e.add_argument("--weights", type=Path, default=None, help="FPNet weights (.safetensors); default: packaged")
    e.add_argument("--overwrite", action="store_true", help="replace .onnx files already in DIR")
    e.set_defaults(func=run_export)
    return parser


def _cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_video(args: argparse.Namespace) -> int:
    import torch

    from .detector import FacePoseDetector
    from .tracker import FacePoseTracker
    from .video import VideoError, annotate_video, jsonl_path

    src, dest = Path(args.input), Path(args.output)
    if dest.resolve() == src.resolve() or jsonl_path(dest).resolve() == src.resolve():
        return _fail("OUT must differ from IN, or the video would be overwritten")
    existing = [p for p in (dest, jsonl_path(dest)) if p.exists()]
    if existing and not args.overwrite:
        return _fail(f"{existing[0]} already exists; pass --overwrite to replace it")
    if not dest.parent.is_dir():
        return _fail(f"the folder of OUT, {dest.parent}, does not exist")
    if args.threads is not None and args.threads < 1:
        return _fail(f"--threads must be at least 1, got {args.threads}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or max(1, _cores() - 1))
    try:
        detector = FacePoseDetector(weights=args.weights, device=args.device, backend=args.backend,
                                    config=config_from_args(args))
        tracker = FacePoseTracker(detector, every=args.every, smooth=not args.no_smooth, max_faces=args.max_faces)
        with tqdm(desc="tracking", unit="frame") as bar:
            summary = annotate_video(src, dest, tracker, progress=lambda n: bar.update(1))
    except (VideoError, WeightsError, ValueError, RuntimeError, ImportError) as e:
        return _fail(str(e))
    finally:
        torch.set_num_threads(threads)  # as it was (``main`` may run inside another program)
    print(f"{_count(summary.frames, 'frame')} ({summary.seconds:.1f} s at {summary.fps:.2f} frames/s), {_count(summary.tracks, 'track')}"
          f"{', audio kept' if summary.audio else ''}: {dest} and {jsonl_path(dest)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .detector import FacePoseDetector
    from .onnx_backend import ONNX_FILES, export_onnx

    folder = Path(args.dir)
    if folder.exists() and not folder.is_dir():
        return _fail(f"DIR {folder} exists and is not a folder")
    clash = [f for f in (*ONNX_FILES.values(), "config.json") if (folder / f).exists()]
    if clash and not args.overwrite:
        return _fail(f"{folder / clash[0]} already exists; pass --overwrite to replace it")
    try:
        detector = FacePoseDetector(weights=args.weights)
        written = export_onnx(detector.nets, folder, detector.pose_available)
    except (WeightsError, ImportError, RuntimeError) as e:
        return _fail(str(e))
    write_config(folder, detector.config, detector.pose_available)
    print(f"wrote {', '.join(p.name for p in written)} and config.json to {folder} (checked with onnx.checker)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
