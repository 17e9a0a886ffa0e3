"""``DetectorConfig``: every setting of a detector besides its networks, validated in one place.

Each stage of the cascade has its own named settings (``pnet_threshold``, ``rnet_nms``, ...); the command
line, the app and ``config.json`` all read their defaults and help texts from here (``FIELD_HELP``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .image import DEFAULT_MAX_PIXELS

__all__ = ["DetectorConfig", "FIELD_HELP"]

# The settings that are probabilities or IoU thresholds, each in [0, 1].
_FRACTIONS = ("pnet_threshold", "pnet_nms", "pnet_merge_nms", "rnet_threshold", "rnet_nms", "fpnet_threshold", "fpnet_nms")

FIELD_HELP = {
    "min_face_size": "smallest face searched for, in pixels (at least P-Net's 12 px window)",
    "factor": "image pyramid scale step, between 0 and 1",
    "pnet_threshold": "P-Net's face probability threshold (stage 1, proposals)",
    "pnet_nms": "P-Net's NMS IoU threshold within one pyramid level",
    "pnet_merge_nms": "P-Net's NMS IoU threshold over all pyramid levels",
    "rnet_threshold": "R-Net's face probability threshold (stage 2, refinement)",
    "rnet_nms": "R-Net's NMS IoU threshold",
    "fpnet_threshold": "FPNet's face probability threshold (stage 3: the faces reported)",
    "fpnet_nms": "FPNet's NMS threshold (overlap over the smaller box)",
    "max_pixels": "larger images are refused",
    "flip_pose": "average each face's rotation with the one found in the mirrored crop",
    "any_rotation": "also find faces turned in the image plane (sideways, upside down)",
}


@dataclass(frozen=True)
class DetectorConfig:
    """The settings of ``FacePoseDetector``; frozen, checked on creation and on ``replace``.

    Args:
        min_face_size: smallest face searched for, in pixels, at least P-Net's 12 px window (MTCNN: 20).
        factor: pyramid scale step, in (0, 1).
        pnet_threshold, rnet_threshold, fpnet_threshold: each stage's face-probability threshold.
        pnet_nms: IoU threshold of NMS within one pyramid level; pnet_merge_nms: over all levels.
        rnet_nms: IoU threshold of NMS after R-Net; fpnet_nms: overlap over the smaller box, after FPNet.
        max_pixels: larger images are refused with ``ImageError``; ``None`` for no limit.
        flip_pose: average each face's rotation with the one FPNet finds in the mirrored crop (one
            more FPNet pass over the found faces only).
        any_rotation: also find faces turned in the image plane (sideways, upside down): the cascade runs on
            the image turned by 0, 90, 180 and 270 degrees and the faces are merged, each with its full
            rotation (roll anywhere in -180..180); turned faces are searched from 1.4 times ``min_face_size``
            (``facepose.turns``; its cost is measured by ``python -m benchmarks.rotation``).
    """

    min_face_size: float = 20.0
    factor: float = 0.709
    pnet_threshold: float = 0.6
    pnet_nms: float = 0.5
    pnet_merge_nms: float = 0.7
    rnet_threshold: float = 0.7
    rnet_nms: float = 0.7
    fpnet_threshold: float = 0.7
    fpnet_nms: float = 0.7
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    flip_pose: bool = True
    any_rotation: bool = False

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        size = float(self.min_face_size)
        if not math.isfinite(size) or size < 12:
            raise ValueError(f"min_face_size must be at least 12 pixels (P-Net's window), got {self.min_face_size}")
        put("min_face_size", size)
        for name in _FRACTIONS:
            value = float(getattr(self, name))
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1, got {getattr(self, name)}")
            put(name, value)
        if not 0 < float(self.factor) < 1:
            raise ValueError(f"factor must be between 0 and 1, got {self.factor}")
        put("factor", float(self.factor))
        if self.max_pixels is not None:
            if int(self.max_pixels) != self.max_pixels or self.max_pixels < 1:
                raise ValueError(f"max_pixels must be a positive whole number or None, got {self.max_pixels}")
            put("max_pixels", int(self.max_pixels))
        for name in ("flip_pose", "any_rotation"):
            if getattr(self, name) not in (True, False):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
            put(name, bool(getattr(self, name)))

    def replace(self, **changes) -> DetectorConfig:
        """A copy with ``changes``, validated like the constructor; unknown names raise ``TypeError``."""
        unknown = set(changes) - self.names()
        if unknown:
            raise TypeError(f"unknown detector settings {sorted(unknown)}; the settings are {sorted(self.names())}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict:
        """JSON-ready, one key per setting."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        """The settings found in ``data`` (other keys, such as a version, are ignored); the rest default.

        ``config.json`` files written before the stages had named settings hold ``thresholds`` (P-Net,
        R-Net, FPNet) and ``nms_thresholds`` (level, merge, R-Net, FPNet) lists; they are read as well.

        >>> DetectorConfig.from_dict({"thresholds": [0.5, 0.6, 0.8]}).fpnet_threshold
        0.8
        """
        data = dict(data)
        legacy = {"thresholds": ("pnet_threshold", "rnet_threshold", "fpnet_threshold"),
                  "nms_thresholds": ("pnet_nms", "pnet_merge_nms", "rnet_nms", "fpnet_nms")}
        for key, names in legacy.items():
            values = data.pop(key, None)
            if values is not None:
                if len(values) != len(names):
                    raise ValueError(f"{key} must hold {len(names)} numbers ({', '.join(names)}), got {values}")
                data.update({n: v for n, v in zip(names, values) if n not in data})
        return cls(**{k: v for k, v in data.items() if k in cls.names()})
