"""`galprof people`: the people found in the faces, and the user's fixes to them."""

from __future__ import annotations

from pathlib import Path

import click

from galprof.cli.common import (db_option, json_option, library_errors, print_json, resolve_db,
                                shown)
from galprof.errors import GalprofError


def _open(db_path, read_only: bool = False):
    from galprof.store import open_store
    return open_store(resolve_db(db_path), create=False, read_only=read_only)


@click.group(invoke_without_command=True)
@click.pass_context
def people(ctx):
    """The people in your photos: list, inspect, name, merge and split them.

    Fixes are kept across re-scans and re-clustering.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_people)


@people.command("list")
@db_option
@json_option
@library_errors
def list_people(db_path, as_json):
    """List the people, most photographed first, with owner and relations.

    \b
    Example:
        galprof people list
        galprof people list --json
    """
    from galprof.profile import EMPTY_PEOPLE

    with _open(db_path, read_only=True) as store:
        facts = (store.passes.output("people") or {}).get("facts") or EMPTY_PEOPLE
    if as_json:
        print_json(facts)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="People")
    for col in ("id", "name", "role", "gender", "born", "photos", "videos", "first", "last"):
        table.add_column(col)
    for p in facts["people"]:
        table.add_row(str(p["id"]), Text(shown(p["name"] or "")), p["role"] or "",
                      p["gender"] or "", str(p["birth_year"] or ""), str(p["photos"]),
                      str(p["videos"]), p["first"] or "", p["last"] or "")
    console = Console()
    console.print(table)
    if facts["owner"] and facts["owner"]["guess"]:
        console.print("owner is a guess: no selfies found (front-camera EXIF)")


@people.command("show")
@click.argument("person_id", type=int)
@db_option
@json_option
@library_errors
def show_person(person_id, db_path, as_json):
    """List the photos and videos of one person.

    \b
    Example:
        galprof people show 3
    """
    with _open(db_path, read_only=True) as store:
        person = store.people.person(person_id)
        if person is None:
            raise GalprofError(f"no person with id {person_id} (see `galprof people list`)")
        media = store.people.media_of(person_id)
    data = {"id": person_id, "name": person["name"],
            "media": [{"path": m["path"], "faces": m["faces"], "manual": bool(m["manual"])}
                      for m in media]}
    if as_json:
        print_json(data)
        return
    click.echo(f"person {person_id}" + (f" ({shown(person['name'])})" if person["name"] else "")
               + f": {len(media)} media")
    for m in media:
        click.echo(f"  {shown(m['path'])}")


@people.command("name")
@click.argument("person_id", type=int)
@click.argument("name")
@db_option
@library_errors
def name_person(person_id, name, db_path):
    """Give a person a name (kept across re-scans).

    \b
    Example:
        galprof people name 3 "Anna"
    """
    from galprof.people import fixes

    with _open(db_path) as store:
        fixes.rename(store, person_id, name)
    click.echo(f"person {person_id} is now {shown(name)}")


@people.command("merge")
@click.argument("keep", type=int)
@click.argument("other", type=int)
@db_option
@library_errors
def merge_people(keep, other, db_path):
    """Merge person OTHER into person KEEP (the faces of both become KEEP's, fixed).

    \b
    Example:
        galprof people merge 3 7
    """
    from galprof.people import fixes

    with _open(db_path) as store:
        fixes.merge(store, keep, other)
    click.echo(f"merged person {other} into {keep}")


@people.command("split")
@click.argument("person_id", type=int)
@click.option("--media", "paths", multiple=True, required=True,
              type=click.Path(path_type=Path), help="A photo or video whose faces of this person move to a new person (repeatable).")
@db_option
@library_errors
def split_person(person_id, paths, db_path):
    """Move this person's faces in the given media to a new person (fixed by hand).

    \b
    Example:
        galprof people split 3 --media ~/DCIM/IMG_0042.jpg --media ~/DCIM/IMG_0043.jpg
    """
    from galprof.people import fixes

    with _open(db_path) as store:
        moved, new_id = fixes.split(store, person_id, list(paths))
    click.echo(f"moved {moved} face(s) of person {person_id} to new person {new_id}")


@people.command("recluster")
@db_option
@library_errors
def recluster(db_path):
    """Cluster all faces again from scratch, keeping names and manual fixes.

    \b
    Example:
        galprof people recluster
    """
    from galprof.people import fixes

    with _open(db_path) as store:
        stats = fixes.recluster(store)
        n = len((store.passes.output("people") or {}).get("facts", {}).get("people", []))
    click.echo(f"{stats['faces']} faces, {stats['clustered']} in clusters, {n} people")


@people.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
@library_errors
def purge(yes, db_path):
    """Delete every face-derived datum (biometric data) from the database file.

    Deleted: face boxes, ages, genders and identity features, the faces stage's cached
    results, and every person the faces alone made. Kept: the names you gave (as people
    with no faces) and your private marks. Until the next scan analyses the faces again,
    every photo counts as private. Old pages are zeroed and the write-ahead log folded
    in, so the data is gone from the file itself.

    \b
    Example:
        galprof people purge --yes
    """
    from galprof.people import fixes

    if not yes:
        click.confirm("Delete every face-derived datum from the database?", abort=True)
    with _open(db_path) as store:
        n = fixes.purge(store)
    click.echo(f"deleted {n} faces and everything derived from them")
