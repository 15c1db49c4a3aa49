"""Real model sources for the install tests: HTTP servers on 127.0.0.1 and local wheels.

Imported by tests/test_install.py, test_cli_models.py and test_convert.py (not a test file).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import shutil
import threading
import time
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder; records every request path and its Range header."""

    requests: list = []

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        super().do_GET()


class RangeHandler(QuietHandler):
    """HTTP/1.1 with Range support; the first request for each path is cut off halfway
    (the connection drops), so a client must resume to get the whole file."""

    protocol_version = "HTTP/1.1"
    cut: set = set()

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        asked = self.headers.get("Range")
        if asked and asked.startswith("bytes="):
            start = int(asked[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.path not in type(self).cut:
            type(self).cut.add(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


class TrickleHandler(QuietHandler):
    """Announces the right length, then sends one byte every 0.2 s, forever (bounded by
    the client hanging up)."""

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for i in range(min(len(data), 600)):     # at most 2 minutes
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


def redirect_handler(target: str):
    """A handler class that answers every GET with a 302 to target + path."""

    class Redirect(QuietHandler):
        def do_GET(self):
            type(self).requests.append((self.path, self.headers.get("Range")))
            self.send_response(302)
            self.send_header("Location", target + self.path.lstrip("/"))
            self.send_header("Content-Length", "0")
            self.end_headers()

    Redirect.requests = []
    return Redirect


class FlakyHandler(QuietHandler):
    """Answers 503 to the first request for each path, then serves the file."""

    seen: set = set()

    def do_GET(self):
        if self.path not in self.seen:
            self.seen.add(self.path)
            self.send_error(503, "try again")
            return
        super().do_GET()


@contextlib.contextmanager
def serve(folder: Path, handler=QuietHandler):
    """A real HTTP server on 127.0.0.1 serving folder; yields its base URL (with a slash)."""
    handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(handler, directory=str(folder)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def copy_of(shared_models: Path, folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(shared_models / name, folder / name)
    return folder


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def by_file(results):
    return {r.file: r for r in results}


def make_wheel(folder: Path, name: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal, valid pure-Python wheel holding `members`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    files = dict(members)
    files[f"{dist}.dist-info/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\n"
                                           f"Version: {version}\n").encode()
    files[f"{dist}.dist-info/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: galprof-tests\n"
                                        b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = []
    for member, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in files.items():
            z.writestr(member, data)
    return path


def local_pip_index(monkeypatch, folder: Path) -> None:
    """Make the pip that galprof runs see only the archives in folder (no index at all)."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
