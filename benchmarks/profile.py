"""Where ``detect`` spends its time, stage by stage, and how far P-Net is from the machine's convolution speed.

    python -m benchmarks.profile [--size 640x480] [--repeats 5] [--backend torch|onnxruntime]

Runs ``cascade.run_cascade`` on the photos of ``../shared/data/photos`` resized to SIZE and prints the median
milliseconds per photo of each step it times (integral image and pyramid, P-Net, R-Net, FPNet) and of the flip
pass. Then it counts the P-Net multiply-adds of the pyramid and compares the P-Net step's speed with a large
3x3 convolution's (the machine's practical throughput).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np
import torch
from PIL import Image

from facepose import FacePoseDetector, load_image
from facepose.cascade import run_cascade
from facepose.pyramid import pyramid_scales
from support.paths import PHOTOS


def pnet_flops(height: int, width: int, scales: list[float]) -> float:
    """Multiply-adds x 2 of P-Net over the pyramid (conv 3-10, pool, 10-16, 16-32, then 32-2 and 32-4)."""
    total = 0.0
    for s in scales:
        h, w = int(height * s + 1), int(width * s + 1)
        h1, w1 = h - 2, w - 2
        h2, w2 = -(-h1 // 2), -(-w1 // 2)
        h3, w3 = h2 - 2, w2 - 2
        h4, w4 = h3 - 2, w3 - 2
        total += 2 * (h1 * w1 * 3 * 10 * 9 + h3 * w3 * 10 * 16 * 9 + h4 * w4 * 16 * 32 * 9 + h4 * w4 * 32 * 6)
    return total


def conv_throughput(repeats: int = 5) -> float:
    """FLOP/s of a 64-to-64 3x3 convolution on a 128x128 map (channels last): what the CPU sustains."""
    conv = torch.nn.Conv2d(64, 64, 3).eval()
    x = torch.rand(1, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    flops = 2 * 64 * 64 * 9 * 126 * 126
    with torch.inference_mode():
        conv(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - t)
    return flops / statistics.median(times)


STEPS = {"pyramid": "integral image + pyramid", "pnet": "P-Net (net, decoding, NMS)", "rnet": "R-Net (crops, net, NMS)",
         "fpnet": "FPNet (crops, net, NMS, pose)"}


@torch.inference_mode()
def profile_one(det: FacePoseDetector, pixels: np.ndarray, timing: dict[str, list[float]]) -> None:
    """The cascade's own per-step times (``CascadeRun.seconds``) on one photo, without and with the flip pass."""
    image = det.prepare(pixels)
    plain = run_cascade(det.nets, image, det.config, flip_pose=False).seconds
    flipped = run_cascade(det.nets, image, det.config, flip_pose=True).seconds
    for step, name in STEPS.items():
        timing[name].append(plain.get(step, 0.0))
    timing["flip pass"].append(flipped.get("fpnet", 0.0) - plain.get("fpnet", 0.0))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="640x480")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    files = sorted(f for f in PHOTOS.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    arrays = [np.asarray(Image.fromarray(load_image(f)).resize((w, h), Image.BILINEAR)) for f in files]
    det = FacePoseDetector(backend=args.backend, threads=args.threads)
    runs: list[dict[str, float]] = []
    for a in arrays[:2]:
        profile_one(det, a, defaultdict(list))  # warm-up
    for _ in range(args.repeats):
        timing: dict[str, list[float]] = defaultdict(list)
        for a in arrays:
            profile_one(det, a, timing)
        runs.append({k: sum(v) / len(arrays) for k, v in timing.items()})
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    total = sum(medians.values())
    start = time.perf_counter()
    for a in arrays:
        det.detect(a)
    detect_ms = 1000 * (time.perf_counter() - start) / len(arrays)
    print(f"{len(arrays)} photos at {args.size}, backend {args.backend}, {args.threads} threads")
    print(f"{'stage':>32} {'ms/photo':>9} {'share':>6}")
    for k, v in medians.items():
        print(f"{k:>32} {1000 * v:9.2f} {100 * v / total:5.1f}%")
    print(f"{'sum of stages':>32} {1000 * total:9.2f}   (detect() as a whole: {detect_ms:.2f} ms)")
    scales = pyramid_scales(h, w, det.config.min_face_size, det.config.factor)
    flops = pnet_flops(h, w, scales)
    peak = conv_throughput()
    achieved = flops / medians[STEPS["pnet"]]
    print(f"P-Net (with its decoding and NMS) over {len(scales)} pyramid levels: {flops / 1e9:.3f} GFLOP per photo, "
          f"run at {achieved / 1e9:.1f} GFLOP/s; "
          f"a 64-to-64 3x3 convolution runs at {peak / 1e9:.1f} GFLOP/s here, so P-Net reaches {100 * achieved / peak:.0f}% "
          f"of it (a floor of {1000 * flops / peak:.2f} ms for P-Net at that speed)")


if __name__ == "__main__":
    main()
