"""`galprof benchmark`: model latency (the paper's Tables 1-2), end-to-end media/s on
generated 12 MP JPEGs, on a phone roll (--roll) and on phone-like video clips (--clips)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from galprof.cli.common import (json_option, library_errors, models_for_runtime, parse_stages,
                                print_json, scan_runtime_option)
from galprof.cli.models import install_missing


@click.command()
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--models", "model_ids", default=None,
              help="Comma-separated model ids for the latency table (default: every installed model).")
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed calls per model and thread count.")
@click.option("--stages", "stage_names", default=None,
              help="Stages of the end-to-end scan ('none' to time decoding only; default: "
                   "objects,scenes for the generated JPEGs; for PATH, --roll and --clips, "
                   "the stages galprof scan runs).")
@click.option("--photos", type=click.IntRange(min=1), default=40, show_default=True,
              help="Generated 12 MP JPEGs to scan when no PATH is given.")
@click.option("--roll", type=click.IntRange(min=1), default=None, metavar="N",
              help="Scan a phone roll of N media built from PATH (default: galprof's test "
                   "media): 60 % JPEG, 30 % HEIC/HEIF, 10 % MP4/MOV, every copy unique.")
@click.option("--min-megapixels", type=click.FloatRange(min=0), default=0, metavar="MP",
              help="With --roll: draw only photos of at least MP megapixels, as a camera "
                   "roll's are (a phone's camera: 12; most JPEGs of galprof's test "
                   "media are under 1).")
@click.option("--clips", is_flag=True,
              help="Scan generated phone clips one by one (1080p H.264 and 4K HEVC, 30 and "
                   "60 s) and report each against real time.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of each model call in the end-to-end scan (default: as galprof "
                   "scan, half the cores).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scan N times (each into a fresh database; a roll or clip is made "
                   "once) and report the median run with every run's figure and peak "
                   "memory: one device's figures vary from run to run.")
@scan_runtime_option
@click.option("--skip-latency", is_flag=True, help="Only the end-to-end scan.")
@json_option
@library_errors
def benchmark(path, model_ids, runs, stage_names, photos, roll, min_megapixels, clips,
              threads, repeat, runtime, skip_latency, as_json):
    """Measure the models on this device and a real scan end to end.

    Prints, per model, file size and mean ± std latency at 1 thread, at a scan's threads
    per call (half the cores: it analyses two frames at once) and at all cores, then
    media/s of a scan. Of PATH: the folder as it is, with the stages galprof scan runs,
    and per stage its time and its model calls' time per frame, decode time by format,
    the share of media the text pre-filter lets reach the text detector, and peak
    memory; with the latency table, also the media/s the models alone allow (their calls
    at their own latency, two at a time). With --roll N, the same of a phone's mix
    built from PATH's media (--min-megapixels: only its large photos), with the photos'
    median size. With neither, of generated 12 MP JPEGs (objects and scenes), split
    into model calls, decoding (overlapped with inference) and the rest.
    With --repeat N every scan runs N times and the median run is reported beside each
    run's figure and peak memory. Runs the same on a Raspberry Pi or in Termux (there
    with --runtime onnx, as galprof scan).

    \b
    Example:
        galprof benchmark
        galprof benchmark ~/DCIM/Camera --stages objects,scenes,faces --json
        galprof benchmark ~/DCIM --roll 200 --skip-latency --repeat 3
        galprof benchmark --roll 200 --min-megapixels 4 --skip-latency
        galprof benchmark --clips --skip-latency --json
        galprof benchmark ~/storage/dcim --runtime onnx --skip-latency     # in Termux
    """
    from rich.console import Console

    from galprof import bench
    from galprof.errors import SetupError
    from galprof.vision import manifest

    if min_megapixels and not roll:
        raise click.UsageError("--min-megapixels chooses the photos of a roll: give --roll N too")
    console = Console(stderr=as_json)
    from galprof.stages import build_stages, default_stages

    default = ",".join(default_stages()) if (path or roll or clips) else "objects,scenes"
    names = stage_names if stage_names is not None else default
    stages = parse_stages(names)
    # The scan's models before anything is timed, generated or copied (a roll, 4K clips):
    # installed on a terminal as `galprof scan` does, else one line naming what is missing.
    models = models_for_runtime(None, runtime)
    install_missing(build_stages(stages, threads=threads, models=models), console,
                    offline=False, quiet=as_json)
    report: dict = {}
    if not skip_latency:
        if model_ids:
            ids = [m.strip() for m in model_ids.split(",") if m.strip()]
        else:
            ids = [s.id for s in manifest.models().values() if _installed(s)]
        with console.status("timing models"):
            report["models"] = bench.model_latency_table(ids, runs=runs)
        if not as_json:
            console.print(bench.render_table(report["models"]))
    latency = _latency_at(report.get("models"), threads or bench.model_threads())
    times = f" ({repeat} times)" if repeat > 1 else ""
    with tempfile.TemporaryDirectory() as tmp:
        if roll:
            sources = [path] if path else bench.default_roll_sources()
            if not sources:
                raise SetupError("no media to build a roll from: give a folder of photos and "
                                 "videos, e.g. galprof benchmark ~/DCIM --roll 200")
            folder = Path(tmp) / "roll"
            with console.status(f"building a roll of {roll} media"):
                built = bench.build_roll(sources, folder, roll,
                                         min_megapixels=min_megapixels)
            with console.status(f"scanning {roll} media{times}"):
                measured = bench.repeated(lambda: bench.roll_report(
                    bench.measured_scan(folder, stages, threads=threads, models=models),
                    latency, built),
                    repeat, "media_per_s")
            report["roll"] = {**measured, "stage_names": stages}
            if not as_json:
                console.print(bench.render_roll(report["roll"]))
        if clips:
            report["clips"] = []
            for spec in bench.PHONE_CLIPS:
                with console.status(f"encoding and scanning {spec[0]}{times}"):
                    report["clips"].append(bench.clip_benchmark(spec, Path(tmp), stages,
                                                                threads=threads,
                                                                repeat=repeat,
                                                                models=models))
            if not as_json:
                console.print(bench.render_clips(report["clips"]))
        if path and not roll:               # (with --roll, PATH is what the roll is made of)
            with console.status(f"scanning {path}{times}"):
                report["folder"] = {**bench.repeated(lambda: bench.folder_report(
                    path, stages, threads=threads, latency=latency, models=models), repeat,
                    "media_per_s"),
                    "stage_names": stages}
            if not as_json:
                console.print(bench.render_roll(report["folder"]))
        if not path and not roll and not clips:
            with console.status(f"writing {photos} 12 MP JPEGs"):
                folder = Path(tmp) / "photos"
                bench.generate_photos(folder, photos)
            with console.status(f"scanning{times}"):
                report["end_to_end"] = bench.repeated(
                    lambda: bench.end_to_end(folder, stages, threads=threads,
                                             models=models), repeat,
                    "photos_per_s")
            if not as_json:
                console.print(bench.render_end_to_end(report["end_to_end"]))
    if as_json:
        print_json(report)


def _latency_at(rows, threads: int) -> dict[str, float] | None:
    """Model id -> mean latency (ms) at `threads` from the latency table, when timed."""
    if not rows:
        return None
    return {row["model"]: cell["mean_ms"] for row in rows for cell in row["latency"]
            if cell["threads"] == threads}


def _installed(spec) -> bool:
    from galprof.errors import SetupError
    from galprof.vision import manifest
    try:
        manifest.locate(spec)
        return True
    except SetupError:
        return False
