"""`galprof models list|verify|install` through CliRunner, on real files and a real HTTP server."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from galprof.cli import cli
from galprof.cli.models import models
from galprof.vision import manifest
from galprof.vision.manifest import sha256_of

SMALL = "face_detection_short_range.tflite"
MOBILENET = "mobilenet_v2_1.0_224_quant.tflite"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve(folder: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "models"
    monkeypatch.setenv("GALPROF_MODELS", str(path))
    return path


def run(*args):
    return CliRunner().invoke(cli, ["models", *args])


def test_install_from_folder_only_one_model(shared_models, models_dir):
    result = run("install", "--from", str(shared_models), "--only", "mobilenet_v2")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"2 installed in {models_dir}\n"
    assert sha256_of(models_dir / MOBILENET) == manifest.get("mobilenet_v2").sha256
    again = run("install", "--from", str(shared_models), "--only", "mobilenet_v2")
    assert again.exit_code == 0
    assert again.stdout == f"2 present in {models_dir}\n"


def test_install_tampered_over_http_exits_1_and_names_the_file(shared_models, models_dir,
                                                               tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    data = bytearray((shared_models / SMALL).read_bytes())
    data[1234] ^= 0x01
    (source / SMALL).write_bytes(bytes(data))
    with serve(source) as base:
        result = run("install", "--from", base, "--only", "blazeface_short")
    assert result.exit_code == 1
    refused = [line for line in result.stderr.splitlines() if line.startswith("refused:")]
    assert len(refused) == 1
    assert SMALL in refused[0] and manifest.get("blazeface_short").sha256 in refused[0]
    assert "Error: 1 file(s) not installed" in result.stderr
    assert not (models_dir / SMALL).exists()


def test_install_404_optional_is_skipped_with_exit_0(models_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve(empty) as base:
        result = run("install", "--from", base, "--only", "blazeface_short")
    assert result.exit_code == 0, result.output
    assert "skipped (optional)" in result.stderr and SMALL in result.stderr
    assert result.stdout == f"1 skipped in {models_dir}\n"


def test_install_without_from_needs_a_url(models_dir):
    result = run("install", "--only", "blazeface_full", "--quiet")
    assert result.exit_code == 1
    assert "face_detection_full_range.tflite" in result.stderr and "--from" in result.stderr
    assert result.stdout == ""


def test_install_bad_source_folder_is_one_line_error(models_dir, tmp_path):
    result = run("install", "--from", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "not a folder" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_install_unknown_id(models_dir, shared_models):
    result = run("install", "--from", str(shared_models), "--only", "nope")
    assert result.exit_code == 1
    assert "unknown model 'nope'" in result.stderr


def test_verify_all_ok_on_the_shared_models(shared_models, monkeypatch):
    monkeypatch.setenv("GALPROF_MODELS", str(shared_models))
    result = run("verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{len(manifest.files())} ok, 0 corrupt, 0 missing\n"


def test_verify_detects_corrupted_file_exit_3(shared_models, models_dir):
    assert run("install", "--from", str(shared_models), "--only", "mobilenet_v2").exit_code == 0
    model = models_dir / MOBILENET
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    result = run("verify", "--only", "mobilenet_v2")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0].startswith(f"mismatch: {model}: sha256 mismatch")
    assert result.stdout == "1 ok, 1 corrupt, 0 missing\n"


def test_verify_missing_required_exit_1_optional_is_fine(shared_models, models_dir):
    assert run("install", "--from", str(shared_models), "--only", "blazeface_short").exit_code == 0
    assert run("verify", "--only", "blazeface_short").exit_code == 0
    result = run("verify", "--only", "blazeface_full", "--only", "blazeface_short")
    assert result.exit_code == 1
    assert f"missing: {models_dir / 'face_detection_full_range.tflite'}: not installed" \
        in result.stderr
    assert "galprof models install" in result.stderr


def test_verify_json(shared_models, models_dir):
    run("install", "--from", str(shared_models), "--only", "blazeface_short")
    result = run("verify", "--json", "--only", "blazeface_short", "--only", "hse_faces")
    assert result.exit_code == 1
    rows = {r["file"]: r for r in json.loads(result.stdout)}
    assert rows[SMALL]["status"] == "ok"
    assert rows["hse_age_gender_identity_int8.tflite"]["status"] == "missing"


def test_list_json_shows_installed_paths(shared_models, models_dir):
    run("install", "--from", str(shared_models), "--only", "mobilenet_v2")
    result = run("list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    by_id = {r["id"]: r for r in rows if r["id"]}
    assert set(by_id) == set(manifest.models())
    assert by_id["mobilenet_v2"]["installed"] is True
    assert by_id["mobilenet_v2"]["path"] == str(models_dir / MOBILENET)
    assert by_id["mobilenet_v2"]["default"] is True and by_id["mobilenet_v2"]["size"] == 3610798
    assert by_id["yolox_nano"]["installed"] is False
    labels = {r["file"]: r for r in rows if r["role"] == "labels"}
    assert labels["imagenet_labels.txt"]["installed"] is True
    assert labels["coco80_labels.txt"]["installed"] is False


def test_list_table(shared_models, models_dir):
    run("install", "--from", str(shared_models), "--only", "mobilenet_v2")
    result = run("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"models directory: {models_dir}"
    mobilenet = next(line for line in lines if " mobilenet_v2 " in line)
    assert "scenes" in mobilenet and "default" in mobilenet and " yes " in mobilenet
    assert str(models_dir / MOBILENET) in mobilenet
    yolox = next(line for line in lines if " yolox_nano " in line)
    assert " no " in yolox


def _walk(group: click.Group):
    yield group
    for command in group.commands.values():
        yield from (_walk(command) if isinstance(command, click.Group) else [command])


@pytest.mark.parametrize("command", list(_walk(models)), ids=lambda c: c.name)
def test_help_has_summary_example_and_option_help(command):
    assert command.help and command.help.strip().splitlines()[0]
    assert re.search(r"\x08\s*\n\s*Example:", command.help)
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{command.name} {param.opts} has no help"
