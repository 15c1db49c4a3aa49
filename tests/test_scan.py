"""The incremental, crash-safe scan on real media (no models: stages from tests are real
implementations of the Stage protocol computing something from pixels)."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from galprof.errors import DatabaseBusy, SetupError
from galprof.pipeline import Settings, run
from galprof.store import open_store


class MeanColour:
    """A tiny real stage: the mean colour of every frame."""

    name = "colour"
    requires = ()
    long_side = 128

    def __init__(self, version="1"):
        self.version = version
        self.runs = 0

    def load(self):
        pass

    def run(self, frames, upstream):
        self.runs += 1
        means = [f.image.reshape(-1, 3).mean(axis=0) for f in frames]
        return {"frames": [{"index": f.index, "mean": m.round(2).tolist()} for f, m in zip(frames, means)],
                "arrays": {"means": np.array(means, dtype=np.float32)}}


class Brightness:
    """A stage that needs another stage's payload."""

    name = "brightness"
    requires = ("colour",)
    long_side = 64
    version = "1"

    def load(self):
        pass

    def run(self, frames, upstream):
        return {"brightness": float(np.mean([f["mean"] for f in upstream["colour"]["frames"]]))}


@pytest.fixture
def gallery(tmp_path, testmedia):
    root = tmp_path / "DCIM"
    for rel in ["scenes/pp_dog_orange.jpg", "scenes/pp_limes.jpg", "exif/phone/pp_iPhone7.heic",
                "videos/intel_asl_learn.mkv", "corrupt/phf_corrupted.heic",
                "exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg"]:
        dst = root / "Camera" / Path(rel).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(testmedia / rel, dst)
    return root


def test_first_scan_and_unchanged_rescan(tmp_path, gallery):
    store = open_store(tmp_path / "g.db")
    stage = MeanColour()
    s1 = run(store, [gallery], Settings(stages=[stage]))
    assert (s1.new, s1.photos, s1.videos, s1.failed) == (6, 4, 1, 1)
    assert s1.failures[0]["path"].endswith("phf_corrupted.heic")
    assert stage.runs == 5
    row = store.media.by_path(str(gallery / "Camera/intel_asl_learn.mkv"))
    frames = store.conn.execute("SELECT count(*) FROM frames WHERE media_id = ?", (row["id"],)).fetchone()[0]
    assert frames == s1.frames - 4 > 1
    cached = store.results.get(row["content_hash"], "colour")
    assert cached.payload["arrays"]["means"].shape == (frames, 3)

    s2 = run(store, [gallery], Settings(stages=[stage]))
    assert (s2.new, s2.unchanged, s2.analysed, s2.failed) == (0, 6, 0, 0)
    assert stage.runs == 5                      # nothing opened again
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_moved_renamed_deleted_changed(tmp_path, gallery):
    store = open_store(tmp_path / "g.db")
    stage = MeanColour()
    run(store, [gallery], Settings(stages=[stage]))
    runs = stage.runs
    old = gallery / "Camera/pp_dog_orange.jpg"
    before = store.media.by_path(str(old))
    new = gallery / "Moved" / "renamed_dog.jpg"
    new.parent.mkdir()
    os.rename(old, new)
    (gallery / "Camera/pp_limes.jpg").unlink()
    heic = gallery / "Camera/pp_iPhone7.heic"
    shutil.copyfile(gallery / "Camera/mei_FujiFilm_S2Pro_paris_gps.jpg", heic)   # content changed
    s = run(store, [gallery], Settings(stages=[stage]))
    assert (s.moved, s.removed, s.changed, s.new) == (1, 1, 1, 0)
    after = store.media.by_path(str(new))
    assert after["id"] == before["id"] and after["taken_at"] == before["taken_at"]
    assert store.media.by_path(str(old)) is None
    assert store.media.by_path(str(gallery / "Camera/pp_limes.jpg")) is None
    # the changed file's new content equals a known one's, so its result comes from the cache
    assert stage.runs == runs
    assert store.media.by_path(str(heic))["format"] == "JPEG"


def test_new_stage_version_reruns_only_that_stage(tmp_path, gallery):
    store = open_store(tmp_path / "g.db")
    colour, bright = MeanColour("1"), Brightness()
    run(store, [gallery], Settings(stages=[bright, colour]))     # order from `requires`
    row = store.media.by_path(str(gallery / "Camera/pp_limes.jpg"))
    assert store.results.payload(row["content_hash"], "brightness")["brightness"] > 0
    colour2 = MeanColour("2")
    s = run(store, [gallery], Settings(stages=[colour2, bright]))
    assert colour2.runs == 5 and s.analysed == 5
    assert store.results.get(row["content_hash"], "colour").version == "2"


def test_missing_root_is_a_setup_error(tmp_path):
    with pytest.raises(SetupError, match="no such file or folder"):
        run(open_store(tmp_path / "g.db"), [tmp_path / "nope"])


def test_second_writer_gets_a_clear_message(tmp_path, gallery):
    first = open_store(tmp_path / "g.db")
    second = open_store(tmp_path / "g.db")
    with first.writer():
        with pytest.raises(DatabaseBusy, match=f"pid {os.getpid()}"):
            run(second, [gallery])
    assert run(second, [gallery]).new == 6


def test_corrupt_files_are_recorded_and_the_scan_goes_on(tmp_path, testmedia):
    store = open_store(tmp_path / "g.db")
    s = run(store, [testmedia / "corrupt"])
    failed = {Path(f["path"]).name: f["reason"] for f in s.failures}
    assert set(failed) == {"exifreader_truncated_exif_32bytes.jpg", "mei_NegativeArraySize.heif",
                           "mei_beach_height0.jpg", "phf_corrupted.heic", "phf_empty.heic",
                           "piexif_notjpeg_empty.jpg"}
    assert failed["phf_empty.heic"] == "empty file (0 bytes)"
    rows = {Path(r["path"]).name: r for r in store.conn.execute("SELECT * FROM media")}
    assert rows["mei_beach_height0.jpg"]["status"] == "failed"
    assert rows["pp_wrong_ext_jpeg_named.heic"]["status"] == "ok"
    assert rows["pp_wrong_ext_jpeg_named.heic"]["format"] == "JPEG"
    assert rows["ias_corrupted_exif_Olympus.jpg"]["status"] == "ok"
    assert rows["exifr_truncated_32d08f4a.jpg"]["status"] == "warning"
    assert "truncated" in rows["exifr_truncated_32d08f4a.jpg"]["error"]
    errors = store.conn.execute("SELECT count(*) FROM errors").fetchone()[0]
    assert errors >= 6


def test_selfie_evidence(tmp_path, testmedia):
    store = open_store(tmp_path / "g.db")
    run(store, [testmedia / "exif/phone", testmedia / "exif/selfie"])
    selfies = {Path(r["path"]).name: r["selfie_reason"]
               for r in store.conn.execute("SELECT path, selfie_reason FROM media WHERE selfie")}
    assert selfies["dc_iPhone13Pro_IMG_8569_front_camera.HEIC"] == "front-camera lens model"
    # the ultra-wide back lens is the iPhone's shortest, but it names itself a back camera
    assert "dc_iPhone13Pro_IMG_8563_ultrawide.HEIC" not in selfies


def test_killed_scan_resumes(tmp_path, testmedia):
    root = tmp_path / "many"
    root.mkdir()
    src = (testmedia / "scenes/pp_limes.jpg").read_bytes()
    for i in range(600):
        # distinct bytes per copy (a trailing comment), so each is its own content
        (root / f"IMG_{i:04d}.jpg").write_bytes(src + f"copy {i}".encode())
    db = tmp_path / "g.db"
    env = {**os.environ, "GALPROF_DB": str(db)}
    cmd = [sys.executable, "-m", "galprof", "scan", str(root), "--stages", "none", "--quiet"]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db) as c:
                done = c.execute("SELECT count(*) FROM media").fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 20:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 20 <= done < 600, "the scan should have been killed midway"
    out = subprocess.run(cmd[:-1] + ["--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["photos"] == 600
    assert summary["unchanged"] >= 20 and summary["new"] + summary["unchanged"] == 600
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT count(*) FROM media WHERE status = 'ok'").fetchone()[0] == 600
