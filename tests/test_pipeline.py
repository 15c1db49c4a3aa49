"""The pipeline's contract: passes that run exactly when their inputs changed (also after a
kill between ingest and the passes), video sampling in the cache key, failure semantics."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from galprof.errors import StageFailed
from galprof.gallery.frames import decode
from galprof.pipeline import Settings, run
from galprof.pipeline.passes import NAMES, stale
from galprof.profile import build_profile
from galprof.stages import build_stages
from galprof.store import open_store
from galprof.vision import manifest

from conftest import SHARED_MODELS


class MeanColour:
    """A tiny real stage: the mean colour of every frame."""

    name = "colour"
    requires = ()
    long_side = 128
    version = "1"

    def __init__(self):
        self.runs = []

    def load(self):
        pass

    def run(self, frames, upstream):
        self.runs.append(len(frames))
        return {"means": [f.image.reshape(-1, 3).mean(axis=0).round(2).tolist() for f in frames]}


class FailsOn:
    """A stage whose computation raises on the files it is given a bad name for (or all)."""

    name = "fragile"
    requires = ()
    long_side = 64
    version = "1"

    def __init__(self, bad=None):
        self.bad = bad          # None: every file

    def load(self):
        pass

    def run(self, frames, upstream):
        image = frames[0].image
        if self.bad is None or image.shape[:2] == self.bad:
            raise RuntimeError("tensor arena exhausted\n(native stack trace follows)")
        return {"pixels": int(image.shape[0] * image.shape[1])}


class Notes(MeanColour):
    """MeanColour on a model file of the manifest (not opened), noting which thread loads it
    and makes its inputs, in order."""

    def __init__(self, name: str, model_id: str):
        super().__init__()
        self.name, self.spec, self.events = name, manifest.get(model_id), []

    def models(self):
        return [self.spec]

    def load(self):
        self.events.append(("load", threading.current_thread() is threading.main_thread()))

    def prepare(self, frames):
        self.events.append(("prepare", threading.current_thread() is threading.main_thread()))


@pytest.fixture
def gallery(tmp_path, testmedia):
    root = tmp_path / "DCIM"
    root.mkdir()
    for rel in ["scenes/pp_dog_orange.jpg", "scenes/pp_limes.jpg", "exif/phone/pp_iPhone7.heic",
                "scenes/skimage_coffee.png", "videos/intel_asl_learn.mkv"]:
        shutil.copyfile(testmedia / rel, root / Path(rel).name)
    return root


def test_frame_sampling_is_part_of_a_videos_cache_key(tmp_path, gallery):
    store = open_store(tmp_path / "g.db")
    stage = MeanColour()
    run(store, [gallery], Settings(stages=[stage]))
    assert len(stage.runs) == 5
    video = store.media.by_path(str(gallery / "intel_asl_learn.mkv"))
    assert len(store.media.frames(video["id"])) == 13          # 61 frames at step 5
    s = run(store, [gallery], Settings(stages=[stage], frame_step=1, max_frames=4))
    assert s.analysed == 1 and stage.runs[5:] == [4]            # the video, and only it
    assert [f["idx"] for f in store.media.frames(video["id"])] == [0, 15, 30, 45]   # 60 frames / 4
    assert len(store.results.payload(video["content_hash"], "colour")["means"]) == 4
    again = run(store, [gallery], Settings(stages=[stage], frame_step=1, max_frames=4))
    assert again.analysed == 0 and len(stage.runs) == 6


def test_the_first_stage_on_tflite_is_loaded_before_any_decode(tmp_path, gallery):
    # The process's first TFLite model points fd 2 at /dev/null for a moment
    # (vision/runtime.py): made before the threads start, it cannot swallow a line printed
    # meanwhile (a bad file's error). ONNX stages, and stages after it, load when first run.
    on_onnx, on_tflite, after = (Notes("a", "mobilenet_v2_onnx"), Notes("b", "mobilenet_v2"),
                                 Notes("c", "efficientnet_lite0"))
    store = open_store(tmp_path / "g.db")
    run(store, [gallery], Settings(stages=[on_onnx, on_tflite, after]))
    assert on_tflite.events[0] == ("load", True)
    assert {kind for kind, _ in on_tflite.events[1:]} == {"prepare"}        # frame by frame
    for lazy in (on_onnx, after):
        kinds = [kind for kind, _ in lazy.events]
        assert kinds.count("load") == 1 and kinds.index("load") > kinds.index("prepare")
    assert not any(main for kind, main in on_tflite.events[1:])     # decode threads
    for stage in (on_onnx, on_tflite, after):
        stage.events.clear()
    run(store, [gallery], Settings(stages=[on_onnx, on_tflite, after]))
    assert on_tflite.events == on_onnx.events == []           # nothing to read: nothing loaded


def test_a_stage_failing_on_one_file_is_that_files_error_reported_once(tmp_path, gallery):
    store = open_store(tmp_path / "g.db")
    # the stage fails on frames of pp_limes.jpg's size at its long side, and only on those
    limes = decode(gallery / "pp_limes.jpg", "photo", 64).frames[0].image.shape[:2]
    s1 = run(store, [gallery], Settings(stages=[FailsOn(bad=limes)]))
    assert s1.failed == 1 and s1.failures[0]["path"].endswith("pp_limes.jpg")
    reason = s1.failures[0]["reason"]
    assert reason.startswith("stage fragile failed: RuntimeError: tensor arena exhausted")
    assert "\n" not in reason
    others = store.media.by_path(str(gallery / "pp_dog_orange.jpg"))
    assert store.results.payload(others["content_hash"], "fragile")["pixels"] > 0
    # known now: the next scan does not run it again nor report it (exit 0 from cron) ...
    s2 = run(store, [gallery], Settings(stages=[FailsOn(bad=limes)]))
    assert (s2.failed, s2.analysed, s2.known_failures) == (0, 0, 1)
    failures = store.media.known_failures()
    assert [Path(f["path"]).name for f in failures] == ["pp_limes.jpg"]
    assert failures[0]["stage"] == "fragile"
    # ... until the stage's version changes
    fixed = FailsOn(bad=(0, 0))
    fixed.version = "2"
    s3 = run(store, [gallery], Settings(stages=[fixed]))
    assert s3.failed == 0 and s3.analysed == 5 and s3.known_failures == 0


def test_a_stage_failing_on_every_file_stops_the_run_and_keeps_what_was_committed(
        tmp_path, testmedia):
    root = tmp_path / "many"
    root.mkdir()
    src = (testmedia / "scenes/pp_limes.jpg").read_bytes()
    for i in range(40):
        (root / f"IMG_{i:04d}.jpg").write_bytes(src + f"copy {i}".encode())
    store = open_store(tmp_path / "g.db")
    first = run(store, [root / f"IMG_{i:04d}.jpg" for i in range(20)],
                Settings(stages=[MeanColour()]))
    assert first.failed == 0
    with pytest.raises(StageFailed, match="fragile stage failed on each of the first 5 files"):
        run(store, [root], Settings(stages=[MeanColour(), FailsOn()]))
    assert store.integrity() == "ok"
    kept = store.media.under([root])
    assert len(kept) >= 20                       # the first run's items are all still there
    # the broken stage's failures are not cached: after the fix every file is tried again
    assert not [f for f in store.media.known_failures() if f["stage"] == "fragile"]
    ok = run(store, [root], Settings(stages=[MeanColour(), FailsOn(bad=(0, 0))]))
    assert ok.failed == 0 and store.results.payload(
        store.media.by_path(str(root / "IMG_0039.jpg"))["content_hash"], "fragile")


@pytest.fixture(scope="module")
def face_gallery(tmp_path_factory, testmedia):
    root = tmp_path_factory.mktemp("faces") / "DCIM"
    root.mkdir()
    for rel in ["face_recognition/obama.jpg", "face_recognition/obama1.jpg",
                "face_recognition/obama2.jpg", "face_recognition/biden.jpg",
                "face_recognition/biden2.jpg", "face_recognition/obama_and_biden.jpg",
                "deepface/img1.jpg", "deepface/img2.jpg"]:
        shutil.copyfile(testmedia / "faces" / rel, root / Path(rel).name)
    shutil.copyfile(testmedia / "exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg", root / "paris.jpg")
    return root


def _outcome(store) -> dict:
    profile = build_profile(store)
    private = {Path(p["path"]).name: p["reasons"] for p in store.privacy.private_items()}
    people = sorted((len(p["paths"]), sorted(Path(x).name for x in p["paths"]))
                    for p in profile["people"])
    return {"people": people, "owner": profile["owner"] and profile["owner"]["guess"],
            "private": private, "locations": [loc["city"] for loc in profile["locations"]],
            "descriptor": profile["descriptor"].get("items")}


def test_a_scan_killed_between_ingest_and_passes_is_completed_by_the_next(tmp_path, face_gallery):
    reference = open_store(tmp_path / "ref.db")
    run(reference, [face_gallery], Settings(stages=build_stages(["faces", "scenes"])))
    expected = _outcome(reference)
    assert expected["people"] and expected["private"] and expected["locations"] == ["Paris"]

    env = {**os.environ, "GALPROF_MODELS": str(SHARED_MODELS)}
    cmd = [sys.executable, "-m", "galprof", "scan", str(face_gallery), "--stages", "faces,scenes",
           "--quiet"]
    for attempt in range(4):                  # the kill must land after ingest, before the passes end
        db = tmp_path / f"killed{attempt}.db"
        proc = subprocess.Popen(cmd + ["--db", str(db)], env=env)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                with sqlite3.connect(db) as c:
                    ingested = c.execute("SELECT count(*) FROM media").fetchone()[0]
            except sqlite3.Error:
                ingested = 0
            if ingested == 9:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait()
        with sqlite3.connect(db) as c:
            recorded = {r[0] for r in c.execute("SELECT name FROM passes")}
        if "privacy" not in recorded:
            break
    else:
        pytest.fail("could not kill the scan between its ingest and its passes")
    store = open_store(db)
    assert set(stale(store, Settings())) >= {"privacy"}
    again = run(store, [face_gallery], Settings(stages=build_stages(["faces", "scenes"])))
    assert again.analysed == 0 and again.unchanged == 9            # nothing read again ...
    assert {n for n, p in again.passes.items() if p["ran"]} >= {"people", "privacy"} - recorded
    assert _outcome(store) == expected                             # ... and all decided
    assert stale(store, Settings()) == []
    third = run(store, [face_gallery], Settings(stages=build_stages(["faces", "scenes"])))
    assert not any(p["ran"] for p in third.passes.values())


def test_each_pass_reruns_exactly_when_its_inputs_change(tmp_path, face_gallery):
    store = open_store(tmp_path / "g.db")
    settings = Settings(stages=build_stages(["faces"]))
    first = run(store, [face_gallery], settings)
    assert all(first.passes[n]["ran"] for n in NAMES)
    from galprof import privacy
    privacy.mark(store, [face_gallery / "paris.jpg"])
    assert stale(store, settings) == ["privacy"]
    second = run(store, [face_gallery], settings)
    assert [n for n in NAMES if second.passes[n]["ran"]] == ["privacy"]
    assert store.media.by_path(str(face_gallery / "paris.jpg"))["private"] == 1
    from galprof.people import fixes
    person = build_profile(store)["people"][0]["id"]
    fixes.rename(store, person, "Barack")                  # brings people and privacy up to date
    assert stale(store, settings) == []
    assert build_profile(store)["people"][0]["name"] == "Barack"


def test_an_unchanged_rescan_costs_about_nothing(tmp_path, face_gallery):
    store = open_store(tmp_path / "g.db")
    settings = Settings(stages=build_stages(["faces", "scenes"]))
    first = run(store, [face_gallery], settings)
    again = run(store, [face_gallery], Settings(stages=build_stages(["faces", "scenes"])))
    assert again.analysed == 0 and not any(p["ran"] for p in again.passes.values())
    assert again.seconds < first.seconds   # the ratio itself is a benchmark figure (bench/ingest.py)
