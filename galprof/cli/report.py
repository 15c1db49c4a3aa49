"""`galprof report`: the profile as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from galprof.cli.common import (db_option, err_console, library_errors, quiet_option,
                                resolve_db, shown)


@click.command()
@db_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="HTML file to write.")
@click.option("--max-thumbs", type=click.IntRange(min=0), default=24, show_default=True,
              help="Previews embedded per category, place and person (the rest are counted).")
@click.option("--faces", type=click.Choice(["owner", "all", "none"]), default="owner",
              show_default=True,
              help="Whose face crops the page shows: only yours (the owner's), everyone's, "
                   "or none.")
@quiet_option
@library_errors
def report(db_path, out, max_thumbs, faces, quiet):
    """Write an HTML report of the profile: interests, places, demography, people.

    The page is one file with everything inline (no network when opened), readable by
    you only (0600); it holds small previews of your photos and their paths, so share
    it with care. No models run: it reads the database and the media files.

    \b
    Example:
        galprof report --out report.html
        galprof report --db phone.db --out phone.html --max-thumbs 12
        galprof report --out family.html --faces all
    """
    from galprof.profile import build_profile
    from galprof.report import build_report
    from galprof.store import open_store

    with open_store(resolve_db(db_path), read_only=True) as store:
        doc = build_profile(store)
    stats = build_report(doc, out, thumbs_per_category=max_thumbs, faces=faces)
    console = err_console()
    for line in stats.failed:
        console.print(f"no preview: {shown(line)}", markup=False, highlight=False)
    if not quiet:
        console.print(f"{shown(out)}: {stats.bytes / 1e6:.1f} MB, {stats.thumbnails} previews, "
                      f"{stats.faces} faces, {stats.seconds:.1f} s", markup=False, highlight=False)
