"""The store: a 0.1.0 database migrates and keeps everything; 0.1.0's content hashes are
re-keyed once; transactions and the writer lock."""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from galprof.errors import DatabaseBusy
from galprof.pipeline import Settings, run
from galprof.pipeline.passes import run_passes
from galprof.profile import build_profile
from galprof.store import open_store
from galprof.store.db import MIGRATIONS

FIXTURES = Path(__file__).parent / "fixtures"
# The gallery the fixture was scanned from by galprof 0.1.0 (`galprof scan`, then
# `galprof people name 1 Anna` and `galprof private mark .../pp_limes.jpg`).
OLD_ROOT = "/tmp/galprof-0.1.0-gallery"
OLD_FILES = {"img1.jpg": "faces/deepface/img1.jpg", "img2.jpg": "faces/deepface/img2.jpg",
             "img4.jpg": "faces/deepface/img4.jpg", "pp_dog_orange.jpg": "scenes/pp_dog_orange.jpg",
             "pp_limes.jpg": "scenes/pp_limes.jpg",
             "mei_FujiFilm_S2Pro_paris_gps.jpg": "exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg",
             "intel_asl_learn.mkv": "videos/intel_asl_learn.mkv", "phf_empty.heic": "corrupt/phf_empty.heic"}


@pytest.fixture
def old_db(tmp_path):
    db = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "galprof-0.1.0.db", db)
    return db


def _old(db: Path, sql: str):
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def test_a_0_1_0_database_migrates_and_keeps_everything(old_db):
    before = {t: _old(old_db, f"SELECT count(*) FROM {t}")[0][0]
              for t in ("media", "results", "faces", "people", "private_marks", "frames")}
    assert _old(old_db, "PRAGMA user_version") == [(3,)]
    store = open_store(old_db)
    assert store.schema_version == len(MIGRATIONS) and store.integrity() == "ok"
    after = {t: store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in before}
    assert after == before
    assert store.people.names(named_only=True) == {1: "Anna"}
    limes = store.media.by_path(f"{OLD_ROOT}/Camera/pp_limes.jpg")
    assert store.privacy.is_marked(limes["path"], limes["content_hash"])
    # old payloads read through the typed classes
    dog = store.media.by_path(f"{OLD_ROOT}/Camera/pp_dog_orange.jpg")
    assert store.results.payload(dog["content_hash"], "objects").summary()[0].label == "dog"
    # the passes rebuild people, privacy and places from the old rows
    run_passes(store, Settings())
    profile = build_profile(store)
    old = json.loads((FIXTURES / "galprof-0.1.0.profile.json").read_text())
    # the interests follow today's scoring rules (issue 14), from the same stored results
    groups = {g["group"] for g in profile["categories"]}
    assert {"Pets/animals", "Food", "Locations"} <= groups
    assert {p for g in profile["categories"] for s in g["subcategories"] for p in s["paths"]} <= \
        {p for g in old["categories"] for s in g["subcategories"] for p in s["paths"]}
    assert profile["locations"] == old["locations"]
    assert [(p["id"], p["name"], p["photos"], p["role"]) for p in profile["people"]] == \
        [(1, "Anna", 3, "owner")]
    assert profile["owner"] == old["owner"]
    assert store.media.by_id(limes["id"])["private"] == 1


def test_0_1_0_content_hashes_are_rekeyed_once(tmp_path, old_db, testmedia):
    root = tmp_path / "gallery"
    (root / "Camera").mkdir(parents=True)
    with sqlite3.connect(old_db) as c:
        for name, rel in OLD_FILES.items():
            dst = root / "Camera" / name
            shutil.copyfile(testmedia / rel, dst)
            c.execute("UPDATE media SET path = ?, root = ?, mtime_ns = ? WHERE path = ?",
                      (str(dst), str(root), dst.stat().st_mtime_ns, f"{OLD_ROOT}/Camera/{name}"))
        c.execute("UPDATE private_marks SET path = replace(path, ?, ?)", (OLD_ROOT, str(root)))
    store = open_store(old_db)
    big = store.media.by_path(str(root / "Camera/img1.jpg"))
    assert big["size"] > 3 * 256 * 1024 and big["hash_scheme"] == 1
    s = run(store, [root], Settings())
    assert s.new == 0 and s.unchanged == 8 and s.analysed == 0
    rows = store.media.under([root])
    assert {r["hash_scheme"] for r in rows.values() if r["content_hash"]} == {2}
    rekeyed = rows[str(root / "Camera/img1.jpg")]
    assert rekeyed["content_hash"] != big["content_hash"]
    assert set(store.results.all(rekeyed["content_hash"])) == {"objects", "scenes", "faces"}
    limes = rows[str(root / "Camera/pp_limes.jpg")]
    assert store.privacy.is_marked(limes["path"], limes["content_hash"])


def test_read_only_database_serves_the_read_commands(tmp_path, old_db):
    open_store(old_db).close()                       # migrated once
    old_db.chmod(0o444)
    store = open_store(old_db, read_only=True)
    assert store.media.counts()["photos"] == 6
    with pytest.raises(Exception, match="read-only"):
        with store.writer():
            pass


def test_transactions_nest_and_roll_back(tmp_path):
    store = open_store(tmp_path / "g.db")
    with pytest.raises(ZeroDivisionError):
        with store.transaction():
            store.media.log_error("/x.jpg", "read", "one")
            with store.transaction():
                store.media.log_error("/x.jpg", "read", "two")
            1 / 0
    assert store.media.errors_for("/x.jpg") == []
    with store.transaction():
        store.media.log_error("/x.jpg", "read", "kept")
    assert [e["message"] for e in store.media.errors_for("/x.jpg")] == ["kept"]


def test_writer_lock_is_reentrant_and_exclusive(tmp_path):
    a, b = open_store(tmp_path / "g.db"), open_store(tmp_path / "g.db")
    with a.writer(), a.writer():
        with pytest.raises(DatabaseBusy, match="galprof scan, pid"):
            with b.writer(wait=0.3):
                pass
    with b.writer():
        assert b.holds_writer


def test_the_database_and_its_lock_are_private_to_the_user(tmp_path):
    store = open_store(tmp_path / "g.db")
    with store.writer():
        pass
    for suffix in ("", ".lock", "-wal"):
        path = Path(str(store.path) + suffix)
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0, suffix


def test_the_folders_galprof_creates_for_its_data_are_private_to_the_user(tmp_path, monkeypatch,
                                                                          shared_models):
    from galprof.vision.install import install

    tmp_path.chmod(0o755)
    home = tmp_path / "home" / ".local" / "share" / "galprof"
    open_store(home / "galprof.db").close()
    for folder in (tmp_path / "home", tmp_path / "home" / ".local", home):
        assert folder.stat().st_mode & 0o077 == 0, folder
    assert tmp_path.stat().st_mode & 0o777 == 0o755            # what existed stays as it was
    # `galprof models install` on a fresh device creates the data folder first
    models = tmp_path / "other" / "galprof" / "models"
    monkeypatch.setenv("GALPROF_MODELS", str(models))
    install(source=shared_models, ids=["mobilenet_v2"])
    assert (models / "mobilenet_v2_1.0_224_quant.tflite").is_file()
    assert (tmp_path / "other" / "galprof").stat().st_mode & 0o077 == 0
