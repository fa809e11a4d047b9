"""A live view of the road overlay in the browser: an MJPEG stream and running stats over HTTP.

Standard library + numpy/OpenCV only (no torch, no web framework), so the run-time package can use it:

    view = LiveView(host="127.0.0.1", port=0)   # port 0 picks a free port; loopback by default
    view.start()
    print(view.url)                              # http://127.0.0.1:<port>/
    for frame, stats in pipeline:                # the pipeline thread
        view.publish(frame, stats)               # BGR uint8 image (or JPEG bytes) + a dict; never blocks
    view.close()                                 # stops the server and ends open streams promptly

Endpoints:
  ``/``             a small self-contained HTML page (inline CSS/JS, no external resources) with
                    ``<img id="stream" src="/stream.mjpg">`` and a stats panel polled every 0.5 s;
  ``/stream.mjpg``  ``multipart/x-mixed-replace; boundary=frame``, always the newest frame: a slow
                    client skips frames instead of queueing them;
  ``/stats.json``   the stats dict of the latest ``publish`` (``{}`` before the first);
  anything else     404.

The page shows these stats keys with labels when present, then any other scalar key as it is:
``model_fps``, ``e2e_fps``, ``frames``, ``road_iou``, ``backend``, ``precision``.

Frames are JPEG-encoded once per published frame (not once per client) on a background thread, and
only while someone is watching; when the encoder is behind, intermediate frames are dropped.

Limits, so that clients cannot exhaust the process: at most ``max_connections`` (32) connections
at once, each on its own thread (one more gets ``503 Service Unavailable`` and is closed at once);
a client must send its request headers within ``request_deadline`` (5 s) of connecting or it is
dropped (a slow-header client would otherwise hold a thread as long as it trickles bytes); the
listen backlog is 64.

Security: the server has no authentication and no TLS. It binds the loopback interface unless a
host is given explicitly (``--serve 0.0.0.0:8080``); then anyone who can reach that port sees the
video and the stats, and ``start()`` says so on stderr. For a remote machine prefer an SSH tunnel
(``ssh -L 8080:127.0.0.1:8080 host``) to exposing the port.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import ipaddress
import json
import math
import select
import socket
import socketserver
import sys
import threading
import time
from urllib.parse import urlsplit

import cv2
import numpy as np

from roadseg.models.core.cli import ToolError

DEFAULT_HOST = "127.0.0.1"
BOUNDARY = "frame"
WAIT_S = 0.25          # how often waiting threads re-check the closed flag
CLOSE_TIMEOUT_S = 2.0  # close() waits at most this long for streams and threads to end
MAX_CONNECTIONS = 32   # a thread each: a page view takes two (the stream and the stats polls)
REQUEST_DEADLINE_S = 5.0  # from connecting to the end of the request headers
BACKLOG = 64           # connections the kernel queues until accepted (socketserver's default is 5)


def parse_serve_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``. ``"PORT"`` or ``":PORT"`` mean the loopback interface
    (127.0.0.1); IPv6 literals go in brackets (``[::1]:8080``); port 0 picks a free port.
    Raises ToolError with one line for anything else."""
    raw = str(text).strip()
    example = "expected HOST:PORT such as 127.0.0.1:8080"
    if not raw:
        raise ToolError(f"bad --serve address '{text}': {example}")
    if "://" in raw or "/" in raw:
        raise ToolError(f"bad --serve address '{text}': give HOST:PORT without a scheme or path, e.g. 127.0.0.1:8080")
    if raw.startswith("["):
        host, sep, port_text = raw[1:].partition("]")
        if not sep or not port_text.startswith(":"):
            raise ToolError(f"bad --serve address '{text}': expected [IPv6]:PORT such as [::1]:8080")
        port_text = port_text[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ToolError(f"bad --serve address '{text}': '{host}' is not an IPv6 address") from None
    elif ":" not in raw:
        host, port_text = "", raw
    elif raw.count(":") > 1:
        raise ToolError(f"bad --serve address '{text}': write IPv6 addresses in brackets, e.g. [::1]:8080")
    else:
        host, _, port_text = raw.partition(":")
    host = host.strip() or DEFAULT_HOST
    if any(ch.isspace() for ch in host):
        raise ToolError(f"bad --serve address '{text}': the host contains whitespace")
    if not port_text.isdigit():
        raise ToolError(f"bad --serve address '{text}': port '{port_text}' is not a number ({example})")
    port = int(port_text)
    if port > 65535:
        raise ToolError(f"bad --serve address '{text}': port {port} is out of range 0-65535")
    return host, port


def is_loopback_host(host: str) -> bool:
    """True for 'localhost' and loopback IP literals (127.0.0.0/8, ::1); a name is not resolved."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def jsonable(value):
    """Stats values as plain JSON: numpy scalars/arrays to Python, NaN/inf to null, the rest to str."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Road segmentation - live view</title>
<style>
  body { margin: 0; background: #111; color: #ddd; font: 14px/1.4 system-ui, sans-serif; }
  header { padding: 8px 16px; background: #1c1c1c; border-bottom: 1px solid #333; }
  header h1 { margin: 0; font-size: 16px; font-weight: 600; }
  main { display: flex; flex-wrap: wrap; gap: 16px; padding: 16px; align-items: flex-start; }
  #stream { max-width: 100%; background: #000; min-width: 320px; min-height: 180px; image-rendering: auto; }
  #panel { min-width: 220px; background: #1c1c1c; border: 1px solid #333; border-radius: 6px; padding: 8px 12px; }
  #panel h2 { margin: 0 0 6px; font-size: 14px; }
  table { border-collapse: collapse; }
  td { padding: 2px 8px 2px 0; vertical-align: top; }
  td.value { font-variant-numeric: tabular-nums; text-align: right; color: #fff; }
  #status { margin-top: 6px; font-size: 12px; color: #888; }
  #status.down { color: #e66; }
</style>
</head>
<body>
<header><h1>Road segmentation - live view</h1></header>
<main>
  <img id="stream" src="/stream.mjpg" alt="road overlay stream">
  <section id="panel">
    <h2>Stats</h2>
    <table><tbody id="stats"></tbody></table>
    <div id="status">waiting for stats...</div>
  </section>
</main>
<script>
"use strict";
const KNOWN = [
  ["model_fps", "Model FPS", 1], ["e2e_fps", "End-to-end FPS", 1], ["frames", "Frames", 0],
  ["road_iou", "Road IoU", 3], ["backend", "Backend"], ["precision", "Precision"],
];
const knownKeys = new Set(KNOWN.map(k => k[0]));
function fmt(value, digits) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number" && digits !== undefined) return value.toFixed(digits);
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
function render(stats) {
  const rows = [];
  for (const [key, label, digits] of KNOWN) {
    if (key in stats) rows.push([label, fmt(stats[key], digits)]);
  }
  for (const key of Object.keys(stats).sort()) {
    if (!knownKeys.has(key)) rows.push([key, fmt(stats[key])]);
  }
  const body = document.getElementById("stats");
  body.replaceChildren(...rows.map(([label, value]) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    const cell = document.createElement("td");
    name.textContent = label;
    cell.textContent = value;
    cell.className = "value";
    tr.append(name, cell);
    return tr;
  }));
}
const statusLine = document.getElementById("status");
async function refresh() {
  try {
    const response = await fetch("/stats.json", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    statusLine.textContent = "updated " + new Date().toLocaleTimeString();
    statusLine.className = "";
  } catch (err) {
    statusLine.textContent = "server unreachable (" + err.message + ")";
    statusLine.className = "down";
  } finally {
    setTimeout(refresh, 500);
  }
}
refresh();
// When the stream ends (server restarted), reconnect after a second.
const img = document.getElementById("stream");
img.addEventListener("error", () => setTimeout(() => { img.src = "/stream.mjpg?t=" + Date.now(); }, 1000));
</script>
</body>
</html>
"""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() ends the streams itself; a stuck client must not hang it
    request_queue_size = BACKLOG

    def __init__(self, address, handler, view: LiveView, family: int):
        self.address_family = family
        self.view = view
        self.lock = threading.Lock()
        self.active = 0                                        # connections with a handler thread
        self.awaiting_request: dict[socket.socket, float] = {}  # connection -> deadline for its headers
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(host), a DNS lookup that can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request, client_address):
        with self.lock:
            busy = self.active >= self.view.max_connections
            if not busy:
                self.active += 1
        if busy:
            self.view.rejected += 1
            self._refuse(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.active -= 1
                self.awaiting_request.pop(request, None)

    def _refuse(self, request: socket.socket) -> None:
        """503 on the accepting thread, without a thread of its own (that is what is scarce)."""
        body = f"live view busy: {self.view.max_connections} connections open, the most it serves\n".encode()
        reply = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 b"Retry-After: 5\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body)
        with contextlib.suppress(OSError):
            # Read the request if it is already here: closing a socket with unread data sends a reset,
            # which can reach the client before it has read the reply. Waits 20 ms at most.
            if select.select([request], [], [], 0.02)[0]:
                request.setblocking(False)
                request.recv(65536)
            request.settimeout(0.5)
            request.sendall(reply)
        self.shutdown_request(request)

    def service_actions(self):
        # serve_forever calls this every poll_interval: drop clients whose headers are overdue
        now = time.monotonic()
        with self.lock:
            overdue = [conn for conn, deadline in self.awaiting_request.items() if deadline <= now]
            for conn in overdue:
                del self.awaiting_request[conn]
        for conn in overdue:
            self.view.timed_out += 1
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns at once

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that left or stalled: not an error of ours
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 15  # seconds of no progress on a client socket (reading the request or writing a frame)
    server_version = "roadseg-live-view"

    def log_message(self, format, *args):
        pass  # no line on stderr per request

    def setup(self):
        super().setup()
        deadline = self.server.view.request_deadline
        # no single read outlasts the deadline; service_actions ends a client that trickles bytes
        self.connection.settimeout(deadline)
        with self.server.lock:
            self.server.awaiting_request[self.connection] = time.monotonic() + deadline

    def do_GET(self):
        with self.server.lock:
            self.server.awaiting_request.pop(self.connection, None)
        self.connection.settimeout(self.timeout)
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE)
            elif path == "/stats.json":
                self._send(200, "application/json", self.server.view._stats_json())
            elif path == "/stream.mjpg":
                self.server.view._stream(self)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _send(self, code: int, content_type: str, body: bytes):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class LiveView:
    """Serves the newest published frame as MJPEG and the latest stats as JSON (see the module doc)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, jpeg_quality: int = 80,
                 max_connections: int = MAX_CONNECTIONS, request_deadline: float = REQUEST_DEADLINE_S):
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        if int(max_connections) < 1 or not request_deadline > 0:
            raise ValueError(f"max_connections must be >= 1 and request_deadline > 0, got {max_connections} "
                             f"and {request_deadline}")
        self.host, self.port, self.jpeg_quality = host, int(port), int(jpeg_quality)
        self.max_connections, self.request_deadline = int(max_connections), float(request_deadline)
        self.rejected = 0   # connections refused with 503 (over max_connections)
        self.timed_out = 0  # connections dropped for not sending their request in time
        self._cond = threading.Condition()
        self._closed = False
        self._pending: np.ndarray | None = None  # newest raw frame not yet encoded
        self._jpeg: bytes | None = None           # newest encoded frame
        self._jpeg_seq = 0                        # bumps with every new self._jpeg
        self._stats = b"{}"
        self._viewers = 0
        self._streams: set[socket.socket] = set()
        self.published = 0  # frames given to publish()
        self.encoded = 0    # JPEG encodings done (at most one per published frame)
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> LiveView:
        if self._server is not None:
            return self
        if self._closed:
            raise RuntimeError("LiveView was closed; make a new one")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        where = f"[{self.host}]:{self.port}" if family == socket.AF_INET6 else f"{self.host}:{self.port}"
        try:
            self._server = _Server((self.host, self.port), _Handler, self, family)
        except socket.gaierror as err:
            raise ToolError(f"cannot serve on {where}: unknown host '{self.host}' ({err.strerror})") from None
        except OSError as err:
            reason = {errno.EADDRINUSE: "address already in use (choose another port, or 0 for a free one)",
                      errno.EACCES: "permission denied (ports below 1024 need privileges)",
                      errno.EADDRNOTAVAIL: "no such address on this machine"}.get(err.errno, err.strerror or str(err))
            raise ToolError(f"cannot serve on {where}: {reason}") from None
        self.port = self._server.server_address[1]
        self._threads = [
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                             name="live-view-http", daemon=True),
            threading.Thread(target=self._encode_loop, name="live-view-jpeg", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not is_loopback_host(self.host):
            where = f"[{self.host}]:{self.port}" if family == socket.AF_INET6 else f"{self.host}:{self.port}"
            print(f"live view: serving on {where} without authentication: anyone who can reach this port "
                  "sees the video and stats", file=sys.stderr)
        return self

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        """Stop serving: wakes and ends every open stream, stops the server; returns within ~2 s."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams)
            self._cond.notify_all()
        for conn in streams:  # unblocks a handler stuck writing to a client that stopped reading
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(CLOSE_TIMEOUT_S)
        with self._cond:
            self._cond.wait_for(lambda: not self._streams, timeout=CLOSE_TIMEOUT_S)

    def __enter__(self) -> LiveView:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the pipeline side ----------------------------------------------------------------------
    def publish(self, frame, stats: dict | None = None) -> None:
        """Make ``frame`` (an HxWx3 BGR or HxW grey uint8 image, or JPEG bytes) the newest frame and
        ``stats`` (if given) the stats served at /stats.json. Cheap: it copies the frame and returns;
        encoding happens on a background thread. Does nothing after close()."""
        if isinstance(frame, (bytes, bytearray, memoryview)):
            jpeg = bytes(frame)
            if not jpeg.startswith(b"\xff\xd8"):
                raise ValueError("publish() got bytes that are not a JPEG image")
            image = None
        else:
            image = np.asarray(frame)
            if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
                raise ValueError(f"publish() needs an HxWx3 (BGR) or HxW uint8 image, got {image.dtype} "
                                 f"with shape {image.shape}")
            image = image.copy()  # the caller may reuse its buffer
        stats_json = None if stats is None else json.dumps(jsonable(stats)).encode()
        with self._cond:
            if self._closed:
                return
            self.published += 1
            if stats_json is not None:
                self._stats = stats_json
            if image is None:
                self._pending = None
                self._set_jpeg(jpeg)
            else:
                self._pending = image
            self._cond.notify_all()

    def _set_jpeg(self, jpeg: bytes) -> None:  # call holding self._cond
        self._jpeg = jpeg
        self._jpeg_seq += 1
        self._cond.notify_all()

    def _encode_loop(self) -> None:
        params = [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality]
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or (self._pending is not None and self._viewers > 0),
                                    timeout=WAIT_S)
                if self._closed:
                    return
                image, self._pending = self._pending, None
                if image is None or self._viewers == 0:
                    self._pending = image
                    continue
            ok, buffer = cv2.imencode(".jpg", image, params)
            if not ok:
                continue
            with self._cond:
                self.encoded += 1
                self._set_jpeg(buffer.tobytes())

    # -- the HTTP side --------------------------------------------------------------------------
    def _stats_json(self) -> bytes:
        with self._cond:
            return self._stats

    def _stream(self, handler: _Handler) -> None:
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-store, no-cache, must-revalidate")
        handler.send_header("Pragma", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        out = handler.wfile
        out.write(f"--{BOUNDARY}\r\n".encode())
        conn = handler.connection
        with self._cond:
            if self._closed:
                return
            self._viewers += 1
            self._streams.add(conn)
            self._cond.notify_all()  # the encoder may have a frame waiting for a viewer
        last = 0
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda seen=last: self._closed or self._jpeg_seq != seen, timeout=WAIT_S)
                    if self._closed:
                        break
                    if self._jpeg_seq == last or self._jpeg is None:
                        continue
                    jpeg, last = self._jpeg, self._jpeg_seq
                # The boundary goes right after each part, so a browser shows the part at once
                # instead of waiting for the next frame to learn that this one is complete.
                out.write(f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                          + jpeg + f"\r\n--{BOUNDARY}\r\n".encode())
        except (ConnectionError, TimeoutError, OSError):
            pass  # the client left, stalled, or close() shut its socket down
        finally:
            with self._cond:
                self._viewers -= 1
                self._streams.discard(conn)
                self._cond.notify_all()
