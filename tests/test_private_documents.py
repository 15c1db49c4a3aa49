"""Documents, screenshots and recognised text through the whole tool: a real scan with the
text stage of generated documents, screenshots and real street photos, the privacy
decisions, the offload to a real `galprof serve` on 127.0.0.1 (its request log is the
witness), the user's marks both ways, the purge, the profile and the report."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from galprof import privacy
from galprof.cli import cli
from galprof.pipeline import Settings, run
from galprof.profile import build_profile
from galprof.remote.client import offload
from galprof.stages import build_stages
from galprof.store import open_store

import text_samples
from conftest import SHARED_MODELS
from test_remote import start_server

pytest.importorskip("rapidocr_onnxruntime")

# Real photos with signs and lettering (see tests/test_text.py SIGNS): public.
STREET = ["exif/camera/mei_Sony_DSC-HX5V_gps.jpg", "scenes/ul_bus.jpg",
          "scenes/tfyolo_street2.jpg"]
SAMPLES = text_samples.generated_set(1)
DOCUMENTS = [s for s in SAMPLES if s.private]
PUBLIC_SAMPLES = [s for s in SAMPLES if not s.private]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, testmedia):
    """The gallery and a template database scanned with every default stage."""
    base = tmp_path_factory.mktemp("docs")
    root = base / "phone"
    paths = {}
    for s in SAMPLES:
        dst = root / s.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(s.data)
        paths[s.name] = str(dst)
    for rel in STREET:
        dst = root / "DCIM" / "Camera" / Path(rel).name
        shutil.copyfile(testmedia / rel, dst)
        paths[rel] = str(dst)
    db = base / "template.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALPROF_MODELS", str(SHARED_MODELS))
        with open_store(db) as store:
            stages = build_stages(["objects", "scenes", "faces", "text"])
            summary = run(store, [root], Settings(stages=stages))
            assert summary.failed == 0, summary.failures
            store.checkpoint()
    return root, db, paths


@pytest.fixture
def store(scanned, tmp_path):
    _, db, _ = scanned
    dst = tmp_path / "galprof.db"
    with sqlite3.connect(db) as src, sqlite3.connect(dst) as out:
        src.backup(out)
    s = open_store(dst)
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


def _row(store, path):
    return store.media.by_path(path)


@pytest.mark.parametrize("sample", DOCUMENTS, ids=[Path(s.name).name for s in DOCUMENTS])
def test_documents_and_screenshots_are_private_with_their_reason(store, scanned, sample):
    row = _row(store, scanned[2][sample.name])
    assert row["private"] == 1, row["private_reason"]
    assert sample.reason in row["private_reason"]
    # the same reason as `galprof private list` and `galprof show` give
    listed = {i["path"]: i["reasons"] for i in privacy.list_private(store)}
    assert any(sample.reason in r for r in listed[row["path"]])


def test_incidental_text_and_street_photos_are_public(store, scanned):
    for name in [s.name for s in PUBLIC_SAMPLES] + STREET:
        row = _row(store, scanned[2][name])
        assert row["private"] == 0, (name, row["private_reason"])


def test_no_document_reaches_the_server_and_marks_win_both_ways(store, scanned, server):
    paths = scanned[2]
    hashes = {name: _row(store, p)["content_hash"] for name, p in paths.items()}
    public = {hashes[n] for n in [s.name for s in PUBLIC_SAMPLES] + STREET}
    before = len(server.entries())
    summary = offload(store, server.url, server.token, backoff=0.05)
    arrived = {e["item"] for e in server.entries()[before:]}
    assert summary.stopped is None
    assert arrived == public, "a document or screenshot reached the server, or a public photo did not"
    assert not arrived & {hashes[s.name] for s in DOCUMENTS}

    # The user's marks win both ways: a screenshot allowed goes, a street photo marked
    # private does not (its earlier upload stays in the audit log, nothing new is sent).
    allowed = next(s for s in DOCUMENTS if s.kind == "screenshot")
    privacy.mark(store, [Path(paths[allowed.name])], public=True)
    privacy.mark(store, [Path(paths[STREET[0]])])
    assert _row(store, paths[allowed.name])["private"] == 0
    assert "marked public by the user" in _row(store, paths[allowed.name])["private_reason"]
    assert _row(store, paths[STREET[0]])["private"] == 1
    before = len(server.entries())
    offload(store, server.url, server.token, backoff=0.05)
    assert {e["item"] for e in server.entries()[before:]} == {hashes[allowed.name]}
    # unmark: the screenshot rule applies again
    privacy.unmark(store, [Path(paths[allowed.name])])
    assert "screenshot" in _row(store, paths[allowed.name])["private_reason"]
    assert _row(store, paths[allowed.name])["private"] == 1


def test_private_allow_and_purge_from_the_command_line(store, scanned):
    paths = scanned[2]
    passport = next(s for s in DOCUMENTS if "passport" in s.reason)
    db = str(store.path)
    store.close()
    r = CliRunner().invoke(cli, ["private", "allow", paths[passport.name], "--db", db])
    assert r.exit_code == 0 and "marked 1 item(s) public" in r.output, r.output
    with open_store(db) as s:
        assert _row(s, paths[passport.name])["private"] == 0
        read = [h.text for m in s.media.present() for h in
                getattr(s.results.payload(m["content_hash"], "text"), "hits", []) if h.text]
    assert read, "the scan should have read something on the documents"
    r = CliRunner().invoke(cli, ["private", "purge", "--yes", "--db", db])
    assert r.exit_code == 0, r.output
    assert "deleted" in r.output and "faces" in r.output
    with open_store(db) as s:
        for m in s.media.present():
            payload = s.results.payload(m["content_hash"], "text")
            assert payload is None or all(h.text == "" for h in payload.hits)
        # the kinds stay: a purged document is still private, marks still win
        card = next(x for x in DOCUMENTS if x.kind == "bank_card")
        assert _row(s, paths[card.name])["private"] == 1
        assert "bank card number" in _row(s, paths[card.name])["private_reason"]
        assert _row(s, paths[passport.name])["private"] == 0
    # gone from the file itself, not only from the rows (WAL folded in, file vacuumed)
    raw = Path(db).read_bytes() + (Path(db + "-wal").read_bytes()
                                   if Path(db + "-wal").exists() else b"")
    for text in read:
        # a number read ("1.45") is sought as a JSON string: as bare digits it may be part
        # of any score in the file
        number = re.fullmatch(r"[\d\s.,:%+-]+", text)
        sought = json.dumps(text) if number else json.dumps(text)[1:-1]
        assert sought.encode() not in raw, text


def test_purge_needs_something_to_purge(store):
    r = CliRunner().invoke(cli, ["private", "purge", "--no-faces", "--no-text", "--yes",
                                 "--db", str(store.path)])
    assert r.exit_code == 1 and "nothing to purge" in r.output


def test_profile_counts_documents_and_screenshots_outside_the_interests(store, scanned):
    from jsonschema import validate

    from galprof.profile import schema

    profile = build_profile(store)
    validate(profile, schema())
    kinds = [s.kind for s in DOCUMENTS]
    screenshots = sum(k.endswith("screenshot") for k in kinds)
    assert profile["gallery"]["screenshots"] == screenshots
    assert profile["gallery"]["documents"] == len(kinds) - screenshots
    listed = {d["path"]: d for d in profile["documents"]}
    for s in DOCUMENTS:
        entry = listed[scanned[2][s.name]]
        assert entry["kind"] == s.kind and s.reason in entry["reason"]
    groups = {c["group"] for c in profile["categories"]}
    assert not groups & {"Documents", "Screenshots"}
    # What the boarding pass says (travel) is a documented contribution to the interests.
    boarding = scanned[2][next(s.name for s in DOCUMENTS if s.reason == "boarding pass")]
    travel = [sub for c in profile["categories"] for sub in c["subcategories"]
              if sub["category"] == "travel"]
    assert travel and boarding in travel[0]["paths"]


def test_show_names_the_kind(store, scanned):
    chat = next(s for s in DOCUMENTS if s.kind == "chat_screenshot")
    from galprof.inspect import describe_media

    info = describe_media(store, scanned[2][chat.name])
    section = next(s for s in info["sections"] if s["title"] == "picture kind")
    assert section["lines"][0].startswith("kind: chat screenshot")


def test_report_lists_documents_without_their_pictures(store, scanned, tmp_path):
    from galprof.report import build_report

    out = tmp_path / "report.html"
    stats = build_report(build_profile(store), out)
    html = out.read_text()
    for s in DOCUMENTS:
        name = Path(s.name).name
        assert name in html.replace("&#x27;", "'"), name
    # No preview of a document anywhere (the boarding pass is also under travel): every
    # thumbnail embedded is of a public photo.
    thumbs = json.loads(html.split('id="galprof-thumbs">')[1].split("</script>")[0])
    public = len(PUBLIC_SAMPLES) + len(STREET)
    assert 0 < stats.thumbnails == len(thumbs) <= public
    data = json.loads(html.split('id="galprof-data">')[1].split("</script>")[0])
    documents = [m for m in data["media"] if m[2] == "document"]
    assert len(documents) == len(DOCUMENTS) and all(m[1] == -1 for m in documents)
    assert {d["label"] for d in data["documents"]} >= {"ID documents", "bank cards",
                                                       "receipts", "screenshots"}


def test_a_document_in_a_heic_is_read_from_the_full_picture(tmp_path):
    """An iPhone stores its photos as HEIC with a 320 x 240 preview, which the stages
    analyse first (#15). A letter read from the preview alone looks like incidental
    text; the text stage asks for the full picture, so every photographed document
    stays private, for the same reason as its JPEG."""
    import io

    import pillow_heif
    from PIL import Image
    pillow_heif.register_heif_opener()
    root = tmp_path / "DCIM" / "Camera"
    root.mkdir(parents=True)
    camera = [s for s in SAMPLES if s.name.endswith(".jpg")]
    for s in camera:
        with Image.open(io.BytesIO(s.data)) as im:
            im.save(root / (Path(s.name).stem + ".HEIC"), format="HEIF", quality=80,
                    thumbnails=[320], exif=im.info.get("exif"))
    with open_store(tmp_path / "galprof.db") as store:
        stages = build_stages(["objects", "scenes", "faces", "text"])
        summary = run(store, [tmp_path / "DCIM"], Settings(stages=stages))
        assert summary.failed == 0, summary.failures
        assert stages[-1].stats.detected >= len([s for s in camera if s.private])
        for s in camera:
            row = store.media.by_path(str(root / (Path(s.name).stem + ".HEIC")))
            assert row["private"] == int(s.private), (s.name, row["private_reason"])
            if s.private:
                assert s.reason in row["private_reason"]
