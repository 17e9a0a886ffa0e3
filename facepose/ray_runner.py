"""FacePose on a Ray cluster with Ray Data (``pip install facepose[ray]``).

- ``detect_faces(ds)``: for a Ray Dataset of images (``ray.data.read_images(..., include_paths=True)``
  or any dataset with an ``HxWx3`` uint8 column), a dataset with each row's faces added, computed by a
  pool of detector actors (``map_batches``). A pipeline calls it like any other transform.
- ``run_ray(job, paths)``: what ``facepose detect SRC DEST --ray`` runs: the files are read and detected
  in parallel by the actors (each writes its annotated copies to DEST, which must be storage every node
  sees), and the records come back to the driver, which appends them to the same ``detections.jsonl``
  as a local run, so resuming works the same way.

The cluster is ``RAY_ADDRESS`` if set, else a local one started for the run.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .batch import Job, process_image
from .config import DetectorConfig

__all__ = ["connect", "detect_faces", "run_ray", "write_parquet"]


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("--ray needs Ray Data: pip install 'facepose[ray]' (or pip install 'ray[data]')") from None
    return ray


def connect() -> Any:
    """Join the cluster at ``RAY_ADDRESS``, or start a local one; returns the ``ray`` module."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def _actors() -> int:
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


class _FileDetector:
    """Ray actor: one detector, one thread; reads, detects and annotates the files it is given."""

    def __init__(self, job: Job) -> None:
        import torch

        torch.set_num_threads(1)
        self.job, self.detector = job, job.detector()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [process_image(self.detector, self.job, Path(p)) for p in batch["path"]]
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


class _ImageDetector:
    """Ray actor: one detector, one thread; finds the faces in a batch of images."""

    def __init__(self, weights: str | None, config: DetectorConfig, column: str) -> None:
        import torch

        from .detector import FacePoseDetector

        torch.set_num_threads(1)
        self.detector, self.column = FacePoseDetector(weights=weights, config=config), column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        faces = [json.dumps([f.to_dict() for f in self.detector.detect(np.asarray(image, dtype=np.uint8))])
                 for image in batch[self.column]]
        return {**batch, "faces": np.array(faces, dtype=object)}


def detect_faces(ds, weights: str | Path | None = None, config: DetectorConfig | None = None,
                 image_column: str = "image", concurrency: int | None = None, batch_size: int = 4):
    """The Ray Dataset ``ds`` with a ``faces`` column added: per row, a JSON list of the faces found in its
    ``image_column`` (``HxWx3`` uint8 RGB), each with ``box``, ``score``, ``landmarks``, ``rotation``,
    ``yaw``, ``pitch``, ``roll``. ``concurrency`` detector actors (default: one per CPU of the cluster)."""
    connect()
    return ds.map_batches(_ImageDetector, fn_constructor_args=(None if weights is None else str(weights),
                                                              config or DetectorConfig(), image_column),
                          concurrency=concurrency or _actors(), num_cpus=1, batch_size=batch_size)


def run_ray(job: Job, paths: list[Path], concurrency: int | None = None) -> Iterator[dict]:
    """The records of ``paths``, detected by a pool of actors on the cluster, as they arrive."""
    if not paths:
        return iter(())
    ray = connect()
    ds = ray.data.from_items([{"path": str(p)} for p in paths])
    out = ds.map_batches(_FileDetector, fn_constructor_args=(job,), concurrency=concurrency or _actors(),
                         num_cpus=1, batch_size=1)
    return (json.loads(row["record"]) for row in out.iter_rows())


def write_parquet(records: list[dict], path: Path) -> Path:
    """The records of a run as a Parquet table (``image``, ``width``, ``height``, ``error``, ``faces`` as a
    list of structs), written atomically."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("--format parquet needs pyarrow: pip install 'facepose[ray]' (or pip install pyarrow)") from None
    rows = [{"image": r["image"], "width": r.get("width"), "height": r.get("height"), "error": r.get("error"),
             "faces": r.get("faces", [])} for r in records]
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)
    return path
