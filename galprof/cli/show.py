"""`galprof show`: everything the database knows about one media item."""

from __future__ import annotations

import os
from pathlib import Path

import click

from galprof.cli.common import (db_option, json_option, library_errors, print_json, resolve_db,
                                shown)
from galprof.errors import GalprofError


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@db_option
@json_option
@library_errors
def show(path, db_path, as_json):
    """Show metadata, frames, per-stage results and errors of one photo or video.

    \b
    Example:
        galprof show ~/DCIM/Camera/IMG_0001.jpg
        galprof show ~/DCIM/Camera/VID_0002.mp4 --json
    """
    from galprof.inspect import describe_media
    from galprof.store import open_store

    with open_store(resolve_db(db_path), read_only=True) as store:
        info = describe_media(store, os.path.abspath(path))
    if info is None:
        raise GalprofError(f"{shown(path)} is not in the database; scan its folder first")
    if as_json:
        print_json(info)
        return
    _print(info)


def _print(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from rich.text import Text

    console = Console(soft_wrap=True)      # a long path stays one line when piped
    m = info["media"]
    console.print(Text.assemble((shown(m["path"]), "bold"),
                                f"  ({m['kind']}, {m['format']}, {m['status']})"))
    if m.get("error"):
        console.print(Text("  " + shown(m["error"]), style="yellow"))
    meta = Table(show_header=False, box=None, padding=(0, 2))
    for key in ("taken_at", "make", "model", "lens_model", "focal_length", "width", "height",
                "orientation", "gps_lat", "gps_lon", "duration", "rotation", "selfie_reason",
                "motion_path"):
        if m.get(key) not in (None, "", 0) or key == "taken_at":
            meta.add_row(key, Text(shown(m.get(key))))
    console.print(meta)
    console.print(f"frames analysed: {len(info['frames'])}")
    for section in info.get("sections", []):
        console.print(Text(section["title"], style="bold"))
        for line in section["lines"]:
            console.print(Text("  " + shown(line)))
    for e in info["errors"]:
        console.print(Text.assemble((e["stage"], "red"), ": " + shown(e["message"])))
