"""galprof.documents: the pure rules (no models) on generated screenshots, generated MRZ and
card numbers, hand-made box layouts, and the real photos of ../shared/testmedia."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import text_samples
from galprof import documents, taxonomy
from galprof.payloads import (Detection, Face, FacesFrame, FacesPayload, ObjectsPayload,
                              SceneLabel, ScenesPayload)
from galprof.documents import Hit, Layout, ScreenCues
from galprof.gallery.frames import decode_photo
from galprof.gallery.walk import walk

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".heic", ".heif", ".bmp", ".webp", ".gif", ".tif",
                  ".tiff"}


# ---------------------------------------------------------------- the rules file


def test_rules_load_and_name_known_kinds():
    r = documents.rules()
    assert set(r["privacy"]["private_kinds"]) <= set(documents.KINDS)
    assert "incidental_text" not in r["privacy"]["private_kinds"]
    assert "none" not in r["privacy"]["private_kinds"]
    assert len(documents.rules_digest()) == 8


def test_interest_categories_exist_in_the_taxonomy():
    fine = taxonomy.load().fine_categories
    for name, entry in documents.rules()["interests"].items():
        for category in entry["categories"]:
            assert category in fine, f"[interests.{name}] names unknown category {category!r}"
        assert 0 < entry["weight"] <= 1


def test_keywords_are_squeezed_upper_case():
    """Keywords are matched on upper-cased text without spaces: a keyword with a space or
    a lower-case letter could never match."""
    r = documents.rules()
    words = [w for ws in r["keywords"].values() for w in ws]
    words += [w for e in r["interests"].values() for w in e["keywords"]]
    for w in words:
        assert w == w.upper() and " " not in w, w


# ---------------------------------------------------------------- privacy


@pytest.mark.parametrize("kind", ["id_document", "bank_card", "receipt", "document",
                                  "chat_screenshot", "screenshot"])
def test_documents_and_screenshots_are_private_with_their_reason(kind):
    private, reason = documents.text_privacy(kind, f"why {kind}")
    assert private and reason == f"why {kind}"


def test_private_without_a_reason_still_records_one():
    assert documents.text_privacy("screenshot") == (True, "screenshot")
    assert documents.text_privacy("bank_card") == (True, "text: bank_card")


@pytest.mark.parametrize("kind", ["incidental_text", "none"])
def test_incidental_text_stays_public(kind):
    assert documents.text_privacy(kind, "text: menu") == (False, "")


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown document kind 'poster'"):
        documents.text_privacy("poster")


# ---------------------------------------------------------------- what was read


def test_passport_mrz_is_found_and_redacted():
    rng = random.Random(7)
    lines = text_samples.td3_mrz(rng)
    assert len(lines[0]) == len(lines[1]) == 44
    hits = documents.match(lines)
    rules = {h.rule for h in hits}
    assert "mrz_passport" in rules
    mrz = [h.text for h in hits if h.rule.startswith("mrz")]
    assert mrz == ["P<UTO…", "…"]            # the document code and state; no number, no date
    assert documents.text_kind(Layout(lines=2), hits) == (
        "id_document", "text: passport machine-readable zone")


def test_identity_card_mrz_without_passport_code():
    lines = text_samples.td1_mrz(random.Random(3))
    assert [len(x) for x in lines] == [30, 30, 30]
    kind, reason = documents.text_kind(Layout(lines=3), documents.match(lines))
    assert (kind, reason) == ("id_document", "text: identity document machine-readable zone")


def test_mrz_survives_ocr_noise():
    """The recogniser cuts a first line at a run of '<' and reads O as 0 in the state."""
    line1 = "P<UT0ERIKSSON<<ANNA<"           # 20 characters, a cut piece, UT0 for UTO
    hits = documents.match([line1, "a letter line that is long but has no fillers at all"])
    assert [h.rule for h in hits if h.rule.startswith("mrz")] == ["mrz_passport"]


def test_text_that_only_looks_long_is_no_mrz():
    hits = documents.match(["THEQUICKBROWNFOXJUMPSOVERTHELAZYDOG12345",   # no '<'
                            "<<<<<<<<<<<<<<<<<<"])                          # too short, alone
    assert not [h for h in hits if h.rule.startswith("mrz")]


def test_mrz_check_digits_of_the_generator():
    """The ICAO 9303 example: L898902C3 has check digit 6, 740812 has 2."""
    assert text_samples.mrz_check("L898902C3") == "6"
    assert text_samples.mrz_check("740812") == "2"


@pytest.mark.parametrize("seed", range(5))
def test_card_number_passing_luhn_is_found_with_last_four_only(seed):
    number = text_samples.luhn_number(random.Random(seed))
    assert documents.luhn_ok(number)
    spaced = " ".join(number[i:i + 4] for i in range(0, 16, 4))
    hits = documents.match([spaced])
    cards = [h for h in hits if h.rule == "card_number"]
    assert len(cards) == 1 and cards[0].text.endswith(number[-4:])
    assert number[:12] not in cards[0].text
    assert documents.text_kind(Layout(lines=4), hits) == ("bank_card", "text: bank card number")


def test_sixteen_digits_failing_luhn_are_no_card():
    number = text_samples.luhn_number(random.Random(1))
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not documents.luhn_ok(wrong)
    assert not [h for h in documents.match([wrong]) if h.rule == "card_number"]


def test_digit_runs_inside_other_lines_are_no_card():
    number = text_samples.luhn_number(random.Random(2))
    assert documents.luhn_ok(number)
    for line in (f"{number}M3103153<<<<<<<<<<<<<08", f"Order reference {number} of 17 May"):
        assert not [h for h in documents.match([line]) if h.rule == "card_number"], line


def test_receipt_needs_prices_and_a_total():
    lines = ["MILK 1L 1.19", "BREAD 2,49", "APPLES 3.10", "TOTAL 6.78"]
    assert documents.text_kind(Layout(lines=4), documents.match(lines))[0] == "receipt"
    # the same prices without a total: a price list, not a receipt
    kind, _ = documents.text_kind(Layout(lines=3), documents.match(lines[:3]))
    assert kind == "incidental_text"


def test_menu_is_incidental_text_with_interests():
    hits = documents.match(["MENU", "Tomato soup 9.50", "DESSERTS", "Apple pie 5.00",
                            "Ice cream 4.50"])
    assert documents.text_kind(Layout(lines=5), hits) == ("incidental_text", "text: menu")
    items = documents.interest_items(hits)
    assert ("restaurants", "Food", 0.5) in items and ("dining", "Food", 0.5) in items


def test_boarding_pass_is_a_private_document_that_says_travel():
    hits = documents.match(["BOARDING PASS", "FLIGHT UA 488", "GATE B12", "SEAT 7C"])
    kind, reason = documents.text_kind(Layout(lines=4), hits)
    assert (kind, reason) == ("document", "text: boarding pass")
    assert documents.text_privacy(kind, reason) == (True, "text: boarding pass")
    assert set(documents.interest_items(hits)) == {("travel", "Outdoors", 0.5),
                                                   ("aircraft", "Transport", 0.5)}


def test_words_inside_longer_words_are_not_interests():
    """LIVE is not a keyword because of OLIVE OIL on receipts."""
    assert documents.interest_items(documents.match(["OLIVE OIL 4.99"])) == []


def test_shop_sign_words_are_incidental():
    hits = documents.match(["BAKERY", "OPEN 7-19"])
    lay = Layout(lines=2, coverage=0.04, text_height=0.07)
    assert documents.text_kind(lay, hits) == ("incidental_text", "text: incidental (2 lines)")


def test_nothing_read_nothing_found():
    assert documents.text_kind(Layout(), []) == ("none", "")


# ---------------------------------------------------------------- layout


def _box(x, y, w, h, angle=0.0):
    a = np.radians(angle)
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    o = np.array([x, y], float)
    quad = [o, o + u * w, o + u * w + v * h, o + v * h]
    return {"quad": [list(map(float, p)) for p in quad], "score": 0.9}


def test_a_page_of_aligned_lines_is_document_like():
    boxes = [_box(100, 100 + 40 * i, 600 + (i % 3) * 40, 24, angle=3) for i in range(20)]
    lay = documents.layout(boxes, 1000, 1300)
    assert lay.lines == 20 and lay.columns == 1 and lay.aligned_share == 1.0
    assert abs(lay.angle - 3) < 0.5 and lay.angle_spread < 0.5
    assert 0.2 < lay.coverage < 0.3
    assert lay.document_like()
    assert documents.text_kind(lay, [])[0] == "document"


def test_scattered_signs_of_many_sizes_are_not_a_document():
    rng = np.random.default_rng(4)
    boxes = [_box(rng.uniform(0, 900), rng.uniform(0, 600), rng.uniform(40, 300),
                  rng.uniform(10, 90), angle=rng.uniform(-20, 20)) for _ in range(12)]
    lay = documents.layout(boxes, 1200, 800)
    assert not lay.document_like()
    assert documents.text_kind(lay, [])[0] == "incidental_text"


def test_chat_rows_left_and_right():
    left = [_box(40, 200 + 200 * i, 300, 30) for i in range(4)]
    right = [_box(600, 300 + 200 * i, 400, 30) for i in range(4)]
    lay = documents.layout(left + right, 1080, 2340)
    assert lay.left_rows == 4 and lay.right_rows == 4
    # a banking list: names left and amounts right on the same rows
    names = [_box(40, 200 + 120 * i, 300, 30) for i in range(6)]
    amounts = [_box(900, 200 + 120 * i, 120, 30) for i in range(6)]
    lay = documents.layout(names + amounts, 1080, 2340)
    assert lay.right_rows == 0


def test_layout_round_trips_through_json():
    lay = documents.layout([_box(10, 10 + 30 * i, 200, 20) for i in range(5)], 400, 400)
    assert Layout.from_json(lay.to_json()).to_json() == lay.to_json()


def test_lines_to_read_prefers_mrz_candidates_and_stays_bounded():
    boxes = [_box(100, 100 + 40 * i, 600, 24) for i in range(30)]      # aspect 25: candidates
    boxes.append(_box(100, 2000, 160, 60))                              # a big short title
    chosen = documents.lines_to_read(boxes, documents.layout(boxes, 1000, 2200))
    limit = documents.rules()["read"]
    assert len(chosen) <= limit["max_lines"]
    assert chosen[:limit["mrz_max_lines"]] == [29, 28, 27]             # from the bottom up
    assert 30 in chosen


def test_nothing_is_read_on_a_plain_screen():
    boxes = [_box(100, 100 + 40 * i, 600, 24) for i in range(10)]
    lay = documents.layout(boxes, 1080, 2340)
    assert documents.lines_to_read(boxes, lay, ScreenCues(0.7, 0.96, True)) == []


# ---------------------------------------------------------------- screenshots


@pytest.fixture(scope="module")
def generated():
    return text_samples.generated_set(1)


def test_generated_screenshots_are_screenshots(generated):
    screens = [s for s in generated if s.kind.endswith("screenshot")]
    assert len(screens) == 3
    for s in screens:
        is_screen, evidence = documents.screenshot(s.meta, s.fmt, s.name, s.pixels())
        assert is_screen, (s.name, evidence)
        assert "flat regions" in " ".join(evidence)


def test_chat_png_at_1080x2340_with_a_status_bar(generated):
    chat = next(s for s in generated if s.kind == "chat_screenshot")
    assert chat.image().size == (1080, 2340)
    cues = documents.screen_cues(chat.pixels())
    assert cues.status_bar and cues.screen_like()
    is_screen, evidence = documents.screenshot(chat.meta, "PNG", chat.name, cues=cues)
    assert is_screen
    assert {"screenshot file name or folder", "screen size 1080x2340", "PNG",
            "status bar"} <= set(evidence)


def test_an_ios_screenshot_needs_no_folder_name(generated):
    shot = next(s for s in generated if s.name.endswith("IMG_0421.PNG"))
    is_screen, evidence = documents.screenshot(shot.meta, "PNG", shot.name, shot.pixels())
    assert is_screen and not any("name" in e for e in evidence)


def test_camera_exif_is_never_a_screenshot(generated):
    chat = next(s for s in generated if s.kind == "chat_screenshot")
    meta = {**chat.meta, "make": "samsung", "model": "SM-G991B"}
    assert documents.screenshot(meta, "PNG", chat.name, chat.pixels()) == (False, ["camera EXIF"])


def test_screenshot_without_pixels_from_name_size_and_format():
    meta = {"width": 1080, "height": 2340}
    assert documents.screenshot(meta, "PNG", "/sd/DCIM/Screenshots/Screenshot_1.png")[0]
    assert not documents.screenshot(meta, "JPEG", "/sd/DCIM/Camera/IMG_1.jpg")[0]


def test_classify_without_a_text_payload(generated):
    chat = next(s for s in generated if s.kind == "chat_screenshot")
    verdict = documents.classify(None, chat.meta, chat.fmt, chat.name, pixels=chat.pixels())
    assert (verdict.kind, verdict.reason) == ("screenshot", "screenshot")
    photo = next(s for s in generated if s.kind == "id_document")
    assert documents.classify(None, photo.meta, photo.fmt, photo.name).kind == "none"


def test_text_of_a_screenshot_can_make_it_an_id_but_not_a_document(generated):
    from galprof.vision.text import TextPayload

    shot = next(s for s in generated if s.name.endswith("IMG_0421.PNG"))
    cues = documents.screen_cues(shot.pixels())
    as_id = TextPayload(ran=True, kind="id_document", reason="text: passport machine-readable "
                        "zone", screen=cues)
    assert documents.classify(as_id.to_json(), shot.meta, "PNG", shot.name).kind == "id_document"
    as_page = TextPayload(ran=True, kind="document", reason="text: document", screen=cues)
    assert documents.classify(as_page, shot.meta, "PNG", shot.name).kind == "screenshot"


@pytest.fixture(scope="module")
def testmedia_photos(testmedia):
    """Every decodable photo of testmedia at the scan's frame size, with its metadata."""
    found = walk([testmedia])
    out = []
    for f in found.items:
        if f.kind != "photo":
            continue
        try:
            decoded = decode_photo(f.path, 1280)
        except Exception:       # the corrupt/ files: not this module's business
            continue
        out.append((f, decoded))
    assert len(out) > 150
    return out


def test_no_testmedia_photo_is_a_screenshot(testmedia_photos, testmedia):
    """Real photos, including PNGs without EXIF and 1280x720 frames, are not screenshots."""
    wrong = []
    for f, decoded in testmedia_photos:
        is_screen, evidence = documents.screenshot(decoded.meta.to_dict(), f.format,
                                                   str(f.path), decoded.frames[0].image)
        if is_screen:
            wrong.append((str(Path(f.path).relative_to(testmedia)), evidence))
    assert wrong == []


def test_screen_cues_separate_screens_from_photos(testmedia_photos, generated):
    # exif/metadata_only holds real EXIF on drawn placeholder pixels, corrupt/ broken files
    # and one phone file is a single colour: none of them is a photograph
    photos = [documents.screen_cues(d.frames[0].image) for f, d in testmedia_photos
              if not {"metadata_only", "corrupt"} & set(f.path.parts)
              and d.frames[0].image.std() > 0]
    assert len(photos) > 150
    screens = [documents.screen_cues(s.pixels()) for s in generated
               if s.kind.endswith("screenshot")]
    assert min(c.flat_share for c in screens) > max(c.flat_share for c in photos)
    assert sum(c.screen_like() for c in photos) == 0
    assert all(c.screen_like() for c in screens)


def test_screen_cues_round_trip():
    cues = ScreenCues(0.5, 0.9, True)
    assert ScreenCues.from_json(cues.to_json()) == cues
    assert ScreenCues.from_json(None) is None


def test_hits_round_trip():
    assert Hit.from_json(Hit("price", "3.49").to_json()) == Hit("price", "3.49")


# ---------------------------------------------------------------- pre-filter


def _scenes(*pairs):
    return ScenesPayload([], [SceneLabel(label, 0, score) for label, score in pairs])


def _faces(*boxes):
    return FacesPayload([FacesFrame(0, None, [Face(box, 0.9, [], None, None, False, None)
                                              for box in boxes])])


def test_prefilter_passes_text_scenes_objects_and_screen_shapes():
    none = ObjectsPayload([(0, [])])
    assert documents.prefilter(none, _scenes(("web site", 0.4)), None, 1600, 1200) == (
        True, "scene: web site 0.40")
    assert documents.prefilter(none, _scenes(("packet", 0.05), ("web site", 0.04)), None,
                               1600, 1200)[0]
    laptop = ObjectsPayload([(0, [Detection("laptop", 0.7, (0, 0, 10, 10))])])
    assert documents.prefilter(laptop, _scenes(("desk", 0.9)), None, 1600, 1200) == (
        True, "object: laptop 0.70")
    assert documents.prefilter(none, _scenes(("seashore", 0.9)), None, 1080, 2340) == (
        True, "screen size 1080x2340")
    assert documents.prefilter(none, _scenes(("seashore", 0.9)), None, 1600, 1200,
                               ScreenCues(0.7, 0.96, True)) == (True, "screen-like pixels")


def test_prefilter_skips_portraits_videos_and_scenes_without_text():
    faces = _faces((400, 300, 900, 900))                                    # 0.16 of 1600x1200
    assert documents.prefilter(None, _scenes(("web site", 0.9)), faces, 1600, 1200) == (
        False, "large face")
    small = _faces((100, 100, 200, 220))                                    # a passport photo
    assert documents.prefilter(None, _scenes(("web site", 0.9)), small, 1600, 1200)[0]
    assert documents.prefilter(None, _scenes(("seashore", 0.9)), None, 1600, 1200) == (
        False, "no text cue")
    assert documents.prefilter(None, _scenes(("web site", 0.9)), None, 1600, 1200,
                               is_video=True) == (False, "video")
    # missing upstream payloads (a stage failed) are no cue, not an error
    assert documents.prefilter(None, None, None, 1600, 1200) == (False, "no text cue")


def test_purged_payload_keeps_its_kind_and_interests():
    from galprof.vision.text import TextPayload

    hits = documents.match(["BOARDING PASS", "FLIGHT UA 488"])
    payload = TextPayload(ran=True, kind="document", reason="text: boarding pass", hits=hits)
    purged = TextPayload.from_json(payload.without_text().to_json())
    assert all(h.text == "" for h in purged.hits)
    assert documents.classify(purged, {"make": "Google"}, "JPEG", "IMG_1.jpg").reason == \
        "text: boarding pass"
    assert documents.interest_items(purged.hits) == documents.interest_items(hits)
