"""`galprof profile`: the user-interest profile, from the database only."""

from __future__ import annotations

import json
from pathlib import Path

import click

from galprof.cli.common import db_option, json_option, library_errors, print_json, resolve_db


@click.command()
@db_option
@json_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON profile to this file.")
@library_errors
def profile(db_path, as_json, out):
    """Show or write the user-interest profile (no models run: it reads the database).

    \b
    Example:
        galprof profile
        galprof profile --json > profile.json
        galprof profile --out profile.json
    """
    from galprof.profile import build_profile
    from galprof.store import open_store

    with open_store(resolve_db(db_path), read_only=True) as store:
        doc = build_profile(store)
    if out:
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    if as_json:
        print_json(doc)
    elif not out:
        _summary(doc)


def _summary(doc: dict) -> None:
    try:
        from galprof.report.terminal import render_summary
    except ImportError:
        render_summary = None
    from rich.console import Console

    console = Console()
    if render_summary is not None:
        render_summary(doc, console)
        return
    g = doc["gallery"]
    console.print(f"{g['photos']} photos, {g['videos']} videos, {g['frames']} frames analysed, "
                  f"{g['failed']} failed")
    for c in doc["categories"]:
        console.print(f"  {c['group']:<20} {c['media']:>5}  {c['share']:.0%}")
