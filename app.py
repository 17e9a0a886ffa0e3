"""FacePose web demo (Gradio): faces, landmarks and 3D head pose from an upload, a webcam or the clipboard.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--weights FILE] [--backend B] [--queue-size N]
                  [--max-video-seconds S]

Also the entry point of the Hugging Face Space (see README front matter).
"""
from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.data_classes import ImageData
from PIL import Image

from facepose import DetectorConfig, FacePoseDetector, ImageError, load_image
from facepose.draw import draw_faces, face_numbers
from facepose.plot3d import head_figure
from facepose.timeline import pose_timeline
from facepose.tracker import FacePoseTracker
from facepose.video import VideoCancelled, VideoError, annotate_video, jsonl_path, video_length

HERE = Path(__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in (HERE / "examples").glob("*.jpg"))
TABLE_HEADERS = ["face", "score", "x1", "y1", "x2", "y2", "yaw", "pitch", "roll"]
MAX_UPLOAD = "50mb"
# Serving limits (docs/app.md, "Under load"). Photo requests run one at a time: the networks already
# use both cores, so a second concurrent request only slows the first. Requests wait in one queue; beyond
# QUEUE_SIZE waiting, a request is refused at once with Gradio's "busy, try again" answer (503 for the API).
PHOTO_CONCURRENCY = 1
QUEUE_SIZE = 128
CAMERAS = 4  # live webcam streams at once
CACHE_CLEANING = (60, 300)  # every 60 s, Gradio deletes the files it served (and uploads) over 5 minutes old
# The live tab's page counts the annotated frames it receives (the img's source changing) over the last 3 s
# and shows the rate under the stream: what the viewer sees, network and browser included.
RECEIVED_RATE_JS = """
() => {
  const seen = [];
  let last = null;
  setInterval(() => {
    const img = document.querySelector('#live img'), out = document.querySelector('#received');
    if (!img || !out) return;
    const now = performance.now();
    if (img.src && img.src !== last) { last = img.src; seen.push(now); }
    while (seen.length && now - seen[0] > 3000) seen.shift();
    out.innerText = seen.length > 2 ? ((seen.length - 1) * 1000 / (now - seen[0])).toFixed(1) + ' annotated frames/s received' : '';
  }, 5);
}
"""
MAX_VIDEO_SECONDS = 120.0  # a longer upload is refused at once (a public Space shares two cores)
OUTPUT_FORMAT = "jpeg"  # annotated images: JPEG encodes in a small fraction of the time of WebP or PNG (docs/app.md)


def _glibc():
    """The C library when it is glibc (Linux), else None."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


LIBC = _glibc()
if LIBC is not None:
    # glibc gives every thread that allocates its own arena and seldom returns freed memory: under bursts
    # (the server's thread pool, 40 threads) resident memory ratchets up. Two arenas, and a trim every
    # TRIM_EVERY requests, keep it flat (benchmarks/load.py). Not after every request: the next request
    # would fault the pages back in (30 ms).
    LIBC.mallopt(-8, 2)  # M_ARENA_MAX
TRIM_EVERY = 16


class Outbox:
    """A folder for the files handlers return (JSON, videos), keeping only the newest ``keep``.

    Gradio copies each returned file into its own cache (which ``CACHE_CLEANING`` empties) as soon as the
    handler returns, so older files here are no longer needed; without this every request left one behind.
    """

    def __init__(self, keep: int, folder: Path | None = None) -> None:
        self.folder = Path(folder or tempfile.mkdtemp(prefix="facepose_outbox_"))
        self.keep = keep
        self._files: list[Path] = []
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """A fresh path named ``name`` (in a folder of its own, so that the download keeps the name and
        Gradio's cache, keyed by content, holds one copy of identical answers); the oldest files beyond
        ``keep`` are deleted."""
        path = self.folder / uuid.uuid4().hex[:12] / name
        path.parent.mkdir()
        with self._lock:
            self._files.append(path)
            old, self._files = self._files[:-self.keep], self._files[-self.keep:]
        for f in old:
            shutil.rmtree(f.parent, ignore_errors=True)
        return path


class PhotoInput(gr.Image):
    """``gr.Image`` that hands the uploaded file's path to our own reader, unopened, so that a non-image,
    a truncated file or a decompression bomb gets FacePose's message instead of failing in Gradio."""

    @classmethod
    def get_block_name(cls) -> str:
        return "image"

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return payload.path
        return super().preprocess(payload)


class InlineImage(gr.Image):
    """Output ``gr.Image`` sent inside the answer as a JPEG data URL instead of a file in Gradio's cache:
    for the live stream, where a file per frame (10 a second per camera) would fill the temp folder."""

    @classmethod
    def get_block_name(cls) -> str:
        return "image"

    def postprocess(self, value):
        if value is None:
            return None
        image = Image.fromarray(value) if isinstance(value, np.ndarray) else value
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="jpeg", quality=85)
        return ImageData(url="data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(), orig_name="frame.jpg")


class Demo:
    """The app's state: one detector whose networks every request shares (inference only reads them)."""

    def __init__(self, weights: str | None = None, backend: str = "torch", max_video_seconds: float = MAX_VIDEO_SECONDS) -> None:
        self.base = FacePoseDetector(weights=weights, backend=backend)
        self.max_video_seconds = max_video_seconds
        self.json_files = Outbox(keep=8)
        self.videos = Outbox(keep=4)
        self._served = itertools.count(1)

    def release_memory(self) -> None:
        """Every ``TRIM_EVERY``-th photo request, hand freed heap memory back to the system (glibc only)."""
        if LIBC is not None and next(self._served) % TRIM_EVERY == 0:
            LIBC.malloc_trim(0)

    def detector(self, min_face_size: float, threshold: float, any_rotation: bool = False) -> FacePoseDetector:
        """A detector with this request's settings, sharing the networks."""
        return self.base.replace(min_face_size=float(min_face_size), fpnet_threshold=float(threshold),
                                 any_rotation=bool(any_rotation))

    def run(self, image, min_face_size: float, threshold: float, landmarks: bool, any_rotation: bool = False):
        """-> annotated image, 3D figure, table rows, JSON file, status message."""
        if image is None:
            return None, None, [], None, "Upload a photo, take a webcam snapshot or paste an image."
        try:
            pixels = load_image(image)
        except ImageError as e:
            return None, None, [], None, f"**Cannot use this input:** {e}"
        det = self.detector(min_face_size, threshold, any_rotation)
        start = time.perf_counter()
        faces = det.detect(pixels)
        ms = 1000 * (time.perf_counter() - start)
        numbers = face_numbers(faces)  # one number per face: the picture, the 3D view, the table and the JSON
        rows = [[n, round(f.score, 3), *(round(v, 1) for v in f.box),
                 *(round(v, 1) if v is not None else None for v in (f.yaw, f.pitch, f.roll))] for n, f in zip(numbers, faces)]
        report = {"width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "pose_available": det.pose_available,
                  "faces": [{"face": n, **f.to_dict()} for n, f in zip(numbers, faces)]}
        path = self.json_files.path("detections.json")
        path.write_text(json.dumps(report, indent=1))
        if not faces:
            status = (f"**No face found** ({pixels.shape[1]}x{pixels.shape[0]} px, {ms:.0f} ms). "
                      "Try a smaller minimum face size or a lower threshold.")
        else:
            status = f"**{len(faces)} face{'s' if len(faces) > 1 else ''}** in {ms:.0f} ms ({pixels.shape[1]}x{pixels.shape[0]} px)."
            if not det.pose_available:
                status += " These weights have no trained pose head: no angles."
        annotated = draw_faces(pixels, faces, landmarks=landmarks, numbers=numbers)
        figure = head_figure(faces, pixels.shape[1], pixels.shape[0], numbers)
        del pixels
        self.release_memory()
        return annotated, figure, rows, str(path), status

    def stream(self, frame, min_face_size: float, threshold: float, landmarks: bool, state: dict | None,
               any_rotation: bool = False, main_face: bool = False):
        """One webcam frame -> annotated frame, frame-rate text, this session's state (its tracker and the
        time of its last frame). Faces are followed from frame to frame (``FacePoseTracker``), pose smoothed;
        ``main_face``: the best face only, and no search for others while it is followed (``max_faces=1``)."""
        now = time.perf_counter()
        state = state or {"last": None, "tracker": None}
        if frame is None:
            return None, "Waiting for the camera...", state
        det = self.detector(min_face_size, threshold, any_rotation)
        if state["tracker"] is None:
            state["tracker"] = FacePoseTracker(det)
        state["tracker"].detector = det  # the sliders' settings, the same networks
        state["tracker"].max_faces = 1 if main_face else None
        pixels = load_image(frame)
        faces = state["tracker"].update(pixels, timestamp=now)
        took = time.perf_counter() - now
        last, state["last"] = state["last"], now
        fps = f"{1 / (now - last):.1f} frames/s shown" if last else "measuring..."
        text = f"**{len(faces)} face(s)** tracked · {1000 * took:.0f} ms per frame · {fps}"
        return draw_faces(pixels, faces, landmarks=landmarks), text, state


    def video(self, path, min_face_size: float, threshold: float, landmarks: bool, any_rotation: bool = False,
              progress=gr.Progress()):
        """An uploaded video -> (annotated video, its JSONL, the pose chart, status message), yielded: first a
        status while it works, then the results. A video over ``max_video_seconds`` is refused at once. The work
        runs in a thread of its own; when the generator is closed (Gradio stops it when the browser goes away)
        the work stops and leaves nothing."""
        if path is None:
            yield None, None, None, "Upload a video."
            return
        try:
            seconds, total = video_length(path)
        except VideoError as e:
            yield None, None, None, f"**Cannot use this video:** {e}"
            return
        if seconds > self.max_video_seconds:
            yield None, None, None, (f"**This video is too long:** {seconds:.0f} s, and this demo takes videos of up to "
                                     f"{self.max_video_seconds:.0f} s. Cut it shorter, or run `facepose video` on your machine.")
            return
        out = self.videos.path("annotated.mp4")
        tracker = FacePoseTracker(self.detector(min_face_size, threshold, any_rotation))
        done, stop, result = [0], threading.Event(), {}

        def work() -> None:
            try:
                result["summary"] = annotate_video(path, out, tracker, landmarks=landmarks,
                                                   progress=lambda n: done.__setitem__(0, n), cancelled=stop.is_set)
            except (VideoError, ImageError, VideoCancelled) as e:
                result["error"] = e

        start = time.perf_counter()
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.5)
                progress(min(done[0] / max(total, 1), 1.0), desc=f"{done[0]} of about {total} frames")
                yield None, None, None, f"Tracking faces: frame {done[0]} of about {total}..."
        finally:
            stop.set()  # the browser went away (the generator closed): the pipeline stops at its next frame
            worker.join()
        if "error" in result:
            yield None, None, None, f"**Cannot use this video:** {result['error']}"
            return
        summary, took = result["summary"], time.perf_counter() - start
        status = (f"**{summary.frames} frames**, {summary.tracks} face track(s), {summary.seconds:.1f} s of video "
                  f"processed in {took:.1f} s ({summary.frames / took:.1f} frames/s)"
                  + (", audio kept" if summary.audio else ""))
        yield str(out), str(jsonl_path(out)), pose_timeline(jsonl_path(out)), status


DEFAULTS = DetectorConfig()  # the sliders start at the detector's defaults


def build_demo(weights: str | None = None, backend: str = "torch", max_video_seconds: float = MAX_VIDEO_SECONDS) -> gr.Blocks:
    demo_state = Demo(weights, backend, max_video_seconds)
    with gr.Blocks(title="FacePose", delete_cache=CACHE_CLEANING) as demo:
        gr.Markdown(
            "# FacePose\nEvery face in a photo, where it is and which way the head is turned in 3D: MTCNN's "
            "cascade with **FPNet**: MTCNN's own O-Net (the same faces as MTCNN) plus a small pose branch "
            "distilled from two teachers (WHENet and MediaPipe Face Mesh) that regresses the head's rotation. "
            "Axes drawn on each face: x red, y green, z blue (out of the face)."
        )
        with gr.Row():
            min_face = gr.Slider(12, 200, value=DEFAULTS.min_face_size, step=1, label="Minimum face size (px)")
            threshold = gr.Slider(0.5, 0.99, value=DEFAULTS.fpnet_threshold, step=0.01, label="Face threshold (last stage)")
            landmarks = gr.Checkbox(value=True, label="Show landmarks")
            any_rotation = gr.Checkbox(value=False, label="Any rotation (sideways, upside down, rolling heads; "
                                       "slower)", elem_id="any_rotation")
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column():
                    photo = PhotoInput(sources=["upload", "webcam", "clipboard"], type="filepath", label="Photo")
                    run = gr.Button("Detect faces", variant="primary")
                    if EXAMPLES:
                        gr.Examples(EXAMPLES, inputs=photo, label="Examples (public domain, see examples/ATTRIBUTION.md)")
                with gr.Column():
                    status = gr.Markdown("Upload a photo, take a webcam snapshot or paste an image.", elem_id="status")
                    annotated = gr.Image(label="Detections", type="pil", format=OUTPUT_FORMAT, elem_id="annotated",
                                         interactive=False)
            plot = gr.Plot(label="3D head rotation", elem_id="plot3d")
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Faces", elem_id="faces", interactive=False)
            download = gr.File(label="Detections (JSON)", elem_id="json")
            inputs = [photo, min_face, threshold, landmarks, any_rotation]
            outputs = [annotated, plot, table, download, status]
            # one concurrency group for the button and the upload event: together at most PHOTO_CONCURRENCY
            run.click(demo_state.run, inputs, outputs, concurrency_limit=PHOTO_CONCURRENCY, concurrency_id="photo",
                      api_name="detect")
            photo.upload(demo_state.run, inputs, outputs, concurrency_limit=PHOTO_CONCURRENCY, concurrency_id="photo",
                         api_visibility="private")
        with gr.Tab("Live webcam"):
            gr.Markdown("Start the camera: every frame is annotated as it comes; the frame rate reached shows below.")
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="camera")
                live = InlineImage(label="Annotated stream", elem_id="live", interactive=False)
            main_face = gr.Checkbox(False, label="Main face only (faster: no search for other faces while it is followed)",
                                    elem_id="main_face")
            rate = gr.Markdown("", elem_id="rate")
            gr.HTML("<p id='received'></p>")
            session = gr.State(None)
            cam.stream(demo_state.stream, [cam, min_face, threshold, landmarks, session, any_rotation, main_face], [live, rate, session],
                       stream_every=0.05, time_limit=600, concurrency_limit=CAMERAS, api_visibility="private")
        with gr.Tab("Video"):
            gr.Markdown(f"Upload a video (up to {max_video_seconds:.0f} s): faces are followed from frame to frame (one id per face) with "
                        "steady pose; you get the annotated video, one JSON line per frame, and the pose of each face "
                        "over time.")
            with gr.Row():
                with gr.Column():
                    clip = gr.Video(sources=["upload"], label="Video", elem_id="video_in")
                    go_video = gr.Button("Track faces", variant="primary")
                with gr.Column():
                    video_status = gr.Markdown("", elem_id="video_status")
                    video_out = gr.Video(label="Annotated", elem_id="video_out", interactive=False)
                    video_json = gr.File(label="Per frame (JSONL)", elem_id="video_json")
            timeline = gr.Plot(label="Pose over time", elem_id="timeline")
            go_video.click(demo_state.video, [clip, min_face, threshold, landmarks, any_rotation],
                           [video_out, video_json, timeline, video_status], concurrency_limit=1, api_name="video")
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FacePose web demo")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--weights", default=None, help="FPNet weights (.safetensors); default: packaged")
    parser.add_argument("--queue-size", type=int, default=QUEUE_SIZE,
                        help="requests that may wait; beyond, a request is refused with a 'busy, try again' answer")
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                        help="what runs the networks (onnxruntime needs pip install onnx onnxruntime)")
    parser.add_argument("--max-video-seconds", type=float, default=MAX_VIDEO_SECONDS,
                        help=f"longest video the Video tab takes (default: {MAX_VIDEO_SECONDS:.0f}); a longer one is refused at once")
    args = parser.parse_args(argv)
    demo = build_demo(args.weights, args.backend, args.max_video_seconds)
    demo.queue(default_concurrency_limit=1, max_size=args.queue_size)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
                show_error=True, js=RECEIVED_RATE_JS)


if __name__ == "__main__":
    main()
