"""The scan's late pass (pipeline/ingest.py): the text detector's ~140 MB of working
memory never meets the other stages' models and frames. Items that reach the detector
are read again once everything else is through, with the other models let go; a file
changed meanwhile, a scan killed in the late pass and a text-only re-scan are handled.
Real scans of generated documents and real photos and a video."""

from __future__ import annotations

import io
import shutil

import pillow_heif
import pytest
from PIL import Image

from galprof.errors import StageFailed
from galprof.gallery import frames as frames_mod
from galprof.gallery.hashing import hash_bytes
from galprof.pipeline import Settings, run
from galprof.stages import ModelsDeferred, analysing_threads, build_stages
from galprof.store import open_store

import text_samples

pytest.importorskip("rapidocr_onnxruntime")

SAMPLES = text_samples.generated_set(1)
PASSPORT, RECEIPT, LETTER = SAMPLES[0], SAMPLES[3], SAMPLES[4]
PHOTOS = ["exif/phone/pp_iPhoneSE_cat_brown.jpg", "exif/phone/pp_iPhone7.heic",
          "videos/mei_swans_Issue_515.mp4"]
ALL = ["objects", "scenes", "faces", "text"]


@pytest.fixture
def gallery(tmp_path, testmedia, monkeypatch, shared_models):
    monkeypatch.setenv("GALPROF_MODELS", str(shared_models))
    root = tmp_path / "DCIM"
    root.mkdir()
    for s in (PASSPORT, RECEIPT):
        (root / s.name.rsplit("/", 1)[-1]).write_bytes(s.data)
    for rel in PHOTOS:
        shutil.copy(testmedia / rel, root)
    # an iPhone's HEIC of a letter: analysed from its 320 px preview, read in full
    pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(LETTER.data)) as im:
        im.save(root / "IMG_0007.HEIC", format="HEIF", quality=80, thumbnails=[320],
                exif=im.info.get("exif"))
    return root


def _by_name(stages):
    return {s.name: s for s in stages}


def _other_models_loaded(stages) -> list[str]:
    """The TFLite stages' models that hold memory now."""
    s = _by_name(stages)
    sessions = {"objects": [s["objects"].detector], "scenes": [s["scenes"].classifier],
                "faces": [s["faces"].detector, s["faces"].analyzer]}
    return [name for name, models in sessions.items()
            if any(m.session is not None for m in models)]


def _watch_detector(text, stages, calls, raise_at=None):
    """Record, at each detector call, which other models are loaded and the call's
    threads; the real detector runs. raise_at: raise KeyboardInterrupt (a kill) then."""
    predict = text.detector.predict

    def watched(image):
        calls.append((_other_models_loaded(stages), text.detector.threads))
        if raise_at is not None and len(calls) == raise_at:
            raise KeyboardInterrupt
        return predict(image)
    text.detector.predict = watched


def _doc_rows(store, root):
    """(sample, its media row) of the documents."""
    return [(s, store.media.by_path(str(root / name))) for s, name in
            ((PASSPORT, PASSPORT.name.rsplit("/", 1)[-1]),
             (RECEIPT, RECEIPT.name.rsplit("/", 1)[-1]), (LETTER, "IMG_0007.HEIC"))]


def test_the_detector_runs_after_the_other_models_are_let_go(gallery, tmp_path):
    stages = build_stages(ALL)
    text = _by_name(stages)["text"]
    threads = text.threads
    calls = []
    _watch_detector(text, stages, calls)
    problems = []
    with open_store(tmp_path / "galprof.db") as store:
        summary = run(store, [gallery], Settings(stages=stages),
                      on_problem=lambda *p: problems.append(p))
        assert summary.failed == 0 and not problems, (summary.failures, problems)
        # both documents reached the detector, in the late pass, alone
        assert summary.late_items == text.stats.detected == len(calls) >= 3
        assert all(loaded == [] for loaded, _ in calls), calls
        # with the cores the main pass shared between two analyses
        assert {n for _, n in calls} == {(threads or 1) * analysing_threads()}
        for sample, row in _doc_rows(store, gallery):
            assert row["status"] == "ok" and row["private"] == 1, row
            assert sample.reason in row["private_reason"]
            assert store.results.payload(row["content_hash"], "text").ran
        assert summary.analysed == summary.photos + summary.videos == 6
        assert summary.frames == sum(len(store.media.frames(r["id"]))
                                     for r in store.media.under([str(gallery)]).values())
    assert text.threads == threads and not text.defer_models   # as before the scan


def test_a_scan_killed_in_the_late_pass_resumes_there(gallery, tmp_path):
    db = tmp_path / "galprof.db"
    stages = build_stages(ALL)
    calls = []
    _watch_detector(_by_name(stages)["text"], stages, calls, raise_at=1)
    with open_store(db) as store, pytest.raises(KeyboardInterrupt):
        run(store, [gallery], Settings(stages=stages))
    assert len(calls) == 1
    with open_store(db) as store:
        # what the main pass recorded: never a document without its text
        for _, row in _doc_rows(store, gallery):
            assert row is None or store.results.payload(row["content_hash"], "text") is not None
        stages = build_stages(ALL)
        summary = run(store, [gallery], Settings(stages=stages))
        assert summary.failed == 0, summary.failures
        assert summary.late_items == _by_name(stages)["text"].stats.detected >= 3
        for sample, row in _doc_rows(store, gallery):
            assert row["private"] == 1 and sample.reason in row["private_reason"], row
        again = run(store, [gallery], Settings(stages=build_stages(ALL)))
        assert again.unchanged == 6 and again.analysed == 0


def test_a_file_changed_before_its_late_read_is_left_to_the_next_scan(gallery, tmp_path,
                                                                      testmedia):
    """The late pass reads the file again: bytes that differ from the ones the main pass
    analysed are not recorded with those results."""
    passport = gallery / PASSPORT.name.rsplit("/", 1)[-1]
    for name in (RECEIPT.name.rsplit("/", 1)[-1], "IMG_0007.HEIC"):
        (gallery / name).unlink()               # one document: one item in the late pass
    street = (testmedia / "scenes/ul_bus.jpg").read_bytes()
    problems, phases = [], []

    def on_progress(done, total, phase):
        # every other item is finished before the late pass reads the passport again
        if phase not in phases:
            phases.append(phase)
            if phase != "scanning":
                assert done == total - 1
                passport.write_bytes(street)

    with open_store(tmp_path / "galprof.db") as store:
        stages = build_stages(ALL)
        summary = run(store, [gallery], Settings(stages=stages), on_progress=on_progress,
                      on_problem=lambda *p: problems.append(p))
        assert summary.late_items == 1
        assert phases == ["scanning", "late pass: text"]
        assert [p[:2] for p in problems] == [(str(passport), "warning")]
        assert "changed while it was being scanned" in problems[0][2]
        assert store.media.by_path(str(passport)) is None
        summary = run(store, [gallery], Settings(stages=build_stages(ALL)))
        row = store.media.by_path(str(passport))
        assert summary.new == summary.analysed == 1 and row["status"] == "ok"
        assert row["content_hash"] == hash_bytes(street)


def test_a_text_model_broken_in_the_late_pass_keeps_the_rows_it_did_not_reach(
        tmp_path, shared_models, monkeypatch):
    """The detector failing on its first five items stops the scan (StageFailed); the
    deferred items after them keep their rows and their other results, and the next scan,
    the runtime fixed, reads their text without reading anything else again."""
    monkeypatch.setenv("GALPROF_MODELS", str(shared_models))
    root = tmp_path / "DCIM"
    root.mkdir()
    documents = SAMPLES[:6] + [SAMPLES[0]]
    for i, sample in enumerate(documents):
        # the passport twice, its copy other bytes: seven items for the detector
        (root / f"IMG_{i:04d}.jpg").write_bytes(sample.data + b"\0" * (i == 6))
    with open_store(tmp_path / "galprof.db") as store:
        stages = build_stages(ALL)
        text = _by_name(stages)["text"]

        def broken(image):
            raise RuntimeError("the runtime cannot run this graph here")
        text.detector.predict = broken
        with pytest.raises(StageFailed, match="text"):
            run(store, [root], Settings(stages=stages), on_problem=lambda *p: None)
        rows = store.media.under([str(root)])
        assert len(rows) == len(documents)
        with_text = [r for r in rows.values()
                     if store.results.payload(r["content_hash"], "text") is not None]
        assert with_text == []
        for row in rows.values():
            for name in ALL[:3]:
                assert store.results.payload(row["content_hash"], name) is not None
        stages = build_stages(ALL)
        summary = run(store, [root], Settings(stages=stages))
        assert summary.failed == 0 and summary.analysed == len(documents)
        assert summary.late_items == 0
        assert _by_name(stages)["text"].stats.detected == len(documents)
        for row in store.media.under([str(root)]).values():
            assert row["status"] == "ok" and row["private"] == 1, row


def test_an_item_that_lacks_only_its_text_is_read_once(gallery, tmp_path):
    """A re-scan that adds the text stage loads no other model: nothing to wait for; and
    it finds what a scan of every stage at once, through the late pass, finds."""
    def text_results(store):
        return {r["content_hash"]: store.results.payload(r["content_hash"], "text").to_json()
                for r in store.media.under([str(gallery)]).values() if r["kind"] == "photo"}

    with open_store(tmp_path / "late.db") as store:
        assert run(store, [gallery], Settings(stages=build_stages(ALL))).late_items >= 3
        through_late_pass = text_results(store)
    with open_store(tmp_path / "galprof.db") as store:
        run(store, [gallery], Settings(stages=build_stages(ALL[:3])))
        stages = build_stages(ALL)
        calls = []
        _watch_detector(_by_name(stages)["text"], stages, calls)
        summary = run(store, [gallery], Settings(stages=stages))
        assert summary.analysed == 6 and summary.late_items == 0
        assert len(calls) >= 3 and all(loaded == [] for loaded, _ in calls)
        for sample, row in _doc_rows(store, gallery):
            assert row["private"] == 1 and sample.reason in row["private_reason"], row
        # the same pixels either way: a HEIC's screen cues from its preview, its lines
        # from the full picture
        assert text_results(store) == through_late_pass


def test_the_text_stage_defers_only_what_needs_its_models(testmedia, shared_models,
                                                          monkeypatch):
    """With defer_models set, run() raises ModelsDeferred for a photo the pre-filter lets
    through and loads nothing; a photo it stops gets its payload at once."""
    monkeypatch.setenv("GALPROF_MODELS", str(shared_models))
    stages = _by_name(build_stages(ALL))
    text = stages["text"]
    text.defer_models = True
    text.load()
    assert text.detector.session is None and text.recognizer.session is None
    for data, goes in ((PASSPORT.data, True),
                       ((testmedia / "exif/phone/pp_iPhoneSE_cat_brown.jpg").read_bytes(), False)):
        decoded = frames_mod.decode_photo(data, 1280)
        upstream = {}
        for name in ("objects", "scenes", "faces"):
            upstream[name] = stages[name].run(decoded.frames, {})
        if goes:
            with pytest.raises(ModelsDeferred):
                text.run(decoded.frames, upstream)
        else:
            assert not text.run(decoded.frames, upstream).ran
    assert text.stats.items == 1 and text.stats.detected == 0
