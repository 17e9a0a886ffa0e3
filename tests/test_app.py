"""The web demo: in a real headless Chromium (Debian's), through gradio_client, and its handlers directly."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.server import chromium, launch_browser, start_server, write_y4m

from .conftest import PHOTOS, REPO, needs_photos

gr = pytest.importorskip("gradio")

CHROMIUM = chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def server():
    """``python app.py`` on a free loopback port with its own temp folder; yields its URL."""
    running = start_server()
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def demo():
    sys.path.insert(0, str(REPO))
    import app

    return app.Demo()


@needs_photos
def test_handler_outputs(demo):
    annotated, figure, rows, json_path, status = demo.run(str(PHOTOS / "nasa_iss_expedition_1.jpg"), 20, 0.7, True)
    assert annotated.size == Image.open(PHOTOS / "nasa_iss_expedition_1.jpg").size
    assert len(rows) == 3 and "3 faces" in status
    assert Path(json_path).read_text().count('"score"') == 3
    assert demo.base.pose_available  # the packaged weights carry a trained pose head
    assert all(isinstance(r[6], float) for r in rows)
    assert [t.name for t in figure.data if t.type == "mesh3d"] == [f"face {r[0]}" for r in rows]  # a head per row
    assert list(figure.data[-1].text) == [str(r[0]) for r in rows]  # numbered as in the table
    assert [f["face"] for f in json.loads(Path(json_path).read_text())["faces"]] == [r[0] for r in rows]
    import plotly.graph_objects as go

    go.Figure(figure.to_dict())  # the spec, built without validation for speed, passes Plotly's validation


def test_handler_bad_inputs(demo, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert "Cannot use this input" in demo.run(str(text), 20, 0.7, True)[-1]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((REPO / "examples" / "grace_hopper.jpg").read_bytes()[:3000])
    assert "truncated or corrupt" in demo.run(str(cut), 20, 0.7, True)[-1]
    from .test_image import png_header_only

    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 30000, 30000)
    assert "too large" in demo.run(str(bomb), 20, 0.7, True)[-1]
    assert "No face found" in demo.run(np.full((300, 300, 3), 200, np.uint8), 20, 0.7, True)[-1]


@pytest.mark.slow  # starts app.py
@needs_photos
def test_gradio_client(server, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    annotated, plot, table, json_file, status = client.predict(
        handle_file(str(PHOTOS / "pexels_women_on_phones.jpg")), 20, 0.7, True, api_name="/detect")
    assert "2 faces" in status
    assert Path(annotated).is_file() and Path(json_file).is_file()
    assert len(table["data"]) == 2
    # a broken upload is answered in the page, and the server keeps serving
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    assert "Cannot use this input" in client.predict(handle_file(str(broken)), 20, 0.7, True, api_name="/detect")[-1]
    assert "1 face" in client.predict(handle_file(str(REPO / "examples" / "grace_hopper.jpg")), 20, 0.7, True, api_name="/detect")[-1]


def shots(tmp_path: Path) -> Path:
    """Where screenshots go: $FACEPOSE_SCREENSHOTS if set (to look at them), else the test's tmp folder."""
    folder = Path(os.environ.get("FACEPOSE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow  # browser
@needs_chromium
@needs_photos
def test_browser_upload(server, tmp_path):
    """An upload in the page gives the annotated image, the table with yaw, pitch and roll, and the 3D view with
    one head per face, numbered as in the table; screenshots of the page and of the view are kept with the test's
    output (FACEPOSE_SCREENSHOTS to look at them)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server)
        page.locator("input[type=file]").first.set_input_files(str(PHOTOS / "nasa_iss_expedition_1.jpg"))
        page.wait_for_selector("#annotated img", timeout=60_000)
        page.wait_for_function("document.querySelector('#status').innerText.includes('faces')", timeout=60_000)
        page.wait_for_function("(document.querySelector('#plot3d .js-plotly-plot') || {}).data !== undefined", timeout=60_000)
        page.wait_for_selector("#plot3d .gl-container canvas, #plot3d canvas", timeout=30_000)
        page.locator("#faces [data-testid='cell-0-8']").wait_for(timeout=30_000)
        cells = [page.locator(f"#faces [data-testid='cell-0-{c}']").inner_text() for c in range(9)]
        plot = page.evaluate("""() => {
            const d = document.querySelector('#plot3d .js-plotly-plot').data;
            return {heads: d.filter(t => t.type === 'mesh3d').map(t => t.name),
                    numbers: Array.from(d[d.length - 1].text)};
        }""")
        table = []
        while page.locator(f"#faces [data-testid='cell-{len(table)}-0']").count():
            table.append(page.locator(f"#faces [data-testid='cell-{len(table)}-0']").inner_text().strip())
        page.screenshot(path=str(shots(tmp_path) / "upload.png"), full_page=True)
        page.locator("#plot3d").screenshot(path=str(shots(tmp_path) / "view3d.png"))
        browser.close()
    assert page.url.startswith(server) and len(cells) == 9, cells
    assert all(c.strip() for c in cells[6:9]), cells  # yaw, pitch, roll are shown
    angles = [float(c) for c in cells[6:9]]  # and are numbers
    assert all(abs(a) < 100 for a in angles)
    assert len(table) >= 3, table
    assert plot["heads"] == [f"face {n}" for n in table]  # a head per face
    assert plot["numbers"] == table  # numbered as in the table


@pytest.mark.slow  # browser
@needs_chromium
@needs_photos
def test_browser_live_webcam(server, tmp_path):
    from playwright.sync_api import sync_playwright

    clip = tmp_path / "clip.y4m"
    write_y4m(clip, Image.open(PHOTOS / "matplotlib_grace_hopper.jpg"))
    with sync_playwright() as p:
        browser = launch_browser(p, ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                     f"--use-file-for-fake-video-capture={clip}"])
        context = browser.new_context(viewport={"width": 1400, "height": 1200}, permissions=["camera"])
        page = context.new_page()
        page.goto(server)
        page.get_by_role("tab", name="Live webcam").click()
        page.locator("#camera [title='grant webcam access'] button").click(timeout=30_000)
        page.locator("#camera button.capture-button").click(timeout=30_000)  # "start recording"
        page.wait_for_selector("#live img", timeout=60_000)
        page.wait_for_function("document.querySelector('#rate').innerText.includes('face')", timeout=60_000)
        page.wait_for_function("document.querySelector('#received').innerText.includes('received')", timeout=60_000)
        page.wait_for_timeout(5_000)  # the page's count covers the last 3 s
        text = page.locator("#rate").inner_text()
        received = page.locator("#received").inner_text()
        page.screenshot(path=str(shots(tmp_path) / "live.png"))
        browser.close()
    print(f"live tab in headless Chromium: {received}; server: {text}")
    assert "1 face" in text and "ms per frame" in text
    assert float(received.split()[0]) >= 2.0, received  # the annotated stream keeps coming


@needs_photos
def test_video_handler(demo, tmp_path):
    """The Video tab's handler: annotated video, JSONL, the pose chart; a non-video gets a message."""
    from .test_video import make_clip, needs_av  # noqa: F401

    pytest.importorskip("av")
    clip = make_clip(tmp_path / "clip.mp4", 12)
    *_, (video, jsonl, figure, status) = demo.video(str(clip), 20, 0.7, True, progress=lambda *a, **k: None)
    assert Path(video).is_file() and Path(jsonl).read_text().count("\n") == 12
    assert "12 frames" in status and "2 face track(s)" in status and "audio kept" in status
    assert len(figure.data) == 2 * 3  # yaw, pitch, roll per track
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    assert "Cannot use this video" in list(demo.video(str(text), 20, 0.7, True))[-1][-1]


@needs_photos
def test_video_tab_refuses_a_long_video_and_stops_when_closed(tmp_path):
    """A video over the app's limit gets the message at once; a job whose generator is closed (what Gradio does
    when the browser goes away) stops its pipeline and leaves no output."""
    import threading

    from app import Demo

    from .test_video import make_clip

    pytest.importorskip("av")
    clip = make_clip(tmp_path / "clip.mp4", 60, audio=False)  # 2.4 s at 25 frames/s
    short = Demo(max_video_seconds=1.0)
    answers = list(short.video(str(clip), 20, 0.7, True, progress=lambda *a, **k: None))
    assert len(answers) == 1 and "too long" in answers[0][-1] and "2 s" in answers[0][-1]
    long_clip = make_clip(tmp_path / "long.mp4", 750, audio=False)  # 30 s: still running when the browser goes
    demo = Demo(max_video_seconds=60.0)
    before = set(threading.enumerate())
    job = demo.video(str(long_clip), 20, 0.7, True, progress=lambda *a, **k: None)
    assert "Tracking faces" in next(job)[-1]
    started = set(threading.enumerate()) - before
    assert started  # the worker runs beside the generator
    job.close()  # the browser went away
    assert not set(threading.enumerate()) - before  # the worker and the pipeline's threads are gone
    assert not list(demo.videos.folder.glob("*.mp4"))


def test_live_stream_follows_faces(demo):
    """The live webcam handler keeps a tracker per session: the same face keeps its id across frames."""
    frame = np.asarray(Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB"))
    state = None
    for _ in range(3):
        image, text, state = demo.stream(frame, 20, 0.7, True, state)
    assert "**1 face(s)** tracked" in text and "ms per frame" in text
    assert [t.track_id for t in state["tracker"].tracks] == [1]


@needs_photos
def test_live_stream_main_face_only(demo):
    """*Main face only* on a two-face frame: one face tracked (the best), and both again once it is unticked."""
    frame = np.asarray(Image.open(PHOTOS / "pexels_women_on_phones.jpg").convert("RGB"))
    state = None
    for _ in range(3):
        image, text, state = demo.stream(frame, 20, 0.7, True, state, False, True)
    assert "**1 face(s)** tracked" in text, text
    state = None
    for _ in range(3):
        image, text, state = demo.stream(frame, 20, 0.7, True, state, False, False)
    assert "**2 face(s)** tracked" in text, text


def test_live_stream_with_any_rotation_follows_a_rolling_head(demo):
    """With *Any rotation* the live tab's tracker follows a head that rolls past upright's reach (10 degrees
    a frame, about the face, through 180), under one id."""
    photo = Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB")
    x1, y1, x2, y2 = demo.base.detect(photo)[0].box
    state = None
    for angle in range(0, 190, 10):
        frame = np.asarray(photo.rotate(angle, center=((x1 + x2) / 2, (y1 + y2) / 2), fillcolor=(0, 0, 0)))
        image, text, state = demo.stream(frame, 20, 0.7, True, state, True)
        assert "**1 face(s)** tracked" in text, (angle, text)
    assert [t.track_id for t in state["tracker"].tracks] == [1]


@pytest.mark.slow  # load
@needs_photos
def test_load_short(tmp_path):
    """A short load test (benchmarks/load.py) on its own server with a small queue: a burst larger than the
    queue is served or refused with the busy answer, none broken; a short soak keeps the temp folder bounded
    (the outbox keeps its newest files only; identical answers share one file in Gradio's cache)."""
    from benchmarks.load import DEFAULT_PHOTO, burst, soak
    from support.server import start_server

    server = start_server(temp=tmp_path / "server", args=["--queue-size", "3"])
    try:
        rep = burst(server.url, 12, DEFAULT_PHOTO, timeout=240)
        assert rep.count("failed") == 0, rep.failures()
        assert rep.count("served") >= 4 and rep.count("refused") >= 1, rep.line()  # 1 running + 3 waiting, at least
        files = server.temp_files()
        rep = soak(server.url, 12, DEFAULT_PHOTO)
        assert rep.count("served") == 12, rep.line()
        assert server.temp_files() <= files + 8, "every request left a file behind"  # the outbox keeps 8
    finally:
        server.stop()


@needs_photos
def test_handler_any_rotation(demo):
    """The *Any rotation* checkbox: the upside-down crew of an ISS photo is found, with roll near 180, and more
    faces leaning far to a side than the upright search finds (an astronaut's head leaning about 60 degrees)."""
    photo = str(PHOTOS / "nasa_iss_sts_131_and_expedition_23_group_portrait.jpg")
    upright = demo.run(photo, 20, 0.7, True, False)[2]
    turned = demo.run(photo, 20, 0.7, True, True)[2]
    assert len(turned) > len(upright)
    assert sum(abs(r[8]) > 150 for r in turned) >= 3
    assert sum(45 < abs(r[8]) < 135 for r in turned) > sum(45 < abs(r[8]) < 135 for r in upright)
