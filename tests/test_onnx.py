"""ONNX export and the ONNX Runtime backend: checked graphs, the same faces as torch, clear errors."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from facepose import FacePoseDetector, WeightsError
from facepose.cli import main

from .conftest import PHOTOS, needs_photos

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
                                reason="ONNX Runtime is not installed (pip install 'facepose[onnx]')")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("onnx")
    assert main(["export", "onnx", str(folder)]) == 0
    return folder


def test_export_writes_checked_graphs_with_pixels_in(exported):
    import onnx
    import onnxruntime as ort

    for name in ("pnet", "rnet", "fpnet", "updown"):
        onnx.checker.check_model(str(exported / f"{name}.onnx"))
    assert (exported / "config.json").is_file()
    session = ort.InferenceSession(str(exported / "pnet.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((37, 53), (480, 640)):  # any image size
        prob, box = session.run(None, {"pixels": np.full((1, 3, h, w), 128.0, np.float32)})
        assert prob.shape == (1, -(-(h - 2) // 2) - 4, -(-(w - 2) // 2) - 4) and box.shape[1] == 4
    fpnet = ort.InferenceSession(str(exported / "fpnet.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 7):  # any batch
        outs = fpnet.run(None, {"pixels": np.zeros((n, 3, 48, 48), np.float32)})
        assert [o.shape for o in outs] == [(n, 2), (n, 4), (n, 10), (n, 6), (n,)]  # the last: the lean (degrees)
    assert fpnet.get_modelmeta().custom_metadata_map == {"arch": "fpnet_branch", "pose": "trained"}
    updown = ort.InferenceSession(str(exported / "updown.onnx"), providers=["CPUExecutionProvider"])
    assert [o.shape for o in updown.run(None, {"pixels": np.zeros((3, 3, 48, 48), np.float32)})] == [(3,)]
    assert main(["export", "onnx", str(exported)]) == 2  # existing files are kept without --overwrite


@pytest.mark.slow  # every photo through ONNX Runtime
@needs_photos
def test_onnxruntime_finds_the_same_faces_on_every_photo(detector, exported):
    """Same count on every photo, boxes within 0.5 px, angles within 0.5 degrees (measured: 1e-4 px, 2e-5 deg)."""
    ort = FacePoseDetector(weights_dir=exported, backend="onnxruntime", threads=2)
    assert ort.pose_available and ort.nets.fpnet.arch == "fpnet_branch" and ort.nets.updown.arch == "updown"
    total = 0
    for path in sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        a, b = detector.detect(path), ort.detect(path)
        assert len(a) == len(b), path.name
        if a:
            assert np.abs(np.array([f.box for f in a]) - [f.box for f in b]).max() < 0.5, path.name
            angles = lambda faces: np.array([[f.yaw, f.pitch, f.roll] for f in faces])  # noqa: E731
            assert np.abs(angles(a) - angles(b)).max() < 0.5, path.name
        total += len(a)
    assert total > 100


def test_default_weights_are_exported_on_the_fly():
    det = FacePoseDetector(backend="onnxruntime")
    assert det.backend == "onnxruntime" and det.pose_available and "backend='onnxruntime'" in repr(det)


def test_missing_or_corrupt_onnx_files(exported, tmp_path):
    (tmp_path / "rnet.onnx").write_bytes((exported / "rnet.onnx").read_bytes())
    (tmp_path / "fpnet.onnx").write_bytes((exported / "fpnet.onnx").read_bytes())
    (tmp_path / "pnet.onnx").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="pnet.onnx is not a usable ONNX model"):
        FacePoseDetector(weights_dir=tmp_path, backend="onnxruntime")
    from facepose.onnx_backend import load_onnx_cascade

    (tmp_path / "pnet.onnx").unlink()
    with pytest.raises(WeightsError, match="ONNX model not found: .*pnet.onnx"):
        load_onnx_cascade(tmp_path)


def test_without_onnxruntime_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(ImportError, match=r"pip install 'facepose\[onnx\]'"):
        FacePoseDetector(backend="onnxruntime")
    with pytest.raises(ValueError, match="backend must be one of"):
        FacePoseDetector(backend="tensorrt")


@needs_photos
def test_save_pretrained_writes_onnx_that_from_pretrained_runs(tmp_path, detector):
    folder = detector.save_pretrained(tmp_path / "model")
    assert {p.name for p in folder.glob("*.onnx")} == {"pnet.onnx", "rnet.onnx", "fpnet.onnx", "updown.onnx"}
    loaded = FacePoseDetector.from_pretrained(folder, backend="onnxruntime")
    photo = PHOTOS / "nasa_iss_expedition_1.jpg"
    assert np.allclose([f.box for f in loaded.detect(photo)], [f.box for f in detector.detect(photo)], atol=0.5)
