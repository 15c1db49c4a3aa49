"""What a photo contributes is what it is of (issue 14), on real photos through the real
models: worn clothes are no interest but clothes shown are, a child's face counts for
Children, a burst counts once, small things in a view are context."""

from __future__ import annotations

import shutil
from pathlib import Path

import piexif
import pytest
from PIL import Image, ImageEnhance

from galprof.inspect import describe_media
from galprof.pipeline import Settings, run
from galprof.profile import build_profile
from galprof.stages import build_stages
from galprof.store import open_store


def _groups(store, path: Path) -> dict[str, float]:
    info = describe_media(store, str(path))
    out: dict[str, float] = {}
    for c in info.get("categories", []):
        out[c["group"]] = max(out.get(c["group"], 0.0), c["confidence"])
    return out


@pytest.fixture(scope="module")
def stages():
    return build_stages(["objects", "scenes", "faces"])


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, testmedia, stages):
    root = tmp_path_factory.mktemp("rules") / "DCIM"
    root.mkdir()
    portrait = testmedia / "faces/face_recognition/obama.jpg"        # a suit and a tie
    shutil.copyfile(portrait, root / "portrait.jpg")
    with Image.open(portrait) as im:                                 # the suit alone: a product shot
        im.crop((0, int(im.height * 0.55), im.width, im.height)).save(root / "suit.jpg", quality=92)
    shutil.copyfile(testmedia / "faces/children/hse_family.jpg", root / "family.jpg")
    with Image.open(testmedia / "faces/children/hse_family.jpg") as im:
        im.crop((205, 85, 352, 226)).resize((294, 282)).save(root / "boy.jpg", quality=92)
    shutil.copyfile(testmedia / "exif/phone/ias_HMD_Nokia_8.3_5G.jpg", root / "harbour.jpg")
    store = open_store(root.parent / "g.db")
    run(store, [root], Settings(stages=stages))
    return store, root


def test_a_portrait_in_a_suit_and_tie_is_no_fashion_but_the_suit_alone_is(gallery):
    store, root = gallery
    assert "Fashion" not in _groups(store, root / "portrait.jpg")
    info = describe_media(store, str(root / "portrait.jpg"))
    worn = [d for d in info["not_counted"] if d["why"] == "worn by a person in the photo"]
    assert {"clothing", "accessories"} <= {d["category"] for d in worn}
    assert any(d["evidence"] == "imagenet:groom" for d in worn)       # no wedding from one groom
    assert "Culture events" not in _groups(store, root / "portrait.jpg")
    assert _groups(store, root / "suit.jpg").get("Fashion", 0) >= 0.5


def test_a_childs_face_counts_for_children(gallery):
    store, root = gallery
    for name in ("family.jpg", "boy.jpg"):
        info = describe_media(store, str(root / name))
        children = [c for c in info["categories"] if c["group"] == "Children"]
        assert children and any("face:child" in c["evidence"] for c in children), (name, info["categories"])


def test_incidental_boats_and_cars_of_a_view_are_context(gallery):
    store, root = gallery
    info = describe_media(store, str(root / "harbour.jpg"))
    assert "Transport" not in {c["group"] for c in info["categories"]}, info["categories"]
    assert any("context" in d["why"] for d in info["not_counted"]
               if d["evidence"].startswith("coco:boat"))


def test_the_owners_childhood_face_is_not_an_interest_in_children(tax=None):
    from galprof.taxonomy import load
    from galprof.taxonomy.evidence import Evidence, SeenFace

    tax = load()
    child = Evidence(faces=[SeenFace(0.05, 6.0, owner=False)])
    owner = Evidence(faces=[SeenFace(0.05, 6.0, owner=True)])
    assert "Children" in tax.categorize(evidence=child).groups
    result = tax.categorize(evidence=owner)
    assert "Children" not in result.groups
    assert result.dropped == (("children", "face:child", "the owner's own childhood photo"),)


def _with_time(src: Path, dst: Path, when: str, tone: float) -> None:
    with Image.open(src) as im:
        im = ImageEnhance.Brightness(im.convert("RGB")).enhance(tone)
        exif = piexif.dump({"Exif": {piexif.ExifIFD.DateTimeOriginal: when.encode()}})
        im.save(dst, quality=90, exif=exif)


def test_ten_shots_of_one_scene_within_a_minute_count_once(tmp_path, testmedia, stages):
    root = tmp_path / "DCIM"
    root.mkdir()
    for i in range(10):                                   # a burst: 2 s apart, slight changes
        _with_time(testmedia / "scenes/skimage_coffee.png", root / f"burst_{i}.jpg",
                   f"2024:05:01 12:00:{10 + 2 * i:02d}", 1.0 + 0.01 * i)
    _with_time(testmedia / "scenes/pp_limes.jpg", root / "limes.jpg", "2024:05:02 09:00:00", 1.0)
    store = open_store(tmp_path / "g.db")
    run(store, [root], Settings(stages=stages))
    profile = build_profile(store)
    assert profile["gallery"]["analysed"] == 11 and profile["gallery"]["events"] == 2
    food = next(g for g in profile["categories"] if g["group"] == "Food")
    assert food["media"] == 11 and food["events"] == 2
    coffee = next(s for s in food["subcategories"] if s["category"] == "coffee")
    assert coffee["media"] == 10 and coffee["events"] == 1
    # the same photos a day apart are separate events
    for i, path in enumerate(sorted(root.glob("burst_*.jpg"))):
        _with_time(testmedia / "scenes/skimage_coffee.png", path,
                   f"2024:05:{1 + i:02d} 12:00:00", 1.0 + 0.01 * i)
    run(store, [root], Settings(stages=stages))
    spread = build_profile(store)
    coffee = next(s for g in spread["categories"] if g["group"] == "Food"
                  for s in g["subcategories"] if s["category"] == "coffee")
    assert coffee["events"] == 10


def test_show_explains_each_contribution(gallery):
    store, root = gallery
    info = describe_media(store, str(root / "harbour.jpg"))
    section = next(s for s in info["sections"] if s["title"] == "contribution to the interests")
    assert any(line.startswith("not counted: boats (coco:boat): ") for line in section["lines"])
