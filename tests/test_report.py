"""The HTML report built from real testmedia photos, opened and clicked in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from galprof import places
from galprof.report import build_report
from galprof.report.terminal import render_summary

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"
CAP = 3

try:
    from galprof.gallery.frames import thumbnail as THUMBNAIL
except ImportError:  # the gallery module is not there yet: a plain Pillow stand-in
    def THUMBNAIL(path: Path, long_side: int) -> Image.Image:
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        img.thumbnail((long_side, long_side))
        return img

CATEGORIES = {
    "Pets/animals": {
        "dogs": ["scenes/darknet_dog.jpg", "scenes/pp_dog_orange.jpg", "scenes/tfod_dogs.jpg",
                 "scenes/pp_nsfwtest_dog.jpg"],
        "cats": ["scenes/coral_cat_720p.jpg", "scenes/skimage_chelsea.png",
                 "exif/phone/pp_iPhoneSE_cat_brown.jpg"],
        "birds": ["videos/mei_swans_Issue_515.mp4", "scenes/coral_owl.jpg",
                  "scenes/coral_parrot.jpg", "scenes/imm_prairie_falcon.jpg"],
    },
    "Transport": {"buses": ["scenes/ul_bus.jpg", "exif/camera/mei_FujiFilm_S2Pro_gps_5.jpg"]},
    "Food": {"coffee": ["scenes/skimage_coffee.png"], "fruit": ["scenes/pp_limes.jpg"]},
}
GEOTAGGED = ["exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg",
             "exif/phone/mei_Samsung_SM-G935L_Galaxy_S7_Edge.jpg",
             "exif/phone/pp_Huawei_ELE-L29_photoshop.jpg",
             "exif/phone/pp_iPhoneSE_building_mono.jpg",
             "exif/phone/pp_iPhoneSE_cat_brown.jpg", "exif/phone/ias_HMD_Nokia_8.3_5G.jpg",
             "videos/rotated_iPadmini_quicktime-hvc1.mov"]
# face boxes in pixels of the displayed photo, read off the pictures by eye
PEOPLE = [
    dict(id=1, role="owner", gender="M", birth_year=1988,
         face=("faces/photoprism/pp_face_2.jpg", [280, 80, 424, 240]),
         paths=["faces/photoprism/pp_face_2.jpg", "faces/photoprism/pp_face_4.jpg",
                "faces/photoprism/pp_face_16.jpg", "faces/photoprism/pp_face_17.jpg",
                "faces/photoprism/pp_face_overlap_1.jpg"]),
    dict(id=2, role="partner", gender="F", birth_year=1991,
         face=("faces/photoprism/pp_face_3.jpg", [163, 88, 198, 128]),
         paths=["faces/photoprism/pp_face_3.jpg", "faces/photoprism/pp_face_6.jpg",
                "faces/photoprism/pp_face_16.jpg"]),
    dict(id=3, role="friend", gender="M", birth_year=1961,
         face=("faces/face_recognition/obama.jpg", [355, 57, 625, 370]),
         paths=["faces/face_recognition/obama.jpg", "faces/face_recognition/obama1.jpg",
                "faces/face_recognition/obama2.jpg", "faces/face_recognition/obama3.jpg"]),
    dict(id=4, role=None, gender="F", birth_year=1975,
         face=("faces/deepface/img1.jpg", [374, 187, 1051, 1004]),
         paths=["faces/deepface/img1.jpg", "faces/deepface/img2.jpg"]),
]
BINS = ["0-7", "7-12", "12-18", "18-25", "25-35", "35-45", "45-60", "60+"]


def make_profile(media: Path) -> dict:
    """A schema_version 1 profile over real files, shaped as galprof.profile builds it."""
    categories = []
    for group, subs in CATEGORIES.items():
        subcategories = [{"category": c, "media": len(p), "paths": [str(media / x) for x in p]}
                         for c, p in subs.items()]
        n = sum(s["media"] for s in subcategories)
        categories.append({"group": group, "media": n, "share": round(n / 40, 3),
                           "subcategories": subcategories})
    items = []
    for i, rel in enumerate(GEOTAGGED):
        path = media / rel
        if rel.endswith(".mov"):
            lat, lon = 52.4597, 13.3220        # its QuickTime ISO 6709 location
        else:
            with Image.open(path) as img:
                gps = img.getexif().get_ifd(0x8825)
            lat = sum(float(v) / 60 ** k for k, v in enumerate(gps[2]))
            lon = sum(float(v) / 60 ** k for k, v in enumerate(gps[4]))
        items.append({"path": str(path), "lat": lat, "lon": lon,
                      "taken_at": f"2019-0{i + 1}-10T12:00:00",
                      "kind": "video" if rel.endswith(".mov") else "photo"})
    people, male, female = [], [0] * len(BINS), [0] * len(BINS)
    for p in PEOPLE:
        age = 2026 - p["birth_year"]
        b = next(i for i, label in enumerate(BINS)
                 if label.endswith("+") or age < int(label.split("-")[1]))
        (male if p["gender"] == "M" else female)[b] += 1
        people.append({"id": p["id"], "name": None, "role": p["role"], "gender": p["gender"],
                       "birth_year": p["birth_year"], "photos": len(p["paths"]), "videos": 0,
                       "first": "2019-01-01", "last": "2020-01-01",
                       "face": {"path": str(media / p["face"][0]), "box": p["face"][1]},
                       "paths": [str(media / x) for x in p["paths"]]})
    return {
        "schema_version": 1, "generated_at": "2026-11-29T10:00:00+00:00",
        "gallery": {"roots": [str(media)], "photos": 40, "videos": 2, "frames": 12, "failed": 1},
        "timeline": [{"month": "2019-07", "media": 40}],
        "cameras": [{"make": "Apple", "model": "iPhone SE", "media": 3}],
        "categories": categories,
        "interests": [{"category": "dogs", "group": "Pets/animals", "score": 0.31, "media": 4},
                      {"category": "birds", "group": "Pets/animals", "score": 0.2, "media": 4}],
        "locations": places.summarise(items),
        "people": people,
        "owner": {"person_id": 1, "guess": False},
        "relations": [{"person_id": 2, "relation": "partner"}],
        "demography": {"bins": BINS, "male": male, "female": female},
    }


@pytest.fixture(scope="module")
def profile(testmedia):
    return make_profile(testmedia)


@pytest.fixture(scope="module")
def report(profile, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    stats = build_report(profile, out, thumbs_per_category=CAP, thumbnail=THUMBNAIL, faces="all")
    return out, stats


def embedded(html: str, element_id: str):
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_report_is_self_contained_and_deduplicated(report):
    out, stats = report
    html = out.read_text(encoding="utf-8")
    assert stats.failed == []
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert not re.search(r"https?://", html), "the page must not name any web resource"
    assert "@import" not in html and "<link" not in html
    data, thumbs = embedded(html, "galprof-data"), embedded(html, "galprof-thumbs")
    paths = [row[3] for row in data["media"]]
    assert len(paths) == len(set(paths)), "each media file is embedded once"
    # the cat photo is both in "cats" and in Tübingen's location: one row, one thumbnail
    assert sum(p.endswith("pp_iPhoneSE_cat_brown.jpg") for p in paths) == 1
    assert stats.thumbnails == len(paths) and stats.faces == len(PEOPLE)
    assert len(thumbs) == stats.thumbnails + stats.faces
    assert all(0 < len(t) < 20_000 for t in thumbs)          # small base64 JPEGs
    assert stats.bytes == out.stat().st_size


def test_unreadable_preview_is_listed_not_fatal(profile, testmedia, tmp_path):
    broken = json.loads(json.dumps(profile))
    broken["categories"][0]["subcategories"][0]["paths"][0] = str(
        testmedia / "corrupt" / "exifreader_truncated_exif_32bytes.jpg")
    stats = build_report(broken, tmp_path / "r.html", thumbs_per_category=CAP,
                         thumbnail=THUMBNAIL)
    assert len(stats.failed) == 1 and "exifreader_truncated_exif_32bytes.jpg" in stats.failed[0]
    assert "no preview" in (tmp_path / "r.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium with "
                    f"`apt-get update && apt-get install -y chromium` (.ci/run does this)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def names(page, selector):
    return page.locator(selector).evaluate_all("els => els.map(e => e.dataset.name)")


@pytest.mark.slow
def test_report_clicks_in_chromium(report, browser, tmp_path):
    out, _ = report
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())

    groups = page.locator("#groups .bar")
    assert groups.evaluate_all("els => els.map(e => e.dataset.group)") == \
        ["Pets/animals", "Transport", "Food"]
    assert page.locator("#group-detail").is_hidden()

    # group -> its fine categories
    page.locator('#groups .bar[data-group="Pets/animals"]').click()
    subcats = page.locator("#subcats .bar")
    assert subcats.evaluate_all("els => els.map(e => e.dataset.category)") == \
        ["dogs", "birds", "cats"]

    # category -> its photos and video frames, capped with a "+N more"
    page.locator('#subcats .bar[data-category="birds"]').click()
    media = page.locator("#category-media")
    assert names(page, "#category-media .thumb") == \
        ["mei_swans_Issue_515.mp4", "coral_owl.jpg", "coral_parrot.jpg"]
    assert media.locator(".more").inner_text() == "+1 more"
    loaded = media.locator("img").evaluate_all("els => els.map(e => e.naturalWidth)")
    assert len(loaded) == CAP and all(w > 0 for w in loaded)
    assert media.locator(".thumb.video").count() == 1

    page.locator('#subcats .bar[data-category="cats"]').click()
    assert names(page, "#category-media .thumb") == \
        ["coral_cat_720p.jpg", "skimage_chelsea.png", "pp_iPhoneSE_cat_brown.jpg"]
    assert media.locator(".more").count() == 0

    # locations: most popular first, click -> its media
    place_labels = page.locator("#places .bar").evaluate_all(
        "els => els.map(e => e.dataset.place)")
    assert place_labels[:2] == ["Berlin, Germany", "Paris, France"]
    page.locator('#places .bar[data-place="Berlin, Germany"]').click()
    assert names(page, "#place-media .thumb") == \
        ["pp_Huawei_ELE-L29_photoshop.jpg", "pp_iPhoneSE_building_mono.jpg",
         "rotated_iPadmini_quicktime-hvc1.mov"]

    # demography: age bin -> its people -> a person's photos
    page.locator('#demo-bins .bar[data-bin="35-45"]').click()
    in_bin = page.locator("#bin-people .person")
    assert in_bin.evaluate_all("els => els.map(e => e.dataset.person)") == ["1", "2"]
    page.locator('#bin-people .person[data-person="1"]').click()
    assert names(page, "#bin-media .thumb") == \
        ["pp_face_2.jpg", "pp_face_4.jpg", "pp_face_16.jpg"]
    assert page.locator("#bin-media .more").inner_text() == "+2 more"

    # people: a face crop each, owner and relations marked
    cards = page.locator("#people-list .person")
    assert cards.count() == len(PEOPLE)
    faces = page.locator("#people-list .person img").evaluate_all(
        "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert len(faces) == len(PEOPLE) and all(0 < w <= 112 and 0 < h <= 112 for w, h in faces)
    assert page.locator("#people-list .person.owner").get_attribute("data-person") == "1"
    assert page.locator("#people-list .badge").all_inner_texts() == \
        ["you (owner)", "friend", "partner"]  # most photos first

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    page.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []


HOSTILE = "<!--<script>alert(1)</script>\u2028&amp;"


@pytest.mark.slow
def test_hostile_names_stay_text_and_only_the_owners_face_is_shown(profile, browser, tmp_path):
    doc = json.loads(json.dumps(profile))
    doc["people"][1]["name"] = HOSTILE
    doc["categories"][0]["subcategories"][0]["category"] = HOSTILE
    out = tmp_path / "r.html"
    stats = build_report(doc, out, thumbs_per_category=CAP, thumbnail=THUMBNAIL)   # faces: owner
    assert out.stat().st_mode & 0o077 == 0                      # photos, faces, paths: yours only
    assert stats.faces == 1
    html = out.read_text(encoding="utf-8")
    assert "<!--<script>" not in html
    labels = {p["id"]: p["label"] for p in embedded(html, "galprof-data")["people"]}
    assert labels[doc["people"][1]["id"]] == HOSTILE
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
    page.goto(out.as_uri())
    cards = page.locator("#people-list .person")
    assert cards.count() == len(PEOPLE)
    assert HOSTILE.replace("\u2028", " ") in " ".join(cards.all_inner_texts()).replace("\u2028", " ")
    assert page.locator("#people-list .person img").count() == 1
    assert page.locator("#people-list .person.owner img").count() == 1
    page.locator('#groups .bar[data-group="Pets/animals"]').click()
    assert HOSTILE in page.locator("#subcats .bar").evaluate_all(
        "els => els.map(e => e.dataset.category)")
    page.close()
    assert errors == []


def test_terminal_summary(profile):
    from rich.console import Console
    console = Console(record=True, width=100, color_system=None)
    render_summary(profile, console)
    text = console.export_text()
    for expected in ("Pets/animals", "dogs", "Berlin", "Germany", "owner", "partner", "35-45"):
        assert expected in text
    assert "█" in text


def test_cli_report_needs_a_database(tmp_path):
    from galprof.cli import cli
    result = CliRunner().invoke(cli, ["report", "--db", str(tmp_path / "none.db"),
                                      "--out", str(tmp_path / "r.html")])
    assert result.exit_code != 0
    assert "none.db" in result.output


@pytest.mark.parametrize("name", ["ias_landscape_1.jpg", "ias_landscape_6.jpg",
                                  "ias_portrait_8.jpg"])
def test_face_crop_uses_displayed_coordinates(testmedia, name):
    """The box is in pixels of the photo as displayed (after EXIF orientation): the crop must
    show the same region as cutting the upright photo by hand."""
    import base64
    import io

    import numpy as np

    from galprof.report.builder import FACE_MARGIN, _face_crop

    path = testmedia / "exif" / "orientation" / name
    upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = upright.size
    box = [w * 0.55, h * 0.15, w * 0.8, h * 0.15 + w * 0.25]   # a square off-centre region
    crop = Image.open(io.BytesIO(base64.b64decode(_face_crop({"path": str(path), "box": box},
                                                             THUMBNAIL))))
    side = (box[2] - box[0]) * (1 + 2 * FACE_MARGIN)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    expected = upright.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2),
                             int(cy + side / 2))).resize(crop.size)
    diff = np.abs(np.asarray(crop, dtype=float) - np.asarray(expected, dtype=float)).mean()
    other = np.abs(np.asarray(crop, dtype=float)
                   - np.asarray(upright.resize(crop.size), dtype=float)).mean()
    assert diff < 12 and diff < other / 2, (diff, other)
