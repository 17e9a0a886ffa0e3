"""Folder runs: many images over several processes, results streamed to a JSONL file that a rerun resumes.

``DEST/detections.jsonl`` gets one line per input, appended and flushed as each image finishes:
``{"image": path relative to SRC, "width", "height", "faces": [...]}``, or ``{"image", "error"}`` for a
file that cannot be read. A run that was stopped, even by ``kill -9``, continues when started again with
the same command: images already in the file are skipped, a half-written last line is dropped, and each
image ends up exactly once. Annotated images are written to a temporary name and renamed, so none is
ever half-written. ``DEST/run.json`` records the run's settings; a rerun with other settings is refused.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

from . import __version__
from .config import DetectorConfig
from .draw import draw_faces
from .image import ImageError, load_image

__all__ = ["Job", "JSONL_NAME", "RUN_NAME", "collect_inputs", "output_path", "plan", "read_results", "process_image",
           "run_local", "ResultLog"]

JSONL_NAME = "detections.jsonl"
RUN_NAME = "run.json"
TMP_SUFFIX = ".facepose-tmp"


@dataclass(frozen=True)
class Job:
    """What a folder run does: where from and to, and the detector every worker builds."""

    src: Path
    dest: Path
    weights: str | None = None
    device: str = "cpu"
    config: DetectorConfig = field(default_factory=DetectorConfig)
    recursive: bool = False
    annotate: bool = True
    backend: str = "torch"

    def settings(self) -> dict:
        """What must match for a rerun to continue this run's results."""
        return {"src": str(self.src.resolve()), "weights": self.weights, "recursive": self.recursive,
                "annotate": self.annotate, "config": self.config.to_dict()}

    def detector(self):
        from .detector import FacePoseDetector

        return FacePoseDetector(weights=self.weights, device=self.device, config=self.config, backend=self.backend)


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


def relative_name(src: Path, path: Path) -> str:
    """The name an input goes by in the results: its path relative to SRC (its file name if SRC is a file)."""
    return (Path(path.name) if src.is_file() else path.relative_to(src)).as_posix()


def output_path(src: Path, path: Path, dest: Path) -> Path:
    """Where the annotated copy of ``path`` goes: same relative path under ``dest``; formats other than
    JPEG and PNG are written as PNG with ``.png`` appended."""
    rel = Path(relative_name(src, path))
    if rel.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        rel = rel.with_name(rel.name + ".png")
    return dest / rel


def read_results(path: Path, repair: bool = False) -> dict[str, dict]:
    """The records of a results file by image name. A last line cut off by a killed run (no newline, or
    not JSON) is ignored, and with ``repair`` removed from the file so appending can go on."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is a half-written line
    records = {}
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path} line {number} is not JSON: not a FacePose results file, or damaged") from None
        records[record["image"]] = record
    if repair and end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return records


def _write_atomically(image, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}{TMP_SUFFIX}")
    image.save(tmp, format="JPEG" if out.suffix.lower() in (".jpg", ".jpeg") else "PNG",
               **({"quality": 95} if out.suffix.lower() in (".jpg", ".jpeg") else {}))
    os.replace(tmp, out)


def process_image(detector, job: Job, path: Path) -> dict:
    """Detect the faces of one input (and write its annotated copy): its results record."""
    name = relative_name(job.src, path)
    try:
        pixels = load_image(path, job.config.max_pixels)
    except ImageError as e:
        return {"image": name, "error": str(e)}
    faces = detector.detect(pixels)
    if job.annotate:
        _write_atomically(draw_faces(pixels, faces), output_path(job.src, path, job.dest))
    return {"image": name, "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
            "faces": [f.to_dict() for f in faces]}


def plan(job: Job, overwrite: bool = False) -> list[Path]:
    """Check ``job`` against what ``DEST`` holds and get it ready; return the inputs still to process.

    Raises ``FileExistsError`` before anything is written if an output would replace an input, if DEST
    holds results of a run with other settings, or (without ``overwrite``) files that a run of this
    version did not record; ``ValueError`` if DEST's results file is not one.
    """
    inputs = collect_inputs(job.src, job.dest, job.recursive)
    input_set = {p.resolve() for p in inputs}
    results, run_file = job.dest / JSONL_NAME, job.dest / RUN_NAME
    for path in inputs:
        out = output_path(job.src, path, job.dest)
        if job.annotate and out.resolve() in input_set or results.resolve() in input_set:
            raise FileExistsError(f"writing {out} would overwrite an input image; choose another DEST")
    resuming = results.is_file() and not overwrite
    if resuming:
        earlier = json.loads(run_file.read_text()) if run_file.is_file() else None
        if earlier is None or earlier.get("settings") != job.settings():
            raise FileExistsError(f"{job.dest} holds results of a run with other settings (see {RUN_NAME}); "
                                  "use another DEST, or --overwrite to start again")
        done = read_results(results, repair=True)
    else:
        if not overwrite:
            existing = [output_path(job.src, p, job.dest) for p in inputs] if job.annotate else []
            clash = next((p for p in [*existing, results] if p.exists()), None)
            if clash is not None:
                raise FileExistsError(f"{clash} already exists; pass --overwrite to replace earlier results")
        done = {}
        job.dest.mkdir(parents=True, exist_ok=True)
        results.write_bytes(b"")
        run_file.write_text(json.dumps({"facepose_version": __version__, "settings": job.settings()}, indent=1) + "\n")
    for stale in job.dest.rglob(f".*{TMP_SUFFIX}"):  # annotated images a killed run did not finish
        stale.unlink()
    return [p for p in inputs if relative_name(job.src, p) not in done]


class ResultLog:
    """Appends records to ``DEST/detections.jsonl``, one line each, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_worker_state: dict = {}  # per worker process: its detector


def _init_worker(job: Job, threads: int, detector) -> None:
    import torch

    torch.set_num_threads(threads)
    _worker_state["detector"] = detector if detector is not None else job.detector()
    _worker_state["job"] = job


def _work(path: Path) -> dict:
    return process_image(_worker_state["detector"], _worker_state["job"], path)


def _start_method(threads: int) -> str:
    """``fork`` on Linux when each worker runs one thread (the default, one worker per core): workers start
    at once and share the parent's loaded networks copy-on-write, where ``spawn`` costs each a fresh
    interpreter, a torch import and the weights (2-3 s of every core). A forked child must not run OpenMP
    with several threads once the parent has (GNU OpenMP's thread pool does not survive a fork), so with
    more threads per worker, and on macOS and Windows, ``spawn``."""
    return "fork" if sys.platform.startswith("linux") and threads == 1 else "spawn"


def run_local(job: Job, pending: list[Path], workers: int, detector=None) -> Iterator[dict]:
    """Records of ``pending`` as they finish: in this process (``workers=1``, with ``detector`` if given) or
    spread over ``workers`` processes, each with its own detector (``detector`` itself where workers are
    forked) and ``cores // workers`` threads."""
    if workers <= 1:
        detector = detector or job.detector()
        for path in pending:
            yield process_image(detector, job, path)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    method = _start_method(threads)
    inherited = detector if method == "fork" else None  # a forked worker gets it without pickling
    with ProcessPoolExecutor(workers, mp_context=get_context(method), initializer=_init_worker,
                             initargs=(job, threads, inherited)) as pool:
        todo = iter(pending)
        running = {pool.submit(_work, p) for p in islice(todo, 2 * workers)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            running |= {pool.submit(_work, p) for p in islice(todo, len(finished))}
            for future in finished:
                yield future.result()
