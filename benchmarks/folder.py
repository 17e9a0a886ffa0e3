"""Folder runs: ``facepose detect --workers 1`` against ``--workers N`` (and ``--ray``) on the same photos.

    python -m benchmarks.folder [--photos ../shared/data/wider/train/images] [--count 80] [--workers 2] [--ray]
                                [--no-images]

The first COUNT photos (recursively, sorted) are linked into a temporary folder; each run writes its own
DEST there, with the annotated images as `facepose detect` writes them by default (`--no-images`: the
JSONL only). Prints seconds, images/s, the speed-up over one worker and whether the faces agree (same count,
boxes within 1e-3 px: one thread per worker sums in another order than two).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from facepose.batch import collect_inputs
from facepose.cli import main as cli
from support.paths import WIDER_TRAIN


def run(src: Path, dest: Path, extra: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    cli(["detect", str(src), str(dest), *extra])
    seconds = time.perf_counter() - start
    lines = (dest / "detections.jsonl").read_text().splitlines()
    return seconds, {r["image"]: r.get("faces", []) for r in map(json.loads, lines)}


def same_faces(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k]) and np.allclose([f["box"] for f in a[k]], [f["box"] for f in b[k]], atol=1e-3)
        for k in a)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=WIDER_TRAIN / "images")
    p.add_argument("--count", type=int, default=80)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ray", action="store_true", help="also time --ray on a local cluster")
    p.add_argument("--no-images", action="store_true", help="write detections.jsonl only, no annotated images")
    args = p.parse_args(argv)
    extra = ["--no-images"] if args.no_images else []
    photos = collect_inputs(args.photos, Path("/nonexistent"), recursive=True)[:args.count]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i, path in enumerate(photos):
            (src / f"{i:04d}{path.suffix}").symlink_to(path.resolve())
        one, base = run(src, Path(tmp) / "w1", ["--workers", "1", *extra])
        rows = [("--workers 1", one, base)]
        many, found = run(src, Path(tmp) / "wn", ["--workers", str(args.workers), *extra])
        rows.append((f"--workers {args.workers}", many, found))
        if args.ray:
            seconds, found = run(src, Path(tmp) / "ray", ["--ray", *extra])
            rows.append(("--ray (local cluster)", seconds, found))
    print(f"{len(photos)} photos from {args.photos}, {'no annotated images' if args.no_images else 'annotated images written'}")
    print(f"{'run':>24} {'seconds':>8} {'images/s':>9} {'speed-up':>9} {'same faces':>11}")
    for name, seconds, found in rows:
        print(f"{name:>24} {seconds:8.1f} {len(photos) / seconds:9.2f} {one / seconds:9.2f} {str(same_faces(base, found)):>11}")


if __name__ == "__main__":
    main()
