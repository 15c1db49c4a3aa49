"""Benchmarks behind `galprof benchmark`: per-model inference latency (this part).

Latency is the model call alone (session.run), measured on this device with the
installed files, at 1 thread, at a scan's threads per call and at all cores, in the
shape of the paper's Tables 1-2. The input is a synthetic photo-like image (seeded, so
every run feeds the same pixels) prepared to each model's declared input, because a
user's device has no test photos and the call's cost depends on shape and dtype, not on
the content.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from galprof.stages import analysing_threads, model_threads
from galprof.vision import manifest
from galprof.vision.runtime import TensorInfo, open_session

WARMUP_RUNS = 3     # first calls pay for allocation and caches; not part of the figure
SEED = 20240229


def synthetic_photo(height: int = 480, width: int = 640, seed: int = SEED) -> np.ndarray:
    """A deterministic RGB uint8 image with a sky-like gradient, shapes, edges and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[..., 0] = 90 + 80 * y / height
    image[..., 1] = 140 + 40 * np.sin(x / width * np.pi)
    image[..., 2] = 220 - 100 * y / height
    ground = y > height * (0.55 + 0.05 * np.sin(x / 37.0))
    image[ground] = (70, 110, 50)
    for _ in range(12):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(10, height / 5)
        disc = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        image[disc] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def model_input(spec: manifest.ModelSpec, info: TensorInfo, image: np.ndarray) -> np.ndarray:
    """The image prepared to the tensor's shape and dtype, normalised as the manifest says."""
    # dynamic dimensions (-1) take the manifest's bench_shape (a text detector's input is
    # as large as the photo), else 1 (a batch)
    typical = spec.input.get("bench_shape")
    if typical and len(typical) == len(info.shape):
        declared = spec.input.get("shape", info.shape)
        shape = tuple(int(t) if d is None or d < 0 else int(d) for d, t in zip(declared, typical))
    else:
        shape = tuple(int(d) if d > 0 else 1 for d in info.shape)
    channels_first = len(shape) == 4 and shape[1] == 3 and shape[-1] != 3
    height, width = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    pixels = _resize(image, height, width)
    contract = spec.input
    if contract.get("color") == "BGR":
        pixels = pixels[..., ::-1]
    if np.issubdtype(info.dtype, np.integer):
        data = pixels.astype(info.dtype)
    else:
        data = pixels.astype(np.float32)
        if "mean" in contract:
            data = data - np.asarray(contract["mean"], np.float32)
        elif contract.get("normalise") == "minus-one-to-one" or not contract:
            # no declared contract: the models without one here are BlazeFace variants ([-1, 1])
            data = data / 127.5 - 1.0
        else:
            data = data * float(contract.get("scale", 1.0))
        data = data.astype(info.dtype)
    if channels_first:
        data = data.transpose(2, 0, 1)
    return np.ascontiguousarray(data.reshape(shape))


def _time_session(path: Path, spec: manifest.ModelSpec, threads: int, runs: int,
                  image: np.ndarray) -> tuple[float, float]:
    # the graph as the model's class runs it: YOLOX ends at its maps (manifest `maps`)
    session = open_session(path, threads, outputs=spec.output.get("maps", ()),
                           rewrites=spec.rewrites)
    feeds = [model_input(spec, info, image) for info in session.inputs]
    for _ in range(WARMUP_RUNS):
        session.run(feeds)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        session.run(feeds)
        times[i] = (time.perf_counter() - start) * 1000.0
    return float(times.mean()), float(times.std())


def default_thread_counts() -> tuple[int, ...]:
    """1, a scan's threads per model call (stages.model_threads) and all the cores."""
    return tuple(sorted({1, model_threads(), os.cpu_count() or 1}))


def model_latency_table(model_ids, runs: int = 30, threads=None,
                        directory: Path | None = None) -> list[dict]:
    """Latency of each installed model's call, at each thread count (default_thread_counts).

    One row per model: {"model", "role", "file", "size_bytes", "size_mb",
    "latency": [{"threads", "mean_ms", "std_ms", "runs"}, ...]}. Raises UnknownModel
    or ModelMissing (naming the install command) before timing anything.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    counts = tuple(dict.fromkeys(threads)) if threads else default_thread_counts()
    specs = [manifest.get(model_id) for model_id in model_ids]
    paths = [manifest.locate(spec, directory) for spec in specs]
    image = synthetic_photo()
    rows = []
    for spec, path in zip(specs, paths):
        size = path.stat().st_size
        latency = []
        for n in counts:
            mean, std = _time_session(path, spec, n, runs, image)
            latency.append({"threads": n, "mean_ms": round(mean, 3), "std_ms": round(std, 3),
                            "runs": runs})
        rows.append({"model": spec.id, "role": spec.role, "file": spec.file,
                     "size_bytes": size, "size_mb": round(size / 1e6, 2), "latency": latency})
    return rows


def render_table(rows: list[dict], title: str | None = "Model inference latency"):
    """A rich Table like the paper's Tables 1-2: model, size MB, mean ± std ms per thread count."""
    from rich.table import Table

    counts = []
    for row in rows:
        for cell in row["latency"]:
            if cell["threads"] not in counts:
                counts.append(cell["threads"])
    table = Table(title=title)
    table.add_column("model")
    table.add_column("size, MB", justify="right")
    for n in counts:
        table.add_column(f"latency, ms ({n} thread{'s' if n > 1 else ''})", justify="right")
    for row in rows:
        by_threads = {cell["threads"]: cell for cell in row["latency"]}
        cells = []
        for n in counts:
            cell = by_threads.get(n)
            cells.append(f"{cell['mean_ms']:.1f} ± {cell['std_ms']:.1f}" if cell else "-")
        table.add_row(row["model"], f"{row['size_mb']:.2f}", *cells)
    return table


# -- end to end ---------------------------------------------------------------------------
GENERATED_SIZE = (4000, 3000)    # 12 MP, what a phone camera writes


def generate_photos(folder: Path, count: int, size: tuple[int, int] = GENERATED_SIZE) -> list[Path]:
    """`count` distinct 12 MP JPEGs (synthetic scenes upscaled), as a phone would store them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        small = synthetic_photo(300, 400, seed=SEED + i)
        path = folder / f"IMG_{i:04d}.jpg"
        Image.fromarray(small).resize(size, Image.BILINEAR).save(path, quality=90)
        paths.append(path)
    return paths


# Linux carries a process's peak RSS across exec, so a child forked from a big process (a
# test run, a benchmark that loaded models) would report the parent's peak. A tiny
# launcher forks the command from its own small image and reports the child's figure.
_LAUNCHER = ("import os, sys\n"
             "pid = os.fork()\n"
             "if pid == 0:\n"
             "    os.execv(sys.argv[2], sys.argv[2:])\n"
             "_, status, usage = os.wait4(pid, 0)\n"
             "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} '\n"
             "                             f'{usage.ru_utime + usage.ru_stime}')\n")


def run_measured(cmd: list[str], env: dict | None = None):
    """Run `cmd` (its first item a path); (CompletedProcess with text output, its own
    peak RSS in KB)."""
    out, rss_kb, _ = run_measured_usage(cmd, env)
    return out, rss_kb


def run_measured_usage(cmd: list[str], env: dict | None = None, cwd: Path | None = None):
    """run_measured, and the CPU seconds (user + system) the command used: a figure that
    other work on the machine disturbs less than the wall time."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rss"
        out = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(report), *cmd],
                             capture_output=True, text=True, env=env, cwd=cwd)
        rss_kb, code, cpu = report.read_text().split()
    return subprocess.CompletedProcess(cmd, int(code), out.stdout, out.stderr), int(rss_kb), float(cpu)


def _scan_summary(out) -> dict:
    """The JSON summary a measured child scan printed (exit 3: some files failed), or its
    error (models not installed, say) when it printed none."""
    import json

    if out.returncode not in (0, 3):
        from galprof.errors import GalprofError
        lines = [line.strip() for line in out.stderr.splitlines() if line.strip()]
        # its last line: the error `galprof scan` or scan_child printed, or a traceback's
        # exception
        reason = lines[-1].removeprefix("Error: ")[:400] if lines else "no message"
        raise GalprofError(f"the measured scan failed (exit {out.returncode}): {reason}")
    return json.loads(out.stdout)


def end_to_end(folder: Path, stages: list[str], threads: int | None = None,
               db: Path | None = None, models: dict[str, str | None] | None = None) -> dict:
    """Scan `folder` (the generated JPEGs) with the named stages into a fresh database, with
    `galprof scan` in a child process so that its peak memory is measured alone. Returns
    photos/s and where the time went."""
    import sys
    import tempfile

    from galprof.cli.common import MODEL_OPTIONS

    with tempfile.TemporaryDirectory() as tmp:
        db = db or Path(tmp) / "bench.db"
        cmd = [sys.executable, "-m", "galprof", "scan", str(folder), "--db", str(db), "--json",
               "--quiet", "--stages", ",".join(stages) or "none"]
        if threads:
            cmd += ["--threads", str(threads)]
        for option, role in MODEL_OPTIONS.items():
            if (models or {}).get(role):
                cmd += ["--" + option.replace("_", "-"), models[role]]
        out, rss_kb = run_measured(cmd)
    s = _scan_summary(out)
    media = s["photos"] + s["videos"]
    wall = s["seconds"]
    busy = s["stage_busy_seconds"]
    return {
        "folder": str(folder), "stages": stages, "media": media, "frames": s["frames"],
        "seconds": wall, "photos_per_s": round(media / wall, 2) if wall else 0.0,
        "model_seconds": round(busy, 3), "stage_seconds": s["stage_seconds"],
        "decode_seconds": s["decode_seconds"],
        "overhead_seconds": round(max(0.0, wall - busy), 3),
        "outside_models_share": _outside(wall, busy),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "failed": s["failed"], "failures": s["failures"],
    }


def render_end_to_end(result: dict):
    from rich.table import Table

    table = Table(title=f"End-to-end scan of {result['media']} media: {result['folder']}"
                        + (f", {result['failed']} failed" if result["failed"] else ""),
                  show_header=False)
    table.add_column(justify="right")
    table.add_column()
    rows = [
        ("stages", ",".join(result["stages"]) or "none"),
        ("photos/s", f"{result['photos_per_s']:.1f}"),
        ("wall time", f"{result['seconds']:.2f} s"),
        ("model calls", f"{result['model_seconds']:.2f} s of the wall time; by stage, on "
                        "every analysing thread: "
                        + ", ".join(f"{k} {v:.2f} s" for k, v in result["stage_seconds"].items())),
        ("decoding", f"{result['decode_seconds']:.2f} s (in decode threads, overlapping inference)"),
        ("outside model calls", f"{result['overhead_seconds']:.2f} s = "
                                f"{result['outside_models_share']:.0%} of the wall time"),
        ("peak RSS", f"{result['peak_rss_mb']:.0f} MB"),
    ]
    rows[2:2] = _runs_row(result, "photos_per_s", "photos/s", ".1f")
    rows += _failure_rows([f"{f['path']}: {f['reason']}" for f in result["failures"]])
    for key, value in rows:
        table.add_row(key, value)
    return table


# -- the phone roll -----------------------------------------------------------------------
# What a phone's camera roll holds (issue 15): shares of the media by format.
PHONE_MIX = (("jpeg", 0.6), ("heic", 0.3), ("video", 0.1))
# The folders of galprof's test media that hold phone, face and scene pictures and phone
# videos (its corrupt files, placeholder pixels and camera photos are not a phone's roll).
TESTMEDIA_ROLL_FOLDERS = ("exif/phone", "exif/selfie", "faces", "scenes", "videos")
# Containers a phone records video in; both are ISO BMFF, so a copy can be made unique by
# a trailing `free` box that every reader skips.
_ROLL_VIDEO_FORMATS = ("MP4", "MOV")
# Photos smaller than this (long side) are icons or placeholders, not camera pictures.
_ROLL_MIN_PHOTO_SIDE = 320
# Space a roll leaves free on its disk (the scan's database and the device need some).
ROLL_FREE_MARGIN_BYTES = 256 * 2**20
# Failed files a benchmark table names (--json has them all).
FAILURES_SHOWN = 5


def default_roll_sources() -> list[Path]:
    """The test media's phone folders (GALPROF_TESTMEDIA, or testmedia under GALPROF_SHARED,
    or ../shared/testmedia beside a source checkout); [] when there are none."""
    root = os.environ.get("GALPROF_TESTMEDIA")
    if not root:
        shared = os.environ.get("GALPROF_SHARED") or Path(__file__).resolve().parents[2] / "shared"
        root = Path(shared) / "testmedia"
    root = Path(root)
    return [root / sub for sub in TESTMEDIA_ROLL_FOLDERS if (root / sub).is_dir()]


def roll_candidates(sources: list[Path], min_megapixels: float = 0
                    ) -> dict[str, dict[Path, int]]:
    """The files under `sources` a phone roll can be built from, by class: "jpeg", "heic",
    "video" (MP4/MOV), each mapped to its pixels (a photo's stored width x height; 0 for
    a video). Photos must open, be at least _ROLL_MIN_PHOTO_SIDE px on their long side and
    hold at least `min_megapixels`; videos must have a video stream. Sorted by path."""
    from galprof.errors import MediaError
    from galprof.gallery.frames import read_metadata
    from galprof.gallery.walk import walk

    out: dict[str, dict[Path, int]] = {"jpeg": {}, "heic": {}, "video": {}}
    for item in walk(sources).items:
        if item.kind == "photo" and item.format in ("JPEG", "HEIF"):
            cls = "jpeg" if item.format == "JPEG" else "heic"
        elif item.kind == "video" and item.format in _ROLL_VIDEO_FORMATS:
            cls = "video"
        else:
            continue
        try:
            meta = read_metadata(item.path, item.kind)
        except (MediaError, OSError):
            continue
        width, height = meta.width or 0, meta.height or 0
        if item.kind == "photo" and (max(width, height) < _ROLL_MIN_PHOTO_SIDE
                                     or width * height < min_megapixels * 1e6):
            continue
        out[cls][item.path] = width * height if item.kind == "photo" else 0
    return out


def _unique_copy(data: bytes, cls: str, tag: bytes) -> bytes:
    """The file's bytes with a trailer that changes its content hash but not what it
    decodes to: after a JPEG's end of image (ignored by decoders), or an ISO BMFF `free`
    box at the end of a HEIC/MP4/MOV (skipped by every reader)."""
    import struct

    if cls == "jpeg":
        return data + b"galprof-roll " + tag
    return data + struct.pack(">I", 8 + len(tag)) + b"free" + tag


def build_roll(sources: list[Path], folder: Path, count: int, seed: int = SEED,
               mix=PHONE_MIX, min_megapixels: float = 0) -> dict:
    """Write a phone roll of `count` media into `folder`: the shares of `mix` drawn evenly
    from the candidates of `sources` (see roll_candidates; photos of `min_megapixels` or
    more), every copy made unique so the content-hash cache cannot skip it, in a shuffled
    order under names that never pair (IMG_00001.HEIC and IMG_00002.MOV are not a Live
    Photo). A class without candidates gives its share to the others. Returns what it
    wrote, with the median megapixels of its photos."""
    import random
    import statistics

    candidates = roll_candidates(sources, min_megapixels)
    present = [(cls, share) for cls, share in mix if candidates.get(cls)]
    if not present:
        from galprof.errors import SetupError
        least = f" (photos of {min_megapixels:g} MP or more)" if min_megapixels else ""
        raise SetupError(f"no JPEG, HEIC or MP4/MOV media{least} found to build a roll "
                         "from in " + ", ".join(os.fspath(s) for s in sources))
    total = sum(share for _, share in present)
    counts = {cls: int(count * share / total) for cls, share in present}
    # hand the rounding remainder to the largest shares first
    for cls, _ in sorted(present, key=lambda p: -p[1]):
        if sum(counts.values()) >= count:
            break
        counts[cls] += 1
    rng = random.Random(seed)
    picks: list[tuple[str, Path]] = []
    for cls, n in counts.items():
        pool = list(candidates[cls])
        rng.shuffle(pool)
        picks += [(cls, pool[i % len(pool)]) for i in range(n)]
    rng.shuffle(picks)
    folder.mkdir(parents=True, exist_ok=True)
    _check_room(folder, sum(src.stat().st_size for _, src in set(picks)))
    photo_pixels = [candidates[cls][src] for cls, src in picks if cls != "video"]
    written = {"media": len(picks), "by_class": dict(counts), "bytes": 0,
               "sources": {cls: len(c) for cls, c in candidates.items()},
               "min_megapixels": min_megapixels,
               "photo_megapixels": (round(statistics.median(photo_pixels) / 1e6, 1)
                                    if photo_pixels else None),
               "copies": {}}
    for i, (cls, src) in enumerate(picks):
        data = _unique_copy(src.read_bytes(), cls, f"{seed}-{i}".encode())
        name = f"IMG_{i:05d}{src.suffix}"
        (folder / name).write_bytes(data)
        written["bytes"] += len(data)
        written["copies"][name] = os.fspath(src)
    return written


def _check_room(folder: Path, distinct_bytes: int) -> None:
    """Refuse a roll that would fill the disk (a phone's videos are 100 MB to GBs each):
    the copies of a pick repeated take its size again, so this is a lower bound."""
    import shutil

    free = shutil.disk_usage(folder).free
    if distinct_bytes > free - ROLL_FREE_MARGIN_BYTES:
        from galprof.errors import SetupError
        raise SetupError(f"a roll needs at least {distinct_bytes / 2**20:,.0f} MB in {folder} "
                         f"and {ROLL_FREE_MARGIN_BYTES >> 20} MB left free; it has "
                         f"{free / 2**20:,.0f} MB free: ask for fewer media (--roll N) or "
                         "point TMPDIR at a larger disk")


# -- a measured scan (a child process) ---------------------------------------------------
# Decode time is reported by what a file holds (walk's sniffing), not by its name.
_DECODE_CLASS = {"JPEG": "jpeg", "HEIF": "heic"}


class _TimedSession:
    """A runtime session that adds the time of each call to a counter, and to `busy` (the
    wall time in which any model call runs: two may run at once), for the benchmark."""

    def __init__(self, session, counter: list, busy):
        self._session, self._counter, self._busy = session, counter, busy

    def run(self, feeds, copy=True):
        started = time.perf_counter()
        try:
            with self._busy:
                return self._session.run(feeds, copy)
        finally:
            self._counter[0] += time.perf_counter() - started
            self._counter[1] += 1

    def __getattr__(self, name):
        return getattr(self._session, name)


def _models_of(stage) -> list:
    from galprof.vision.base import Model
    return [m for m in vars(stage).values() if isinstance(m, Model)]


def _instrument_models(stage, counters: dict, busy) -> None:
    """Time every model call of a stage: each of its models' sessions, once loaded, is
    wrapped by a _TimedSession counting into counters[model id] and `busy`."""
    for model in _models_of(stage):
        counter = counters.setdefault(model.spec.id, [0.0, 0])
        load = model.load

        def timed_load(model=model, load=load, counter=counter):
            load()
            if not isinstance(model.session, _TimedSession):
                model.session = _TimedSession(model.session, counter, busy)
            return model
        model.load = timed_load


def _peak_rss_kb() -> int:
    """This process's peak resident memory so far (VmHWM), in KB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def scan_child(argv: list[str] | None = None) -> None:
    """The measured scan of `measured_scan`, in its own process: the pipeline as `galprof
    scan` runs it, with every model call and every file read timed. Prints JSON; an error
    of galprof's (a model missing or broken) as one line, as `galprof scan` does."""
    import sys

    from galprof.errors import GalprofError
    try:
        _timed_scan(argv)
    except GalprofError as e:
        sys.stderr.write(f"Error: {e}\n")
        raise SystemExit(1) from None


def _timed_scan(argv: list[str] | None) -> None:
    import json
    import sys

    from galprof.gallery import frames as frames_mod
    from galprof.gallery.walk import walk
    from galprof.pipeline import Settings, run
    from galprof.pipeline.analysis import BusyTime
    from galprof.stages import build_stages
    from galprof.store import open_store

    args = json.loads((argv or sys.argv[1:])[0])
    stages = build_stages(args["stages"], threads=args.get("threads"), models=args.get("models"))
    counters: dict[str, list] = {}
    models_busy = BusyTime()
    for stage in stages:
        _instrument_models(stage, counters, models_busy)
    decode: dict[str, list] = {}
    read_media = frames_mod.read_media
    formats = {os.fspath(item.path): item.format for item in walk([Path(args["folder"])]).items}

    read_before: set[str] = set()            # a file read again by the late pass

    def timed_read(path, kind, *a, **k):
        started = time.perf_counter()
        digest, decoded = read_media(path, kind, *a, **k)
        fmt = formats.get(os.fspath(path)) or "other"
        fmt = "video" if kind == "video" else _DECODE_CLASS.get(fmt, fmt.lower())
        entry = decode.setdefault(fmt, [0.0, 0, 0, 0, 0, 0])
        entry[0] += time.perf_counter() - started
        if os.fspath(path) in read_before:
            entry[5] += 1
            return digest, decoded
        read_before.add(os.fspath(path))
        entry[1] += 1
        entry[2] += len(decoded.frames)
        entry[3] += sum(getattr(f, "same_as", None) is not None for f in decoded.frames)
        entry[4] += sum(bool(getattr(f, "enlarge", None)) for f in decoded.frames)
        return digest, decoded
    frames_mod.read_media = timed_read
    # Full pictures decoded on demand from a preview, by the stage that asked for them.
    enlarged: dict[str, list] = {}
    running = [""]
    for stage in stages:
        def run_as(frames, upstream, stage=stage, run=stage.run):
            running[0] = stage.name
            return run(frames, upstream)
        stage.run = run_as
    from galprof.stages import Frame, FullPictureNeeded
    at_least, decode_larger = Frame.at_least, Frame.decode_larger
    asked_by: dict[int, str] = {}           # id(frame) -> the stage waiting for its picture

    def noted_at_least(frame, long_side):
        try:
            return at_least(frame, long_side)
        except FullPictureNeeded:
            asked_by[id(frame)] = running[0]
            raise

    def timed_decode_larger(frame):
        fresh = "larger" not in frame._cache
        started = time.perf_counter()
        try:
            return decode_larger(frame)
        finally:
            if fresh:             # in a decode thread (or inline, outside the pipeline)
                entry = enlarged.setdefault(asked_by.pop(id(frame), running[0]), [0.0, 0])
                entry[0] += time.perf_counter() - started
                entry[1] += 1
    Frame.at_least, Frame.decode_larger = noted_at_least, timed_decode_larger
    # Time the inference thread waits for a decode (for the first of its futures to be
    # done, with no analysis to run meanwhile, or a result)
    import concurrent.futures
    import threading
    from galprof.pipeline import ingest as ingest_mod
    result, wait, waited = concurrent.futures.Future.result, ingest_mod.wait, [0.0]

    def on_main_thread_timed(call):
        def timed(*a, **k):
            started = time.perf_counter()
            try:
                return call(*a, **k)
            finally:
                if threading.current_thread() is threading.main_thread():
                    waited[0] += time.perf_counter() - started
        return timed
    concurrent.futures.Future.result = on_main_thread_timed(result)
    ingest_mod.wait = on_main_thread_timed(wait)
    # The peak before the gallery passes is the ingest's own (the passes load other data:
    # the places pass its GeoNames table).
    import galprof.pipeline as pipeline_mod
    run_passes, ingest_peak = pipeline_mod.run_passes, []

    def peak_then_passes(*a, **k):
        ingest_peak.append(_peak_rss_kb())
        return run_passes(*a, **k)
    pipeline_mod.run_passes = peak_then_passes
    settings = Settings(stages=stages, frame_step=args.get("frame_step", 5),
                        max_frames=args.get("max_frames", 40))
    with open_store(Path(args["db"])) as store:
        summary = run(store, [Path(args["folder"])], settings)
    out = summary.to_dict()
    out["model_calls"] = {k: {"seconds": round(v[0], 4), "calls": v[1]} for k, v in counters.items()}
    out["model_busy_seconds"] = round(models_busy.seconds, 4)
    out["stage_models"] = {s.name: [m.spec.id for m in _models_of(s)] for s in stages}
    out["decode_by_format"] = {k: {"seconds": round(v[0], 4), "files": v[1], "frames": v[2],
                                   "repeats": v[3], "previews": v[4], "read_again": v[5]}
                               for k, v in decode.items()}
    out["enlarged"] = {name: {"seconds": round(v[0], 4), "count": v[1]}
                       for name, v in enlarged.items()}
    out["waited_for_decode_seconds"] = round(waited[0], 3)
    text = next((s.stats for s in stages if s.name == "text"), None)
    if text is not None:                     # the pre-filter decides who pays for the detector
        out["text"] = {"items": text.items, "detected": text.detected,
                       "lines_read": text.lines_read,
                       "detector_seconds": round(text.detector_seconds, 3),
                       "recognizer_seconds": round(text.recognizer_seconds, 3)}
    out["ingest_peak_rss_mb"] = round(ingest_peak[0] / 1024, 1) if ingest_peak else None
    sys.stdout.write(json.dumps(out))


def measured_scan(folder: Path, stages: list[str], threads: int | None = None,
                  frame_step: int = 5, max_frames: int = 40, env: dict | None = None,
                  models: dict[str, str | None] | None = None) -> dict:
    """Scan `folder` into a fresh database in a child process (scan_child), so that its
    peak memory is measured alone; its summary with the model-call and read timings, its
    peak RSS and CPU seconds. `env`: the child's environment (e.g. a PYTHONPATH holding
    another galprof to compare with); `models`: a model id per role (build_stages)."""
    import json
    import sys
    import tempfile

    if env is None:       # the child runs the galprof this process runs
        here = os.fspath(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    with tempfile.TemporaryDirectory() as tmp:
        args = {"folder": os.fspath(folder), "db": os.fspath(Path(tmp) / "bench.db"),
                "stages": stages, "threads": threads, "frame_step": frame_step,
                "max_frames": max_frames, "models": models}
        cmd = [sys.executable, "-c", "import sys; from galprof.bench import scan_child; "
                                     "scan_child(sys.argv[1:])", json.dumps(args)]
        # run in the scratch folder: `python -c` puts the working directory first on the
        # path, which would shadow the galprof that `env` names
        out, rss_kb, cpu = run_measured_usage(cmd, env, cwd=Path(tmp))
    s = _scan_summary(out)
    s["peak_rss_mb"] = round(rss_kb / 1024, 1)
    s["cpu_seconds"] = round(cpu, 2)
    return s


def _outside(wall: float, busy: float) -> float:
    """The share of the wall time outside `busy` (the union of some work's intervals)."""
    return round(max(0.0, wall - busy) / wall, 3) if wall else 0.0


def roll_report(scan: dict, latency: dict[str, float] | None = None,
                built: dict | None = None) -> dict:
    """The figures of a measured scan of a roll: media/s, frames, per stage its time and
    its model calls' time per frame (and the models' own latency from the table, when
    given as model id -> ms), decode time by format, the share of the wall time outside
    model calls, peak RSS. With the latencies, `models_alone`: what the scan's model calls
    take at them, and the media/s that allows at best. With what build_roll wrote, the
    roll's make-up (`built`) and each failed file's source (`failures`)."""
    wall = scan["seconds"]
    media = scan["photos"] + scan["videos"]
    repeats = sum(d.get("repeats", 0) for d in scan["decode_by_format"].values())
    frames = scan["frames"] - repeats          # per analysed frame: repeats cost nothing
    calls = scan["model_calls"]
    by_stage = scan.get("enlarged", {})
    enlarged = {"seconds": round(sum(e["seconds"] for e in by_stage.values()), 4),
                "count": sum(e["count"] for e in by_stage.values())}
    stages = {}
    for name, seconds in scan["stage_seconds"].items():
        models = scan["stage_models"].get(name, [])
        model_s = sum(calls.get(m, {}).get("seconds", 0.0) for m in models)
        full = by_stage.get(name)    # HEIC full pictures decoded (in the decode threads) for it
        row = {"seconds": round(seconds, 3),
               "ms_per_frame": round(1000 * seconds / frames, 2) if frames else 0.0,
               "model_seconds": round(model_s, 3),
               "model_ms_per_frame": round(1000 * model_s / frames, 2) if frames else 0.0,
               "stage_over_model": round(seconds / model_s, 2) if model_s else None,
               **({"full_decodes": full["count"], "full_decode_seconds": full["seconds"]}
                  if full else {}),
               "models": {m: {"calls": calls.get(m, {}).get("calls", 0),
                              "ms_per_call": round(1000 * calls[m]["seconds"] / calls[m]["calls"], 2)
                              if calls.get(m, {}).get("calls") else None,
                              **({"latency_ms": latency[m]} if latency and m in latency else {})}
                          for m in models}}
        stages[name] = row
    model_total = sum(c["seconds"] for c in calls.values())
    # The scan's model calls at the models' own latency, as many at a time as the scan
    # analyses frames: a bound no change outside the models can beat on this machine.
    alone = {m: c["calls"] * latency[m] / 1000 for m, c in calls.items()
             if latency and m in latency and c["calls"]}
    alone_seconds = sum(alone.values()) / analysing_threads()
    decode = {fmt: {"files": d["files"], "frames": d["frames"],
                    "repeats": d.get("repeats", 0), "previews": d.get("previews", 0),
                    "read_again": d.get("read_again", 0),
                    "ms_per_read": round(1000 * d["seconds"] / reads, 1) if reads else 0.0}
              for fmt, d in sorted(scan["decode_by_format"].items())
              for reads in [d["files"] + d.get("read_again", 0)]}
    copies = (built or {}).get("copies", {})

    def failure(f: dict) -> dict:
        if not built:                    # a folder's own file
            return {"file": f["path"], "reason": f["reason"]}
        name = Path(f["path"]).name      # a roll's copy, and the file of yours it copies
        return {"file": name, "reason": f["reason"],
                **({"source": copies[name]} if name in copies else {})}
    failures = [failure(f) for f in scan.get("failures", [])]
    return {"media": media, "photos": scan["photos"], "videos": scan["videos"],
            "frames": scan["frames"], "frames_analysed": frames,
            "failed": scan["failed"], "failures": failures, "seconds": wall,
            "media_per_s": round(media / wall, 2) if wall else 0.0,
            "model_seconds": round(model_total, 3),
            **({"models_alone": {"seconds": round(alone_seconds, 3), "models": sorted(alone),
                                 "media_per_s": round(media / alone_seconds, 2)}}
               if alone_seconds else {}),
            "model_busy_seconds": scan["model_busy_seconds"],
            "outside_models_share": _outside(wall, scan["model_busy_seconds"]),
            "stage_busy_seconds": scan["stage_busy_seconds"],
            "outside_stages_share": _outside(wall, scan["stage_busy_seconds"]),
            "stages": stages, "decode": decode,
            "decode_seconds": round(scan["decode_seconds"], 3),
            "waited_for_decode_seconds": scan.get("waited_for_decode_seconds"),
            "enlarged": enlarged,
            "late_pass": {"items": scan.get("late_items", 0),
                          "seconds": scan.get("late_seconds", 0.0)},
            **({"text": _text_report(scan["text"])} if "text" in scan else {}),
            "cpu_seconds": scan["cpu_seconds"],
            "cpu_ms_per_media": round(1000 * scan["cpu_seconds"] / media, 1) if media else 0.0,
            "peak_rss_mb": scan["peak_rss_mb"],
            "ingest_peak_rss_mb": scan.get("ingest_peak_rss_mb"),
            "passes_seconds": round(sum(p.get("seconds", 0.0) for p in scan["passes"].values()
                                        if isinstance(p, dict)), 3),
            **({"built": {k: v for k, v in built.items() if k != "copies"}} if built else {})}


# -- phone-like video clips --------------------------------------------------------------
# (name, encoder, size, seconds, bit rate): what phones record. Bit rates are Apple's
# published sizes per minute (1080p30 H.264 "Most Compatible" ~130 MB, 4K30 HEVC ~170 MB).
PHONE_CLIPS = (
    ("1080p H.264 30 s", "libx264", (1920, 1080), 30, 17_000_000),
    ("1080p H.264 60 s", "libx264", (1920, 1080), 60, 17_000_000),
    ("4K HEVC 30 s", "libx265", (3840, 2160), 30, 23_000_000),
    ("4K HEVC 60 s", "libx265", (3840, 2160), 60, 23_000_000),
)
CLIP_FPS = 30
# Encoding 4K HEVC runs at 1.5-3 frames/s here, so a clip is a 3 s segment (three 1 s
# groups of pictures, as phones write them) encoded once and repeated with continuous
# timestamps: the decoder does the same work per frame as on a clip encoded whole. Three
# groups, not two: a 60 s clip's 40 samples (a 45-frame step) then land on keyframes
# whose pictures differ from the one before, as in a real clip, instead of repeating it
# (a repeat is analysed once, which would flatter the figure).
CLIP_SEGMENT_SECONDS = 3


def generate_clip(path: Path, encoder: str, size: tuple[int, int], seconds: int,
                  bit_rate: int, fps: int = CLIP_FPS, still: bool = False,
                  seed: int = SEED) -> Path:
    """A phone-like MP4: a slowly panning synthetic scene (or, with `still`, a tripod
    shot) with sensor noise, 1 s groups of pictures (closed, B-frames as the encoder's
    preset makes them), at `bit_rate`. Raises SetupError when PyAV has no such encoder."""
    import av
    from PIL import Image

    from galprof.errors import SetupError

    try:
        av.codec.Codec(encoder, "w")
    except Exception:
        raise SetupError(f"this PyAV/FFmpeg build has no {encoder} encoder") from None
    width, height = size
    rng = np.random.default_rng(seed)
    pan = 0 if still else 2                       # pixels per frame
    frames = min(CLIP_SEGMENT_SECONDS, seconds) * fps
    base = synthetic_photo(height // 4 + 32, (width + pan * frames) // 4 + 32, seed=seed)
    base = np.asarray(Image.fromarray(base).resize((base.shape[1] * 4, base.shape[0] * 4),
                                                   Image.BICUBIC))
    noise = [rng.integers(-5, 6, (height, width, 3), dtype=np.int16) for _ in range(3)]
    params = f"keyint={fps}:min-keyint={fps}:scenecut=0"
    codec_options = ({"preset": "veryfast", "x265-params": params + ":open-gop=0:log-level=error"}
                     if "265" in encoder else {"preset": "veryfast", "x264-params": params})
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream(encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bit_rate
        stream.options = codec_options
        # frame-threaded encoding: sliced threads would split each frame into slices,
        # which phones' H.264 does not have (and which a decoder parallelises)
        stream.thread_type = "FRAME"
        segment = []                          # (data, pts, dts, keyframe) of the first pass

        def mux(packets) -> None:
            for p in packets:
                segment.append((bytes(p), p.pts, p.dts, p.is_keyframe))
                out.mux(p)
        for i in range(frames):
            x = 16 + pan * i
            picture = base[16:16 + height, x:x + width].astype(np.int16) + noise[i % 3]
            frame = av.VideoFrame.from_ndarray(np.clip(picture, 0, 255).astype(np.uint8),
                                               format="rgb24")
            frame.pts = i
            mux(stream.encode(frame))
        mux(stream.encode())
        time_base = stream.codec_context.time_base
        for loop in range(1, math.ceil(seconds / CLIP_SEGMENT_SECONDS)):
            shift = loop * frames
            for data, pts, dts, key in segment:
                if pts + shift >= seconds * fps:
                    continue              # past the end: whole (closed) groups are dropped
                packet = av.Packet(data)
                packet.pts, packet.dts = pts + shift, dts + shift
                packet.time_base = time_base
                packet.is_keyframe = key
                packet.stream = stream
                out.mux(packet)
    return path


def clip_benchmark(spec, folder: Path, stages: list[str], threads: int | None = None,
                   clip: Path | None = None, repeat: int = 1,
                   models: dict[str, str | None] | None = None) -> dict:
    """Encode one PHONE_CLIPS clip (or take `clip`, made by generate_clip from that spec)
    into its own folder and scan it (measured_scan; `repeat` times, see `repeated`):
    seconds, real-time factor, frames sampled and analysed, decode time, peak RSS. A clip
    this PyAV cannot encode gives {"name", "skipped": reason}."""
    import shutil

    from galprof.errors import SetupError

    name, encoder, size, seconds, bit_rate = spec
    where = folder / ("scan_" + name.replace(" ", "_").replace(".", ""))
    where.mkdir(parents=True, exist_ok=True)
    try:
        if clip is not None:
            shutil.copyfile(clip, where / "VID_0001.mp4")
        else:
            generate_clip(where / "VID_0001.mp4", encoder, size, seconds, bit_rate)
    except SetupError as e:
        return {"name": name, "skipped": str(e)}

    def scanned() -> dict:
        scan = measured_scan(where, stages, threads=threads, models=models)
        video = scan["decode_by_format"].get("video", {"seconds": 0.0, "frames": 0,
                                                        "repeats": 0})
        wall = scan["seconds"]
        return {"name": name, "encoder": encoder, "width": size[0], "height": size[1],
                "duration_s": seconds, "seconds": wall,
                "real_time": round(seconds / wall, 1) if wall else 0.0,
                "decode_seconds": round(video["seconds"], 3),
                "frames": scan["frames"], "repeats": video.get("repeats", 0),
                "stage_seconds": scan["stage_seconds"], "cpu_seconds": scan["cpu_seconds"],
                "peak_rss_mb": scan["peak_rss_mb"]}
    return repeated(scanned, repeat, "real_time")


# What each run of a repeated measurement keeps beside its rate.
_RUN_FIGURES = ("seconds", "cpu_seconds", "peak_rss_mb")


def repeated(measure, repeat: int, rate: str) -> dict:
    """`measure()` run `repeat` times, one after another: the run at the median of `rate`
    (of an even count, the slower of the middle two), and, when there were several, every
    run's rate, wall and CPU seconds and peak memory in order under "runs". One device's
    figures vary from run to run (other work on it, its heat, its cores' clocks): the
    spread says how far one run's figure can be trusted."""
    results = [measure() for _ in range(repeat)]
    if repeat == 1:
        return results[0]
    median = sorted(results, key=lambda r: r[rate])[(repeat - 1) // 2]
    return {**median, "runs": [{k: r[k] for k in (rate, *_RUN_FIGURES) if k in r}
                               for r in results]}


def _runs_row(result: dict, rate: str, unit: str, fmt: str) -> list[tuple]:
    """A table row of a repeated measurement's runs (none for a single run)."""
    runs = result.get("runs")
    if not runs:
        return []
    low, high = (f"{f(r['peak_rss_mb'] for r in runs):.0f}" for f in (min, max))
    median = "the median run" + (" (the slower middle one)" if len(runs) % 2 == 0 else "")
    return [("runs", f"{len(runs)} scans: " + ", ".join(f"{r[rate]:{fmt}}" for r in runs)
                     + f" {unit}; shown: {median}; peak RSS "
                     + (low if low == high else f"{low}-{high}") + " MB")]


def _text_report(text: dict) -> dict:
    """The text stage's own figures: how many items the pre-filter let reach the detector,
    and what the detector and the recogniser cost there."""
    items, detected, lines = text["items"], text["detected"], text["lines_read"]
    return {**text, "detected_share": round(detected / items, 3) if items else 0.0,
            "detector_ms_per_item": round(1000 * text["detector_seconds"] / detected, 1)
            if detected else None,
            "recognizer_ms_per_line": round(1000 * text["recognizer_seconds"] / lines, 1)
            if lines else None}


def _failure_rows(lines: list[str]) -> list[tuple]:
    """Table rows naming at most FAILURES_SHOWN failed files, each line shown as it
    is (a file name is not markup); --json lists them all."""
    from rich.text import Text

    from galprof.cli.common import shown

    rows = [("failed", Text(shown(line))) for line in lines[:FAILURES_SHOWN]]
    if len(lines) > FAILURES_SHOWN:
        rows.append(("", f"and {len(lines) - FAILURES_SHOWN} more (--json lists them)"))
    return rows


def folder_report(folder: Path, stages: list[str], threads: int | None = None,
                  latency: dict[str, float] | None = None,
                  models: dict[str, str | None] | None = None) -> dict:
    """What `galprof scan` of a folder as it is (no copies) costs, measured and reported
    as a roll is (measured_scan, roll_report); a folder without media is a SetupError."""
    scan = measured_scan(folder, stages, threads=threads, models=models)
    if not scan["photos"] + scan["videos"] and not scan["failed"]:
        from galprof.errors import SetupError
        raise SetupError(f"no photos or videos to measure in {os.fspath(folder)}")
    return {**roll_report(scan, latency), "folder": os.fspath(folder)}


def render_roll(result: dict):
    """The roll report (or folder_report's) as a rich Table."""
    from rich.table import Table
    from rich.text import Text

    from galprof.cli.common import shown

    built = result.get("built", {})
    if built:
        title = (f"Phone roll: {built['media']} media ("
                 + ", ".join(f"{n} {cls}" for cls, n in built["by_class"].items()) + ")")
    else:
        title = (f"Scan of {shown(result['folder'])}: {result['media']} media ("
                 + ", ".join(f"{d['files']} {fmt}" for fmt, d in result["decode"].items()) + ")")
    # (a folder's name is not markup)
    table = Table(title=Text(title + (f", {result['failed']} failed" if result["failed"] else "")),
                  show_header=False)
    table.add_column(justify="right")
    table.add_column()
    rows = [("stages", ",".join(result["stage_names"]) or "none"),
            ("media/s", f"{result['media_per_s']:.2f}  ({result['media']} read in "
                        f"{result['seconds']:.1f} s, {result['cpu_seconds']:.0f} CPU s)"),
            ("frames", f"{result['frames']} sampled, {result['frames_analysed']} analysed "
                       f"(the rest repeat a still shot's frame); per frame below: analysed")]
    if built.get("photo_megapixels") is not None:
        least = built.get("min_megapixels")
        rows.append(("photos", f"{built['photo_megapixels']:g} MP median"
                               + (f" (drawn from those of {least:g} MP or more)" if least
                                  else " (a phone camera's: 12; --min-megapixels to draw "
                                       "only large ones)")))
    rows[2:2] = _runs_row(result, "media_per_s", "media/s", ".2f")
    for name, s in result["stages"].items():
        models = ", ".join(
            f"{m} {v['calls']} calls x {v['ms_per_call']} ms"
            + (f" (alone {v['latency_ms']:.1f})" if v.get("latency_ms") else "")
            for m, v in s["models"].items() if v["calls"])
        extra = (f"; asked for {s['full_decodes']} full HEIC decodes"
                 if s.get("full_decodes") else "")
        rows.append((name, f"{s['ms_per_frame']:.1f} ms/frame, models {s['model_ms_per_frame']:.1f} "
                           f"(x{s['stage_over_model'] or 0:.2f}{extra}): {models}"))
    rows.append(("decode", "; ".join(
        f"{fmt} {d['files']} files"
        + (f" ({d['read_again']} read again by the late pass)" if d["read_again"] else "")
        + f" {d['ms_per_read']:.0f} ms a read"
        + (f", {d['previews']} from previews" if d["previews"] else "")
        for fmt, d in result["decode"].items())))
    if "text" in result:
        t = result["text"]
        rows.append(("text pre-filter", f"{t['detected']} of {t['items']} media reach the detector "
                                        f"({t['detected_share']:.0%}), "
                                        f"{t['detector_ms_per_item'] or 0:.0f} ms each; "
                                        f"{t['lines_read']} lines read"))
    if result["enlarged"]["count"]:
        rows.append(("full pictures on demand", f"{result['enlarged']['count']} in "
                                                f"{result['enlarged']['seconds']:.2f} s "
                                                "(decode threads)"))
    if result["late_pass"]["items"]:
        rows.append(("late pass", f"{result['late_pass']['items']} media read again for the "
                                  f"text detector, with the other models let go, in "
                                  f"{result['late_pass']['seconds']:.1f} s"))
    if "models_alone" in result:
        alone = result["models_alone"]
        rows.append(("models alone", f"at most {alone['media_per_s']:.2f} media/s: the scan's "
                                     f"calls of {', '.join(alone['models'])} take "
                                     f"{alone['seconds']:.1f} s at the models' own latency"))
    rows += _failure_rows([f"{f['file']} ({f.get('source', 'source unknown')}): {f['reason']}"
                           if built else f"{f['file']}: {f['reason']}"
                           for f in result["failures"]])
    rows += [("outside model calls", f"{result['outside_models_share']:.0%} of the wall time "
                                     f"(calls on two threads at once "
                                     f"{result['model_seconds'] - result['model_busy_seconds']:.1f} s; "
                                     f"outside stages {result['outside_stages_share']:.0%}; "
                                     f"waiting for decodes {result['waited_for_decode_seconds']:.1f} s, "
                                     f"gallery passes {result['passes_seconds']:.1f} s)"),
             ("peak RSS", f"{result['peak_rss_mb']:.0f} MB (ingest {result['ingest_peak_rss_mb']:.0f} MB)")]
    for key, value in rows:
        table.add_row(key, value)
    return table


def render_clips(results: list[dict]):
    from rich.table import Table

    repeat = max((len(r.get("runs", [])) for r in results), default=0)
    table = Table(title="Phone clips, " + (f"{repeat} scans each: the median one, and the "
                                           "range" if repeat else "one scan each"))
    for col in ("clip", "scan, s", "x real time", "decode, s", "frames (repeats)", "peak RSS, MB"):
        table.add_column(col, justify="left" if col == "clip" else "right")
    for r in results:
        if "skipped" in r:
            table.add_row(r["name"], "-", "-", "-", r["skipped"], "-")
            continue
        spread = sorted(run["real_time"] for run in r.get("runs", []))
        table.add_row(r["name"], f"{r['seconds']:.1f}", f"{r['real_time']:.1f}"
                      + (f" ({spread[0]:.1f}-{spread[-1]:.1f})" if spread else ""),
                      f"{r['decode_seconds']:.1f}", f"{r['frames']} ({r['repeats']})",
                      f"{r['peak_rss_mb']:.0f}")
    return table
