"""`galprof serve` against hostile clients (issue 12, cases 1-5): a real server on
127.0.0.1 (a subprocess on a free port, a fresh token), hostile inputs built here, the
server's memory read from /proc and its timings guarded generously (ratios within one
run, never tight absolute times).

The server runs under an address-space guard (RLIMIT_DATA) so that a regression fails
with MemoryError instead of taking the shared machine's memory.
"""

from __future__ import annotations

import io
import json
import os
import resource
import secrets
import signal
import socket
import ssl
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from galprof import remote
from galprof.errors import SetupError
from galprof.remote import MAX_ASPECT, MAX_BATCH_IMAGES, MAX_BODY_BYTES, MAX_SIDE
from galprof.remote.guard import HEADER_TIMEOUT, PENDING_PER_CLIENT
from galprof.remote.upload import UploadRejected, read_header

from conftest import SHARED_MODELS, throwaway_certificate

# Generous guards: a single request of the worst legal kind costs ~40 MB over the
# server at rest and ~5 s on one core; hostile ones are refused in milliseconds.
REQUEST_MB = 300
DATA_LIMIT = 4 << 30          # RLIMIT_DATA of the server process (bytes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT, DATA_LIMIT))


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    token: str
    log: Path
    err: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def memory_mb(self) -> tuple[float, float]:
        """(resident now, peak since the last reset_peak) of the server process, MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]

    def reset_peak(self) -> float:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        return self.memory_mb()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_server(folder: Path, extra_env: dict | None = None, tls=None) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    token_file = folder / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = _free_port()
    env = {**os.environ, "GALPROF_MODELS": str(SHARED_MODELS), "GALPROF_HOME": str(folder),
           **(extra_env or {})}
    env.pop("GALPROF_SERVER_TOKEN", None)
    log, err = folder / "requests.jsonl", folder / "server.err"
    old_umask = os.umask(0o022)       # what a default shell gives the server
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "galprof", "serve", "--port", str(port), "--token-file",
             str(token_file), "--request-log", str(log), "--threads", "1", "--log-level", "info"]
            + (["--cert", str(tls[0]), "--key", str(tls[1])] if tls else []),
            env=env, stdout=open(err, "w"), stderr=subprocess.STDOUT, preexec_fn=_limit_memory)
    finally:
        os.umask(old_umask)
    server = Server(proc, f"{'https' if tls else 'http'}://127.0.0.1:{port}", token, log, err)
    deadline = time.monotonic() + 60
    verify = ssl.create_default_context(cafile=str(tls[0])) if tls else True
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("server exited: " + err.read_text()[-2000:])
        try:
            if httpx.get(server.url + "/health", timeout=1, verify=verify).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.stop()
    pytest.fail("server did not become healthy in 60 s")


@pytest.fixture(scope="module")
def fake_gs(tmp_path_factory) -> Path:
    """A `gs` first on the server's PATH that leaves a mark when anything runs it."""
    folder = tmp_path_factory.mktemp("bin")
    mark = folder / "gs-ran"
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {mark}\nexit 1\n")
    script.chmod(0o755)
    return mark


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_gs):
    s = start_server(tmp_path_factory.mktemp("server"),
                     {"PATH": f"{fake_gs.parent}{os.pathsep}{os.environ['PATH']}"})
    yield s
    s.stop()


def _auth(server: Server) -> dict:
    return {"Authorization": f"Bearer {server.token}"}


def _client(server: Server, source: str = "127.0.0.1", timeout: float = 60) -> httpx.Client:
    """A client from its own loopback address (127.0.0.x), so the server sees clients apart."""
    return httpx.Client(base_url=server.url, timeout=timeout, headers=_auth(server),
                        transport=httpx.HTTPTransport(local_address=source))


def _jpeg(image, **kw) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(testmedia) -> list[bytes]:
    """Photos exactly as the client sends them (long side 1024, bare JPEG)."""
    from galprof.gallery.frames import decode
    from galprof.remote.client import UPLOAD_LONG_SIDE, encode_jpeg
    names = ["coral_kite_and_cold.jpg", "tfod_image10.jpg", "skimage_coffee.png"]
    return [encode_jpeg(decode(testmedia / "scenes" / n, "photo", UPLOAD_LONG_SIDE).frames[0].image)
            for n in names]


@pytest.fixture(scope="module")
def worst_frame(testmedia) -> bytes:
    """The largest legal image: MAX_SIDE x MAX_SIDE, a real busy street scene."""
    img = Image.open(testmedia / "scenes/tfod_image10.jpg").convert("RGB")
    return _jpeg(img.resize((MAX_SIDE, MAX_SIDE)), quality=90)


def _worst_batch(frame: bytes) -> list:
    return [("file", (f"{i}.jpg", frame, "image/jpeg")) for i in range(MAX_BATCH_IMAGES)]


def _png(width: int, height: int) -> bytes:
    """A flat grayscale PNG written by hand (Pillow would hold the whole canvas)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = zlib.compressobj(9)
    row = b"\0" * (width + 1)          # filter byte + pixels
    data = b"".join(rows.compress(row) for _ in range(height)) + rows.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header claiming another size (the scan data unchanged)."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


# --- the header check alone: no server needed -----------------------------------------

def test_read_header_accepts_exactly_the_clients_jpegs(photos):
    for data in photos:
        h = read_header(data)
        assert h.frame == "baseline" and h.components == 3 and max(h.width, h.height) <= MAX_SIDE
    gray = read_header(_jpeg(Image.new("L", (MAX_SIDE, MAX_SIDE // MAX_ASPECT))))
    assert (gray.width, gray.height, gray.components) == (MAX_SIDE, MAX_SIDE // MAX_ASPECT, 1)

    flat = Image.new("RGB", (64, 64), (200, 10, 10))
    refused = {
        "progressive": _jpeg(flat, progressive=True),
        "cmyk": _jpeg(flat.convert("CMYK")),
        "png": _png(64, 64),
        "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        "text": b"just text",
    }
    for name in ("GIF", "BMP", "TIFF", "WEBP"):
        buf = io.BytesIO()
        flat.save(buf, name)
        refused[name] = buf.getvalue()
    for name, data in refused.items():
        with pytest.raises(UploadRejected) as e:
            read_header(data)
        assert e.value.status == 415, name
        assert e.value.reason == "only baseline JPEG images are accepted"

    small = _jpeg(Image.new("RGB", (100, 50)))
    for w, h in [(MAX_SIDE + 1, 600), (60000, 3), (MAX_SIDE, 3)]:
        with pytest.raises(UploadRejected) as e:
            read_header(_with_size(small, w, h))
        assert e.value.status == 413 and f"{w}x{h}" in e.value.detail
    for broken in (small[:20], _with_size(small, 0, 50), b"\xff\xd8\xff" + b"\xfe\x00\x04ab" * 100):
        with pytest.raises(UploadRejected) as e:
            read_header(broken)
        assert e.value.status == 400


# --- case 1: strips and canvases --------------------------------------------------------

def test_strips_and_canvases_cost_nothing(server):
    """Issue 12.1: a 3.5 KB PNG of 400000x3 took 24 GB; a 13M x 3 strip ~14 min."""
    strip = _png(400_000, 3)
    long_strip = _png(13_000_000, 3)
    assert len(strip) < 4000 and len(long_strip) < 120_000
    jpeg_strip = _jpeg(Image.new("RGB", (MAX_SIDE, 3), (90, 90, 90)))
    claimed = _with_size(_jpeg(Image.new("RGB", (1000, 3))), 60000, 3)
    rest = server.reset_peak()
    with _client(server) as c:
        for body, status in [(strip, 415), (long_strip, 415), (jpeg_strip, 413), (claimed, 413)]:
            started = time.monotonic()
            r = c.post("/v1/analyze", content=body, headers={"Content-Type": "image/png"})
            assert r.status_code == status, r.text
            assert time.monotonic() - started < 5
        # The widest legal aspect ratio is analysed, at the cost of any photo.
        edge = _jpeg(Image.new("RGB", (MAX_SIDE, MAX_SIDE // MAX_ASPECT), (90, 120, 90)))
        r = c.post("/v1/analyze", content=edge)
        assert r.status_code == 200 and r.json()["width"] == MAX_SIDE
    assert server.memory_mb()[1] - rest < 100
    assert server.proc.poll() is None


# --- case 2: connections without a token ------------------------------------------------

def _closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(65536) == b""
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def test_idle_and_trickling_connections_do_not_deny_service(server, photos):
    """Issue 12.2: 63 idle TCP connections or 200 slowloris ones made every client 503."""
    port = server.port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    trickling = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        trickling.append(s)
    opened = time.monotonic()
    latencies = []
    try:
        with _client(server, timeout=30) as c:       # from the attackers' own address
            for i in range(6):
                started = time.monotonic()
                r = c.post("/v1/analyze", content=photos[i % len(photos)])
                latencies.append(time.monotonic() - started)
                assert r.status_code == 200, r.text
                for s in trickling:                  # one more header byte each
                    try:
                        s.send(b"a")
                    except OSError:
                        pass
        # An unauthenticated request announcing a big body is answered before any body.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
            assert s.recv(200).startswith(b"HTTP/1.1 401")
        # Every hostile connection is closed by the server once the head deadline passes,
        # however long it keeps trickling.
        deadline = opened + HEADER_TIMEOUT + 10
        while time.monotonic() < deadline:
            for s in trickling:
                try:
                    s.send(b"a")
                except OSError:
                    pass
            if all(_closed_by_server(s) for s in idle + trickling):
                break
            time.sleep(1)
        assert all(_closed_by_server(s) for s in idle + trickling)
    finally:
        for s in idle + trickling:
            s.close()
    assert max(latencies) < 10
    assert server.proc.poll() is None


def test_waiting_connections_are_capped_per_client(server):
    """More than PENDING_PER_CLIENT silent connections from one address: the oldest go."""
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(PENDING_PER_CLIENT + 20)]
    try:
        time.sleep(0.5)
        closed = [_closed_by_server(s) for s in socks]
        assert sum(closed) >= 20 and all(closed[:20]) and not any(closed[-PENDING_PER_CLIENT // 2:])
    finally:
        for s in socks:
            s.close()


def test_a_token_holders_kept_alive_connection_outlives_a_flood(server, photos):
    """Connections without the token never close one that carried the token."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {**_auth(server), "Content-Type": "image/jpeg"}
    flood = []
    try:
        conn.request("POST", "/v1/analyze", body=photos[0], headers=headers)
        assert conn.getresponse().read() and conn.sock is not None       # kept alive
        flood = [socket.create_connection(("127.0.0.1", server.port))
                 for _ in range(2 * PENDING_PER_CLIENT)]
        time.sleep(0.5)
        conn.request("POST", "/v1/analyze", body=photos[1], headers=headers)   # same socket
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["tier"] == "remote"
        assert sum(_closed_by_server(s) for s in flood) >= PENDING_PER_CLIENT
    finally:
        conn.close()
        for s in flood:
            s.close()


def test_idle_tls_connections_after_the_handshake(tmp_path, photos):
    cert, key = throwaway_certificate(tmp_path)
    secure = start_server(tmp_path / "tls", tls=(cert, key))
    context = ssl.create_default_context(cafile=str(cert))
    idle = []
    try:
        for _ in range(100):
            raw = socket.create_connection(("127.0.0.1", secure.port))
            idle.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))   # handshake done
        opened = time.monotonic()
        with httpx.Client(base_url=secure.url, verify=context, headers=_auth(secure),
                          timeout=30) as c:
            for data in photos:
                assert c.post("/v1/analyze", content=data).status_code == 200
        while time.monotonic() < opened + HEADER_TIMEOUT + 10:
            if all(_closed_by_server(s) for s in idle):
                break
            time.sleep(1)
        assert all(_closed_by_server(s) for s in idle)
    finally:
        for s in idle:
            s.close()
        secure.stop()


# --- case 3: work amplification inside the limits ----------------------------------------

def test_big_batches_are_refused_and_the_worst_legal_one_is_bounded(server, worst_frame):
    """Issue 12.3: 64 flat 39.6 MP PNGs took 7.8 GB; now only JPEGs of <= 1 MP, <= 16 of them."""
    flat = _png(7260, 5454)                  # 39.6 MP of grey in ~40 kB
    rest = server.reset_peak()
    with _client(server) as c:
        started = time.monotonic()
        r = c.post("/v1/analyze/batch", params={"item": "1"},
                   files=[("file", (f"{i}.png", flat)) for i in range(8)])
        assert r.status_code == 415 and time.monotonic() - started < 5
        r = c.post("/v1/analyze/batch", params={"item": "1"},
                   files=_worst_batch(worst_frame) + [("file", ("x.jpg", worst_frame))])
        assert r.status_code == 413 and str(MAX_BATCH_IMAGES) in r.json()["detail"]
        assert server.memory_mb()[1] - rest < 100

        started = time.monotonic()
        r = c.post("/v1/analyze/batch", params={"item": "1"}, files=_worst_batch(worst_frame))
        worst_seconds = time.monotonic() - started
        assert r.status_code == 200 and len(r.json()["objects"]["frames"]) == MAX_BATCH_IMAGES
    peak = server.memory_mb()[1] - rest
    print(f"worst legal request: {worst_seconds:.1f} s, peak +{peak:.0f} MB over {rest:.0f} MB")
    assert peak < REQUEST_MB
    assert worst_seconds < 60               # a hang guard; bench/load_server.py --worst measures


def test_a_long_batch_does_not_starve_a_photo(server, photos, worst_frame):
    """Issue 12.3: `?item=1` with 8 big frames held the models 178 s; a photo timed out.

    Client A sends two batches of 8 full-size frames at once, client B one, each from its
    own address; client C sends photos meanwhile. Each image takes one turn,
    round-robin over clients: a photo waits about one image per other client, and A's
    batches finish one after the other.
    """
    frames = [("file", (f"{i}.jpg", worst_frame, "image/jpeg")) for i in range(8)]
    batch_times: dict[str, list[float]] = {"127.0.0.2": [], "127.0.0.3": []}
    statuses: list[int] = []

    def hog(source: str) -> None:
        with _client(server, source, timeout=120) as c:
            started = time.monotonic()
            r = c.post("/v1/analyze/batch", params={"item": "1"}, files=frames)
            batch_times[source].append(time.monotonic() - started)
            statuses.append(r.status_code)

    hogs = [threading.Thread(target=hog, args=(source,))
            for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3")]
    for t in hogs:
        t.start()
        time.sleep(0.05)
    time.sleep(1.0)                           # the batches hold the models now
    latencies = []
    with _client(server, "127.0.0.9") as c:
        for data in photos:
            started = time.monotonic()
            r = c.post("/v1/analyze", content=data)
            latencies.append(time.monotonic() - started)
            assert r.status_code == 200, r.text
    for t in hogs:
        t.join(300)
    assert statuses == [200] * len(hogs)
    a_first, a_second = sorted(batch_times["127.0.0.2"])
    print(f"photos {', '.join(f'{s:.2f}' for s in latencies)} s while batches took "
          f"A {a_first:.1f} and {a_second:.1f}, B {batch_times['127.0.0.3'][0]:.1f} s")
    # One image per other client, not whole batches: far below one batch's time.
    assert max(latencies) < a_first / 3
    # A's second batch waits for its first instead of sharing A's turns with it (then
    # both would finish together, at about the second's time).
    assert a_second > 1.25 * a_first


def test_one_client_cannot_take_every_place(server, photos):
    """A token holder opening more slow requests than the server has places for: at most
    MAX_ACTIVE_PER_CLIENT of them are at work, and another client is still served."""
    from galprof.remote.server import MAX_ACTIVE_PER_CLIENT, MAX_ACTIVE_REQUESTS

    head = (f"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n").encode()
    slow = []
    try:
        for _ in range(MAX_ACTIVE_REQUESTS + 2):     # bodies that never finish arriving
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", server.port))
            s.sendall(head + b"\xff\xd8")
            slow.append(s)
        time.sleep(1.0)
        with _client(server, "127.0.0.9", timeout=30) as c:
            started = time.monotonic()
            r = c.post("/v1/analyze", content=photos[0])
            assert r.status_code == 200 and time.monotonic() - started < 20
    finally:
        for s in slow:
            s.close()
    assert MAX_ACTIVE_PER_CLIENT < MAX_ACTIVE_REQUESTS


# --- case 4: only JPEG is decoded -------------------------------------------------------

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
       b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def test_eps_never_reaches_ghostscript_and_other_formats_get_415(server, fake_gs, photos):
    """Issue 12.4: an EPS upload made Pillow run `gs`."""
    flat = Image.new("RGB", (64, 64), (10, 200, 10))
    others = {"eps": EPS, "png": _png(64, 64), "progressive": _jpeg(flat, progressive=True),
              "cmyk": _jpeg(flat.convert("CMYK"))}
    for name in ("GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM"):
        buf = io.BytesIO()
        flat.save(buf, name)
        others[name] = buf.getvalue()
    with _client(server) as c:
        for name, data in others.items():
            r = c.post("/v1/analyze", content=data, headers={"Content-Type": "image/jpeg"})
            assert r.status_code == 415, name
            assert r.json() == {"detail": "only baseline JPEG images are accepted"}
        r = c.post("/v1/analyze/batch", files=[("file", ("a.jpg", photos[0])),
                                                ("file", ("b.eps", EPS))])
        assert r.status_code == 415
    assert not fake_gs.exists(), "Ghostscript ran on an upload: " + fake_gs.read_text()
    # The refused images are in the request log, each with its status; the photo sent
    # with the EPS was not analysed.
    tail = server.entries()[-2:]
    assert [e["status"] for e in tail] == ["not analysed", "rejected 415"]


# --- case 5: what the server says, serves and writes ------------------------------------

def test_reasons_are_fixed_and_details_stay_in_the_server_log(server, photos):
    truncated = photos[0][:len(photos[0]) // 2]
    with _client(server) as c:
        r = c.post("/v1/analyze", content=truncated)
        assert r.status_code == 400 and r.json() == {"detail": "cannot decode the JPEG"}
        r = c.post("/v1/analyze", content=EPS)
        assert r.status_code == 415 and "gs" not in r.text and "/" not in r.text
        r = c.post("/v1/analyze/batch", params={"item": "maybe"}, files=[("file", ("a", photos[0]))])
        assert r.status_code == 400 and "maybe" not in r.text
    time.sleep(0.3)
    log = server.err.read_text()
    assert "truncated" in log               # Pillow's own words, for the operator
    assert "no JPEG start marker (starts b'%!PS-Ado')" in log


def test_no_schema_or_docs_without_the_token(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect", "/nothing"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=_auth(server)).status_code == 404, path
        assert c.get("/health").json()["status"] == "ok"


def test_request_log_is_private(server, photos):
    with _client(server) as c:
        assert c.post("/v1/analyze", content=photos[0]).status_code == 200
    assert stat.S_IMODE(server.log.stat().st_mode) == 0o600


def test_token_file_permissions(tmp_path, monkeypatch):
    token = secrets.token_urlsafe(32)
    path = tmp_path / "token"
    path.write_text(token)
    path.chmod(0o600)
    seen: list[str] = []
    assert remote.read_token(path, "X_UNSET", on_warning=seen.append) == token and seen == []

    path.chmod(0o644)
    assert remote.read_token(path, "X_UNSET", on_warning=seen.append) == token
    assert seen == [f"token file {path} is accessible by other users (mode 0644); "
                    f"run `chmod 600 {path}`"]
    with pytest.warns(remote.TokenFileWarning, match="mode 0644"):
        remote.read_token(path, "X_UNSET")          # the client's call, no callback

    path.chmod(0o664)
    with pytest.raises(SetupError, match="can be written by other users"):
        remote.read_token(path, "X_UNSET", refuse_writable=True)
    path.chmod(0o600)
    path.write_text("x" * 5000)
    with pytest.raises(SetupError, match="over 4096 bytes"):
        remote.read_token(path, "X_UNSET")

    # `galprof serve` prints the warning as one line, and refuses a writable file.
    from galprof.cli import cli
    path.write_text(token)
    path.chmod(0o644)
    monkeypatch.setenv("GALPROF_MODELS", str(tmp_path / "no-models"))   # stops it after the token
    r = CliRunner().invoke(cli, ["serve", "--token-file", str(path)])
    lines = r.output.splitlines()
    assert r.exit_code == 1
    assert lines[0] == (f"Warning: token file {path} is accessible by other users (mode 0644); "
                        f"run `chmod 600 {path}`")
    path.chmod(0o666)
    r = CliRunner().invoke(cli, ["serve", "--token-file", str(path)])
    assert r.exit_code == 1 and "can be written by other users (mode 0666)" in r.output


# --- SIGTERM ----------------------------------------------------------------------------

def test_sigterm_stops_the_server_within_seconds(tmp_path, worst_frame):
    """Issue 12.1: after a huge request the server ignored SIGTERM. Now work in flight
    stops at the next image, idle connections close, and the process exits."""
    doomed = start_server(tmp_path / "doomed")
    port = doomed.port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    answers: list = []

    def batch(source: str) -> None:
        try:
            with _client(doomed, source, timeout=120) as c:
                answers.append(c.post("/v1/analyze/batch", params={"item": "1"},
                                      files=_worst_batch(worst_frame)).status_code)
        except httpx.HTTPError as e:
            answers.append(type(e).__name__)

    workers = [threading.Thread(target=batch, args=(f"127.0.0.{2 + i}",)) for i in range(3)]
    try:
        for t in workers:
            t.start()
        deadline = time.monotonic() + 30          # until every batch is being analysed
        while len(doomed.entries()) < 3 * MAX_BATCH_IMAGES and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        sent = time.monotonic()
        doomed.proc.send_signal(signal.SIGTERM)
        doomed.proc.wait(60)
        stopped = time.monotonic() - sent
        for t in workers:
            t.join(30)
    finally:
        for s in idle:
            s.close()
        doomed.stop()
    print(f"SIGTERM to exit: {stopped:.2f} s; answers {answers}")
    # Three batches of ~5 s each were queued: waiting for them would take 10 s or more.
    assert stopped < 5
    assert len(answers) == 3 and all(a != 200 for a in answers)


# --- ordinary bad requests (moved from test_remote.py) ------------------------------------

def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, photos):
    photo = photos[2]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        auth = _auth(server)
        r = c.post("/v1/analyze", content=photo, headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/v1/analyze", content=photo, headers={
            "Authorization": "Bearer " + server.token[:-1] + "x"}).status_code == 401
        for given in (server.token, "Basic " + server.token, "Bearer" + server.token):
            assert c.post("/v1/analyze", content=photo,
                          headers={"Authorization": given}).status_code == 401

        big = b"\0" * (MAX_BODY_BYTES + 1)
        assert c.post("/v1/analyze", content=big, headers=auth).status_code == 413
        chunks = (b"\0" * 1_048_576 for _ in range(MAX_BODY_BYTES // 1_048_576 + 2))
        assert c.post("/v1/analyze", content=chunks, headers=auth).status_code == 413

        assert c.post("/v1/analyze", content=b"just text", headers=auth).status_code == 415
        assert c.post("/v1/analyze", content=b"", headers=auth).status_code == 400
        r = c.post("/v1/analyze/batch", headers=auth,
                   files=[("file", ("a.jpg", photo)), ("file", ("b.txt", b"%PDF-1.4"))])
        assert r.status_code == 415
        r = c.post("/v1/analyze/batch", headers=auth, params={"indexes": "0,1,2"},
                   files=[("file", ("a.jpg", photo))])
        assert r.status_code == 400

        assert c.get("/health").json()["status"] == "ok"
        r = c.post("/v1/analyze", content=photo, headers=auth)
        assert r.status_code == 200 and r.json()["tier"] == "remote"
        assert any(o["label"] == "cup" for o in r.json()["objects"]["objects"])
        r = c.post("/v1/analyze/batch", headers=auth,
                   files=[("file", ("a.jpg", photo)), ("file", ("b.jpg", photo))])
        assert [x["width"] for x in r.json()["results"]] == [600, 600]
    assert server.proc.poll() is None


def test_serve_refuses_to_start_without_a_token(monkeypatch):
    from galprof.cli import cli

    monkeypatch.delenv("GALPROF_SERVER_TOKEN", raising=False)
    r = CliRunner().invoke(cli, ["serve"])
    assert r.exit_code == 1 and "no bearer token" in r.output


# --- fair turns, in process ---------------------------------------------------------------

def test_fair_turns_go_round_robin_over_clients_and_oldest_first_within_one():
    from galprof.remote.server import FairTurns, Work, WorkAbandoned

    turns = FairTurns()
    order: list[str] = []
    gate = threading.Event()

    def run(work: Work, n: int, name: str) -> None:
        with turns.request(work):
            for _ in range(n):
                with turns.turn(work):
                    order.append(name)
                    gate.wait(5)
                    time.sleep(0.05)      # inference: everyone else is waiting by its end
                time.sleep(0.005)         # decoding the next image, outside the turn

    works = {"h": Work("holder"), "a0": Work("a"), "a1": Work("a"), "b": Work("b")}
    counts = {"h": 1, "a0": 3, "a1": 3, "b": 2}
    threads = {name: threading.Thread(target=run, args=(w, counts[name], name))
               for name, w in works.items()}
    for name in ("h", "a0", "a1", "b"):                 # "h" takes the turn first
        threads[name].start()
        time.sleep(0.1)
    gone = Work("c")
    gone.cancelled.set()
    with pytest.raises(WorkAbandoned):                   # a client gone never gets a turn
        with turns.request(gone), turns.turn(gone):
            pass
    gate.set()
    for t in threads.values():
        t.join(10)
    # "b" waits one image of "a" each time, though "a" has two requests; "a"'s older
    # request takes all of "a"'s turns before its younger one.
    assert order == ["h", "a0", "b", "a0", "b", "a0", "a1", "a1", "a1"]
