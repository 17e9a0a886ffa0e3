"""Video files: decode with PyAV (FFmpeg in its wheel), track and draw every frame, encode, keep the audio.

``annotate_video(src, dest, tracker)`` writes ``dest`` (same size and frame rate, H.264 where the FFmpeg
build has it, the audio stream copied as it is) and ``dest``'s stem + ``.jsonl``: one line per frame,
``{"frame": i, "time": seconds, "faces": [{"track_id", "box", "score", "landmarks", "rotation", "yaw",
"pitch", "roll"}]}``. Both are written under temporary names and renamed when complete.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .draw import draw_faces
from .tracker import FacePoseTracker

__all__ = ["VideoError", "VideoSummary", "annotate_video", "jsonl_path"]


class VideoError(ValueError):
    """The input is not a readable video; the message says why."""


@dataclass
class VideoSummary:
    frames: int
    seconds: float  # of video
    tracks: int
    fps: float
    audio: bool


def jsonl_path(dest: Path) -> Path:
    """Where the per-frame results of ``dest`` go: its stem + ``.jsonl``."""
    return dest.with_suffix(".jsonl")


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("video needs PyAV: pip install 'facepose[video]' (or pip install av)") from None
    return av


def _open(src: Path):
    av = _av()
    if not src.is_file():
        raise VideoError(f"{src} does not exist or is not a file")
    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{src} is not a video file, or it is truncated or corrupt ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{src} has no video stream")
    return container


def annotate_video(src: str | Path, dest: str | Path, tracker: FacePoseTracker, landmarks: bool = True,
                   progress: Callable[[int], None] | None = None) -> VideoSummary:
    """Track faces through ``src`` and write the annotated video ``dest`` and its JSONL (see module doc).
    ``progress(frames_done)`` is called after each frame. Raises ``VideoError`` for a file that is not a
    video, has no video stream, or breaks off before its first frame."""
    av = _av()
    src, dest = Path(src), Path(dest)
    container = _open(src)
    video_in = container.streams.video[0]
    audio_in = container.streams.audio[0] if container.streams.audio else None
    rate = video_in.average_rate or video_in.guessed_rate or 25
    tmp_video = dest.with_name(f".{dest.name}.tmp{dest.suffix}")
    tmp_jsonl = dest.with_name(f".{jsonl_path(dest).name}.tmp")
    tracker.reset()
    frames, ids, last_time = 0, set(), 0.0
    broken = None
    try:
        output = av.open(str(tmp_video), "w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        video_out = output.add_stream(codec, rate=rate)
        video_out.width, video_out.height = video_in.codec_context.width, video_in.codec_context.height
        video_out.pix_fmt = "yuv420p" if video_out.width % 2 == 0 and video_out.height % 2 == 0 else "yuv444p"
        if codec == "libx264":  # x264's default "medium" took 9 ms a 640x480 frame, a third of the tracking
            video_out.options = {"preset": "veryfast"}
        audio_out = output.add_stream_from_template(audio_in) if audio_in is not None else None
        streams = [video_in] + ([audio_in] if audio_in is not None else [])
        with open(tmp_jsonl, "w", encoding="utf-8") as log:
            try:
                for packet in container.demux(*streams):
                    if packet.stream is audio_in:
                        if packet.dts is not None:
                            packet.stream = audio_out
                            output.mux(packet)
                        continue
                    for frame in packet.decode():
                        t = float(frame.time) if frame.time is not None else frames / float(rate)
                        pixels = frame.to_ndarray(format="rgb24")
                        faces = tracker.update(pixels, timestamp=t)
                        ids.update(f.track_id for f in faces)
                        annotated = av.VideoFrame.from_image(draw_faces(pixels, faces, landmarks=landmarks))
                        for out_packet in video_out.encode(annotated):
                            output.mux(out_packet)
                        log.write(json.dumps({"frame": frames, "time": round(t, 6),
                                              "faces": [f.to_dict() for f in faces]}) + "\n")
                        frames, last_time = frames + 1, t
                        if progress:
                            progress(frames)
            except av.error.FFmpegError as e:  # a file cut short: keep what decoded, say so
                broken = e
            for out_packet in video_out.encode():
                output.mux(out_packet)
        output.close()
        if frames == 0:
            raise VideoError(f"{src} has no decodable video frame" + (f" ({broken})" if broken else ""))
        os.replace(tmp_video, dest)
        os.replace(tmp_jsonl, jsonl_path(dest))
    finally:
        container.close()
        for tmp in (tmp_video, tmp_jsonl):
            tmp.unlink(missing_ok=True)
    if broken is not None:
        raise VideoError(f"{src} is truncated or corrupt after frame {frames} ({broken}); the {frames} frames before "
                         f"it are in {dest}")
    return VideoSummary(frames, last_time, len(ids), float(rate), audio_in is not None)
