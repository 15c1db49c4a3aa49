"""`galprof models`: list, verify and install the model files of the manifest."""

from __future__ import annotations

import click

from galprof.cli.common import err_console, json_option, library_errors, print_json, quiet_option

# `models verify` exit statuses, for cron: corrupt outranks missing.
EXIT_MISSING = 1
EXIT_CORRUPT = 3


@click.group()
def models():
    """List, verify and install the model files galprof runs.

    Files live in the models directory: $GALPROF_MODELS, or `models` in the user data
    directory.

    \b
    Example:
        galprof models install --from ~/Downloads/galprof-models
        galprof models verify
        galprof models list --json
    """


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
            rows.append(_row("", "labels", spec, directory, False, False))
    return rows


def _row(model_id, role, spec, directory, default, optional) -> dict:
    from galprof.vision import manifest

    path = manifest.path_of(spec, directory)
    size = path.stat().st_size if path.is_file() else None
    return {
        "id": model_id, "role": role, "file": spec.file, "size": spec.size,
        "licence": spec.licence, "default": default, "optional": optional,
        # `list` stays fast: size only; `verify` checks the hashes.
        "installed": size == spec.size, "wrong_size": size is not None and size != spec.size,
        "path": str(path), "sha256": spec.sha256, "url": spec.url or None, "source": spec.source,
    }


@models.command(name="list")
@json_option
@library_errors
def list_models(as_json):
    """Show every model and label file: role, size, licence, installed or not.

    "installed" checks presence and size only; `galprof models verify` checks sha256.

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
    for column in ("id", "role", "file", "MB", "licence", "kind", "installed", "path"):
        table.add_column(column, justify="right" if column == "MB" else "left",
                         overflow="fold")
    for r in rows:
        kind = "default" if r["default"] else "optional" if r["optional"] else "required"
        installed = "yes" if r["installed"] else "WRONG SIZE" if r["wrong_size"] else "no"
        table.add_row(r["id"] or "-", r["role"], r["file"], f"{r['size'] / 1e6:.2f}",
                      r["licence"], kind, installed, r["path"] if r["installed"] else "-")
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
    missing optional file is not a problem.

    \b
    Example:
        galprof models verify
        galprof models verify --only mobilenet_v2 || galprof models install --from DIR
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
            click.echo("install them with: galprof models install --from DIR_OR_URL", err=True)
        raise SystemExit(EXIT_MISSING)


@models.command()
@click.option("--from", "source", metavar="DIR_OR_URL", default=None,
              help="Folder or http(s) base URL holding the files (BASE/<file name>). "
                   "Default: each file's own URL in the manifest, where it has one.")
@click.option("--only", "ids", multiple=True, metavar="ID",
              help="Install only this model id (with its label file) or manifest file name "
                   "(repeatable).")
@click.option("--no-optional", is_flag=True,
              help="Install only the default models and their label files.")
@quiet_option
@library_errors
def install(source, ids, no_optional, quiet):
    """Install model files into the models directory, checking every sha256.

    Each file is written to a temporary file, checked against the manifest, then
    renamed into place; a file that does not match is refused and never replaces a
    good one. A required file the source lacks is an error; an optional one is
    skipped. Exits 1 when any file was refused or could not be fetched.

    \b
    Example:
        galprof models install --from ~/Downloads/galprof-models
        galprof models install --from https://example.org/galprof-models --only mobilenet_v2
        galprof models install --only yolox_nano
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from galprof.paths import models_dir
    from galprof.vision.install import ERROR_STATUSES, install as install_files

    console = err_console()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   console=console, transient=True, disable=quiet or not console.is_terminal)
    tasks: dict[str, int] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done)

    with bar:
        results = install_files(source, ids=ids or None, include_optional=not no_optional,
                                progress=progress)

    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status in ERROR_STATUSES:
            click.echo(f"{r.status}: {r.message}", err=True)
        elif r.status == "skipped" and not quiet:
            click.echo(f"skipped (optional): {r.message}", err=True)
        elif r.status == "installed" and not quiet:
            click.echo(f"installed: {r.path}", err=True)
    order = ("installed", "present", "skipped", "refused", "failed")
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    if not quiet:
        click.echo(f"{summary or 'nothing to do'} in {models_dir()}")
    errors = sum(counts.get(s, 0) for s in ERROR_STATUSES)
    if errors:
        raise click.ClickException(f"{errors} file(s) not installed (see above)")
