"""Options and helpers shared by the CLI modules."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path

import click

from galprof.errors import GalprofError

# Control characters (C0, DEL, C1) and the bidirectional overrides that could make a
# file name rewrite the terminal or read backwards.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text) -> str:
    """User-supplied text (a file name, a person's name) made safe to print: bytes that
    are not UTF-8 as \\xNN, control and direction characters escaped. Print it with
    markup off (or as rich `Text`): brackets stay brackets."""
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def safe_json(value):
    """A JSON-ready copy with every string made valid UTF-8 (undecodable bytes of file
    names as U+FFFD), so that --json output never fails on a strange file name."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {safe_json(k): safe_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_json(v) for v in value]
    return value


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


def threads_option(f=None, *, help="Threads for model inference (default: all cores)."):
    option = click.option("--threads", type=click.IntRange(min=1), default=None, help=help)
    return option(f) if f is not None else option


def library_errors(f):
    """Turn the library's typed errors, and a database that fails under it (full disk,
    read-only file), into `Error: ...` on one line and exit status 1."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        import sqlite3

        try:
            return f(*args, **kwargs)
        except GalprofError as e:
            raise click.ClickException(shown(e)) from e
        except sqlite3.Error as e:
            from galprof.store.db import explain
            raise click.ClickException(shown(explain(resolve_db(kwargs.get("db_path")), e))) from e
    return wrapper


def resolve_db(db_path: Path | None) -> Path:
    from galprof.paths import default_db
    return db_path or default_db()


def print_json(data) -> None:
    json.dump(safe_json(data), sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def parse_stages(value: str) -> list[str]:
    """A --stages value as stage names ('none': no stage); an unknown name is a usage error."""
    from galprof.stages import REGISTRY

    names = [] if value.strip().lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise click.BadParameter(f"unknown stage(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(REGISTRY)} or 'none'",
                                 param_hint="'--stages'")
    return names


def _stage_list(ctx, param, value: str) -> list[str]:
    return parse_stages(value)


def stage_list_option(f):
    from galprof.stages import default_stages
    return click.option("--stages", "stage_names", default=lambda: ",".join(default_stages()),
                        show_default="objects,scenes,faces, and text with the text extra",
                        callback=_stage_list,
                        help="Comma-separated analysis stages to run, or 'none' for metadata "
                             "and pixels only.")(f)


# Option name -> manifest role of the model it picks.
MODEL_OPTIONS = {"object_model": "objects", "scene_model": "scenes",
                 "face_detector": "face_detector", "face_model": "face_analyzer"}


def model_options(f):
    """--object-model, --scene-model, --face-detector, --face-model: the choices are the
    manifest's models of each role; the command gets them as `models` (role -> id)."""
    from galprof.vision import manifest

    helps = {"objects": "Object detector", "scenes": "Scene classifier",
             "face_detector": "Face detector", "face_analyzer": "Face identity/age/gender model"}

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        kwargs["models"] = {role: kwargs.pop(name) for name, role in MODEL_OPTIONS.items()}
        return f(*args, **kwargs)

    for name, role in reversed(MODEL_OPTIONS.items()):
        default = manifest.default_for(role).id
        wrapper = click.option(
            "--" + name.replace("_", "-"), name, type=click.Choice(manifest.ids_for(role)),
            default=None, help=f"{helps[role]} (default: {default}; see `galprof models list`).")(wrapper)
    return wrapper


# `galprof scan` and `galprof benchmark`: which runtime's files the stages run.
scan_runtime_option = click.option(
    "--runtime", type=click.Choice(["tflite", "onnx"]), default="tflite", show_default=True,
    help="Run the TFLite models, or their ONNX twins (onnxruntime, e.g. on Termux).")


def models_for_runtime(models: dict | None, runtime: str) -> dict:
    """Each role's chosen model (model_options; None: its default) as the twin for
    `runtime`; with no choices, every role's default."""
    from galprof.vision import manifest

    models = models or dict.fromkeys(MODEL_OPTIONS.values())
    if runtime == "tflite":
        return models
    chosen = {}
    for role, model_id in models.items():
        spec = manifest.get(model_id) if model_id else manifest.default_for(role)
        chosen[role] = manifest.for_runtime(spec, runtime).id
    return chosen


def err_console():
    from rich.console import Console
    return Console(stderr=True, soft_wrap=True)     # one problem, one line, also when piped
