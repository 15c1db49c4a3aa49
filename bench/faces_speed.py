"""Face pipeline speed against face_recognition's `face_detection` CLI (dlib HOG), one run.

    python bench/faces_speed.py [--threads 1,2] [--repeat 2]

Both sides get the same folder: every photo under ../shared/testmedia/faces, linked into a
temporary flat folder (the CLI reads one folder, jpg/jpeg/png). Ours is the whole "faces"
stage per photo: decode at 1280 px (galprof.gallery.frames) + BlazeFace with tiles + the HSE
network (identity, age, gender) on every face big enough; run either in one process with N
TFLite threads or in N processes of 1 thread. The baseline is detection only:
`face_detection --cpus N --model hog FOLDER` (full-resolution decode, no upsampling), timed
as a subprocess minus the same command on an empty folder (interpreter and pool start-up).
Its face counts are checked against faces/labels.csv too, so the ratio is read with the
quality beside it.

Needs: pip install dlib-bin face_recognition_models && pip install --no-deps face_recognition
(dlib-bin is a prebuilt dlib wheel; plain `dlib` compiles from source).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GALPROF_SHARED", REPO.parent / "shared"))
LONG_SIDE = 1280
SUFFIXES = {".jpg", ".jpeg", ".png"}

_stage = None


def _init_worker(threads: int) -> None:
    global _stage
    from galprof.vision.faces import FacesStage
    _stage = FacesStage(threads=threads)
    _stage.load()


def _one(path: str) -> int:
    from galprof.gallery.frames import decode_photo
    frames = decode_photo(Path(path), LONG_SIDE).frames
    return _stage.run(frames, {})["faces"]


def ours(paths: list[Path], threads: int, processes: int) -> tuple[float, list[int]]:
    """Seconds for all photos after models are loaded, and faces found per photo."""
    if processes == 1:
        _init_worker(threads)
        _one(str(paths[0]))                      # warm up
        start = time.perf_counter()
        faces = [_one(str(p)) for p in paths]
        return time.perf_counter() - start, faces
    # spawn: this process already holds TFLite interpreters (and their threads)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        list(pool.map(_one, [str(p) for p in paths[:processes]]))   # load + warm up each worker
        start = time.perf_counter()
        faces = list(pool.map(_one, [str(p) for p in paths], chunksize=2))
        return time.perf_counter() - start, faces


def baseline(folder: Path, empty: Path, cpus: int) -> tuple[float, float, list[str]]:
    """(wall seconds, start-up seconds, output lines) of the face_detection CLI."""
    exe = shutil.which("face_detection")
    start = time.perf_counter()
    subprocess.run([exe, "--cpus", str(cpus), "--model", "hog", str(empty)], check=True,
                   capture_output=True)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    done = subprocess.run([exe, "--cpus", str(cpus), "--model", "hog", str(folder)], check=True,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, startup, done.stdout.splitlines()


def baseline_faces(lines: list[str]) -> int:
    return len(re.findall(r",-?\d+,-?\d+,-?\d+,-?\d+", "\n".join(lines)))


def baseline_counts(lines: list[str], links: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {name: 0 for name in links}
    # The CLI's worker processes share one stdout: lines can run into each other.
    for path in re.findall(r"([^\n,]+?),-?\d+,-?\d+,-?\d+,-?\d+", "\n".join(lines)):
        if Path(path).name in counts:
            counts[Path(path).name] += 1
    return counts


def quality(counts: dict[str, int], links: dict[str, str], labels: dict[str, int]) -> str:
    labelled = {links[n]: c for n, c in counts.items() if links[n] in labels}
    positives = [(labels[f], c) for f, c in labelled.items() if labels[f] > 0]
    found = sum(min(n, c) for n, c in positives)
    total = sum(n for n, _ in positives)
    fp = sum(c for f, c in labelled.items() if labels[f] == 0)
    return f"recall {found}/{total} = {found / total:.1%}, {fp} faces on hard negatives"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="core counts to compare")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    args = ap.parse_args()
    if not shutil.which("face_detection"):
        raise SystemExit("face_detection (face_recognition's CLI) is not installed; see the "
                         "docstring of this script")
    os.environ.setdefault("GALPROF_MODELS", str(SHARED / "models"))
    media = SHARED / "testmedia"
    photos = sorted(p for p in (media / "faces").rglob("*") if p.suffix.lower() in SUFFIXES)
    with open(media / "faces" / "labels.csv", newline="") as f:
        labels = {r["file"]: int(r["n_faces"]) for r in csv.DictReader(f)}

    with tempfile.TemporaryDirectory() as tmp:
        folder, empty = Path(tmp) / "photos", Path(tmp) / "empty"
        folder.mkdir()
        empty.mkdir()
        links = {}
        for p in photos:
            name = "_".join(p.relative_to(media / "faces").parts)
            (folder / name).symlink_to(p)
            links[name] = p.relative_to(media).as_posix()
        paths = sorted(folder.iterdir())
        megapixels = 0.0
        from PIL import Image
        for p in paths:
            with Image.open(p) as im:
                megapixels += im.width * im.height / 1e6
        print(f"{len(paths)} photos ({megapixels / len(paths):.2f} MP on average) from "
              f"{media / 'faces'}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")

        rows = []
        for n in (int(v) for v in args.threads.split(",")):
            mine_threads, mine_procs, theirs, startups = [], [], [], []
            lines: list[str] = []
            faces: list[int] = []
            for _ in range(args.repeat):
                seconds, faces = ours(paths, threads=n, processes=1)
                mine_threads.append(seconds)
                if n > 1:
                    mine_procs.append(ours(paths, threads=1, processes=n)[0])
                wall, startup, lines = baseline(folder, empty, n)
                theirs.append(wall - startup)
                startups.append(startup)
            best_ours = min(mine_threads + mine_procs)
            best_theirs = min(theirs)
            rows.append((n, len(paths) / min(mine_threads),
                         len(paths) / min(mine_procs) if mine_procs else None,
                         len(paths) / best_theirs, best_theirs / best_ours, sum(faces),
                         baseline_faces(lines), statistics.median(startups)))
            print(f"N={n}: ours {', '.join(f'{s:.1f}' for s in mine_threads)} s (1 process, "
                  f"{n} threads)"
                  + (f"; {', '.join(f'{s:.1f}' for s in mine_procs)} s ({n} processes)"
                     if mine_procs else "")
                  + f"; face_detection {', '.join(f'{s:.1f}' for s in theirs)} s after "
                  f"{statistics.median(startups):.1f} s start-up; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        print(f"\n{'cores':>5} {'ours photos/s':>22} {'dlib HOG photos/s':>18} {'ratio':>6} "
              f"{'faces ours':>10} {'faces dlib':>10}")
        print(f"{'':>5} {'threads':>10} {'processes':>11}")
        for n, threaded, procs, theirs_rate, ratio, n_faces, dlib_faces, _ in rows:
            procs_text = f"{procs:.2f}" if procs else "-"
            print(f"{n:>5} {threaded:>10.2f} {procs_text:>11} {theirs_rate:>18.2f} "
                  f"{ratio:>5.1f}x {n_faces:>10} {dlib_faces:>10}")
        print(f"\nquality on the same photos (faces/labels.csv): "
              f"ours {quality(dict(zip((p.name for p in paths), faces)), links, labels)}; "
              f"dlib HOG {quality(baseline_counts(lines, links), links, labels)}")


if __name__ == "__main__":
    main()
