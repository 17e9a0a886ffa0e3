"""The shipped detector keeps giving the boxes and angles it gave when they were recorded
(tests/data/aflw2000_reference.json: every 20th face of AFLW2000's standard set). Refactoring must not
move them: boxes within 1e-3 px, angles within 5e-3 degrees (float32 noise: a convolution's last bits
depend on the batch it runs in and on the CPU's vector kernels; across machines angles moved up to 1.3e-3, on a
face leaning 54 degrees, whose crop is cut again turned three times)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import AFLW2000, needs_aflw2000

REFERENCE = json.loads((Path(__file__).parent / "data" / "aflw2000_reference.json").read_text())["images"]


@pytest.fixture(scope="module")
def results(detector):
    single = detector.replace(flip_pose=False)
    out = {}
    for name in REFERENCE:
        faces = detector.detect(AFLW2000 / "images" / name)
        out[name] = (faces, single.detect(AFLW2000 / "images" / name))
    return out


@needs_aflw2000
def test_same_faces_and_boxes(results):
    assert len(REFERENCE) == 99
    for name, faces in REFERENCE.items():
        ours, _ = results[name]
        assert len(ours) == len(faces), name
        assert np.allclose([f.box for f in ours], [f["box"] for f in faces], atol=1e-3, rtol=0), name
        assert np.allclose([f.score for f in ours], [f["score"] for f in faces], atol=1e-6, rtol=0), name


@needs_aflw2000
@pytest.mark.parametrize("mode", ["angles", "single"], ids=["flip-averaged", "single-crop"])
def test_same_angles(results, mode):
    for name, faces in REFERENCE.items():
        ours = results[name][0 if mode == "angles" else 1]
        got = np.array([[f.yaw, f.pitch, f.roll] for f in ours]).reshape(-1, 3)
        assert np.allclose(got, np.array([f[mode] for f in faces]).reshape(-1, 3), atol=5e-3, rtol=0), name
