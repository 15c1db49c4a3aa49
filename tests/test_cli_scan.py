"""`galprof scan`, `show`, `profile` and `--version` through click, on real media."""

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from galprof import __version__
from galprof.cli import cli
from galprof.profile import schema


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def small_gallery(tmp_path, testmedia):
    root = tmp_path / "Camera"
    root.mkdir()
    for rel in ["exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg", "exif/phone/ias_HMD_Nokia_8.3_5G.jpg",
                "exif/selfie/dc_iPhone13Pro_IMG_8569_front_camera.HEIC", "videos/rotated_iPhone6_with-gps.mov"]:
        shutil.copyfile(testmedia / rel, root / Path(rel).name)
    return root


def test_version(runner):
    r = runner.invoke(cli, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_scan_json_then_unchanged(runner, tmp_path, small_gallery):
    db = str(tmp_path / "g.db")
    r = runner.invoke(cli, ["scan", str(small_gallery), "--db", db, "--stages", "none", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["photos"], s["videos"], s["new"], s["failed"]) == (3, 1, 4, 0)
    assert s["frames"] > 4
    r = runner.invoke(cli, ["scan", str(small_gallery), "--db", db, "--stages", "none", "--json"])
    assert json.loads(r.stdout)["unchanged"] == 4


def test_scan_exit_codes(runner, tmp_path, testmedia):
    db = str(tmp_path / "g.db")
    r = runner.invoke(cli, ["scan", str(tmp_path / "missing"), "--db", db, "--stages", "none"])
    assert r.exit_code == 1
    assert "no such file or folder" in r.output
    r = runner.invoke(cli, ["scan", str(testmedia / "corrupt"), "--db", db, "--stages", "none",
                            "--quiet"])
    assert r.exit_code == 3
    lines = [l for l in r.stderr.splitlines() if l]
    # --quiet: only the failures, one line each, naming the file and the reason
    assert len(lines) == 6 and all(l.startswith("error: ") for l in lines)
    assert any("phf_empty.heic: empty file (0 bytes)" in l for l in lines)
    assert r.stdout == ""
    r = runner.invoke(cli, ["scan", str(tmp_path), "--db", db, "--stages", "bogus"])
    assert r.exit_code == 1 and "unknown stage" in r.output      # usage errors exit 1 too


def test_db_from_environment(runner, tmp_path, small_gallery, monkeypatch):
    db = tmp_path / "env.db"
    monkeypatch.setenv("GALPROF_DB", str(db))
    r = runner.invoke(cli, ["scan", str(small_gallery), "--stages", "none", "--quiet"])
    assert r.exit_code == 0 and db.exists()


def test_default_db_lives_in_the_data_dir(runner, small_gallery, isolated_home):
    r = runner.invoke(cli, ["scan", str(small_gallery), "--stages", "none", "--quiet"])
    assert r.exit_code == 0
    assert (isolated_home / "galprof.db").exists()


def test_show(runner, tmp_path, small_gallery):
    db = str(tmp_path / "g.db")
    runner.invoke(cli, ["scan", str(small_gallery), "--db", db, "--stages", "none", "--quiet"])
    video = small_gallery / "rotated_iPhone6_with-gps.mov"
    r = runner.invoke(cli, ["show", str(video), "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["media"]["rotation"] == -90 and info["media"]["gps_lat"] == pytest.approx(32.0929)
    assert len(info["frames"]) > 3
    r = runner.invoke(cli, ["show", str(small_gallery / "dc_iPhone13Pro_IMG_8569_front_camera.HEIC"),
                            "--db", db])
    assert "front-camera lens model" in r.output
    r = runner.invoke(cli, ["show", str(tmp_path / "nope.jpg"), "--db", db])
    assert r.exit_code == 1 and "not in the database" in r.output


def test_profile_json_validates(runner, tmp_path, small_gallery):
    db = str(tmp_path / "g.db")
    runner.invoke(cli, ["scan", str(small_gallery), "--db", db, "--stages", "none", "--quiet"])
    out = tmp_path / "p.json"
    r = runner.invoke(cli, ["profile", "--db", db, "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, schema())
    assert json.loads(out.read_text())["gallery"] == doc["gallery"]
    assert doc["gallery"]["photos"] == 3 and doc["gallery"]["videos"] == 1
    months = {t["month"]: t["media"] for t in doc["timeline"]}
    assert months["2019-07"] == 1 and months["2021-09"] == 1
    assert {"make": "Apple", "model": "iPhone 13 Pro", "media": 1} in doc["cameras"]
    r = runner.invoke(cli, ["profile", "--db", db])
    assert r.exit_code == 0 and "3 photos" in " ".join(r.output.split())


def test_profile_without_database(runner, tmp_path):
    r = runner.invoke(cli, ["profile", "--db", str(tmp_path / "none.db")])
    assert r.exit_code == 1 and "galprof scan" in r.output


def test_missing_model_names_the_install_command(runner, tmp_path, small_gallery, monkeypatch):
    """Not on a terminal (cron), or --offline: never a download, one line with the command."""
    monkeypatch.setenv("GALPROF_MODELS", str(tmp_path / "no-models"))
    for extra in ([], ["--offline"]):
        r = runner.invoke(cli, ["scan", str(small_gallery), "--db", str(tmp_path / "g.db"), *extra])
        assert r.exit_code == 1
        assert "yolox_nano.tflite" in r.output
        assert r.output.rstrip().endswith("install them with: galprof models install")
    assert not (tmp_path / "no-models").exists() or not any((tmp_path / "no-models").iterdir())


def _on_a_terminal(cmd: list[str], env: dict) -> tuple[int, str]:
    """Run cmd with stdin and stderr on a pseudo-terminal; (exit status, what it showed)."""
    import os
    import pty
    import subprocess

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=subprocess.PIPE, stderr=slave,
                            env={**os.environ, "COLUMNS": "120", **env})
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    proc.wait()
    os.close(master)
    return proc.returncode, shown.decode(errors="replace")


def test_first_use_on_a_terminal_installs_the_missing_models_then_scans(tmp_path, small_gallery,
                                                                        shared_models):
    import sys

    from model_sources import serve

    from galprof.store import open_store

    models = tmp_path / "models"
    with serve(shared_models) as mirror:       # stands in for the upstream URLs
        code, text = _on_a_terminal(
            [sys.executable, "-m", "galprof", "scan", str(small_gallery), "--db",
             str(tmp_path / "g.db"), "--stages", "scenes"],
            {"GALPROF_MODELS": str(models), "GALPROF_MODELS_MIRROR": mirror})
    assert code == 0, text
    assert "2 file(s) to install" in text and "mobilenet_v2_1.0_224_quant.tflite" in text
    assert (models / "mobilenet_v2_1.0_224_quant.tflite").stat().st_size == 3610798
    store = open_store(tmp_path / "g.db")
    photo = next(r for r in store.media.present() if r["kind"] == "photo")
    assert store.results.payload(photo["content_hash"], "scenes").scenes


def test_progress_bar_on_a_terminal(tmp_path, small_gallery):
    """On a terminal (stderr is a tty) scan shows a progress bar with files and rate."""
    import sys

    code, text = _on_a_terminal([sys.executable, "-m", "galprof", "scan", str(small_gallery),
                                 "--db", str(tmp_path / "g.db"), "--stages", "none"], {})
    assert code == 0
    assert "scanning" in text and "4/4" in text and "files/s" in text


def test_progress_bar_names_the_late_pass(tmp_path, testmedia, shared_models):
    """While the late pass reads the documents again, the bar says so, and it ends with
    every file counted."""
    import sys

    import text_samples
    pytest.importorskip("rapidocr_onnxruntime")
    root = tmp_path / "DCIM"
    root.mkdir()
    (root / "IMG_0001.jpg").write_bytes(text_samples.generated_set(1)[0].data)   # a passport
    shutil.copyfile(testmedia / "exif/phone/pp_iPhoneSE_cat_brown.jpg", root / "IMG_0002.jpg")
    code, text = _on_a_terminal([sys.executable, "-m", "galprof", "scan", str(root), "--db",
                                 str(tmp_path / "g.db")], {"GALPROF_MODELS": str(shared_models)})
    assert code == 0, text
    assert "scanning" in text and "late pass: text" in text and "2/2" in text
