"""galprof.vision.install: real copies from ../shared/models and real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from galprof.errors import SetupError, UnknownModel
from galprof.vision import install as inst
from galprof.vision import manifest
from galprof.vision.manifest import sha256_of

SMALL = "face_detection_short_range.tflite"      # optional model, no label file, 229 kB


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve(folder: Path, handler=QuietHandler):
    """A real HTTP server on 127.0.0.1 serving folder; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"   # trailing slash is fine
    finally:
        server.shutdown()
        server.server_close()


def copy_of(shared_models: Path, tmp_path: Path, names) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    for name in names:
        shutil.copyfile(shared_models / name, folder / name)
    return folder


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def by_file(results):
    return {r.file: r for r in results}


def copied(spec) -> str:
    """What installing a file does: copy it, or find it inside its Python package (the
    text extra's models; present when the package is installed, else skipped)."""
    if not spec.package:
        return "installed"
    return "present" if manifest.package_path(spec) else "skipped"


def test_install_from_folder_then_verify(shared_models, tmp_path):
    dest = tmp_path / "models"
    results = inst.install(shared_models, dest)
    assert {r.file for r in results} == set(manifest.files())
    specs = manifest.files()
    assert all(r.status == copied(specs[r.file]) for r in results), \
        [r for r in results if not r.ok]
    for name, spec in specs.items():
        assert sha256_of(manifest.path_of(spec, dest)) == spec.sha256
    assert all(v.status == "ok" for v in inst.verify(dest))
    assert not list(dest.glob("*.part"))
    # a second run finds every file in place and copies nothing
    again = inst.install(shared_models, dest)
    assert {r.status for r in again} == {"present"}


def test_install_over_http_all_files(shared_models, tmp_path):
    dest = tmp_path / "models"
    with serve(shared_models) as base:
        results = inst.install(base, dest)
    assert [r.status for r in results] == [copied(s) for s in manifest.files().values()]
    for name, spec in manifest.files().items():
        assert sha256_of(manifest.path_of(spec, dest)) == spec.sha256


def test_install_only_takes_the_label_file_along(shared_models, tmp_path):
    dest = tmp_path / "models"
    with serve(shared_models) as base:
        results = inst.install(base, dest, ids=["mobilenet_v2"])
    assert {r.file: r.status for r in results} == {
        "imagenet_labels.txt": "installed", "mobilenet_v2_1.0_224_quant.tflite": "installed"}
    assert sorted(p.name for p in dest.iterdir()) == [
        "imagenet_labels.txt", "mobilenet_v2_1.0_224_quant.tflite"]


def test_tampered_download_is_refused_and_not_installed(shared_models, tmp_path):
    source = copy_of(shared_models, tmp_path, [SMALL])
    flip_byte(source / SMALL)
    tampered_hash = sha256_of(source / SMALL)
    dest = tmp_path / "models"
    with serve(source) as base:
        [result] = inst.install(base, dest, ids=["blazeface_short"])
    assert result.status == "refused" and not result.ok
    expected = manifest.get("blazeface_short").sha256
    assert SMALL in result.message
    assert expected in result.message and tampered_hash in result.message
    assert not (dest / SMALL).exists()
    assert list(dest.iterdir()) == []       # the temp file is gone too


def test_good_file_is_not_clobbered_by_tampered_source(shared_models, tmp_path):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=["blazeface_short"])
    good = (dest / SMALL).read_bytes()
    source = copy_of(shared_models, tmp_path, [SMALL])
    flip_byte(source / SMALL)
    with serve(source) as base:
        [result] = inst.install(base, dest, ids=["blazeface_short"])
    assert result.status == "present"
    assert (dest / SMALL).read_bytes() == good


def test_corrupt_file_is_replaced_by_good_source_but_kept_on_bad_one(shared_models, tmp_path):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=["blazeface_short"])
    flip_byte(dest / SMALL, offset=5000)
    corrupt = (dest / SMALL).read_bytes()
    bad_source = copy_of(shared_models, tmp_path, [SMALL])
    flip_byte(bad_source / SMALL)
    [refused] = inst.install(bad_source, dest, ids=["blazeface_short"])
    assert refused.status == "refused"
    assert (dest / SMALL).read_bytes() == corrupt
    [fixed] = inst.install(shared_models, dest, ids=["blazeface_short"])
    assert fixed.status == "installed"
    assert sha256_of(dest / SMALL) == manifest.get("blazeface_short").sha256


def test_truncated_source_is_refused(shared_models, tmp_path):
    source = copy_of(shared_models, tmp_path, [SMALL])
    data = (source / SMALL).read_bytes()
    (source / SMALL).write_bytes(data[:-10])
    with serve(source) as base:
        [result] = inst.install(base, tmp_path / "models", ids=["blazeface_short"])
    assert result.status == "refused"
    assert f"got {len(data) - 10} bytes" in result.message


def test_http_404_skips_optional_and_fails_required(shared_models, tmp_path):
    source = copy_of(shared_models, tmp_path, ["imagenet_labels.txt"])
    dest = tmp_path / "models"
    with serve(source) as base:
        results = by_file(inst.install(base, dest, ids=["blazeface_short", "yolox_nano",
                                                        "imagenet_labels.txt"]))
    assert results[SMALL].status == "skipped" and results[SMALL].ok
    assert "HTTP 404" in results[SMALL].message
    assert results["yolox_nano.tflite"].status == "failed"
    assert results["coco80_labels.txt"].status == "failed"
    assert results["imagenet_labels.txt"].status == "installed"
    assert sorted(p.name for p in dest.iterdir()) == ["imagenet_labels.txt"]


class FlakyHandler(QuietHandler):
    """Answers 503 to the first request for each path, then serves the file."""

    seen: set = set()

    def do_GET(self):
        if self.path not in self.seen:
            self.seen.add(self.path)
            self.send_error(503, "try again")
            return
        super().do_GET()


def test_server_error_is_retried(shared_models, tmp_path):
    FlakyHandler.seen = set()
    with serve(shared_models, FlakyHandler) as base:
        [result] = inst.install(base, tmp_path / "models", ids=["blazeface_short"])
    assert result.status == "installed"
    assert FlakyHandler.seen == {f"/{SMALL}"}


def test_without_source_files_lacking_a_manifest_url_need_from(tmp_path):
    results = by_file(inst.install(None, tmp_path / "models",
                                   ids=["blazeface_full", "blazeface_short"]))
    required = results["face_detection_full_range.tflite"]
    assert required.status == "failed" and "--from" in required.message
    assert results[SMALL].status == "skipped"


def test_missing_source_folder_is_a_setup_error(tmp_path):
    with pytest.raises(SetupError, match="not a folder"):
        inst.install(tmp_path / "nowhere", tmp_path / "models")


def test_unknown_id_is_refused(tmp_path):
    with pytest.raises(UnknownModel, match="nope"):
        inst.install(tmp_path, tmp_path / "models", ids=["nope"])


def test_select_without_optional_is_defaults_and_their_labels():
    names = {spec.file for spec in inst.select(include_optional=False)}
    defaults = {m.file for m in manifest.models().values() if m.default}
    assert defaults <= names
    assert {"coco80_labels.txt", "imagenet_labels.txt"} <= names
    assert not any(manifest.models()[m].file in names
                   for m in manifest.models() if manifest.models()[m].optional)


def test_verify_reports_missing_and_corrupt(shared_models, tmp_path):
    dest = tmp_path / "models"
    inst.install(shared_models, dest, ids=["mobilenet_v2"])
    model = dest / "mobilenet_v2_1.0_224_quant.tflite"
    flip_byte(model)
    results = by_file(inst.verify(dest))
    bad = results[model.name]
    assert bad.status == "mismatch" and bad.actual == sha256_of(model)
    assert str(model) in bad.message
    assert results["imagenet_labels.txt"].status == "ok"
    assert results["yolox_nano.tflite"].status == "missing"
    assert not results["yolox_nano.tflite"].optional
    assert results[SMALL].optional
