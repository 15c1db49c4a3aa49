"""`galprof private`: which photos stay on this device, the user's marks, the upload log."""

from __future__ import annotations

from pathlib import Path

import click

from galprof.cli.common import (db_option, json_option, library_errors, print_json, resolve_db,
                                shown)


@click.group()
def private():
    """Private photos never leave the device: list them, mark them, audit uploads, purge.

    A photo is private when a large face fills its centre, when it shows a close
    person, when its faces are not clustered yet, when it is a document, a card, an ID
    page or a screenshot, or when you marked it. Your marks win both ways: `allow`
    makes an item public whatever the rules say.
    """


@private.command("mark")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@library_errors
def mark_cmd(paths, db_path):
    """Mark photos or videos (or every scanned item under a folder) private.

    Marks follow a file when it is moved or renamed and survive re-scans. A mark takes
    effect at once, also while a scan runs: its privacy pass and every upload check
    the marks again.

    \b
    Example:
        galprof private mark ~/DCIM/Camera/IMG_0042.jpg
        galprof private mark ~/DCIM/Family
    """
    from galprof import privacy
    from galprof.store import open_store

    with open_store(resolve_db(db_path)) as store:
        done = privacy.mark(store, list(paths))
    click.echo(f"marked {len(done)} item(s) private")


@private.command("allow")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@library_errors
def allow_cmd(paths, db_path):
    """Mark photos or videos (or every scanned item under a folder) public.

    A public mark wins over every automatic rule (faces, documents, screenshots), so
    the item may be sent to a remote tier; `unmark` takes it back.

    \b
    Example:
        galprof private allow ~/Pictures/Screenshots/Screenshot_20240501.png
    """
    from galprof import privacy
    from galprof.store import open_store

    with open_store(resolve_db(db_path)) as store:
        done = privacy.mark(store, list(paths), public=True)
    click.echo(f"marked {len(done)} item(s) public")


@private.command("unmark")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@library_errors
def unmark_cmd(paths, db_path):
    """Remove your marks, private or public (the automatic rules apply again).

    \b
    Example:
        galprof private unmark ~/DCIM/Camera/IMG_0042.jpg
    """
    from galprof import privacy
    from galprof.store import open_store

    with open_store(resolve_db(db_path), create=False) as store:
        done = privacy.unmark(store, list(paths))
    click.echo(f"unmarked {len(done)} item(s)")


@private.command("list")
@db_option
@json_option
@library_errors
def list_cmd(db_path, as_json):
    """List private items with the reasons they are private.

    \b
    Example:
        galprof private list
        galprof private list --json
    """
    from galprof import privacy
    from galprof.store import open_store

    with open_store(resolve_db(db_path), read_only=True) as store:
        items = privacy.list_private(store)
    if as_json:
        print_json(items)
        return
    for item in items:
        click.echo(shown(item["path"]) + ("  [marked]" if item["marked"] else ""))
        for reason in item["reasons"]:
            click.echo(f"    {shown(reason)}")
    click.echo(f"{len(items)} private item(s)", err=True)


@private.command("uploads")
@db_option
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Show only the newest N uploads.")
@json_option
@library_errors
def uploads_cmd(db_path, limit, as_json):
    """The audit log: every upload to a remote tier (time, file, size, server, status).

    \b
    Example:
        galprof private uploads --limit 20
        galprof private uploads --json
    """
    from galprof.store import open_store

    with open_store(resolve_db(db_path), read_only=True) as store:
        rows = store.privacy.uploads(limit)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        click.echo(f"{r['at']}  {r['status']:<6} {r['bytes']:>9} B  {r['images']:>2} img  "
                   f"{r['server']}  {shown(r['path'])}")
    click.echo(f"{len(rows)} upload(s)", err=True)


@private.command("purge")
@click.option("--faces/--no-faces", default=True, show_default=True,
              help="Delete face data: boxes, ages, genders, identity features.")
@click.option("--text/--no-text", default=True, show_default=True,
              help="Delete what the text stage read on documents.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
@library_errors
def purge_cmd(faces, text, yes, db_path):
    """Delete biometric data and recognised text from the database file.

    Faces: boxes, ages, genders and identity features, their cached results, and every
    person the faces alone made (names you gave stay, as people with no faces); every
    photo counts as private until the next scan analyses its faces again. Text: what was
    read on documents (redacted codes, card digits, prices, keywords); a document keeps
    its kind and reason, so it stays private. Old pages are zeroed and the write-ahead
    log folded in, so the data is gone from the file itself.

    \b
    Example:
        galprof private purge --yes
        galprof private purge --no-faces --yes
    """
    from galprof.purge import purge
    from galprof.store import open_store

    if not (faces or text):
        raise click.UsageError("nothing to purge: --no-faces and --no-text together")
    what = " and ".join(w for w, on in (("face data", faces), ("recognised text", text)) if on)
    if not yes:
        click.confirm(f"Delete all {what} from the database?", abort=True)
    with open_store(resolve_db(db_path), create=False) as store:
        counts = purge(store, faces=faces, text=text)
    click.echo(f"deleted {counts['faces']} faces and the text of {counts['texts']} item(s)")
