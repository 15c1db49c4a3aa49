"""`galprof errors`: every file that fails now, with its reason."""

from __future__ import annotations

import click

from galprof.cli.common import db_option, json_option, library_errors, print_json, resolve_db, shown


@click.command()
@db_option
@json_option
@library_errors
def errors(db_path, as_json):
    """List the files that cannot be read or analysed, and why.

    A scan reports a failure once, when it is new (exit status 3); later scans stay
    quiet about it (exit 0) until the file changes or a stage's model is updated,
    and this command lists every known failure: unreadable files, stages that failed
    on a file, and what the last walk could not open.

    \b
    Example:
        galprof errors
        galprof errors --json
    """
    from galprof.store import open_store

    with open_store(resolve_db(db_path), read_only=True) as store:
        rows = store.media.known_failures()
    if as_json:
        print_json(rows)
        return
    for r in rows:
        click.echo(f"{shown(r['path'])}: {r['stage']}: {shown(r['reason'])}")
    click.echo(f"{len(rows)} known failure(s)", err=True)
