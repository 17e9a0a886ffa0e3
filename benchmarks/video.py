"""Video: the tracker against per-frame detection, id switches, pose jitter with and without smoothing,
and the lag of the smoothed pose behind a sudden turn.

    python -m benchmarks.video [--frames 150] [--size 640x480]

Clips are made here from a real photo of two faces (``../shared/data/photos``), with known motion:
- *moving*: panned, zoomed and turned in the image plane slowly (about 0.3 degrees a frame);
- *still*: the photo unmoved, with fresh pixel noise (sigma 3) on every frame;
- *turn*: still, then turned by 15 degrees in the image plane at once at frame 30.
It also times the ``facepose video`` command (decode, track, draw, encode, as a pipeline) on the *moving* and
the *still* clip written as H.264 files, net of its start-up (the same command on a one-frame clip), against
``detect`` on every decoded frame.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facepose import FacePoseDetector
from facepose.tracker import FacePoseTracker
from support.clips import frames


def run(tracker: FacePoseTracker, clip: list[np.ndarray], fps: float = 30.0) -> tuple[float, list[list]]:
    tracker.reset()
    start = time.perf_counter()
    result = [tracker.update(f, timestamp=i / fps) for i, f in enumerate(clip)]
    return (time.perf_counter() - start) / len(clip), result


def id_switches(result: list[list]) -> int:
    """Times a track id appears that was not there before, beyond the first frame's, plus ids that vanish."""
    seen = {f.track_id for f in result[0]}
    switches = 0
    for faces in result[1:]:
        ids = {f.track_id for f in faces}
        switches += len(ids - seen)
        seen |= ids
    return switches


def jitter(result: list[list]) -> float:
    """Mean absolute frame-to-frame change of yaw, pitch and roll, over the tracks, in degrees."""
    by_track: dict[int, list] = {}
    for faces in result:
        for f in faces:
            by_track.setdefault(f.track_id, []).append([f.yaw, f.pitch, f.roll])
    steps = [np.abs(np.diff(np.array(v), axis=0)) for v in by_track.values() if len(v) > 1]
    return float(np.concatenate(steps).mean()) if steps else float("nan")


def lag(raw: list[list], smooth: list[list], at: int = 30, within: float = 2.0) -> int:
    """Frames after the turn until every smoothed roll is within ``within`` degrees of the raw roll."""
    for k in range(at, len(raw)):
        r = {f.track_id: f.roll for f in raw[k]}
        s = {f.track_id: f.roll for f in smooth[k]}
        if r and all(abs(s.get(t, 1e9) - v) < within for t, v in r.items()):
            return k - at
    return len(raw) - at


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--size", default="640x480")
    p.add_argument("--every", type=int, default=30)
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    det = FacePoseDetector()
    smooth, raw = FacePoseTracker(det, args.every), FacePoseTracker(det, args.every, smooth=False)
    print(f"{args.frames} frames of {args.size}, two faces, tracker every={args.every}")
    for kind in ("moving", "still"):
        clip = frames(kind, args.frames, size)
        start = time.perf_counter()
        for f in clip:
            det.detect(f)
        per_frame = (time.perf_counter() - start) / len(clip)
        t_s, r_s = run(smooth, clip)
        t_r, r_r = run(raw, clip)
        print(f"{kind:>7}: detect every frame {1 / per_frame:6.1f} frames/s, tracker {1 / t_s:6.1f} frames/s "
              f"({per_frame / t_s:.1f}x); id switches {id_switches(r_s)}; faces per frame "
              f"{np.mean([len(x) for x in r_s]):.2f}; jitter {jitter(r_r):.2f} deg raw, {jitter(r_s):.2f} smoothed")
    clip = frames("turn", 60, size)
    _, r_s = run(smooth, clip)
    _, r_r = run(raw, clip)
    print(f"   turn: the smoothed roll is within 2 degrees of the raw one {lag(r_r, r_s)} frames after a 15-degree turn")
    for kind in ("moving", "still"):
        video_speed(det, frames(kind, args.frames, size), args.every, kind)


def write_clip(path: Path, clip: list[np.ndarray]) -> Path:
    """``clip`` as an H.264 file (MPEG-4 where the FFmpeg build has no x264), 30 frames/s."""
    import av

    out = av.open(str(path), "w")
    stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=30)
    stream.width, stream.height, stream.pix_fmt = clip[0].shape[1], clip[0].shape[0], "yuv420p"
    for f in clip:
        for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def video_speed(det: FacePoseDetector, clip: list[np.ndarray], every: int, kind: str) -> None:
    """The ``facepose video`` command on an H.264 file of ``clip``, net of its start-up (medians of three runs of
    each), against ``detect`` on every decoded frame (in this process, no start-up)."""
    import av

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src, one = write_clip(tmp / "clip.mp4", clip), write_clip(tmp / "one.mp4", clip[:1])
        start = time.perf_counter()
        with av.open(str(src)) as c:
            for frame in c.decode(video=0):
                det.detect(frame.to_ndarray(format="rgb24"))
        t_detect = time.perf_counter() - start

        def command(path: Path) -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "facepose", "video", str(path), str(tmp / f"out_{path.name}"),
                            "--every", str(every), "--overwrite"], check=True, capture_output=True)
            return time.perf_counter() - start

        runs = [(command(one), command(src)) for _ in range(3)]  # the start-up moves by half a second from run to run
        t_one, t_all = (statistics.median(t) for t in zip(*runs))
    net = t_all - t_one
    print(f"  video ({kind}): facepose video {t_all:.1f} s for {len(clip)} frames, {t_one:.1f} s for one frame (start-up): "
          f"net {net:.1f} s; detect on every frame {t_detect:.1f} s: {t_detect / net:.1f}x faster")


if __name__ == "__main__":
    main()
