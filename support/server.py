"""The app-server harness of the tests and benchmarks: ``app.py`` started on loopback (127.0.0.1) with its own
temp folder, Debian's Chromium launched headless for it, and a still-photo Y4M clip for Chromium's fake camera."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .paths import REPO

__all__ = ["chromium", "free_port", "Server", "start_server", "write_y4m", "launch_browser", "BROWSER_ARGS"]

# Chromium on this closed network: no background connections, no GPU, no sandbox (root)
BROWSER_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync")


def chromium() -> str | None:
    """Debian's Chromium, if installed (``apt-get install chromium``)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """``python app.py`` on loopback with its own temp folder."""

    port: int
    temp: Path
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def rss_mib(self) -> float:
        """Resident memory of the server process and its children (MiB), from /proc."""
        total = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total

    def temp_files(self) -> int:
        return sum(len(files) for _, _, files in os.walk(self.temp))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def start_server(port: int | None = None, temp: Path | None = None, args: list[str] = (), wait_s: float = 300) -> Server:
    """Start ``app.py`` on 127.0.0.1 and wait until it answers (a loaded 2-core machine takes a while)."""
    port = port or free_port()
    temp = Path(temp or tempfile.mkdtemp(prefix="facepose_load_"))
    (temp / "gradio").mkdir(parents=True, exist_ok=True)
    log = temp.parent / f"{temp.name}.log"
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(temp / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(port), *args],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(port, temp, proc, log)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(server.url, timeout=2)
            return server
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited: {log.read_text()}") from None
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"app.py did not answer within {wait_s:.0f} s: {log.read_text()}")


def write_y4m(path: Path, image: Image.Image, frames: int = 20, size=(640, 480), noise: float = 2.0) -> None:
    """A short raw video of a still photo, for Chromium's fake camera, each frame with fresh pixel noise (sigma
    ``noise``) as a camera's sensor gives it: identical frames would come back as identical annotated images,
    which a page that counts the images it receives cannot tell apart."""
    rgb = np.asarray(image.convert("RGB").resize(size), dtype=np.float32)
    rng = np.random.default_rng(0)
    sub = lambda c: c.reshape(size[1] // 2, 2, size[0] // 2, 2).mean((1, 3))  # noqa: E731
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            noisy = rgb + rng.normal(0, noise, rgb.shape).astype(np.float32)
            r, g, b = noisy[..., 0], noisy[..., 1], noisy[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = (b - y) * 0.564 + 128
            v = (r - y) * 0.713 + 128
            planes = b"".join(np.clip(p, 0, 255).astype(np.uint8).tobytes() for p in (y, sub(u), sub(v)))
            f.write(b"FRAME\n" + planes)


def launch_browser(playwright, extra_args=(), executable: str | None = None):
    """Headless Chromium through Playwright (no browser download: Debian's binary)."""
    return playwright.chromium.launch(executable_path=executable or chromium(), headless=True,
                                      args=[*BROWSER_ARGS, *extra_args])
