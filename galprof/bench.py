"""Benchmarks behind `galprof benchmark`: per-model inference latency (this part).

Latency is the model call alone (session.run), measured on this device with the
installed files, at 1 thread and at all cores, in the shape of the paper's Tables
1-2. The input is a synthetic photo-like image (seeded, so every run feeds the same
pixels) prepared to each model's declared input, because a user's device has no
test photos and the call's cost depends on shape and dtype, not on the content.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

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
    session = open_session(path, threads)
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
    cores = os.cpu_count() or 1
    return (1, cores) if cores > 1 else (1,)


def model_latency_table(model_ids, runs: int = 30, threads=None,
                        directory: Path | None = None) -> list[dict]:
    """Latency of each installed model's call, at each thread count (default 1 and all cores).

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
             "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}')\n")


def run_measured(cmd: list[str], env: dict | None = None):
    """Run `cmd` (its first item a path); (CompletedProcess with text output, its own
    peak RSS in KB)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rss"
        out = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(report), *cmd],
                             capture_output=True, text=True, env=env)
        rss_kb, code = (int(v) for v in report.read_text().split())
    return subprocess.CompletedProcess(cmd, code, out.stdout, out.stderr), rss_kb


def end_to_end(folder: Path, stages: list[str], threads: int | None = None,
               db: Path | None = None) -> dict:
    """Scan `folder` with the named stages into a fresh database, in a child process so that
    its peak memory is measured alone. Returns photos/s and where the time went."""
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        db = db or Path(tmp) / "bench.db"
        cmd = [sys.executable, "-m", "galprof", "scan", str(folder), "--db", str(db), "--json",
               "--quiet", "--stages", ",".join(stages) or "none"]
        if threads:
            cmd += ["--threads", str(threads)]
        out, rss_kb = run_measured(cmd)
    s = json.loads(out.stdout)
    media = s["photos"] + s["videos"]
    wall = s["seconds"]
    models = sum(s["stage_seconds"].values())
    return {
        "folder": str(folder), "stages": stages, "media": media, "frames": s["frames"],
        "seconds": wall, "photos_per_s": round(media / wall, 2) if wall else 0.0,
        "model_seconds": round(models, 3), "stage_seconds": s["stage_seconds"],
        "decode_seconds": s["decode_seconds"],
        "overhead_seconds": round(max(0.0, wall - models), 3),
        "outside_models_share": round(max(0.0, wall - models) / wall, 3) if wall else 0.0,
        "peak_rss_mb": round(rss_kb / 1024, 1),
    }


def render_end_to_end(result: dict):
    from rich.table import Table

    table = Table(title=f"End-to-end scan of {result['media']} media: {result['folder']}",
                  show_header=False)
    table.add_column(justify="right")
    table.add_column()
    rows = [
        ("stages", ",".join(result["stages"]) or "none"),
        ("photos/s", f"{result['photos_per_s']:.1f}"),
        ("wall time", f"{result['seconds']:.2f} s"),
        ("model calls", f"{result['model_seconds']:.2f} s  "
                        + ", ".join(f"{k} {v:.2f}" for k, v in result["stage_seconds"].items())),
        ("decoding", f"{result['decode_seconds']:.2f} s (in decode threads, overlapping inference)"),
        ("outside model calls", f"{result['overhead_seconds']:.2f} s = "
                                f"{result['outside_models_share']:.0%} of the wall time"),
        ("peak RSS", f"{result['peak_rss_mb']:.0f} MB"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table
