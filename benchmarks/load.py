"""The web demo under load, on loopback only: a burst of concurrent photo requests, then a sequential soak.

    python -m benchmarks.load [--burst 100] [--soak 300] [--photo PATH] [--port PORT]

Starts ``python app.py`` itself on 127.0.0.1 (a free port unless ``--port``), with its own empty temp
folder (``TMPDIR`` and ``GRADIO_TEMP_DIR``), and stops it at the end. Each request is one API call of the
photo tab (``/detect``) through ``gradio_client`` from its own client (one per simulated user), the photo
uploaded each time. Prints, for the burst and for the soak: served / refused (the app's "busy" answer) /
failed (anything else: a broken response, a timeout), latency percentiles, the server's resident memory
and the files in its temp folder; then the time of one request against the detection itself on the
same photo (``FacePoseDetector.detect`` in this process, the server idle). Every count and wait is
bounded: the burst has ``--timeout`` seconds, each soak request 60 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from support.paths import PHOTOS
from support.server import Server, chromium, launch_browser, start_server, write_y4m

DEFAULT_PHOTO = PHOTOS / "pexels_women_on_phones.jpg"
# A refusal of a full queue: Gradio answers 503, gradio_client raises "Queue is full! Please try again.",
# the page shows "This application is currently busy. Please try again."
REFUSALS = ("queue is full", "busy")


@dataclass
class Outcome:
    kind: str  # "served", "refused" or "failed"
    seconds: float
    detail: str = ""


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(o.kind == kind for o in self.outcomes)

    def latency(self) -> dict[str, float]:
        served = sorted(o.seconds for o in self.outcomes if o.kind == "served")
        if not served:
            return {}
        pick = lambda q: served[min(len(served) - 1, int(q * len(served)))]  # noqa: E731
        return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": served[-1]}

    def line(self) -> str:
        lat = " ".join(f"{k} {v:.2f} s" for k, v in self.latency().items())
        return f"served {self.count('served')} / refused {self.count('refused')} / failed {self.count('failed')}; latency {lat}"

    def failures(self) -> list[str]:
        return sorted({o.detail for o in self.outcomes if o.kind == "failed"})


def request(client, photo: Path, timeout: float) -> Outcome:
    """One ``/detect`` call: served when the status says how many faces (or none) were found."""
    from gradio_client import handle_file

    start = time.perf_counter()
    try:
        job = client.submit(handle_file(str(photo)), 20, 0.7, True, api_name="/detect")
        result = job.result(timeout=timeout)
    except Exception as e:  # noqa: BLE001 - every failure is counted and named
        text = f"{type(e).__name__}: {e}"
        if os.environ.get("FACEPOSE_LOAD_TRACE"):  # where in the client it failed
            import traceback

            text += " at " + " < ".join(f"{f.name}:{f.lineno}" for f in traceback.extract_tb(e.__traceback__)[:14])
        kind = "refused" if any(r in text.lower() for r in REFUSALS) else "failed"
        return Outcome(kind, time.perf_counter() - start, text[:200])
    status = str(result[-1])
    kind = "served" if "face" in status.lower() else "failed"
    return Outcome(kind, time.perf_counter() - start, status[:200])


def ping(url: str) -> float:
    """Seconds the server takes to answer a small GET (its event loop's responsiveness); 60 if it does not."""
    start = time.perf_counter()
    try:
        urllib.request.urlopen(url + "gradio_api/info", timeout=60).read()
    except OSError:
        return 60.0
    return time.perf_counter() - start


def clients(url: str, n: int, download: bool = True, timeout: float | None = None) -> list:
    """``n`` API clients; with ``download`` each fetches the annotated image and the JSON file it is answered
    with, as a browser does."""
    from gradio_client import Client

    folder = tempfile.mkdtemp(prefix="facepose_client_") if download else False  # one for all, not one each
    extra = {"httpx_kwargs": {"timeout": timeout}} if timeout else {}  # else gradio_client's own (20 s)
    return [Client(url, verbose=False, download_files=folder, **extra) for _ in range(n)]


def burst(url: str, n: int, photo: Path, timeout: float, client_timeout: float | None = None) -> Report:
    """``n`` users, each with its own client, send one request each at the same moment."""
    users = clients(url, n, timeout=client_timeout)
    gate = threading.Barrier(n)

    def one(client):
        gate.wait()
        return request(client, photo, timeout)

    with ThreadPoolExecutor(n) as pool:
        return Report(list(pool.map(one, users)))


def soak(url: str, n: int, photo: Path, server: Server | None = None, every: int = 50) -> Report:
    """``n`` requests one after another from one client; memory printed every ``every`` requests."""
    (client,) = clients(url, 1)
    report = Report()
    for i in range(n):
        report.outcomes.append(request(client, photo, timeout=60))
        if server is not None and (i + 1) % every == 0:
            print(f"  soak {i + 1}/{n}: server {server.rss_mib():.0f} MiB, {server.temp_files()} temp files", flush=True)
    return report


class Cameras:
    """``n`` headless Chromium pages streaming a fake webcam (a still photo as a raw video) to the live tab.

    ``sample()`` reads each page's frame-rate line; ``frames_seen()`` counts how many distinct lines (one per
    annotated frame shown) each page has shown since the last ``sample()`` round started counting."""

    def __init__(self, url: str, n: int, photo: Path, chromium: str) -> None:
        from PIL import Image
        from playwright.sync_api import sync_playwright


        clip = Path(tempfile.mkdtemp(prefix="facepose_cam_")) / "clip.y4m"
        write_y4m(clip, Image.open(photo))
        self._pw = sync_playwright().start()
        self.browser = launch_browser(self._pw, ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                                 f"--use-file-for-fake-video-capture={clip}"], chromium)
        self.pages = []
        for _ in range(n):
            page = self.browser.new_context(viewport={"width": 1200, "height": 900}, permissions=["camera"]).new_page()
            page.goto(url)
            page.get_by_role("tab", name="Live webcam").click()
            page.locator("#camera [title='grant webcam access'] button").click(timeout=60_000)
            page.locator("#camera button.capture-button").click(timeout=60_000)
            page.wait_for_function("document.querySelector('#rate').innerText.includes('face')", timeout=120_000)
            self.pages.append(page)
        self.seen: list[set[str]] = [set() for _ in self.pages]

    def sample(self) -> None:
        for seen, page in zip(self.seen, self.pages):
            seen.add(page.locator("#rate").inner_text())

    def reset(self) -> None:
        self.seen = [set() for _ in self.pages]

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


class Detection:
    """``detect`` on the photo with the app's default settings, in this process (a detector of its own)."""

    def __init__(self, photo: Path) -> None:
        from facepose import FacePoseDetector, load_image

        self.detector, self.pixels = FacePoseDetector(), load_image(photo)
        self.detector.detect(self.pixels)

    def seconds(self) -> float:
        start = time.perf_counter()
        self.detector.detect(self.pixels)
        return time.perf_counter() - start


def timed_request(url: str, photo: Path, repeats: int = 10, between=None) -> dict[str, float]:
    """Medians over ``repeats`` lone requests (``between()`` called after each, its results' median returned
    as ``between``), made with plain HTTP (Gradio's queue protocol) so that no
    client overhead counts: ``upload``, ``round_trip`` (upload, join the queue, answer received; the output
    files not fetched), ``server`` (Gradio's own measure of the event: preprocess, handler, postprocess),
    ``fetch`` (downloading the annotated image and the JSON afterwards, as the page does)."""
    import json
    import uuid

    import httpx

    config = httpx.get(url + "config", timeout=30).json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "detect")
    rows = []
    with httpx.Client(base_url=url + "gradio_api/", timeout=60) as http:
        for i in range(repeats + 1):
            start = time.perf_counter()
            with open(photo, "rb") as f:
                uploaded = http.post("upload", files={"files": (photo.name, f)}).json()[0]
            uploaded_at = time.perf_counter()
            session = uuid.uuid4().hex[:12]
            data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": photo.name}, 20, 0.7, True, False]
            http.post("queue/join", json={"data": data, "fn_index": fn, "session_hash": session}).raise_for_status()
            with http.stream("GET", f"queue/data?session_hash={session}") as stream:
                for line in stream.iter_lines():
                    message = json.loads(line[5:]) if line.startswith("data:") else {}
                    if message.get("msg") == "process_completed":
                        break
            answered = time.perf_counter()
            if not message.get("success"):
                raise RuntimeError(f"a lone request failed: {message}")
            outputs = message["output"]["data"]
            for value in (outputs[0], outputs[3]):
                http.get(value["url"]).raise_for_status()
            if i:  # the first is a warm-up
                rows.append({"upload": uploaded_at - start, "round_trip": answered - start,
                             "server": message["output"]["duration"], "fetch": time.perf_counter() - answered})
                if between is not None:
                    rows[-1]["between"] = between()
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--burst", type=int, default=100, help="concurrent requests at once (0: skip)")
    p.add_argument("--soak", type=int, default=300, help="sequential requests after the burst (0: skip)")
    p.add_argument("--repeats", type=int, default=10, help="lone requests and detections timed for the ratio (0: skip)")
    p.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--timeout", type=float, default=600, help="seconds the burst's requests may take in all")
    p.add_argument("--client-timeout", type=float, default=None,
                   help="seconds each client waits on the server's HTTP answers (default: gradio_client's 20)")
    p.add_argument("--cameras", type=int, default=0,
                   help="live webcam streams (headless Chromium, fake camera) kept open during the burst")
    args = p.parse_args(argv)
    if not args.photo.is_file():
        p.error(f"photo not found: {args.photo}")
    server = start_server(args.port)
    print(f"app.py on {server.url} (temp folder {server.temp})", flush=True)
    try:
        (warm,) = clients(server.url, 1)
        first = request(warm, args.photo, 120)
        print(f"warm-up: {first.kind} in {first.seconds:.2f} s; server {server.rss_mib():.0f} MiB, {server.temp_files()} temp files")
        if args.cameras and chromium() is None:
            raise SystemExit("--cameras needs Debian's chromium (apt-get install chromium)")
        cameras = Cameras(server.url, args.cameras, args.photo, chromium()) if args.cameras else None
        if args.burst:
            start = time.perf_counter()
            pings = []
            with ThreadPoolExecutor(1) as pool:
                running = pool.submit(burst, server.url, args.burst, args.photo, args.timeout, args.client_timeout)
                while not running.done():
                    if cameras:
                        cameras.sample()
                    pings.append(ping(server.url))
                    time.sleep(1)
                rep = running.result()
            print(f"burst of {args.burst}: {rep.line()} ({time.perf_counter() - start:.0f} s in all)")
            pings.sort()
            print(f"  the server's page answered in {1000 * pings[len(pings) // 2]:.0f} ms (median), {1000 * pings[-1]:.0f} ms "
                  f"(slowest) during the burst ({len(pings)} tries, once a second)")
            if cameras:
                print(f"  live streams during the burst: {', '.join(str(len(s)) for s in cameras.seen)} annotated frames shown "
                      f"(sampled once a second); last: {cameras.pages[0].locator('#rate').inner_text()!r}")
                cameras.close()
            for f in rep.failures()[:5]:
                print(f"  failed: {f}")
            print(f"  after the burst: server {server.rss_mib():.0f} MiB, {server.temp_files()} temp files", flush=True)
        if args.soak:
            before = server.rss_mib()
            rep = soak(server.url, args.soak, args.photo, server)
            after = server.rss_mib()
            print(f"soak of {args.soak}: {rep.line()}")
            for f in rep.failures()[:5]:
                print(f"  failed: {f}")
            print(f"  server memory {before:.0f} -> {after:.0f} MiB ({after - before:+.0f} MiB), {server.temp_files()} temp files")
        if args.repeats:
            # requests and detections in alternation, so that a change in machine load hits both alike
            req = timed_request(server.url, args.photo, args.repeats, between=Detection(args.photo).seconds)
            det = req.pop("between")
            ms = {k: f"{1000 * v:.0f} ms" for k, v in req.items()}
            print(f"one request (medians of {args.repeats}): in the server {ms['server']} = {req['server'] / det:.2f}x the detection "
                  f"({1000 * det:.0f} ms); round trip {ms['round_trip']} = {req['round_trip'] / det:.2f}x (upload {ms['upload']}); "
                  f"then fetching the image and JSON {ms['fetch']}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
