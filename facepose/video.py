"""Video files: decode with PyAV (FFmpeg in its wheel), track and draw every frame, encode, keep the audio.

``annotate_video(src, dest, tracker)`` writes ``dest`` (same size and frame rate, H.264 where the FFmpeg
build has it, the audio stream copied as it is) and ``dest``'s stem + ``.jsonl``: one line per frame,
``{"frame": i, "time": seconds, "faces": [{"track_id", "box", "score", "landmarks", "rotation", "yaw",
"pitch", "roll"}]}``. Both are written under temporary names and renamed when complete.

It runs as a pipeline of three threads joined by short queues: decoding (FFmpeg's own threads too), tracking
(this thread) and drawing + encoding, so that on two cores the tracker never waits for the codec. FFmpeg and
torch release Python's lock while they work.
"""
from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .draw import draw_faces
from .tracker import FacePoseTracker

__all__ = ["VideoError", "VideoCancelled", "VideoSummary", "annotate_video", "jsonl_path", "video_length"]

QUEUE_FRAMES = 8  # frames each pipeline queue holds: enough to even out the stages, little memory
_END = object()


class VideoError(ValueError):
    """The input is not a readable video; the message says why."""


class VideoCancelled(Exception):
    """``annotate_video`` stopped because its ``cancelled()`` said so; nothing was written."""


class _Stage(threading.Thread):
    """A pipeline stage in its own thread: ``work()`` runs there; what it raises is kept in ``error``."""

    def __init__(self, work: Callable) -> None:
        super().__init__(daemon=True)
        self.work, self.error = work, None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as e:  # handed to the main thread
            self.error = e



def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    """``q.put`` that gives up when the pipeline stops (a full queue would block a stage for ever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _drain(q: queue.Queue, stop: threading.Event) -> Iterator:
    """The items of ``q`` up to the end marker (or until the pipeline stops)."""
    while not stop.is_set():
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is _END:
            return
        yield item


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


def video_length(src: str | Path) -> tuple[float, int]:
    """``(seconds, frames)`` of ``src``'s first video stream as its header tells them, without decoding (frames
    estimated from the duration and frame rate where the header has no count). Raises ``VideoError`` as
    ``annotate_video`` does."""
    src = Path(src)
    container = _open(src)
    try:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = container.duration / 1_000_000 if container.duration else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        return seconds, int(stream.frames or round(seconds * rate))
    finally:
        container.close()


def annotate_video(src: str | Path, dest: str | Path, tracker: FacePoseTracker, landmarks: bool = True,
                   progress: Callable[[int], None] | None = None,
                   cancelled: Callable[[], bool] | None = None) -> VideoSummary:
    """Track faces through ``src`` and write the annotated video ``dest`` and its JSONL (see module doc).
    ``progress(frames_done)`` is called after each frame is tracked; ``cancelled()`` before each frame: when it
    returns True the work stops, nothing is written, and ``VideoCancelled`` is raised. Raises ``VideoError`` for
    a file that is not a video, has no video stream, or breaks off before its first frame."""
    av = _av()
    src, dest = Path(src), Path(dest)
    container = _open(src)
    video_in = container.streams.video[0]
    audio_in = container.streams.audio[0] if container.streams.audio else None
    rate = video_in.average_rate or video_in.guessed_rate or 25
    tmp_video = dest.with_name(f".{dest.name}.tmp{dest.suffix}")
    tmp_jsonl = dest.with_name(f".{jsonl_path(dest).name}.tmp")
    tracker.reset()
    video_in.thread_type = "AUTO"  # FFmpeg decodes on several threads
    decoded: queue.Queue = queue.Queue(QUEUE_FRAMES)
    tracked: queue.Queue = queue.Queue(QUEUE_FRAMES)
    stop = threading.Event()
    decoding = {"broken": None}  # set by the decoding thread when the file breaks off
    frames, last_time, ids = 0, 0.0, set()
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

        def decode() -> None:  # demux and decode: audio packets and frames, in file order
            try:
                for packet in container.demux(*streams):
                    if packet.stream is audio_in:
                        if packet.dts is not None:
                            _put(decoded, ("audio", packet), stop)
                        continue
                    for frame in packet.decode():
                        t = float(frame.time) if frame.time is not None else None
                        _put(decoded, ("frame", t, frame.to_ndarray(format="rgb24")), stop)
                    if stop.is_set():
                        return
            except av.error.FFmpegError as e:  # a file cut short: keep what decoded, say so
                decoding["broken"] = e
            finally:
                _put(decoded, _END, stop)

        def encode(log) -> None:  # draw, encode, mux, log
            n = 0
            for item in _drain(tracked, stop):
                if item[0] == "audio":
                    packet = item[1]
                    packet.stream = audio_out
                    output.mux(packet)
                    continue
                _, t, pixels, faces = item
                annotated = av.VideoFrame.from_image(draw_faces(pixels, faces, landmarks=landmarks))
                for out_packet in video_out.encode(annotated):
                    output.mux(out_packet)
                log.write(json.dumps({"frame": n, "time": round(t, 6), "faces": [f.to_dict() for f in faces]}) + "\n")
                n += 1
            for out_packet in video_out.encode():
                output.mux(out_packet)

        with open(tmp_jsonl, "w", encoding="utf-8") as log:
            reader, writer = _Stage(decode), _Stage(lambda: encode(log))
            reader.start()
            writer.start()
            try:
                for item in _drain(decoded, stop):
                    if writer.error is not None:  # the encoder failed: stop reading
                        stop.set()
                        break
                    if item[0] == "frame":
                        if cancelled is not None and cancelled():
                            raise VideoCancelled(f"stopped after {frames} frames of {src}")
                        _, t, pixels = item
                        t = t if t is not None else frames / float(rate)
                        faces = tracker.update(pixels, timestamp=t)
                        ids.update(f.track_id for f in faces)
                        item = ("frame", t, pixels, faces)
                        frames, last_time = frames + 1, t
                        if progress:
                            progress(frames)
                    _put(tracked, item, stop)
                _put(tracked, _END, stop)
            except BaseException:
                stop.set()  # the other stages end at their next step
                raise
            finally:
                reader.join()
                writer.join()
            for stage in (writer, reader):
                if stage.error is not None:
                    raise stage.error
        output.close()
        broken = decoding["broken"]
        if frames == 0:
            raise VideoError(f"{src} has no decodable video frame" + (f" ({broken})" if broken else ""))
        os.replace(tmp_video, dest)
        os.replace(tmp_jsonl, jsonl_path(dest))
    finally:
        stop.set()
        container.close()
        for tmp in (tmp_video, tmp_jsonl):
            tmp.unlink(missing_ok=True)
    if broken is not None:
        raise VideoError(f"{src} is truncated or corrupt after frame {frames} ({broken}); the {frames} frames before "
                         f"it are in {dest}")
    return VideoSummary(frames, last_time, len(ids), float(rate), audio_in is not None)
