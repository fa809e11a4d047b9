"""deploy/live_view.py: the HTML page, /stats.json and the MJPEG stream over real sockets, a real
headless Chromium showing the stream, clean shutdown, the --serve address errors, and the limits
(connection cap with 503, request-header deadline, listen backlog)."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadseg.deploy.live_view import BACKLOG, LiveView, is_loopback_host, parse_serve_address
from roadseg.models.core.cli import ToolError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# BGR colours, far apart so that JPEG noise cannot turn one into another, and none of them the
# channel-reversed version of another (or of itself), so that an RGB/BGR mix-up shows.
COLOURS = [(0, 0, 255), (0, 255, 255), (0, 128, 255), (128, 0, 255)]
STATS = {"model_fps": 123.4, "e2e_fps": 56.7, "frames": 42, "road_iou": 0.912, "backend": "onnxruntime",
         "precision": "fp32"}


def solid(colour, height=64, width=96) -> np.ndarray:
    return np.full((height, width, 3), colour, np.uint8)


def nearest_colour(image: np.ndarray) -> tuple[tuple[int, int, int], float]:
    """The published colour closest to the image's mean colour, and its largest channel error."""
    mean = image.reshape(-1, 3).mean(axis=0)
    errors = [float(np.abs(mean - np.array(colour)).max()) for colour in COLOURS]
    best = int(np.argmin(errors))
    return COLOURS[best], errors[best]


class Publisher:
    """Publishes the colours in turn from a background thread, like the pipeline would."""

    def __init__(self, view: LiveView, period_s: float = 0.03):
        self.view, self.period_s = view, period_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        index = 0
        while not self.stop.is_set():
            self.view.publish(solid(COLOURS[index % len(COLOURS)]), {**STATS, "frames": index})
            index += 1
            self.stop.wait(self.period_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)


class MjpegReader:
    """Reads multipart/x-mixed-replace parts from /stream.mjpg with http.client."""

    def __init__(self, view: LiveView, timeout: float = 5.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=timeout)
        self.conn.request("GET", "/stream.mjpg")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        content_type = self.response.getheader("Content-Type")
        assert content_type == "multipart/x-mixed-replace; boundary=frame", content_type
        self.file = self.response.fp

    def next_part(self) -> bytes | None:
        """The next JPEG part, or None at the end of the stream."""
        line = self.file.readline()
        while line and line.strip() == b"":
            line = self.file.readline()
        if not line or line.strip() == b"--frame--":
            return None
        assert line.strip() == b"--frame", line
        headers = {}
        while True:
            line = self.file.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if not headers:  # the boundary after the last part, then the end of the stream
            return None
        assert headers["content-type"] == "image/jpeg", headers
        body = self.file.read(int(headers["content-length"]))
        assert self.file.read(2) == b"\r\n"
        return body

    def close(self):
        self.conn.close()


def get(view: LiveView, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(view.url.rstrip("/") + path, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


@pytest.fixture
def view():
    live = LiveView(host="127.0.0.1", port=0).start()
    yield live
    live.close()


def test_page_stats_and_mjpeg_stream(view):
    assert view.url == f"http://127.0.0.1:{view.port}/" and view.port > 0
    assert get(view, "/stats.json")[2] == b"{}"  # before the first frame

    status, content_type, page = get(view, "/")
    assert status == 200 and content_type.startswith("text/html")
    html = page.decode()
    assert '<img id="stream" src="/stream.mjpg"' in html and "/stats.json" in html
    assert "http://" not in html and "https://" not in html  # no external resources
    assert get(view, "/nope")[0] == 404

    # Two stream clients at once: every part decodes to a published colour, the stream moves on.
    readers = [MjpegReader(view), MjpegReader(view)]
    with Publisher(view):
        for reader in readers:
            seen = []
            for _ in range(4):
                part = reader.next_part()
                assert part is not None
                image = cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None and image.shape == (64, 96, 3)
                colour, error = nearest_colour(image)
                assert error < 10, (colour, error)
                seen.append(colour)
            assert len(set(seen)) >= 2, seen  # new frames arrive, not the same one again
    assert 0 < view.encoded <= view.published  # one encoding per frame at most, not one per client

    last = {"model_fps": np.float32(250.0), "e2e_fps": 61.5, "frames": np.int64(1000), "road_iou": 0.875,
            "backend": "onnxruntime", "precision": "int8"}
    view.publish(solid(COLOURS[0]), last)
    assert json.loads(get(view, "/stats.json")[2]) == {**last, "model_fps": 250.0, "frames": 1000}
    view.publish(solid(COLOURS[1]), {"road_iou": float("nan"), "shape": (2, 3)})  # still valid JSON
    assert json.loads(get(view, "/stats.json")[2]) == {"road_iou": None, "shape": [2, 3]}
    view.publish(solid(COLOURS[2]))  # no stats: the previous ones stay
    assert json.loads(get(view, "/stats.json")[2])["shape"] == [2, 3]

    # close() ends the open streams promptly (their clients connected, not reading) and stops the server.
    started = time.perf_counter()
    view.close()
    assert time.perf_counter() - started < 5.0  # well under a client handler's 15 s timeout
    for reader in readers:
        parts = 0
        while reader.next_part() is not None:
            parts += 1
            assert parts < 50
        reader.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", view.port), timeout=1).close()
    view.publish(solid(COLOURS[0]), STATS)  # after close: ignored, no error


def test_slow_client_skips_frames(view):
    reader = MjpegReader(view)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    view.publish(noise)
    assert reader.next_part() is not None
    for index in range(100):  # much faster than the encoder and the client: most must be skipped
        view.publish(np.roll(noise, index, axis=1))
    marker = solid(COLOURS[3], 240, 320)
    view.publish(marker)
    parts = 0
    while True:
        part = reader.next_part()
        assert part is not None
        parts += 1
        image = cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR)
        if nearest_colour(image)[1] < 10:
            break
        assert parts < 100
    assert parts < 50, f"{parts} parts for 101 frames published: frames are queued, not skipped"
    assert view.encoded < 50
    reader.close()

    # JPEG bytes are passed through as they are.
    jpeg = cv2.imencode(".jpg", solid(COLOURS[1]))[1].tobytes()
    reader = MjpegReader(view)
    view.publish(jpeg, {"frames": 1})
    while (part := reader.next_part()) != jpeg:
        assert part is not None
    reader.close()
    with pytest.raises(ValueError, match="not a JPEG"):
        view.publish(b"hello")
    with pytest.raises(ValueError, match="uint8"):
        view.publish(np.zeros((8, 8, 3), np.float32))


def test_chromium_shows_the_stream(view):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with Publisher(view, period_s=0.1), sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(view.url, timeout=10_000)
            page.wait_for_function("document.getElementById('stream').naturalWidth > 0", timeout=15_000)
            assert page.evaluate("[document.getElementById('stream').naturalWidth, "
                                 "document.getElementById('stream').naturalHeight]") == [96, 64]
            # The picture changes as new frames arrive, and shows the published colours (RGB here, BGR there).
            sample = """() => {
                const img = document.getElementById('stream');
                const canvas = document.createElement('canvas');
                canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
                const ctx = canvas.getContext('2d');
                ctx.drawImage(img, 0, 0);
                return Array.from(ctx.getImageData(48, 32, 1, 1).data.slice(0, 3));
            }"""
            first = page.evaluate(sample)
            page.wait_for_function(f"JSON.stringify(({sample})()) !== {json.dumps(json.dumps(first))}",
                                   timeout=10_000)
            for rgb in (first, page.evaluate(sample)):
                bgr = np.array(rgb[::-1], np.uint8).reshape(1, 1, 3)
                assert nearest_colour(bgr)[1] < 12, rgb
            # The stats panel is filled from /stats.json.
            page.wait_for_function("document.getElementById('stats').textContent.includes('Model FPS')",
                                   timeout=10_000)
            text = page.inner_text("#stats")
            assert "123.4" in text and "onnxruntime" in text and "Road IoU" in text, text
        finally:
            browser.close()


def test_parse_serve_address():
    assert parse_serve_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_serve_address("8080") == ("127.0.0.1", 8080)  # no host: loopback, never all interfaces
    assert parse_serve_address(":8080") == ("127.0.0.1", 8080)
    assert parse_serve_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_serve_address("localhost:0") == ("localhost", 0)
    assert parse_serve_address("[::1]:9000") == ("::1", 9000)
    bad = {"": "expected HOST:PORT", "127.0.0.1:": "is not a number", "127.0.0.1:http": "'http' is not a number",
           "127.0.0.1:70000": "out of range", "http://127.0.0.1:8080": "without a scheme",
           "::1:8080": "in brackets", "[::1]8080": "[IPv6]:PORT", "[nope]:80": "not an IPv6 address",
           "-5": "is not a number", "my host:80": "whitespace"}
    for text, fragment in bad.items():
        with pytest.raises(ToolError, match=r"^bad --serve address") as info:
            parse_serve_address(text)
        message = str(info.value)
        assert fragment in message and "\n" not in message, message
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("192.168.1.2")


def test_port_in_use(view):
    with pytest.raises(ToolError, match=rf"^cannot serve on 127\.0\.0\.1:{view.port}: address already in use"):
        LiveView(port=view.port).start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ToolError, match=rf"127\.0\.0\.1:{port}: address already in use"):
            LiveView("127.0.0.1", port).start()



def wait_for(test, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_connections_over_the_cap_get_503_and_are_closed():
    live = LiveView(port=0, max_connections=3).start()
    readers = []
    try:
        with Publisher(live):
            readers = [MjpegReader(live) for _ in range(3)]  # three streams hold every slot
            status, _, body = get(live, "/stats.json")
            assert status == 503 and b"busy" in body, (status, body)
            assert live.rejected == 1 and live._server.active == 3
            readers.pop().close()  # a slot frees when its stream notices the client left
            assert wait_for(lambda: get(live, "/stats.json")[0] == 200), live._server.active
    finally:
        for reader in readers:
            reader.close()
        live.close()


def dropped(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (end of stream or reset), without blocking."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def test_clients_that_do_not_send_their_request_in_time_are_dropped():
    # a deadline 20x the trickler's byte gap, so a stalled test thread cannot end it by socket timeout instead
    live = LiveView(port=0, request_deadline=1.0).start()
    try:
        started = time.monotonic()
        silent = [socket.create_connection(("127.0.0.1", live.port), timeout=5) for _ in range(5)]
        trickler = socket.create_connection(("127.0.0.1", live.port), timeout=5)
        # one byte every 50 ms: each read makes progress, so only the deadline can end it
        for byte in b"GET / HTTP/1.0\r\nX-Slow: " + b"a" * 200:
            if dropped(trickler):
                break
            with contextlib.suppress(OSError):
                trickler.send(bytes([byte]))
            time.sleep(0.05)
        took = time.monotonic() - started
        assert 0.95 <= took < 4.0, f"the slow-header client was held {took:.2f} s"
        assert wait_for(lambda: all(dropped(sock) for sock in silent), timeout=2.0)
        assert wait_for(lambda: live._server.active == 0, timeout=2.0)  # every thread is free again
        assert live.timed_out >= 1
        assert get(live, "/stats.json")[0] == 200  # a prompt client is served as before
        for sock in (*silent, trickler):
            sock.close()
    finally:
        live.close()


def test_listen_backlog(view):
    assert view._server.request_queue_size == BACKLOG == 64
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is absent: cannot read the kernel's backlog")
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{view.port}"], capture_output=True, text=True).stdout
    assert listing.split()[2] == str(BACKLOG), listing  # LISTEN Recv-Q Send-Q: Send-Q is the backlog


@pytest.mark.slow
def test_chromium_watches_a_looping_video_served_by_roadseg_run(synthetic_root, tmp_path):
    """The product path: `roadseg run --source clip.mp4 --loop --realtime --serve` keeps a watchable
    page alive (a 17-frame clip at 10 FPS would end in 1.7 s without --loop)."""
    import signal
    import sys

    from tests.conftest import REPO_ROOT, exported_onnx

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    model = exported_onnx(tmp_path / "m", synthetic_root, (32, 64))
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 48))
    for i in range(17):
        writer.write(np.full((48, 96, 3), (i * 15) % 255, np.uint8))
    writer.release()
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "deploy" / "run.py"), "--model", str(model),
                                "--source", str(clip), "--loop", "--realtime", "--serve", "127.0.0.1:0",
                                "--threads", "1", "--json", str(tmp_path / "s.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            if line.startswith("live view: "):
                url = line.split(": ", 1)[1].strip()
        assert url and ":0/" not in url, "no live view URL with the bound port"
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url, timeout=10_000)
                page.wait_for_function("document.getElementById('stream').naturalWidth > 0", timeout=10_000)
                time.sleep(2.5)  # past the clip's 1.7 s: only --loop keeps frames coming
                frames = page.evaluate("fetch('/stats.json').then(r => r.json()).then(s => s.frames)")
                assert frames > 17, frames
            finally:
                browser.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] > 17 and summary["stopped"] == "stopped by SIGTERM"
