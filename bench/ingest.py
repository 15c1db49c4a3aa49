"""Figures for the ingestion issue, measured in one run (ratios, not absolute promises).

    python bench/ingest.py [--media ../shared/testmedia] [--copies 2000]

1. files/s of a first scan of the test media without models, and the time of an
   unchanged re-scan divided by the first scan's (target <= 0.05);
2. decode time of a 12 MP JPEG to analysis size (416 px) against a full decode
   (target >= 4x faster);
3. peak RSS of a scan of N files (hard-linked copies of real photos; target < 300 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def scan_cmd(db: Path, root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "galprof", "scan", str(root), "--db", str(db), "--stages", "none",
            "--quiet", "--json", *extra]


def first_and_rescan(media: Path, work: Path) -> dict:
    db = work / "ingest.db"
    t0 = time.perf_counter()
    out = subprocess.run(scan_cmd(db, media), capture_output=True, text=True)
    first = time.perf_counter() - t0
    summary = json.loads(out.stdout)
    t0 = time.perf_counter()
    subprocess.run(scan_cmd(db, media), capture_output=True, text=True)
    again = time.perf_counter() - t0
    files = summary["new"]
    # In-process times (without interpreter start-up) from the scans' own summaries.
    rescan_inner = json.loads(subprocess.run(scan_cmd(db, media), capture_output=True,
                                             text=True).stdout)["seconds"]
    return {"files": files, "first_scan_s": round(first, 2), "files_per_s": round(files / first, 1),
            "first_scan_inner_s": summary["seconds"], "rescan_s": round(again, 3),
            "rescan_inner_s": rescan_inner,
            "rescan_ratio": round(again / first, 4),
            "rescan_ratio_inner": round(rescan_inner / summary["seconds"], 4)}


def decode_12mp(media: Path, work: Path, runs: int = 7) -> dict:
    from galprof.gallery.frames import decode_photo

    src = Image.open(media / "scenes" / "darknet_dog.jpg").convert("RGB")
    path = work / "12mp.jpg"
    src.resize((4000, 3000), Image.BICUBIC).save(path, quality=92)

    def full():
        with Image.open(path) as im:
            im.load()

    def analysis():
        decode_photo(path, 416)

    def timed(fn):
        fn()
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)

    t_full, t_analysis = timed(full), timed(analysis)
    return {"full_decode_ms": round(t_full * 1000, 1), "analysis_decode_ms": round(t_analysis * 1000, 1),
            "speedup": round(t_full / t_analysis, 1)}


def peak_rss(media: Path, work: Path, copies: int) -> dict:
    photos = sorted(p for p in (media / "exif" / "phone").iterdir()
                    if p.suffix.lower() in (".jpg", ".jpeg"))
    root = work / "many"
    root.mkdir()
    for i in range(copies):
        src = photos[i % len(photos)]
        os.link(src, root / f"IMG_{i:05d}{src.suffix}") if _same_fs(src, root) else \
            (root / f"IMG_{i:05d}{src.suffix}").write_bytes(src.read_bytes())
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(scan_cmd(work / "rss.db", root), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"files": json.loads(out.stdout)["photos"], "seconds": round(seconds, 1),
            "peak_rss_mb": round(max(after, before) / 1024, 1)}


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "testmedia")
    parser.add_argument("--copies", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = {"scan": first_and_rescan(args.media, work),
                  "decode_12mp": decode_12mp(args.media, work),
                  "rss": peak_rss(args.media, work, args.copies)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
