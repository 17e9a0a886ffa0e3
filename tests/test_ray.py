"""The same folder job on a local Ray cluster (started on this machine, loopback only): the same faces per
image as the serial run, the same JSONL, Parquet, and the library function for a Ray Dataset of images."""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from facepose import load_image
from facepose.cli import main

from .conftest import PHOTOS, needs_photos

pytestmark = [pytest.mark.slow, needs_photos, pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                               reason="Ray is not installed (pip install 'facepose[ray]')")]
NAMES = ["nasa_iss_expedition_1.jpg", "matplotlib_grace_hopper.jpg", "pexels_women_on_phones.jpg",
         "nasa_astronaut_class_photo_b.png"]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    from facepose.ray_runner import connect

    connect()
    yield ray
    ray.shutdown()


def lines(dest) -> dict[str, dict]:
    return {r["image"]: r for r in map(json.loads, (dest / "detections.jsonl").read_text().splitlines())}


def test_ray_run_gives_the_serial_faces(ray_cluster, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in NAMES:
        shutil.copy(PHOTOS / name, src / name)
    (src / "notes.txt").write_text("not an image")
    assert main(["detect", str(src), str(tmp_path / "ray"), "--ray", "--format", "parquet"]) == 1  # notes.txt
    assert main(["detect", str(src), str(tmp_path / "serial"), "--workers", "1"]) == 1
    ray_lines, serial = lines(tmp_path / "ray"), lines(tmp_path / "serial")
    assert set(ray_lines) == set(serial) == {*NAMES, "notes.txt"} and "error" in ray_lines["notes.txt"]
    for name in NAMES:
        a, b = ray_lines[name]["faces"], serial[name]["faces"]
        assert len(a) == len(b) > 0, name
        assert np.allclose([f["box"] for f in a], [f["box"] for f in b], atol=1e-3), name
        assert (tmp_path / "ray" / name).is_file()
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "ray" / "detections.parquet").to_pylist()
    assert {r["image"]: len(r["faces"]) for r in table} == {k: len(v.get("faces", [])) for k, v in serial.items()}


def test_detect_faces_on_a_ray_dataset_of_images(ray_cluster):
    from facepose.ray_runner import detect_faces

    images = [load_image(PHOTOS / name) for name in NAMES]
    ds = ray_cluster.data.from_items([{"image": a, "name": n} for a, n in zip(images, NAMES)])
    rows = {r["name"]: json.loads(r["faces"]) for r in detect_faces(ds, concurrency=2).iter_rows()}
    assert {n: len(f) for n, f in rows.items()} == {"nasa_iss_expedition_1.jpg": 3, "matplotlib_grace_hopper.jpg": 1,
                                                   "pexels_women_on_phones.jpg": 2, "nasa_astronaut_class_photo_b.png": 8}
    assert all(set(f) >= {"box", "yaw", "pitch", "roll"} for faces in rows.values() for f in faces)
