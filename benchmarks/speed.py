"""Speed of FacePose's detector against facenet-pytorch's MTCNN, side by side in one process.

    python -m benchmarks.speed [--photos ../shared/data/photos] [--repeats 3] [--sizes 640x480 1280x960]

Every photo is resized (letterbox-free stretch) to each size; the detectors run on the same photos (facenet's
as PIL images, ours as RGB arrays), taking turns photo by photo (``support.timing.interleaved``), after a
warm-up, with the same thread count. Prints seconds per image (the median of ``--repeats`` passes) and the ratio
ours / facenet's (the median over passes of the ratio within a pass; < 1 means FacePose is faster), for FacePose
with FPNet (pose on) and with the original O-Net (the same work as facenet's), and with the networks run by ONNX
Runtime when it is installed.
Needs ``pip install --no-deps facenet-pytorch==2.6.0``.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facepose import FacePoseDetector, load_image
from facepose.weights import WEIGHTS_DIR
from support.paths import PHOTOS
from support.reference_mtcnn import facenet_mtcnn
from support.timing import interleaved, median_ratio

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x960"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no photos in {args.photos}")
    originals = [Image.fromarray(load_image(p)) for p in files]
    reference = facenet_mtcnn()
    ours = {
        "FPNet": FacePoseDetector(),
        "O-Net": FacePoseDetector(weights=WEIGHTS_DIR / "onet.safetensors"),
    }
    try:
        ours["FPNet, onnxruntime"] = FacePoseDetector(backend="onnxruntime", threads=args.threads)
    except ImportError as e:
        print(f"note: no onnxruntime column ({e})")
    print(f"{len(files)} photos from {args.photos}, {args.threads} threads, torch {torch.__version__}")
    ort = "FPNet, onnxruntime" in ours
    print(f"{'size':>10} {'facenet s/img':>14} {'ours O-Net':>11} {'ours FPNet':>11} {'ratio O-Net':>12} {'ratio FPNet':>12}"
          + (f" {'FPNet ORT':>10} {'ratio ORT':>10}" if ort else ""))
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        arrays = [np.asarray(im.resize((w, h), Image.BILINEAR)) for im in originals]
        photos = [(a, Image.fromarray(a)) for a in arrays]
        runs = {"facenet": lambda photo: reference.detect(photo[1])}
        runs |= {name: (lambda photo, detect=det.detect: detect(photo[0])) for name, det in ours.items()}
        with torch.inference_mode():
            times = interleaved(runs, photos, args.repeats, warmup=3)
        t = {name: statistics.median(v) for name, v in times.items()}
        r = {name: median_ratio(v, times["facenet"]) for name, v in times.items()}
        line = f"{size:>10} {t['facenet']:14.4f} {t['O-Net']:11.4f} {t['FPNet']:11.4f} {r['O-Net']:12.2f} {r['FPNet']:12.2f}"
        if ort:
            line += f" {t['FPNet, onnxruntime']:10.4f} {r['FPNet, onnxruntime']:10.2f}"
        print(line)


if __name__ == "__main__":
    main()
