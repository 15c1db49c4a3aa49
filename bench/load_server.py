"""Load on `galprof serve`: N concurrent clients send a fixed number of photos.

Starts its own server (a fresh token, 127.0.0.1, a free port) unless --url is given,
sends photos from testmedia/scenes prepared exactly as `offload` prepares them (long
side 1024, JPEG without EXIF), and prints p50/p99 latency, throughput, the errors
(expected: none) and the server's resident memory (all its processes) before and after.

Usage: GALPROF_MODELS=/path/to/models python bench/load_server.py
           [--clients 4] [--requests 80] [--workers 1] [--url URL --token-file F]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from galprof.gallery.frames import decode
from galprof.remote.client import UPLOAD_LONG_SIDE, encode_jpeg

SCENES = Path(__file__).resolve().parents[2] / "shared/testmedia/scenes"
PHOTOS = ["tfod_image10.jpg", "coral_kite_and_cold.jpg", "skimage_coffee.png", "ul_bus.jpg",
          "pp_table_white.jpg", "darknet_dog.jpg", "sklearn_china.jpg", "tfyolo_kitchen.jpg"]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (uvicorn workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def start(workers: int, folder: Path) -> tuple[subprocess.Popen, str, str]:
    token = secrets.token_urlsafe(32)
    (folder / "token").write_text(token)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "galprof", "serve", "--port", str(port),
                             "--token-file", str(folder / "token"), "--workers", str(workers),
                             "--log-level", "warning"])
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=80)
    ap.add_argument("--workers", type=int, default=1)
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
        proc, url, token = start(args.workers, Path(tmp.name))
    rss_before = tree_rss_mb(proc.pid) if proc else float("nan")

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
                    if proc and len(latencies) % max(1, args.requests // 4) == 0:
                        quarters.append(tree_rss_mb(proc.pid))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - started
    rss_after = tree_rss_mb(proc.pid) if proc else float("nan")
    health = httpx.get(url + "/health", timeout=5).status_code
    if proc:
        proc.terminate()
        proc.wait(30)
    ms = np.array(latencies) * 1000
    kib = np.mean([len(b) for b in bodies]) / 1024
    print(f"{args.requests} requests, {args.clients} concurrent clients, {args.workers} "
          f"worker(s), photos of long side {UPLOAD_LONG_SIDE} ({kib:.0f} KiB avg)")
    print(f"latency p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
          f"max {ms.max():.0f} ms; {args.requests / wall:.2f} requests/s")
    print(f"errors: {len(errors)} {sorted(set(errors)) if errors else ''}; health after: {health}")
    print(f"server RSS: {rss_before:.0f} MB before, {rss_after:.0f} MB after "
          f"(after each quarter: {', '.join(f'{q:.0f}' for q in quarters)} MB)")


if __name__ == "__main__":
    main()
