"""Bad input gets a clear ImageError naming the problem."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from facepose import FacePoseDetector, ImageError, load_image

from .conftest import PHOTOS, needs_photos


def png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims ``width x height`` (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def test_missing_file():
    with pytest.raises(ImageError, match="no such file: .*nowhere.jpg"):
        load_image("nowhere.jpg")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_text_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("not an image")
    with pytest.raises(ImageError, match="notes.jpg is not an image"):
        load_image(p)


@needs_photos
def test_truncated_jpeg(tmp_path):
    data = (PHOTOS / "matplotlib_grace_hopper.jpg").read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="cut.jpg is truncated or corrupt"):
        load_image(p)


@pytest.mark.parametrize("side", [30000, 12000])
def test_huge_image_refused_before_decoding(tmp_path, side):
    p = tmp_path / "bomb.png"
    png_header_only(p, side, side)
    with pytest.raises(ImageError, match="bomb.png is too large"):
        FacePoseDetector().detect(p)


def test_numpy_inputs_checked():
    with pytest.raises(ImageError, match="uint8"):
        load_image(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((10, 10, 5), dtype=np.uint8))
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 10, 3), dtype=np.uint8))
    assert load_image(np.zeros((4, 5), dtype=np.uint8)).shape == (4, 5, 3)


def test_wrong_type():
    with pytest.raises(ImageError, match="cannot read an image from int"):
        load_image(42)


def test_blank_image_has_no_faces():
    assert FacePoseDetector().detect(np.full((200, 300, 3), 128, dtype=np.uint8)) == []
