"""DetectorConfig: one validated place for every setting; the detector, replace() and the Hub derive from it."""
from __future__ import annotations

import dataclasses
import math

import pytest

from facepose import DetectorConfig, FacePoseDetector


@pytest.mark.parametrize("changes,message", [
    ({"min_face_size": 5}, "min_face_size must be at least 12"),
    ({"min_face_size": math.nan}, "min_face_size"),
    ({"fpnet_threshold": 1.5}, "fpnet_threshold must be a number between 0 and 1"),
    ({"pnet_threshold": -0.1}, "pnet_threshold must be a number between 0 and 1"),
    ({"rnet_nms": 2}, "rnet_nms must be a number between 0 and 1"),
    ({"pnet_merge_nms": math.nan}, "pnet_merge_nms"),
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
    c = DetectorConfig(min_face_size=30, rnet_threshold=1, max_pixels=1e6)
    assert c.min_face_size == 30.0 and isinstance(c.min_face_size, float)
    assert c.rnet_threshold == 1.0 and isinstance(c.rnet_threshold, float)
    assert c.max_pixels == 1_000_000 and isinstance(c.max_pixels, int)
    assert DetectorConfig(max_pixels=None).max_pixels is None


def test_config_is_frozen_and_round_trips_through_a_dict():
    c = DetectorConfig(min_face_size=40, flip_pose=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.min_face_size = 10
    d = c.to_dict()
    assert d == {"min_face_size": 40.0, "factor": 0.709, "pnet_threshold": 0.6, "pnet_nms": 0.5, "pnet_merge_nms": 0.7,
                 "rnet_threshold": 0.7, "rnet_nms": 0.7, "fpnet_threshold": 0.7, "fpnet_nms": 0.7,
                 "max_pixels": 80_000_000, "flip_pose": False, "any_rotation": False}
    assert DetectorConfig.from_dict({**d, "facepose_version": "0.1.0"}) == c  # other keys are ignored


def test_a_config_json_with_the_stage_lists_is_read():
    """config.json files written before the stages had named settings keep their meaning."""
    old = {"min_face_size": 30, "thresholds": [0.5, 0.65, 0.8], "nms_thresholds": [0.4, 0.6, 0.65, 0.75]}
    assert DetectorConfig.from_dict(old) == DetectorConfig(
        min_face_size=30, pnet_threshold=0.5, rnet_threshold=0.65, fpnet_threshold=0.8,
        pnet_nms=0.4, pnet_merge_nms=0.6, rnet_nms=0.65, fpnet_nms=0.75)
    with pytest.raises(ValueError, match="thresholds must hold 3 numbers"):
        DetectorConfig.from_dict({"thresholds": [0.5, 0.6]})


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError, match=r"unknown detector settings \['min_size'\]"):
        DetectorConfig().replace(min_size=30)
    with pytest.raises(TypeError, match="min_size"):
        FacePoseDetector(min_size=30)


def test_detector_takes_a_config_or_its_fields(detector):
    config = DetectorConfig(min_face_size=40, fpnet_threshold=0.8)
    assert FacePoseDetector(config=config).config == config
    assert FacePoseDetector(min_face_size=40, fpnet_threshold=0.8).config == config
    assert FacePoseDetector(config=config, flip_pose=False).config == config.replace(flip_pose=False)
    text = repr(FacePoseDetector(config=config))
    for name in DetectorConfig.names():
        assert f"{name}=" in text
    assert "min_face_size=40.0" in text and "last_stage=fpnet_branch" in text
