"""Clear cases on real photos: the scan's objects and scenes, through the taxonomy, land
in the right high-level groups (issue: on-device objects, scenes and interests)."""


import jsonschema
import pytest

from galprof.inspect import describe_media
from galprof.profile import build_profile, schema
from galprof.pipeline import Settings, run
from galprof.stages import build_stages
from galprof.store import open_store

CASES = {
    "scenes/darknet_dog.jpg": {"Pets/animals", "Transport"},
    "scenes/skimage_chelsea.png": {"Pets/animals"},
    "scenes/pp_dog_orange.jpg": {"Pets/animals"},
    "scenes/tfod_dogs.jpg": {"Pets/animals"},
    "exif/phone/pp_iPhoneSE_cat_brown.jpg": {"Pets/animals"},
    "scenes/skimage_coffee.png": {"Food"},
    "scenes/pp_limes.jpg": {"Food"},
    "exif/phone/mei_Samsung_SM-G965W_Issue_525.jpg": {"Food"},      # pizza trays
    "exif/phone/pp_iPhone5s_out-of-range_o3.jpg": {"Food"},         # salad, EXIF orientation 3
    "scenes/ul_bus.jpg": {"Transport"},         # the street is where, not what (where_counts)
    "exif/camera/mei_FujiFilm_S2Pro_gps_5.jpg": {"Transport"},      # double-decker bus
    "exif/phone/mei_HTC_Desire.jpg": {"Transport"},                 # car park
    "scenes/coral_traffic_0001.bmp": {"Transport"},                 # cars and a truck
    "scenes/tfyolo_kitchen.jpg": {"Appliances", "Indoors"},
    "exif/phone/pp_iPhoneSE_beach_sand.jpg": {"Outdoors"},
    "scenes/coral_kite_and_cold.jpg": {"Outdoors"},
    "scenes/pp_beach_wood.jpg": {"Outdoors"},
    "scenes/sklearn_china.jpg": {"Culture events"},
}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, testmedia):
    store = open_store(tmp_path_factory.mktemp("interests") / "g.db")
    stages = build_stages(["objects", "scenes"])
    run(store, [testmedia / rel for rel in CASES], Settings(stages=stages))
    return store


@pytest.mark.parametrize("rel,groups", CASES.items(), ids=list(CASES))
def test_clear_cases(scanned, testmedia, rel, groups):
    info = describe_media(scanned, str(testmedia / rel))
    found = {c["group"] for c in info["categories"]}
    assert groups <= found, f"{rel}: {sorted(found)}"


def test_fine_categories(scanned, testmedia):
    def fine(rel):
        return {c["category"] for c in describe_media(scanned, str(testmedia / rel))["categories"]}
    assert "dogs" in fine("scenes/darknet_dog.jpg")
    assert "cats" in fine("scenes/skimage_chelsea.png")
    assert "coffee" in fine("scenes/skimage_coffee.png")
    assert "kitchen appliances" in fine("scenes/tfyolo_kitchen.jpg")
    assert "beach" in fine("exif/phone/pp_iPhoneSE_beach_sand.jpg")


def test_profile_categories_and_interests(scanned):
    doc = build_profile(scanned)
    jsonschema.validate(doc, schema())
    groups = {g["group"]: g for g in doc["categories"]}
    pets = groups["Pets/animals"]
    assert pets["media"] >= 5 and 0 < pets["share"] <= 1
    dogs = next(s for s in pets["subcategories"] if s["category"] == "dogs")
    assert any(p.endswith("darknet_dog.jpg") for p in dogs["paths"])
    ranked = [i["category"] for i in doc["interests"]]
    assert ranked.index("dogs") < 10
    scores = [i["score"] for i in doc["interests"]]
    assert scores == sorted(scores, reverse=True)


def test_show_lists_detections_scenes_and_categories(scanned, testmedia):
    info = describe_media(scanned, str(testmedia / "scenes/ul_bus.jpg"))
    titles = [s["title"] for s in info["sections"]]
    assert {"objects", "scenes", "privacy", "contribution to the interests"} <= set(titles)
    bus = next(o for o in info["results"]["objects"]["payload"]["objects"] if o["label"] == "bus")
    x1, y1, x2, y2 = bus["box"]
    assert 0 <= x1 < x2 <= 810 and 0 <= y1 < y2 <= 1080     # original pixels of the 810x1080 photo


@pytest.mark.parametrize("video,label,group", [
    ("videos/mei_swans_Issue_515.mp4", "bird", "Pets/animals"),
    ("videos/mei_Canon_MVI_4823_roadtrip.AVI", "car", "Transport"),
])
def test_video_objects_need_two_frames_or_high_confidence(tmp_path, testmedia, video, label, group):
    store = open_store(tmp_path / "v.db")
    run(store, [testmedia / video], Settings(stages=build_stages(["objects", "scenes"]), max_frames=12))
    info = describe_media(store, str(testmedia / video))
    payload = info["results"]["objects"]["payload"]
    objects = {o["label"]: o for o in payload["objects"]}
    assert objects[label]["frames_seen"] >= 2
    assert all(o["frames_seen"] >= 2 or o["score"] >= 0.6 for o in objects.values())
    # a label seen once with a low score in the frames does not count for the video
    once = {d["label"] for f in payload["frames"] for d in f["detections"]
            if d["score"] < 0.6} - {l for l, o in objects.items()}
    for l in once:
        assert sum(any(d["label"] == l for d in f["detections"]) for f in payload["frames"]) < 2
    assert group in {c["group"] for c in info["categories"]}


def test_taxonomy_thresholds_apply_when_the_profile_is_built(scanned, testmedia):
    from galprof import taxonomy

    tax = taxonomy.load()
    assert tax.coco_threshold("person") == 0.5 and tax.coco_threshold("dining table") > 0.3
    for rel in ("scenes/ul_bus.jpg", "exif/phone/pp_iPhone5s_out-of-range_o3.jpg"):
        row = scanned.media.by_path(str(testmedia / rel))
        objects = scanned.results.payload(row["content_hash"], "objects")
        stored = [d for _, dets in objects.frames for d in dets]
        assert stored and min(d.score for d in stored) >= 0.3      # the detector's floor
        counted = objects.summary(tax.coco_threshold)
        assert counted and all(o.score >= tax.coco_threshold(o.label) for o in counted)
    # the objects stage's cache key holds no taxonomy threshold: changing one needs no re-scan
    from galprof.vision.objects import ObjectsStage
    assert "person" not in ObjectsStage().detector.thresholds
