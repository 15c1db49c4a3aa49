"""Options and helpers shared by the CLI modules."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from galprof.errors import GalprofError


def db_option(f):
    return click.option(
        "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        envvar="GALPROF_DB", show_envvar=True,
        help="SQLite database file (default: galprof.db in the user data dir).")(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True,
                        help="Print only errors (for cron); no progress bar.")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="Threads for model inference (default: all cores).")(f)


def library_errors(f):
    """Turn the library's typed errors into `Error: ...` and exit status 1."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except GalprofError as e:
            raise click.ClickException(str(e)) from e
    return wrapper


def resolve_db(db_path: Path | None) -> Path:
    from galprof.paths import default_db
    return db_path or default_db()


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def err_console():
    from rich.console import Console
    return Console(stderr=True)
