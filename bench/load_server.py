"""Load on `galprof serve`: N concurrent clients send a fixed number of photos.

Starts its own server (a fresh token, 127.0.0.1, a free port) unless --url is given,
sends photos from testmedia/scenes prepared exactly as `offload` prepares them (long
side 1024, JPEG without EXIF), and prints p50/p99 latency, throughput, the errors
(expected: none) and the server's resident memory (all its processes) before, after
each quarter of the requests, and after.

--hostile N keeps N idle and N trickling (slowloris) unauthenticated connections open
against the server during the load, reopening the ones it closes. --worst first
measures single requests: the worst legal one (a batch of MAX_BATCH_IMAGES frames of
MAX_SIDE x MAX_SIDE) and the hostile ones of issue 12 (a 400000x3 PNG strip, 8 flat
39.6 MP PNGs, an EPS), each with its answer, time and the server's peak memory above
its memory at rest. At the end the server gets SIGTERM and the time to exit is printed.

Usage: GALPROF_MODELS=/path/to/models [GALPROF_SHARED=../shared] python bench/load_server.py
           [--clients 4] [--requests 80] [--workers 1] [--threads N] [--hostile 200]
           [--worst] [--url URL --token-file F]
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np

from galprof.gallery.frames import decode
from galprof.remote import MAX_BATCH_IMAGES, MAX_SIDE
from galprof.remote.client import UPLOAD_LONG_SIDE, encode_jpeg

SHARED = Path(os.environ.get("GALPROF_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SCENES = SHARED / "testmedia/scenes"
PHOTOS = ["tfod_image10.jpg", "coral_kite_and_cold.jpg", "skimage_coffee.png", "ul_bus.jpg",
          "pp_table_white.jpg", "darknet_dog.jpg", "sklearn_china.jpg", "tfyolo_kitchen.jpg"]
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def tree_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory (VmRSS) or its peak (VmHWM) summed over the server's processes."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def reset_peak(pid: int) -> None:
    for p in _tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            pass


def start(workers: int, threads: int | None, folder: Path) -> tuple[subprocess.Popen, str, str]:
    token = secrets.token_urlsafe(32)
    (folder / "token").write_text(token)
    (folder / "token").chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "galprof", "serve", "--port", str(port),
                             "--token-file", str(folder / "token"), "--workers", str(workers),
                             "--log-level", "warning"]
                            + (["--threads", str(threads)] if threads else []))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                time.sleep(1.0 * workers)   # let every worker finish loading its models
                return proc, url, token
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start")


def flat_png(width: int, height: int) -> bytes:
    """A flat grayscale PNG written row by row (tiny file, huge canvas)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def worst_frame() -> bytes:
    from PIL import Image
    img = Image.open(SCENES / "tfod_image10.jpg").convert("RGB").resize((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def single_requests(url: str, token: str, pid: int | None, repeat: int = 3) -> None:
    """Answer, time and peak memory over rest of the worst legal and the hostile requests."""
    frame = worst_frame()
    batch = [("file", (f"{i}.jpg", frame, "image/jpeg")) for i in range(MAX_BATCH_IMAGES)]
    cases = [("worst legal: batch of %d x %dx%d JPEG, item=1" % (MAX_BATCH_IMAGES, MAX_SIDE,
                                                                MAX_SIDE), dict(files=batch))]
    cases *= repeat
    cases += [
        ("PNG strip 400000x3 (%d bytes)" % len(flat_png(400_000, 3)),
         dict(content=flat_png(400_000, 3), single=True)),
        ("8 flat 39.6 MP PNGs", dict(files=[("file", (f"{i}.png", flat_png(7260, 5454)))
                                            for i in range(8)])),
        ("EPS", dict(content=EPS, single=True)),
    ]
    with httpx.Client(base_url=url, timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        for name, kw in cases:
            rest = tree_memory_mb(pid) if pid else float("nan")
            if pid:
                reset_peak(pid)
            started = time.perf_counter()
            if kw.pop("single", False):
                r = c.post("/v1/analyze", content=kw["content"])
            else:
                r = c.post("/v1/analyze/batch", params={"item": "1"}, files=kw["files"])
            seconds = time.perf_counter() - started
            peak = tree_memory_mb(pid, "VmHWM") - rest if pid else float("nan")
            print(f"{name}: HTTP {r.status_code} in {seconds:.2f} s, peak +{peak:.0f} MB "
                  f"over {rest:.0f} MB at rest")


class Hostile:
    """N idle and N trickling unauthenticated connections, reopened when the server
    closes them; counts how many the server closed."""

    def __init__(self, port: int, n: int):
        self.port, self.n = port, n
        self.closed_by_server = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def _open(self, trickle: bool) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            if trickle:
                s.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            s.setblocking(False)
            return s
        except OSError:
            return None

    def run(self) -> None:
        socks = [(self._open(i % 2 == 1), i % 2 == 1) for i in range(2 * self.n)]
        while not self.stop.wait(1.0):
            for k, (s, trickle) in enumerate(socks):
                alive = s is not None
                if alive:
                    try:
                        if s.recv(1) == b"":
                            alive = False
                    except BlockingIOError:
                        pass
                    except OSError:
                        alive = False
                if alive and trickle:
                    try:
                        s.send(b"a")
                    except OSError:
                        alive = False
                if not alive:
                    if s is not None:
                        self.closed_by_server += 1
                        s.close()
                    socks[k] = (self._open(trickle), trickle)
        for s, _ in socks:
            if s is not None:
                s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=80)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="inference threads per worker")
    ap.add_argument("--hostile", type=int, default=0,
                    help="idle and trickling unauthenticated connections, N of each")
    ap.add_argument("--worst", action="store_true",
                    help="measure the worst legal and the hostile single requests first")
    ap.add_argument("--url")
    ap.add_argument("--token-file", type=Path)
    args = ap.parse_args()

    bodies = [encode_jpeg(decode(SCENES / name, "photo", UPLOAD_LONG_SIDE).frames[0].image)
              for name in PHOTOS]
    tmp = tempfile.TemporaryDirectory()
    proc = None
    if args.url:
        url, token = args.url, args.token_file.read_text().strip()
    else:
        proc, url, token = start(args.workers, args.threads, Path(tmp.name))
    pid = proc.pid if proc else None
    if args.worst:
        single_requests(url, token, pid)
    rss_before = tree_memory_mb(pid) if pid else float("nan")

    hostile = None
    if args.hostile:
        hostile = Hostile(int(url.rsplit(":", 1)[1]), args.hostile)
        hostile.thread.start()
        time.sleep(2)

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(args.requests))
    lock = threading.Lock()
    quarters: list[float] = []      # RSS after each quarter of the requests: growth or plateau

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                try:
                    r = c.post("/v1/analyze", content=bodies[i % len(bodies)],
                               headers={"Content-Type": "image/jpeg"})
                    ok = r.status_code == 200 and r.json()["tier"] == "remote"
                    problem = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    problem = type(e).__name__
                with lock:
                    latencies.append(time.perf_counter() - t)
                    if problem:
                        errors.append(problem)
                    if pid and len(latencies) % max(1, args.requests // 4) == 0:
                        quarters.append(tree_memory_mb(pid))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - started
    rss_after = tree_memory_mb(pid) if pid else float("nan")
    health = httpx.get(url + "/health", timeout=5).status_code
    if hostile:
        hostile.stop.set()
        hostile.thread.join(10)
    stop_seconds = float("nan")
    if proc:
        sent = time.perf_counter()
        proc.terminate()
        proc.wait(60)
        stop_seconds = time.perf_counter() - sent
    ms = np.array(latencies) * 1000
    kib = np.mean([len(b) for b in bodies]) / 1024
    print(f"{args.requests} requests, {args.clients} concurrent clients, {args.workers} "
          f"worker(s), photos of long side {UPLOAD_LONG_SIDE} ({kib:.0f} KiB avg)"
          + (f", {args.hostile} idle + {args.hostile} trickling connections" if hostile else ""))
    print(f"latency p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
          f"max {ms.max():.0f} ms; {args.requests / wall:.2f} requests/s")
    print(f"errors: {len(errors)} {sorted(set(errors)) if errors else ''}; health after: {health}")
    print(f"server RSS: {rss_before:.0f} MB before, {rss_after:.0f} MB after "
          f"(after each quarter: {', '.join(f'{q:.0f}' for q in quarters)} MB)")
    if hostile:
        print(f"hostile connections closed by the server: {hostile.closed_by_server}")
    if proc:
        print(f"SIGTERM to exit: {stop_seconds:.2f} s")


if __name__ == "__main__":
    main()
