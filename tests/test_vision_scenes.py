"""SceneClassifier (MobileNetV2, EfficientNet-Lite0) and ScenesStage on real photos."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galprof.errors import ModelMismatch, ModelMissing
from galprof.stages import Frame
from galprof.vision import transforms
from galprof.payloads import SceneLabel, encode
from galprof.taxonomy import canonical_label
from galprof.vision.scenes import ITEM_TOP_K, SceneClassifier, ScenesStage

MODEL_IDS = ["mobilenet_v2", "efficientnet_lite0"]


def load_rgb(testmedia: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(testmedia / "scenes" / name).convert("RGB"))


@pytest.fixture(scope="session")
def classifiers(shared_models) -> dict[str, SceneClassifier]:
    # Session fixtures are set up before the per-test GALPROF_MODELS: name the directory.
    return {m: SceneClassifier(m, threads=2, models_dir=shared_models).load() for m in MODEL_IDS}


@pytest.fixture(params=MODEL_IDS)
def classifier(request, classifiers) -> SceneClassifier:
    return classifiers[request.param]


def top_labels(clf: SceneClassifier, image: np.ndarray, k: int) -> list[str]:
    return [s.label for s in clf.predict(image, k)]


def test_coffee_is_espresso(classifier, testmedia):
    top = classifier.predict(load_rgb(testmedia, "skimage_coffee.png"), 5)
    assert top[0].label == "espresso" and top[0].score > 0.5, top
    assert [s.score for s in top] == sorted((s.score for s in top), reverse=True)


def test_kites_on_a_beach_are_seashore(classifier, testmedia):
    assert "seashore" in top_labels(classifier, load_rgb(testmedia, "coral_kite_and_cold.jpg"), 3)


def test_summer_palace(classifier, testmedia):
    top = top_labels(classifier, load_rgb(testmedia, "sklearn_china.jpg"), 3)
    assert {"palace", "lakeside", "monastery", "bell cote", "stupa"} & set(top), top


def test_labels_are_canonical_and_agree_across_models(classifiers):
    a, b = (classifiers[m].labels for m in MODEL_IDS)
    assert len(a) == len(b) == 1000
    assert a == b                        # the same class order, background dropped
    assert a[0] == "tench" and a[967] == "espresso" and a[978] == "seashore"
    assert canonical_label("Great grey owl, great gray owl, Strix nebulosa") == "great grey owl"


def test_scene_label_to_json():
    assert SceneLabel("espresso", 967, 0.96512).to_json() == {
        "label": "espresso", "index": 967, "score": 0.9651}


def test_features_are_the_pooled_penultimate_layer(classifier, testmedia):
    coffee = load_rgb(testmedia, "skimage_coffee.png")
    out = classifier.analyse(coffee)
    assert out.probabilities.shape == (1000,) and out.probabilities.dtype == np.float32
    assert 0.9 < out.probabilities.sum() < 1.1
    assert out.features.shape == (1280,) and out.features.dtype == np.float32
    assert out.features.min() >= 0 and out.features.max() <= 6.01     # ReLU6 activations
    assert (out.features > 0).sum() > 100

    def cosine(x, y):
        return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))

    smaller = classifier.analyse(transforms.resize_shorter(coffee, 300)).features
    china = classifier.analyse(load_rgb(testmedia, "sklearn_china.jpg")).features
    assert cosine(out.features, smaller) > 0.9
    assert cosine(out.features, smaller) > cosine(out.features, china) + 0.2


def test_stretch_crop_mode(shared_models, testmedia):
    clf = SceneClassifier("mobilenet_v2", threads=1, models_dir=shared_models, crop="stretch")
    assert top_labels(clf, load_rgb(testmedia, "skimage_coffee.png"), 1) == ["espresso"]
    with pytest.raises(ValueError, match="crop must be one of"):
        SceneClassifier("mobilenet_v2", crop="zoom")


def test_contract_mismatch_refused():
    clf = SceneClassifier("efficientnet_lite0", threads=1)
    clf.spec = dataclasses.replace(clf.spec, output={**clf.spec.output, "shape": [1, 1001]})
    with pytest.raises(ModelMismatch, match="shape"):
        clf.load()


def test_unknown_feature_tensor_refused():
    clf = SceneClassifier("mobilenet_v2", threads=1)
    clf.feature_tensor = "no/such/tensor"
    with pytest.raises(ModelMismatch, match="no/such/tensor"):
        clf.load()


def test_missing_model_names_the_fix(tmp_path):
    with pytest.raises(ModelMissing, match="galprof models install"):
        SceneClassifier("efficientnet_lite0", models_dir=tmp_path).load()


def test_wrong_role_refused():
    with pytest.raises(ModelMismatch, match="not scenes"):
        SceneClassifier("yolox_nano")


# ---------------------------------------------------------------- stage


def frame_at(image: np.ndarray, index: int, scale: float) -> Frame:
    h, w = image.shape[:2]
    small = transforms.resize(image, round(w * scale), round(h * scale))
    return Frame(index=index, timestamp=float(index), image=small, scale=small.shape[1] / w)


def test_stage_payload(classifiers, testmedia):
    clf = classifiers["mobilenet_v2"]
    stage = ScenesStage(classifier=clf)
    stage.load()
    china = load_rgb(testmedia, "sklearn_china.jpg")
    frames = [frame_at(china, 0, 0.6), frame_at(china, 12, 0.9)]
    payload, arrays = encode(stage.run(frames, {}))
    json.dumps(payload)
    assert [f["index"] for f in payload["frames"]] == [0, 12]
    assert all(len(f["top"]) == 5 for f in payload["frames"])
    assert len(payload["scenes"]) == ITEM_TOP_K
    assert payload["scenes"][0]["label"] == "palace"
    # The item ranking is the mean of the frames' probabilities (each frame's input
    # resized from its downscaled copy, Frame.downscaled).
    outs = [clf.analyse(f.image, clf.cropped(f.downscaled())) for f in frames]
    mean = np.mean([o.probabilities for o in outs], axis=0)
    assert payload["scenes"][0]["score"] == pytest.approx(float(mean.max()), abs=1e-4)
    features = arrays["features"]
    assert features.dtype == np.float32 and features.shape == (1280,)
    assert np.allclose(features, np.mean([o.features for o in outs], axis=0), atol=1e-6)


def test_stage_identity(classifiers, shared_models):
    stage = ScenesStage(classifier=classifiers["efficientnet_lite0"])
    assert stage.name == "scenes" and stage.requires == ()
    assert stage.version.startswith(classifiers["efficientnet_lite0"].version + "+scenes-r")
    assert ScenesStage("mobilenet_v2").version != stage.version
    assert encode(stage.run([], {})) == ({"frames": [], "scenes": []}, {})
