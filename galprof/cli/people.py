"""`galprof people`: the people found in the faces, and the user's fixes to them."""

from __future__ import annotations

import os
from pathlib import Path

import click

from galprof.cli.common import db_option, json_option, library_errors, print_json, resolve_db
from galprof.errors import GalprofError


def _open(db_path):
    from galprof.store import open_store
    return open_store(resolve_db(db_path), create=False)


def _person(store, person_id: int):
    row = store.conn.execute("SELECT * FROM people WHERE id = ?", (person_id,)).fetchone()
    if row is None:
        raise GalprofError(f"no person with id {person_id} (see `galprof people list`)")
    return row


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
    from galprof.people.gallery import profile_sections

    with _open(db_path) as store:
        sections = profile_sections(store)
    if as_json:
        print_json(sections)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="People")
    for col in ("id", "name", "role", "gender", "born", "photos", "videos", "first", "last"):
        table.add_column(col)
    for p in sections["people"]:
        table.add_row(str(p["id"]), p["name"] or "", p["role"] or "", p["gender"] or "",
                      str(p["birth_year"] or ""), str(p["photos"]), str(p["videos"]),
                      p["first"] or "", p["last"] or "")
    console = Console()
    console.print(table)
    if sections["owner"] and sections["owner"]["guess"]:
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
    with _open(db_path) as store:
        person = _person(store, person_id)
        rows = store.conn.execute(
            "SELECT m.path, count(*) AS faces, max(f.manual) AS manual FROM faces f "
            "JOIN media m ON m.id = f.media_id WHERE f.person_id = ? GROUP BY m.path ORDER BY m.path",
            (person_id,)).fetchall()
    data = {"id": person_id, "name": person["name"],
            "media": [{"path": r["path"], "faces": r["faces"], "manual": bool(r["manual"])} for r in rows]}
    if as_json:
        print_json(data)
        return
    click.echo(f"person {person_id}" + (f" ({person['name']})" if person["name"] else "")
               + f": {len(rows)} media")
    for r in rows:
        click.echo(f"  {r['path']}")


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
    with _open(db_path) as store:
        _person(store, person_id)
        store.conn.execute("UPDATE people SET name = ?, manual = 1 WHERE id = ?", (name, person_id))
    click.echo(f"person {person_id} is now {name}")


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
    from galprof.people.gallery import update_centroids

    with _open(db_path) as store:
        _person(store, keep)
        row = _person(store, other)
        conn = store.conn
        conn.execute("BEGIN")
        conn.execute("UPDATE faces SET person_id = ?, manual = 1 WHERE person_id = ?", (keep, other))
        if row["name"]:
            conn.execute("UPDATE people SET name = coalesce(name, ?) WHERE id = ?", (row["name"], keep))
        conn.execute("UPDATE people SET manual = 1 WHERE id = ?", (keep,))
        conn.execute("DELETE FROM people WHERE id = ?", (other,))
        update_centroids(store)
        conn.execute("COMMIT")
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
    from galprof.people.gallery import new_person, update_centroids

    with _open(db_path) as store:
        _person(store, person_id)
        conn = store.conn
        conn.execute("BEGIN")
        new_id = new_person(store)
        conn.execute("UPDATE people SET manual = 1 WHERE id = ?", (new_id,))
        moved = 0
        for p in paths:
            moved += conn.execute(
                "UPDATE faces SET person_id = ?, manual = 1 WHERE person_id = ? AND media_id = "
                "(SELECT id FROM media WHERE path = ?)", (new_id, person_id, os.path.abspath(p))).rowcount
        if not moved:
            conn.execute("ROLLBACK")
            raise GalprofError(f"person {person_id} has no face in the given media")
        update_centroids(store)
        conn.execute("COMMIT")
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
    from galprof.people.gallery import update_people

    with _open(db_path) as store:
        stats = update_people(store, full=True)
        n = store.conn.execute("SELECT count(*) FROM people").fetchone()[0]
    click.echo(f"{stats['faces']} faces, {stats['clustered']} in clusters, {n} people")


@people.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
@library_errors
def purge(yes, db_path):
    """Delete all face features (biometric data) from the database.

    People keep their ids and names; the next scan computes features again.

    \b
    Example:
        galprof people purge --yes
    """
    from galprof.people.gallery import purge_biometrics

    if not yes:
        click.confirm("Delete every face feature from the database?", abort=True)
    with _open(db_path) as store:
        n = purge_biometrics(store)
    click.echo(f"deleted the features of {n} faces")
