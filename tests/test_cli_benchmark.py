"""`galprof benchmark` end to end on a tiny generated set (figures are not asserted, only sane)."""

import json
import os
import shutil
import tempfile

import pytest
from click.testing import CliRunner
from PIL import Image

from galprof.cli import cli


def test_benchmark_json():
    r = CliRunner().invoke(cli, ["benchmark", "--models", "mobilenet_v2", "--runs", "2",
                                 "--photos", "3", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    (row,) = report["models"]
    assert row["model"] == "mobilenet_v2" and row["size_bytes"] == 3610798
    assert all(cell["mean_ms"] > 0 for cell in row["latency"])
    e2e = report["end_to_end"]
    assert e2e["media"] == 3 and e2e["frames"] == 3
    assert set(e2e["stage_seconds"]) == {"objects", "scenes"}
    assert e2e["photos_per_s"] > 0 and 0 <= e2e["outside_models_share"] <= 1
    assert e2e["peak_rss_mb"] > 10


def test_benchmark_generates_12mp_photos(tmp_path):
    from galprof.bench import generate_photos

    (p,) = generate_photos(tmp_path, 1)
    assert Image.open(p).size == (4000, 3000)


def test_benchmark_of_a_folder_names_the_files_it_could_not_read(testmedia, tmp_path):
    """`galprof benchmark PATH` on a user's folder: a broken file (a JPEG header and then
    junk, its name not UTF-8 and looking like markup) is named with its reason in the
    table and in --json, and the figures are of the media that were read."""
    folder = tmp_path / "DCIM"
    folder.mkdir()
    shutil.copy(testmedia / "exif/phone/pp_iPhoneSE_cat_brown.jpg", folder)
    (folder / os.fsdecode(b"\xffbad[red].jpg")).write_bytes(b"\xff\xd8\xff\xe0 not a picture")
    args = ["benchmark", str(folder), "--skip-latency", "--stages", "scenes"]
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    scan = json.loads(r.stdout)["folder"]
    assert scan["media"] == 1 and scan["failed"] == 1
    (failure,) = scan["failures"]
    assert failure["file"].endswith("bad[red].jpg") and "not a readable image" in failure["reason"]
    r = CliRunner().invoke(cli, args, env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert f"Scan of {folder}: 1 media (1 jpeg), 1 failed" in r.output
    assert "bad[red].jpg: not a readable image" in r.output


def test_benchmark_of_a_folder_measures_what_galprof_scan_does_there(testmedia, tmp_path):
    """`galprof benchmark PATH` scans the folder as it is with the stages `galprof scan`
    runs, reported as a roll is: per stage its time against its model calls, decodes by
    format (a HEIC from its preview), frames of a video, peak memory."""
    from galprof.stages import default_stages

    folder = tmp_path / "DCIM"
    folder.mkdir()
    for rel in ("exif/phone/pp_iPhoneSE_cat_brown.jpg", "exif/phone/pp_iPhone15Pro.heic",
                "videos/mei_swans_Issue_515.mp4"):
        shutil.copy(testmedia / rel, folder)
    r = CliRunner().invoke(cli, ["benchmark", str(folder), "--skip-latency", "--json"])
    assert r.exit_code == 0, r.output
    scan = json.loads(r.stdout)["folder"]
    assert scan["folder"] == str(folder) and scan["stage_names"] == list(default_stages())
    assert (scan["media"], scan["photos"], scan["videos"]) == (3, 2, 1)
    assert set(scan["stages"]) == set(default_stages())
    # (the HEIC's preview and then, for its small objects, its full picture)
    assert scan["stages"]["objects"]["models"]["yolox_nano"]["calls"] >= scan["frames_analysed"]
    assert {fmt: d["files"] for fmt, d in scan["decode"].items()} == \
        {"jpeg": 1, "heic": 1, "video": 1}
    assert scan["decode"]["heic"]["previews"] == 1 and scan["frames"] > 3
    # the iPhone's HEIC reaches the text detector: read again by the late pass
    assert scan["late_pass"]["items"] == scan["text"]["detected"] == \
        scan["decode"]["heic"]["read_again"] == 1
    assert scan["media_per_s"] > 0 and scan["peak_rss_mb"] > 10


def test_benchmark_runtime_onnx_scans_with_the_onnx_twins(testmedia, tmp_path):
    """--runtime onnx (Termux has no TFLite runtime): the measured scan runs the ONNX twins,
    as `galprof scan --runtime onnx` does."""
    folder = tmp_path / "DCIM"
    folder.mkdir()
    shutil.copy(testmedia / "faces/children/hse_family.jpg", folder)
    r = CliRunner().invoke(cli, ["benchmark", str(folder), "--runtime", "onnx", "--stages",
                                 "objects,faces", "--skip-latency", "--json"])
    assert r.exit_code == 0, r.output
    stages = json.loads(r.stdout)["folder"]["stages"]
    assert set(stages["objects"]["models"]) == {"yolox_nano_onnx"}
    assert set(stages["faces"]["models"]) == {"blazeface_full_onnx", "hse_faces_onnx"}
    assert stages["faces"]["models"]["hse_faces_onnx"]["calls"] >= 4     # a mother, three children


def test_benchmark_of_a_folder_and_clips_reports_both(testmedia, tmp_path, monkeypatch):
    """PATH with --clips: the folder's scan and the clips' (PATH is not left out)."""
    from galprof import bench

    monkeypatch.setattr(bench, "PHONE_CLIPS", (("small H.264 3 s", "libx264", (320, 180), 3,
                                                1_000_000),))
    folder = tmp_path / "DCIM"
    folder.mkdir()
    shutil.copy(testmedia / "exif/phone/pp_iPhoneSE_cat_brown.jpg", folder)
    r = CliRunner().invoke(cli, ["benchmark", str(folder), "--clips", "--stages", "scenes",
                                 "--skip-latency", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["folder"]["media"] == 1 and report["folder"]["folder"] == str(folder)
    (clip,) = report["clips"]
    assert clip["name"] == "small H.264 3 s" and clip["frames"] > 1 and clip["real_time"] > 0
    assert "end_to_end" not in report


def test_benchmark_of_a_folder_without_media_says_so(tmp_path):
    folder = tmp_path / "DCIM"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a picture")
    r = CliRunner().invoke(cli, ["benchmark", str(folder), "--skip-latency"])
    assert r.exit_code != 0
    assert f"no photos or videos to measure in {folder}" in r.output
    assert "End-to-end scan" not in r.output


def test_benchmark_of_a_folder_without_its_models_says_what_is_missing(testmedia, tmp_path,
                                                                        monkeypatch):
    """Missing models are named, with the install command, before anything is timed or
    made: a folder's scan, a roll (copies of a user's media), 4K clips (minutes to encode)."""
    folder = tmp_path / "DCIM"
    folder.mkdir()
    shutil.copy(testmedia / "exif/phone/pp_iPhoneSE_cat_brown.jpg", folder)
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("GALPROF_MODELS", str(empty))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for args in ([str(folder)], [str(folder), "--roll", "3"], ["--clips"],
                 ["--stages", "scenes", "--models", "mobilenet_v2"]):
        r = CliRunner().invoke(cli, ["benchmark", *args])
        assert r.exit_code == 1, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        assert "model files not installed (" in r.output, args
        assert "install them with: galprof models install" in r.output
        assert "mobilenet_v2_1.0_224_quant.tflite" in r.output
        assert "latency" not in r.output and "measured scan" not in r.output
        assert not any(scratch.iterdir())         # no roll, clip or photo was written


def test_a_measured_scan_that_fails_gives_its_one_line_reason(testmedia, tmp_path, monkeypatch):
    """The child scan's error (here a model file missing under the benchmark's checks),
    not a traceback's tail."""
    from galprof import bench
    from galprof.errors import GalprofError

    folder = tmp_path / "DCIM"
    folder.mkdir()
    shutil.copy(testmedia / "exif/phone/pp_iPhoneSE_cat_brown.jpg", folder)
    monkeypatch.setenv("GALPROF_MODELS", str(tmp_path))
    with pytest.raises(GalprofError) as e:
        bench.measured_scan(folder, ["objects"])
    assert str(e.value) == ("the measured scan failed (exit 1): model file yolox_nano.tflite "
                            f"is not installed in {tmp_path}; install it with: galprof models "
                            "install")


def test_benchmark_with_an_unknown_stage_is_a_usage_error():
    r = CliRunner().invoke(cli, ["benchmark", "--stages", "objects,colour", "--skip-latency"])
    assert r.exit_code != 0
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert ("Invalid value for '--stages': unknown stage(s) colour; choose from objects, "
            "scenes, faces, text or 'none'") in r.output
    assert "measured scan" not in r.output


def test_benchmark_repeat_reports_the_median_scan_and_every_run(testmedia, tmp_path):
    """--repeat N: N scans of the same folder (and of one roll built from it), the median
    run reported (of an even count the slower middle one) with every run's figures."""
    folder = tmp_path / "DCIM"
    folder.mkdir()
    for rel in ("exif/phone/pp_iPhoneSE_cat_brown.jpg", "exif/phone/pp_iPhone15Pro.heic"):
        shutil.copy(testmedia / rel, folder)
    args = ["benchmark", str(folder), "--skip-latency", "--stages", "scenes", "--repeat"]
    r = CliRunner().invoke(cli, [*args, "3", "--json"])
    assert r.exit_code == 0, r.output
    scan = json.loads(r.stdout)["folder"]
    rates = [run["media_per_s"] for run in scan["runs"]]
    assert len(rates) == 3 and scan["media_per_s"] == sorted(rates)[1]
    assert scan["media"] == 2
    assert all(run["seconds"] > 0 and run["peak_rss_mb"] > 10 for run in scan["runs"])
    assert scan["peak_rss_mb"] in [run["peak_rss_mb"] for run in scan["runs"]]

    r = CliRunner().invoke(cli, [*args, "2", "--roll", "4", "--json"])
    assert r.exit_code == 0, r.output
    roll = json.loads(r.stdout)["roll"]
    rates = [run["media_per_s"] for run in roll["runs"]]
    assert len(rates) == 2 and roll["media_per_s"] == min(rates) and roll["media"] == 4
    assert all(run["cpu_seconds"] > 0 for run in roll["runs"])

    r = CliRunner().invoke(cli, [*args, "2"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert "2 scans: " in r.output and "shown: the median run (the slower middle one)" in r.output
