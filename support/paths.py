"""Where the shared data lives: ``../shared/data`` beside the repository (research terms: read in place,
never copied into the repository). Every default path of training, evaluation and the tests comes from here."""
from __future__ import annotations

from pathlib import Path

__all__ = ["REPO", "SHARED", "AFLW2000", "AFLW_FACES", "AFLW_FACES_EXTRA", "WIDER_TRAIN", "WIDER_VAL", "PHOTOS",
           "MEDIAPIPE"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
AFLW2000 = SHARED / "aflw2000"  # the pose benchmark: evaluation only
AFLW_FACES = SHARED / "aflw_faces"
AFLW_FACES_EXTRA = SHARED / "aflw_faces_extra"
WIDER_TRAIN = SHARED / "wider" / "train"
WIDER_VAL = SHARED / "wider" / "val"  # the detection benchmark: evaluation only
PHOTOS = SHARED / "photos"
MEDIAPIPE = SHARED / "mediapipe"
