"""`galprof scan`: read a gallery into the database."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from galprof.cli.common import (db_option, err_console, json_option, library_errors,
                                print_json, quiet_option, resolve_db, threads_option)
from galprof.stages import DEFAULT_STAGES, REGISTRY

# Exit status when the scan finished but some files could not be read (for cron).
EXIT_SOME_FAILED = 3


def _stage_list(ctx, param, value: str) -> list[str]:
    names = [] if value.strip().lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise click.BadParameter(f"unknown stage(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(REGISTRY)} or 'none'")
    return names


@click.command()
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(path_type=Path, exists=False))
@db_option
@click.option("--frame-step", type=click.IntRange(min=1), default=5, show_default=True,
              help="Analyse every N-th video frame.")
@click.option("--max-frames", type=click.IntRange(min=1), default=40, show_default=True,
              help="At most this many frames per video (the step widens for long videos).")
@threads_option
@click.option("--stages", "stage_names", default=",".join(DEFAULT_STAGES), show_default=True,
              callback=_stage_list,
              help="Comma-separated analysis stages to run, or 'none' for metadata and pixels only.")
@click.option("--object-model", default=None, help="Object detector model id (see `galprof models list`).")
@click.option("--scene-model", default=None, help="Scene classifier model id, e.g. efficientnet_lite0.")
@click.option("--remote", "remote_url", metavar="URL", default=None,
              help="After the device scan, send public photos to this `galprof serve` (docs/remote.md).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Bearer token for --remote (default: $GALPROF_REMOTE_TOKEN).")
@quiet_option
@json_option
@library_errors
def scan(paths, db_path, frame_step, max_frames, threads, stage_names, object_model,
         scene_model, remote_url, token_file, quiet, as_json):
    """Scan photo/video folders (or files) into the database.

    Only new and changed files are read again; moved files keep their results and
    deleted ones drop out. Exit status: 0 when every file was read, 1 for usage or
    setup errors, 3 when the scan finished but some files failed.

    \b
    Example:
        galprof scan ~/DCIM
        galprof scan /sdcard/DCIM /sdcard/Pictures --quiet      # from cron
        galprof scan ~/Pictures --json > summary.json
        galprof scan ~/DCIM --remote https://gpu.example.org --token-file ~/.galprof-token
    """
    from galprof.scan import ScanOptions, scan as run_scan
    from galprof.stages import build_stages
    from galprof.store import open_store

    console = err_console()
    token = None
    if remote_url:
        from galprof.remote.client import check_url, read_token
        remote_url = check_url(remote_url)      # mistakes fail before the scan, not after
        token = read_token(token_file)
    models = {"objects": object_model, "scenes": scene_model}
    stages = build_stages(stage_names, threads=threads, models=models)
    for stage in stages:
        stage.load()                       # a missing model fails here, before any work

    def on_problem(path: str, level: str, reason: str) -> None:
        if level == "error" or not quiet:
            console.print(f"{level}: {path}: {reason}", markup=False, highlight=False,
                          soft_wrap=True)

    show_bar = not quiet and console.is_terminal
    with open_store(resolve_db(db_path)) as store:
        options = ScanOptions(frame_step=frame_step, max_frames=max_frames, stages=stages)
        if show_bar:
            summary = _scan_with_bar(store, paths, options, on_problem, console)
        else:
            summary = run_scan(store, list(paths), options, on_problem=on_problem)
        from galprof.passes import run_gallery_passes
        changed = summary.new + summary.changed + summary.moved + summary.removed + summary.analysed
        # The passes are functions of the store: a scan that changed nothing needs none.
        passes = run_gallery_passes(store) if changed else {}
        if remote_url:
            from galprof.remote.client import offload
            remote = offload(store, remote_url, token, roots=list(paths), frame_step=frame_step,
                             max_frames=max_frames,
                             on_warning=lambda text: console.print(f"warning: {text}", markup=False,
                                                                   highlight=False))
            passes["remote"] = dataclasses.asdict(remote)
    if as_json:
        print_json({**summary.to_dict(), "passes": passes})
    elif not quiet:
        click.echo(
            f"{summary.photos} photos, {summary.videos} videos under {len(summary.roots)} root(s): "
            f"{summary.new} new, {summary.changed} changed, {summary.moved} moved, "
            f"{summary.removed} removed, {summary.unchanged} unchanged; "
            f"{summary.analysed} read ({summary.frames} frames), {summary.warnings} warnings, "
            f"{summary.failed} failed in {summary.seconds:.1f} s")
    if summary.failed:
        sys.exit(EXIT_SOME_FAILED)


def _scan_with_bar(store, paths, options, on_problem, console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from galprof.scan import scan as run_scan

    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("scanning", total=None, rate="")

        def on_progress(done: int, total: int) -> None:
            elapsed = progress.tasks[0].elapsed or 0
            rate = f"{done / elapsed:.1f} files/s" if elapsed and done else ""
            progress.update(task, completed=done, total=total, rate=rate)

        return run_scan(store, list(paths), options, on_progress=on_progress,
                        on_problem=on_problem)
