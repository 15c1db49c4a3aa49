"""`galprof benchmark`: model latency (the paper's Tables 1-2) and end-to-end photos/s."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from galprof.cli.common import json_option, library_errors, print_json


@click.command()
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--models", "model_ids", default=None,
              help="Comma-separated model ids for the latency table (default: every installed model).")
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed calls per model and thread count.")
@click.option("--stages", "stage_names", default="objects,scenes", show_default=True,
              help="Stages of the end-to-end scan ('none' to time decoding only).")
@click.option("--photos", type=click.IntRange(min=1), default=40, show_default=True,
              help="Generated 12 MP JPEGs to scan when no PATH is given.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Inference threads of the end-to-end scan (default: all cores).")
@click.option("--skip-latency", is_flag=True, help="Only the end-to-end scan.")
@json_option
@library_errors
def benchmark(path, model_ids, runs, stage_names, photos, threads, skip_latency, as_json):
    """Measure the models on this device and a real scan end to end.

    Prints, per model, file size and mean ± std latency at 1 thread and at all cores,
    then photos/s of a scan of PATH (default: generated 12 MP JPEGs) split into model
    calls, decoding (overlapped with inference) and the rest. Runs the same on a
    Raspberry Pi or in Termux.

    \b
    Example:
        galprof benchmark
        galprof benchmark ~/DCIM/Camera --stages objects,scenes,faces --json
    """
    from rich.console import Console

    from galprof import bench
    from galprof.vision import manifest

    console = Console(stderr=as_json)
    stages = [] if stage_names.strip() == "none" else [s.strip() for s in stage_names.split(",") if s.strip()]
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
    with tempfile.TemporaryDirectory() as tmp:
        folder = path
        if folder is None:
            with console.status(f"writing {photos} 12 MP JPEGs"):
                folder = Path(tmp) / "photos"
                bench.generate_photos(folder, photos)
        with console.status("scanning"):
            report["end_to_end"] = bench.end_to_end(folder, stages, threads=threads)
    if as_json:
        print_json(report)
    else:
        console.print(bench.render_end_to_end(report["end_to_end"]))


def _installed(spec) -> bool:
    from galprof.errors import SetupError
    from galprof.vision import manifest
    try:
        manifest.locate(spec)
        return True
    except SetupError:
        return False
