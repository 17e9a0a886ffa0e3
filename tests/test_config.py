"""DetectorConfig: one validated place for every setting; the detector, replace() and the Hub derive from it."""
from __future__ import annotations

import dataclasses
import math

import pytest

from facepose import DetectorConfig, FacePoseDetector


@pytest.mark.parametrize("changes,message", [
    ({"min_face_size": 5}, "min_face_size must be at least 12"),
    ({"min_face_size": math.nan}, "min_face_size"),
    ({"thresholds": (0.6, 0.7)}, "thresholds must be 3 numbers"),
    ({"thresholds": (0.6, 0.7, 1.5)}, "thresholds must be 3 numbers between 0 and 1"),
    ({"nms_thresholds": (0.5, 0.7, 0.7)}, "nms_thresholds must be 4 numbers"),
    ({"nms_thresholds": (0.5, 0.7, 0.7, -0.1)}, "nms_thresholds"),
    ({"factor": 0.0}, "factor must be between 0 and 1"),
    ({"factor": 1.0}, "factor must be between 0 and 1"),
    ({"max_pixels": 0}, "max_pixels must be a positive whole number"),
    ({"max_pixels": 1.5}, "max_pixels must be a positive whole number"),
    ({"flip_pose": "yes"}, "flip_pose must be True or False"),
])
def test_bad_settings_are_refused_everywhere(changes, message, detector):
    """The constructor, DetectorConfig.replace and FacePoseDetector.replace all refuse a bad setting, with
    the same message: validation lives in one place."""
    with pytest.raises(ValueError, match=message):
        DetectorConfig(**changes)
    with pytest.raises(ValueError, match=message):
        DetectorConfig().replace(**changes)
    with pytest.raises(ValueError, match=message):
        detector.replace(**changes)


def test_values_are_normalised():
    c = DetectorConfig(min_face_size=30, thresholds=[0.5, 0.6, 0.7], max_pixels=1e6)
    assert c.min_face_size == 30.0 and isinstance(c.min_face_size, float)
    assert c.thresholds == (0.5, 0.6, 0.7) and isinstance(c.thresholds, tuple)
    assert c.max_pixels == 1_000_000 and isinstance(c.max_pixels, int)
    assert DetectorConfig(max_pixels=None).max_pixels is None


def test_config_is_frozen_and_round_trips_through_a_dict():
    c = DetectorConfig(min_face_size=40, flip_pose=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.min_face_size = 10
    d = c.to_dict()
    assert d == {"min_face_size": 40.0, "thresholds": [0.6, 0.7, 0.7], "nms_thresholds": [0.5, 0.7, 0.7, 0.7],
                 "factor": 0.709, "max_pixels": 80_000_000, "flip_pose": False, "any_rotation": False}
    assert DetectorConfig.from_dict({**d, "facepose_version": "0.1.0"}) == c  # other keys are ignored


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError, match=r"unknown detector settings \['min_size'\]"):
        DetectorConfig().replace(min_size=30)
    with pytest.raises(TypeError, match="min_size"):
        FacePoseDetector(min_size=30)


def test_detector_takes_a_config_or_its_fields(detector):
    config = DetectorConfig(min_face_size=40, thresholds=(0.6, 0.7, 0.8))
    assert FacePoseDetector(config=config).config == config
    assert FacePoseDetector(min_face_size=40, thresholds=(0.6, 0.7, 0.8)).config == config
    assert FacePoseDetector(config=config, flip_pose=False).config == config.replace(flip_pose=False)
    text = repr(FacePoseDetector(config=config))
    for name in DetectorConfig.names():
        assert f"{name}=" in text
    assert "min_face_size=40.0" in text and "last_stage=fpnet_branch" in text
