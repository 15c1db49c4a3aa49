"""Frames analysed two at a time (pipeline/analysis.py): by a helper thread ahead of the
inference thread, one stage on one thread at a time, with the results of one at a time."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from galprof.payloads import encode
from galprof.pipeline import Settings, run
from galprof.store import open_store
from galprof.vision.faces import FacesStage
from galprof.vision.objects import ObjectsStage
from galprof.vision.scenes import ScenesStage

MIXED = {"0_portrait.jpg": "faces/face_recognition/obama.jpg",
         "1_owl.jpg": "scenes/coral_owl.jpg",
         # a preview with a face: its full picture is decoded for the faces stage
         "2_selfie.HEIC": "exif/selfie/dc_iPhone13Pro_IMG_8569_front_camera.HEIC",
         "3_clip.mp4": "videos/derived/intel_head-pose-face-detection-female-and-male_from_gif.mp4",
         "4_dog.jpg": "scenes/darknet_dog.jpg"}


@pytest.fixture
def stages(shared_models):
    return (ObjectsStage(threads=1, models_dir=shared_models),
            ScenesStage(threads=1, models_dir=shared_models),
            FacesStage(threads=1, models_dir=shared_models))


def _folder(testmedia, tmp_path, names: dict[str, str]):
    folder = tmp_path / "DCIM"
    folder.mkdir()
    for name, source in names.items():
        shutil.copy(testmedia / source, folder / name)
    return folder


def _helper() -> bool:
    return threading.current_thread().name.startswith("galprof-analyse")


def test_items_decoded_ahead_are_analysed_by_a_helper_while_a_stage_runs(
        testmedia, tmp_path, stages, monkeypatch):
    folder = _folder(testmedia, tmp_path, {k: v for k, v in MIXED.items() if k.endswith(".jpg")})
    objects, scenes, faces = stages
    analysed: list[tuple[bool, int]] = []      # (on the helper, id of the frame)
    change = threading.Condition()
    first: list = []                           # frames of the first item run, and the wait

    def noted(stage):
        analyse = stage.analyse

        def wrapped(frame):
            analyse(frame)
            with change:
                analysed.append((_helper(), id(frame)))
                change.notify_all()
        monkeypatch.setattr(stage, "analyse", wrapped)
    for stage in stages:
        noted(stage)
    real_run = objects.run

    def held_run(frames, upstream):
        # The inference thread's first stage run waits until the helper has analysed a
        # frame of another item: both analyse at once (10 s at most, on any machine).
        if not first:
            mine = {id(f) for f in frames}
            with change:
                first.append(change.wait_for(
                    lambda: any(helper and f not in mine for helper, f in analysed), 10))
        return real_run(frames, upstream)
    monkeypatch.setattr(objects, "run", held_run)
    with open_store(tmp_path / "g.db") as store:
        summary = run(store, [folder], Settings(stages=list(stages)))
    assert summary.failed == 0 and summary.analysed == 3
    assert first == [True]
    # the stages' time counts both threads; the wall time in which one ran, once
    assert summary.stage_busy_seconds > 0
    assert summary.stage_busy_seconds < sum(summary.stage_seconds.values())


def _scan(folder, db, stages, at_once: int, monkeypatch, calls: list):
    """Scan with `at_once` analyses at a time; every analyse and run of a stage noted as
    (stage, thread, start, end). The stored results by file name."""
    for stage in stages:
        for method in ("analyse", "run"):
            real = getattr(type(stage), method).__get__(stage)

            def timed(*a, real=real, stage=stage):
                started = time.perf_counter()
                try:
                    return real(*a)
                finally:
                    calls.append((stage.name, threading.current_thread().name, started,
                                  time.perf_counter()))
            monkeypatch.setattr(stage, method, timed)
    with open_store(db) as store:
        summary = run(store, [folder], Settings(stages=list(stages), analyses_at_once=at_once))
        assert summary.failed == 0 and summary.analysed == len(MIXED)
        results, faces = {}, 0
        for path in sorted(folder.iterdir()):
            digest = store.media.by_path(str(path))["content_hash"]
            stored = store.results.all(digest, arrays=True)
            results[path.name] = {name: encode(r.payload) for name, r in stored.items()}
            faces += sum(len(f.faces) for f in stored["faces"].payload.frames)
    monkeypatch.undo()
    assert faces >= 10                   # faces to compare
    return results


def test_two_analyses_at_once_give_the_results_of_one_and_a_stage_runs_alone(
        testmedia, tmp_path, stages, monkeypatch):
    folder = _folder(testmedia, tmp_path, MIXED)
    calls_one: list = []
    one = _scan(folder, tmp_path / "one.db", stages, 1, monkeypatch, calls_one)
    calls_two: list = []
    two = _scan(folder, tmp_path / "two.db", stages, 2, monkeypatch, calls_two)
    assert not any(thread.startswith("galprof-analyse") for _, thread, _, _ in calls_one)
    assert any(thread.startswith("galprof-analyse") for _, thread, _, _ in calls_two)
    assert one.keys() == two.keys() == set(MIXED)
    for name in one:
        assert one[name].keys() == two[name].keys() >= {"objects", "scenes", "faces"}
        for stage, (payload, arrays) in one[name].items():
            assert two[name][stage][0] == payload, (name, stage)
            assert two[name][stage][1].keys() == arrays.keys()
            assert all(np.array_equal(two[name][stage][1][k], arrays[k]) for k in arrays)
    # one stage on one thread at a time: no two of its calls overlap
    for stage in ("objects", "scenes", "faces"):
        spans = sorted((start, end) for name, _, start, end in calls_two if name == stage)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))

