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
    stdout, rss_kb = run_measured(scan_cmd(db, media))
    first = time.perf_counter() - t0
    summary = json.loads(stdout)
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
            "rescan_ratio": round(again / first, 4), "first_scan_peak_rss_mb": round(rss_kb / 1024, 1),
            "rescan_ratio_inner": round(rescan_inner / summary["seconds"], 4)}


def decode_12mp(media: Path, work: Path, runs: int = 9) -> dict:
    """Analysis-size decode against a full decode, and against a full decode followed by the
    downscale it would need, on a synthetic 12 MP JPEG and on a real 12 MP phone JPEG."""
    from galprof.gallery.frames import _fit, decode_photo

    src = Image.open(media / "scenes" / "darknet_dog.jpg").convert("RGB")
    synthetic = work / "12mp.jpg"
    src.resize((4000, 3000), Image.BICUBIC).save(synthetic, quality=92)
    real = media / "exif" / "phone" / "dc_iPhone13Pro_IMG_8566_o6.JPG"     # 4032x3024

    def timed(fn):
        fn()
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)

    out = {}
    for name, path in (("synthetic", synthetic), ("iphone13pro", real)):
        def full():
            with Image.open(path) as im:
                im.load()

        def full_then_downscale():
            with Image.open(path) as im:
                _fit(im.convert("RGB"), 416)

        t_full, t_full_fit = timed(full), timed(full_then_downscale)
        t_analysis = timed(lambda: decode_photo(path, 416))
        out[name] = {"full_decode_ms": round(t_full * 1000, 1),
                     "full_decode_and_downscale_ms": round(t_full_fit * 1000, 1),
                     "analysis_decode_ms": round(t_analysis * 1000, 1),
                     "speedup_vs_full": round(t_full / t_analysis, 1),
                     "speedup_vs_full_and_downscale": round(t_full_fit / t_analysis, 1)}
    return out


def peak_rss(media: Path, work: Path, copies: int) -> dict:
    photos = sorted(p for p in (media / "exif" / "phone").iterdir()
                    if p.suffix.lower() in (".jpg", ".jpeg"))
    root = work / "many"
    root.mkdir()
    for i in range(copies):
        src = photos[i % len(photos)]
        os.link(src, root / f"IMG_{i:05d}{src.suffix}") if _same_fs(src, root) else \
            (root / f"IMG_{i:05d}{src.suffix}").write_bytes(src.read_bytes())
    t0 = time.perf_counter()
    stdout, rss_kb = run_measured(scan_cmd(work / "rss.db", root))
    seconds = time.perf_counter() - t0
    return {"files": json.loads(stdout)["photos"], "seconds": round(seconds, 1),
            "peak_rss_mb": round(rss_kb / 1024, 1)}


def run_measured(cmd: list[str]) -> tuple[str, int]:
    """Run `cmd`; its stdout and its own peak RSS in KB (not that of earlier children)."""
    from galprof.bench import run_measured as measured
    out, rss_kb = measured(cmd)
    return out.stdout, rss_kb


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
