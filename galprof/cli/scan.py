"""`galprof scan`: read a gallery into the database (options and output; the work is
`galprof.pipeline.run`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from galprof.cli.common import (db_option, err_console, json_option, library_errors,
                                model_options, models_for_runtime, print_json, quiet_option,
                                resolve_db, scan_runtime_option, shown, stage_list_option,
                                threads_option)
from galprof.cli.models import install_missing

# Exit status when the scan finished but some files failed for the first time (for cron).
EXIT_SOME_FAILED = 3


@click.command()
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(path_type=Path, exists=False))
@db_option
@click.option("--frame-step", type=click.IntRange(min=1), default=5, show_default=True,
              help="Analyse every N-th video frame (changing it re-samples videos only).")
@click.option("--max-frames", type=click.IntRange(min=1), default=40, show_default=True,
              help="At most this many frames per video (the step widens for long videos).")
@click.option("--max-decode-mb", type=click.IntRange(min=16), default=512, show_default=True,
              help="Memory one full-size decode may take; larger images that cannot be "
                   "decoded reduced (PNG, HEIC, WebP) are refused with a message.")
@threads_option(help="Threads of each model call (default: half the cores; two frames "
                     "are analysed at once).")
@stage_list_option
@model_options
@scan_runtime_option
@click.option("--offline", is_flag=True, envvar="GALPROF_OFFLINE", show_envvar=True,
              help="Never download: a missing model is an error naming the command that "
                   "installs it (the default when not on a terminal, e.g. from cron).")
@click.option("--remote", "remote_url", metavar="URL", default=None,
              help="After the device scan, send public photos to this `galprof serve` (docs/remote.md).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Bearer token for --remote (default: $GALPROF_REMOTE_TOKEN).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="CA certificate (PEM) that signed the --remote server's "
                                 "certificate, for a self-signed server.")
@quiet_option
@json_option
@library_errors
def scan(paths, db_path, frame_step, max_frames, max_decode_mb, threads, stage_names, models,
         runtime, offline, remote_url, token_file, ca_file, quiet, as_json):
    """Scan photo/video folders (or files) into the database.

    Only new and changed files are read again; moved files keep their results and
    deleted ones drop out; the gallery passes (people, privacy, places) run when their
    inputs changed. On a terminal, missing default models are installed first (their
    sizes shown, a bar per file); from cron or with --offline they are an error. Exit status: 0 when nothing new failed, 1 for usage or setup
    errors (or a model that fails on every file), 3 when some files failed for the
    first time (`galprof errors` lists every known failure).

    \b
    Example:
        galprof scan ~/DCIM
        galprof scan /sdcard/DCIM /sdcard/Pictures --quiet      # from cron
        galprof scan ~/Pictures --json > summary.json
        galprof scan ~/DCIM --remote https://gpu.example.org --token-file ~/.galprof-token
    """
    from galprof.pipeline import RemoteSettings, Settings, run
    from galprof.stages import build_stages
    from galprof.store import open_store

    console = err_console()
    remote = None
    if remote_url:
        from galprof.remote.client import check_url, read_token
        token = read_token(token_file, on_warning=lambda text: console.print(
            f"warning: {shown(text)}", markup=False, highlight=False))
        remote = RemoteSettings(check_url(remote_url), token, ca_file)
    stages = build_stages(stage_names, threads=threads, models=models_for_runtime(models, runtime))
    install_missing(stages, console, offline, quiet)
    settings = Settings(stages=stages,
                        frame_step=frame_step, max_frames=max_frames,
                        max_decode_mb=max_decode_mb, remote=remote)

    def on_problem(path: str, level: str, reason: str) -> None:
        if level == "error" or not quiet:
            console.print(f"{level}: {shown(path)}: {shown(reason)}", markup=False,
                          highlight=False, soft_wrap=True)

    with open_store(resolve_db(db_path)) as store:
        if not quiet and console.is_terminal:
            summary = _run_with_bar(store, paths, settings, on_problem, console)
        else:
            summary = run(store, list(paths), settings, on_problem=on_problem)
    if as_json:
        print_json(summary.to_dict())
    elif not quiet:
        click.echo(
            f"{summary.photos} photos, {summary.videos} videos under {len(summary.roots)} root(s): "
            f"{summary.new} new, {summary.changed} changed, {summary.moved} moved, "
            f"{summary.removed} removed, {summary.unchanged} unchanged; "
            f"{summary.analysed} read ({summary.frames} frames), {summary.warnings} warnings, "
            f"{summary.failed} failed in {summary.seconds:.1f} s"
            + (f"; {summary.known_failures} known failures (galprof errors)"
               if summary.known_failures else ""))
    if summary.failed:
        sys.exit(EXIT_SOME_FAILED)


def _run_with_bar(store, paths, settings, on_problem, console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from galprof.pipeline import run

    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("scanning", total=None, rate="")

        def on_progress(done: int, total: int, phase: str) -> None:
            elapsed = progress.tasks[0].elapsed or 0
            rate = f"{done / elapsed:.1f} files/s" if elapsed and done else ""
            progress.update(task, completed=done, total=total, rate=rate, description=phase)

        return run(store, list(paths), settings, on_progress=on_progress, on_problem=on_problem)
