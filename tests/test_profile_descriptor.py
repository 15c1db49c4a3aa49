"""The profile's `descriptor`: average of the photo features without a trained aggregator,
the paper's reduced attention with one (trained here on a tiny synthetic set)."""

import pytest
from click.testing import CliRunner

from galprof.cli import cli
from galprof.profile import build_profile
from galprof.pipeline import Settings, run
from galprof.stages import build_stages
from galprof.store import open_store

PHOTOS = ["scenes/darknet_dog.jpg", "scenes/skimage_coffee.png", "scenes/ul_bus.jpg",
          "videos/mei_swans_Issue_515.mp4"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, testmedia):
    s = open_store(tmp_path_factory.mktemp("desc") / "g.db")
    run(s, [testmedia / p for p in PHOTOS], Settings(stages=build_stages(["scenes"]), max_frames=4))
    return s


def test_average_descriptor_without_an_aggregator(store):
    d = build_profile(store)["descriptor"]
    assert d["trained"] is False and "no trained aggregator" in d["note"]
    assert d["items"] == 4 and len(d["descriptor"]) == 1280      # MobileNetV2's pooled layer


def test_trained_reduced_attention(store, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow", reason="training needs the `train` extra")
    runner = CliRunner()
    data = tmp_path / "synth"
    r = runner.invoke(cli, ["aggregate", "synth", "--out", str(data), "--users", "300",
                            "--categories", "8", "--dim", "1280", "--seed", "1"])
    assert r.exit_code == 0, r.output
    model = tmp_path / "agg.npz"
    r = runner.invoke(cli, ["aggregate", "train", "--data", str(data), "--model", "reduced-attention",
                            "--out", str(model), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("GALPROF_AGGREGATOR", str(model))
    d = build_profile(store)["descriptor"]
    assert d["trained"] is True and d["aggregator"] == "reduced-attention"
    assert len(d["descriptor"]) == 128 and d["items"] == 4
    probs = [i["probability"] for i in d["interests"]]
    assert len(probs) == 8 and probs == sorted(probs, reverse=True) and 0 < probs[0] < 1
