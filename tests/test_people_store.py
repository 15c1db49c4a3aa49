"""The people pass on a real gallery: owner from front-camera EXIF written by the test,
cannot-link on group photos, names and fixes that survive re-scans, purge."""

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import piexif
import pytest
from click.testing import CliRunner

from galprof.cli import cli
from galprof.people import fixes
from galprof.profile import build_profile, schema
from galprof.pipeline import Settings, run
from galprof.stages import build_stages
from galprof.store import open_store

SELFIES_OF_B = ["pp_face_3.jpg", "pp_face_6.jpg", "pp_face_8.jpg", "pp_face_12.jpg"]


def _exif(when: str, lens: str, focal: tuple) -> bytes:
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Apple", piexif.ImageIFD.Model: b"iPhone 12"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: when.encode(),
                 piexif.ExifIFD.LensModel: lens.encode(), piexif.ExifIFD.FocalLength: focal},
    })


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, testmedia):
    root = tmp_path_factory.mktemp("people") / "DCIM"
    root.mkdir()
    photos = sorted((testmedia / "faces/photoprism").glob("*.jpg"))
    for day, src in enumerate(photos, start=1):
        dst = root / src.name
        shutil.copyfile(src, dst)
        front = src.name in SELFIES_OF_B
        lens = "iPhone 12 front camera 2.71mm f/2.2" if front else "iPhone 12 back camera 4.2mm f/1.6"
        piexif.insert(_exif(f"2021:03:{day:02d} 12:00:00", lens, (271, 100) if front else (42, 10)),
                      str(dst))
    for rel in ["face_recognition/obama.jpg", "face_recognition/obama1.jpg", "face_recognition/obama2.jpg",
                "face_recognition/obama_and_biden.jpg", "face_recognition/biden.jpg",
                "face_recognition/biden2.jpg", "deepface/couple.jpg"]:
        shutil.copyfile(testmedia / "faces" / rel, root / Path(rel).name)
    return root


@pytest.fixture(scope="module")
def faces_stage():
    return build_stages(["faces"])


@pytest.fixture
def scanned(tmp_path, gallery, faces_stage):
    store = open_store(tmp_path / "g.db")
    run(store, [gallery], Settings(stages=faces_stage))
    return store


def people_facts(store) -> dict:
    return store.passes.output("people")["facts"]


def _person_of(store, name):
    rows = store.conn.execute("SELECT f.person_id FROM faces f JOIN media m ON m.id = f.media_id "
                              "WHERE m.path LIKE ? AND f.features IS NOT NULL", (f"%/{name}",)).fetchall()
    return [r[0] for r in rows]


def test_owner_from_front_camera_selfies(scanned):
    owner = people_facts(scanned)["owner"]
    # pp_face_3 (tiny face) and pp_face_8 (no face found) cannot count; the two others do
    assert owner is not None and owner["guess"] is False and owner["selfies"] >= 2
    b = Counter(p for name in SELFIES_OF_B for p in _person_of(scanned, name) if p)
    assert b.most_common(1)[0][0] == owner["person_id"]


def test_same_person_in_one_cluster_and_cannot_link(scanned):
    obama = {p for n in ("obama.jpg", "obama1.jpg", "obama2.jpg") for p in _person_of(scanned, n)}
    assert len(obama) == 1 and None not in obama
    by_media = defaultdict(list)
    for media_id, person in scanned.conn.execute(
            "SELECT media_id, person_id FROM faces WHERE person_id IS NOT NULL"):
        by_media[media_id].append(person)
    assert all(len(p) == len(set(p)) for p in by_media.values())   # never twice in one photo
    biden = {p for n in ("biden.jpg", "biden2.jpg") for p in _person_of(scanned, n)}
    assert len(biden) == 1 and biden != obama
    pair = [p for p in _person_of(scanned, "obama_and_biden.jpg") if p is not None]
    assert sorted(pair) == sorted(obama | biden)


def test_profile_people_sections_validate(scanned):
    doc = build_profile(scanned)
    jsonschema.validate(doc, schema())
    owner = doc["owner"]["person_id"]
    me = next(p for p in doc["people"] if p["id"] == owner)
    assert me["role"] == "owner" and me["gender"] == "F" and me["photos"] >= 8
    assert me["face"]["path"].endswith(".jpg") and len(me["face"]["box"]) == 4
    assert me["first"] == "2021-03-01" or me["first"] < me["last"]
    assert len(doc["demography"]["bins"]) == 8


def test_names_and_fixes_survive_rescans(tmp_path, scanned, gallery, faces_stage):
    runner = CliRunner()
    db = str(scanned.path)
    owner = people_facts(scanned)["owner"]["person_id"]
    assert runner.invoke(cli, ["people", "name", str(owner), "Bea", "--db", db]).exit_code == 0
    obama = _person_of(scanned, "obama.jpg")[0]
    # split one obama photo off by hand, then re-scan with a new photo and recluster
    r = runner.invoke(cli, ["people", "split", str(obama), "--media", str(gallery / "obama2.jpg"), "--db", db])
    assert r.exit_code == 0, r.output
    split_id = _person_of(scanned, "obama2.jpg")[0]
    assert split_id != obama
    r = runner.invoke(cli, ["people", "recluster", "--db", db])
    assert r.exit_code == 0, r.output
    assert _person_of(scanned, "obama2.jpg") == [split_id]          # manual fix kept
    name = scanned.conn.execute("SELECT name FROM people WHERE id = ?", (owner,)).fetchone()[0]
    assert name == "Bea"
    assert Counter(p for n in SELFIES_OF_B for p in _person_of(scanned, n) if p).most_common(1)[0][0] == owner
    r = runner.invoke(cli, ["people", "merge", str(obama), str(split_id), "--db", db])
    assert r.exit_code == 0
    assert _person_of(scanned, "obama2.jpg") == [obama]
    r = runner.invoke(cli, ["people", "list", "--json", "--db", db])
    listed = json.loads(r.stdout)["people"]
    assert any(p["name"] == "Bea" and p["role"] == "owner" for p in listed)
    r = runner.invoke(cli, ["people", "show", str(owner), "--json", "--db", db])
    assert any(m["path"].endswith("pp_face_6.jpg") for m in json.loads(r.stdout)["media"])


def test_incremental_assignment_after_a_new_photo(tmp_path, gallery, testmedia, faces_stage):
    root = tmp_path / "g"
    shutil.copytree(gallery, root)
    (root / "obama3.jpg").unlink(missing_ok=True)
    store = open_store(tmp_path / "g.db")
    run(store, [root], Settings(stages=faces_stage))
    obama = _person_of(store, "obama.jpg")[0]
    shutil.copyfile(testmedia / "faces/face_recognition/obama3.jpg", root / "obama3.jpg")
    stats = run(store, [root], Settings(stages=faces_stage)).passes["people"]
    assert stats["assigned"] >= 1
    assert _person_of(store, "obama3.jpg") == [obama]


def test_purge_removes_biometric_data(scanned):
    assert scanned.conn.execute("SELECT count(*) FROM faces WHERE features IS NOT NULL").fetchone()[0] > 10
    n = fixes.purge(scanned)
    assert n > 10
    assert scanned.conn.execute("SELECT count(*) FROM faces").fetchone()[0] == 0
    assert scanned.conn.execute("SELECT count(*) FROM results WHERE stage = 'faces'").fetchone()[0] == 0
    assert scanned.conn.execute("SELECT count(*) FROM people WHERE centroid IS NOT NULL").fetchone()[0] == 0
