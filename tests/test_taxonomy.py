"""The interest taxonomy: coverage of every model label, validation, look-ups and categorize()."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from galprof import taxonomy
from galprof.taxonomy import PAPER_GROUPS, TaxonomyError, load


@pytest.fixture(scope="module")
def tax():
    return load()


def _coco_labels(models):
    return [line.strip() for line in (models / "coco80_labels.txt").read_text().splitlines() if line.strip()]


def _imagenet_names(models):
    lines = (models / "imagenet_labels.txt").read_text().splitlines()
    assert lines[0].strip().lower() == "background"
    return [line.split(",")[0].strip().lower() for line in lines[1:]]


# ---- coverage ---------------------------------------------------------------------------------

def test_every_coco_label_is_mapped_or_ignored(tax, shared_models):
    labels = _coco_labels(shared_models)
    assert len(labels) == 80
    for label in labels:
        entry = tax.entry("coco", label)
        assert entry is not None, f"COCO '{label}' missing from taxonomy.toml"
        assert tax.categories("coco", label) or tax.is_ignored("coco", label), label
    assert set(tax.labels("coco")) == set(labels)


def test_every_imagenet_label_is_mapped_or_ignored(tax, shared_models):
    names = _imagenet_names(shared_models)
    assert len(names) == 1000
    for index, name in enumerate(names):
        entry = tax.entry("imagenet", name, index)
        assert entry is not None and entry.index == index and entry.name == name, (index, name)
        assert tax.categories("imagenet", name, index) or tax.is_ignored("imagenet", name, index), name
    assert len(tax.labels("imagenet")) == 1000


def test_repeated_imagenet_names_are_told_apart_by_index(tax):
    assert tax.categories("imagenet", "crane", 134) == ["birds"]
    assert tax.categories("imagenet", "crane", 517) == ["construction machinery"]
    assert tax.categories("imagenet", "cardigan", 264) == ["dogs"]
    assert tax.categories("imagenet", "cardigan", 474) == ["clothing"]
    assert tax.categories("imagenet", "maillot", 639) == ["swimwear"]
    with pytest.raises(TaxonomyError, match="ambiguous"):
        tax.categories("imagenet", "crane")


def test_groups_are_the_papers_and_every_fine_category_has_one(tax):
    assert tax.groups == list(PAPER_GROUPS) and len(tax.groups) == 14
    assert set(tax.fine_categories.values()) == set(PAPER_GROUPS), "every group has a fine category"
    used = {c for label in tax.labels("coco") for c in tax.categories("coco", label)}
    used |= {c for i, key in enumerate(tax.labels("imagenet")) for c in tax.categories("imagenet", key, i)}
    used.add(tax.subject.child_category)             # fed by the faces' ages
    assert used == set(tax.fine_categories), "every fine category is fed by some label"


def test_imagenet_index_off_by_one_is_caught(tax):
    # 207 is golden retriever; 208 (labrador) with that name means the background line was counted
    assert tax.categories("imagenet", "golden retriever", 207) == ["dogs"]
    with pytest.raises(TaxonomyError, match="off by one"):
        tax.categories("imagenet", "golden retriever", 208)


def test_unknown_label_default_is_ignore(tax):
    assert tax.unknown_label == "ignore"
    assert tax.categories("coco", "unicorn") == []
    assert tax.categories("imagenet", "no such class") == []
    assert tax.scene("no such class") is None


# ---- clear cases ------------------------------------------------------------------------------

@pytest.mark.parametrize("source, label, index, fine, group", [
    ("coco", "pizza", None, "fast food", "Food"),
    ("coco", "hot dog", None, "fast food", "Food"),
    ("imagenet", "hotdog", 934, "fast food", "Food"),
    ("imagenet", "espresso", 967, "coffee", "Food"),
    ("imagenet", "pizza", 963, "fast food", "Food"),
    ("coco", "bus", None, "public transport", "Transport"),
    ("coco", "car", None, "cars", "Transport"),
    ("coco", "truck", None, "trucks", "Transport"),
    ("imagenet", "minibus", 654, "public transport", "Transport"),
    ("coco", "dog", None, "dogs", "Pets/animals"),
    ("coco", "cat", None, "cats", "Pets/animals"),
    ("imagenet", "golden retriever", 207, "dogs", "Pets/animals"),
    ("imagenet", "beagle", 162, "dogs", "Pets/animals"),
    ("imagenet", "pembroke", 263, "dogs", "Pets/animals"),
    ("imagenet", "tiger cat", 282, "cats", "Pets/animals"),
    ("imagenet", "zebra", 340, "wildlife", "Pets/animals"),
    ("imagenet", "komodo dragon", 48, "wildlife", "Pets/animals"),
    ("coco", "elephant", None, "wildlife", "Pets/animals"),
    ("coco", "tennis racket", None, "tennis", "Sports"),
    ("imagenet", "racket", 752, "tennis", "Sports"),
    ("imagenet", "basketball", 430, "basketball", "Sports"),
    ("imagenet", "acoustic guitar", 402, "guitar", "Music/instruments"),
    ("imagenet", "cornet", 513, "brass instruments", "Music/instruments"),
    ("imagenet", "trombone", 875, "brass instruments", "Music/instruments"),
    ("coco", "oven", None, "kitchen appliances", "Appliances"),
    ("coco", "refrigerator", None, "kitchen appliances", "Appliances"),
    ("imagenet", "refrigerator", 760, "kitchen appliances", "Appliances"),
    ("coco", "teddy bear", None, "toys", "Children"),
    ("imagenet", "crib", 520, "baby care", "Children"),
    ("imagenet", "bikini", 445, "swimwear", "Fashion"),
    ("imagenet", "grocery store", 582, "shopping", "Product/service"),
    ("coco", "potted plant", None, "houseplants", "Planting"),
    ("imagenet", "daisy", 985, "flowers", "Planting"),
    ("imagenet", "church", 497, "religion", "Culture events"),
    ("imagenet", "seashore", 978, "beach", "Outdoors"),
    ("imagenet", "alp", 970, "mountains", "Outdoors"),
    ("coco", "couch", None, "home interior", "Indoors"),
])
def test_clear_cases(tax, source, label, index, fine, group):
    cats = tax.categories(source, label, index)
    assert fine in cats
    assert tax.fine_categories[fine] == group


def test_person_is_known_but_no_interest(tax):
    assert tax.entry("coco", "person") is not None
    assert tax.is_ignored("coco", "person")
    assert tax.categories("coco", "person") == []


def test_coco_thresholds(tax):
    assert tax.coco_threshold("dog") == tax.default_coco_threshold == 0.3
    assert tax.coco_threshold("person") > 0.3
    assert tax.coco_threshold("dining table") > 0.3 and tax.coco_threshold("chair") > 0.3
    assert tax.coco_threshold("no such label") == 0.3


def test_aliases_take_their_targets_categories(tax):
    assert tax.canonical("imagenet", "hotdog", 934) == "coco:hot dog"
    assert tax.categories("imagenet", "teddy", 850) == tax.categories("coco", "teddy bear")
    assert tax.canonical("imagenet", "egyptian cat", 285) == "tabby"


# ---- scenes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, scene, where, group", [
    ("seashore", "beach/coast", "outdoor", "Outdoors"),
    (977, "beach/coast", "outdoor", "Outdoors"),          # sandbar, by index
    ("alp", "mountains", "outdoor", "Outdoors"),
    ("lakeside", "lake/river", "outdoor", "Outdoors"),
    ("church", "heritage/religious", "either", "Culture events"),
    ("stupa", "heritage/religious", "either", "Culture events"),
    ("restaurant", "restaurant/cafe", "indoor", "Food"),
    ("bakery", "shop/market", "either", "Product/service"),
    ("studio couch", "home interior", "indoor", "Indoors"),
    ("streetcar", "vehicle", "either", "Transport"),
    ("maillot#639", "beach/coast", "outdoor", "Outdoors"),
])
def test_scenes(tax, key, scene, where, group):
    info = tax.scene(key)
    assert info is not None
    assert (info.scene, info.where, info.group) == (scene, where, group)


def test_non_place_classes_have_no_scene(tax):
    assert tax.scene("golden retriever") is None
    assert tax.scene(207) is None


# ---- categorize -------------------------------------------------------------------------------

def test_categorize_dog_and_bicycle_outdoors(tax):
    result = tax.categorize(
        objects=[("dog", 0.8), ("bicycle", 0.7)],
        scenes=[("malamute", 0.45, 249), ("german shepherd", 0.15, 235), ("dogsled", 0.07, 537)],
    )
    assert {"dogs", "bicycles"} <= set(result.fine)
    assert {"Pets/animals", "Transport"} <= set(result.groups)
    assert result.where == "outdoor" and "Outdoors" not in result.groups   # reported, not counted
    dogs = next(h for h in result.categories if h.name == "dogs")
    assert "coco:dog" in dogs.evidence and "imagenet:malamute" in dogs.evidence
    # two witnesses are surer than either alone
    assert dogs.confidence > 0.8


def test_categorize_kitchen_objects_mean_appliances_indoors(tax):
    result = tax.categorize(objects=[("oven", 0.7), ("refrigerator", 0.6)], scenes=[])
    assert result.fine.keys() == {"kitchen appliances"}
    assert result.where == "indoor"
    assert set(result.groups) == {"Appliances"}     # where a photo was taken is not an interest


def test_categorize_beach_from_classifier(tax):
    result = tax.categorize(objects=[("kite", 0.6), ("person", 0.9)],
                            scenes=[("volleyball", 0.39, 890), ("seashore", 0.2, 978), ("sandbar", 0.18, 977)])
    assert result.scene == "beach/coast" and result.scene_group == "Outdoors"
    assert result.where == "outdoor"
    assert {"Outdoors", "Activity"} <= set(result.groups)
    assert "kite flying" in result.fine and "beach" in result.fine


def test_categorize_weak_signals_do_not_count(tax):
    # below the per-label thresholds, and ImageNet classes of low probability
    result = tax.categorize(objects=[("dining table", 0.35), ("person", 0.45)],
                            scenes=[("golfcart", 0.08, 575), ("tow truck", 0.06, 864)])
    assert result.categories == () and result.groups == {} and result.where is None
    # top-1 alone counts from imagenet_top1_min on; the sum of a category's classes counts from imagenet_min_prob on
    assert tax.categorize(scenes=[("violin", 0.17, 889)]).fine.keys() == {"string instruments"}
    assert tax.categorize(scenes=[("sax", 0.5, 776), ("violin", 0.17, 889)]).fine.keys() == {"woodwind instruments"}
    spread = tax.categorize(scenes=[("beagle", 0.12, 162), ("english foxhound", 0.1, 167)])
    assert spread.fine.keys() == {"dogs"}


def test_categorize_ignores_unknown_labels(tax):
    result = tax.categorize(objects=[("unicorn", 0.9)], scenes=[("no such class", 0.9, None)])
    assert result.categories == () and result.groups == {}


def test_item_categories_to_dict_is_json_ready(tax):
    import json

    result = tax.categorize(objects=[("pizza", 0.9)], scenes=[("restaurant", 0.6, 762)])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["scene"] == "restaurant/cafe" and data["where"] == "indoor"
    assert data["categories"][0]["group"] == "Food"


# ---- validation of the data files -------------------------------------------------------------

def _copy(tmp_path):
    shutil.copy(taxonomy.DEFAULT_PATH, tmp_path / "taxonomy.toml")
    shutil.copy(taxonomy.HERE / "scenes.toml", tmp_path / "scenes.toml")
    return tmp_path / "taxonomy.toml"


def _replace(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_copy_of_shipped_files_loads(tmp_path):
    path = _copy(tmp_path)
    assert load(path).groups == list(PAPER_GROUPS)
    assert load(path) is load(path)


@pytest.mark.parametrize("old, new, message", [
    # alias chain: tiger cat -> egyptian cat -> tabby
    ('"tiger cat" = { index = 282, see = "tabby" }', '"tiger cat" = { index = 282, see = "egyptian cat" }',
     "itself an alias"),
    ('"hotdog" = { index = 934, see = "coco:hot dog" }', '"hotdog" = { index = 934, see = "coco:hotdog" }',
     "does not exist"),
    ('"dogs" = "Pets/animals"', '"dogs" = "Pets and animals"', "unknown group 'Pets and animals'"),
    ('"pizza" = { categories = ["fast food"] }', '"Pizza" = { categories = ["fast food"] }', "must be lowercase"),
    ('"pizza" = { categories = ["fast food"] }', '"pizza" = { categories = ["junk food"] }', "unknown fine category"),
    ('"pizza" = { categories = ["fast food"] }', '"pizza" = { categories = ["fast food"], ignore = true }',
     "exactly one of"),
    ('"beagle" = { index = 162,', '"beagle" = { index = 161,', "index 161 already used"),
    ('"crane#517" = { index = 517,', '"crane" = { index = 517,', "repeats"),
    ('groups = ["Outdoors", ', 'groups = ["Outside", ', "unknown group"),
    ('unknown_label = "ignore"', 'unknown_label = "guess"', "unknown_label"),
    ('coco_threshold = 0.3', 'coco_threshold = 3', "between 0 and 1"),
    ('[fine]', '[fine\n', "not valid TOML"),
])
def test_broken_taxonomy_is_refused(tmp_path, old, new, message):
    path = _copy(tmp_path)
    _replace(path, old, new)
    with pytest.raises(TaxonomyError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("old, new, message", [
    ('"seashore" = "beach/coast"', '"seashore" = "beach"', "unknown scene group 'beach'"),
    ('"seashore" = "beach/coast"', '"sea shore" = "beach/coast"', "not an ImageNet key"),
    ('"mountains" = { where = "outdoor", group = "Outdoors" }',
     '"mountains" = { where = "outdoor", group = "Hills" }', "unknown group 'Hills'"),
    ('"kitchen" = { where = "indoor",', '"kitchen" = { where = "inside",', "where must be one of"),
    ('"couch" = 1.0', '"sofa" = 1.0', "not a COCO label"),
    ('"couch" = 1.0', '"Couch" = 1.0', "must be lowercase"),
])
def test_broken_scenes_are_refused(tmp_path, old, new, message):
    path = _copy(tmp_path)
    _replace(tmp_path / "scenes.toml", old, new)
    with pytest.raises(TaxonomyError, match=message) as info:
        load(path)
    assert "scenes.toml" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TaxonomyError, match="file not found"):
        load(tmp_path / "nope.toml")


def test_unknown_label_error_mode(tmp_path):
    path = _copy(tmp_path)
    _replace(path, 'unknown_label = "ignore"', 'unknown_label = "error"')
    strict = load(path)
    with pytest.raises(TaxonomyError, match="unknown coco label 'unicorn'"):
        strict.categories("coco", "unicorn")


# ---- on real classifier outputs ---------------------------------------------------------------

def _mobilenet_top5(session, path):
    """MobileNetV2 quant per models/MANIFEST.md: raw uint8 RGB, 224 centre crop, output/256."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    (out,) = session.run([np.asarray(image, dtype=np.uint8)[None]]).values()
    probs = out[0].astype(np.float32)[1:] / 256.0       # drop the background class
    return [(int(i), float(probs[i])) for i in np.argsort(-probs)[:5]]


@pytest.fixture(scope="module")
def mobilenet(shared_models):
    from galprof.vision.runtime import open_session

    return open_session(shared_models / "mobilenet_v2_1.0_224_quant.tflite", 2)


@pytest.mark.slow
@pytest.mark.parametrize("file, objects, groups, where", [
    ("scenes/skimage_coffee.png", [], {"Food"}, None),
    ("scenes/tfyolo_hcm1.jpg", [], {"Culture events"}, None),
    # next to a subject the bare indoor/outdoor vote is reported (`where`) but adds no group
    # ([subject] where_counts): a kitchen's appliances, the dog's street, the zebra's savanna
    ("scenes/tfyolo_kitchen.jpg", [("oven", 0.8), ("refrigerator", 0.7)], {"Appliances"}, "indoor"),
    ("scenes/pp_beach_wood.jpg", [], {"Outdoors"}, "outdoor"),
    ("scenes/darknet_dog.jpg", [("dog", 0.82), ("bicycle", 0.81), ("truck", 0.6)],
     {"Pets/animals", "Transport"}, "outdoor"),
    ("exif/camera/pp_Canon_EOS_6D_zebra.jpg", [("zebra", 0.9)], {"Pets/animals"}, "outdoor"),
    ("exif/camera/mei_Olympus_FE230_gps.jpg", [], {"Outdoors"}, "outdoor"),
])
def test_categorize_real_classifier_outputs(tax, testmedia, shared_models, mobilenet, file, objects, groups, where):
    names = _imagenet_names(shared_models)
    top5 = [(names[i], p, i) for i, p in _mobilenet_top5(mobilenet, testmedia / file)]
    result = tax.categorize(objects, top5)
    assert groups <= set(result.groups), (top5, result.groups)
    assert result.where == where, (top5, result.where_votes)
    if where is not None and not {"Indoors", "Outdoors"} & groups:
        assert not {"Indoors", "Outdoors"} & set(result.groups) or result.scene_group, result
    if not result.categories and result.where and not result.scene_group:   # a view, alone
        assert ("Indoors" if result.where == "indoor" else "Outdoors") in result.groups
