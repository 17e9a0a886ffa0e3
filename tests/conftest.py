"""Shared fixtures. Real data is read in place from ../shared/data; tests that need it skip without it."""
from __future__ import annotations

import csv
import math

import pytest

from support.paths import AFLW2000, PHOTOS, REPO, SHARED  # noqa: F401 (re-exported to the tests)

needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/data/photos is not here (a user's checkout)")
needs_aflw2000 = pytest.mark.skipif(not AFLW2000.is_dir(), reason="../shared/data/aflw2000 is not here")


@pytest.fixture(scope="session")
def detector():
    from facepose import FacePoseDetector

    return FacePoseDetector()


@pytest.fixture(scope="session")
def aflw2000_rows() -> list[dict]:
    """The standard 1969-face subset's labels, in file order."""
    with open(AFLW2000 / "labels.csv") as f:
        return [r for r in csv.DictReader(f) if r["in_standard_1969_subset"] == "1"]


def landmark_roll(landmarks) -> float:
    """Degrees, clockwise as displayed (as the roll): how far the line from the mouth's middle up to the eyes'
    middle of five landmarks (eyes, nose, mouth corners) leans from pointing up."""
    (ex1, ey1), (ex2, ey2), _, (mx1, my1), (mx2, my2) = landmarks
    up_x, up_y = (ex1 + ex2 - mx1 - mx2) / 2, (ey1 + ey2 - my1 - my2) / 2  # image y points down
    return math.degrees(math.atan2(up_x, -up_y))
