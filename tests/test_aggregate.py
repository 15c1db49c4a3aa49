"""The aggregators: synthetic data, training, numpy inference, CLI, and no TensorFlow at import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from galprof.aggregate import AGGREGATORS, data, infer, synth
from galprof.aggregate.data import DataError

SMALL = synth.SynthConfig(users=1500, categories=20, dim=64, seed=7)


@pytest.fixture(scope="module")
def small():
    ds = synth.generate(SMALL)
    train_idx, test_idx = data.split(ds.n_users, 0.2, seed=0)
    return ds, ds.subset(train_idx), ds.subset(test_idx)


def test_synth_is_deterministic_and_shaped_as_documented(small):
    ds, _, _ = small
    again = synth.generate(SMALL)
    assert np.array_equal(ds.features, again.features)
    assert np.array_equal(ds.labels, again.labels) and np.array_equal(ds.offsets, again.offsets)
    other = synth.generate(synth.SynthConfig(users=1500, categories=20, dim=64, seed=8))
    assert not np.array_equal(ds.labels, other.labels)

    counts = ds.counts()
    assert ds.features.shape == (counts.sum(), 64) and ds.features.dtype == np.float16
    assert counts.min() >= 5 and counts.max() <= 40
    assert 7.3 < counts.mean() < 8.7                   # about 8 items a user
    per_user = ds.labels.sum(axis=1)
    assert per_user.min() >= 1 and 1.7 < per_user.mean() < 2.3   # sparse: about 2 of C
    assert ds.labels.shape == (1500, 20) and len(ds.categories) == 20
    assert ds.features.min() >= 0                       # relu-like, as a CNN's penultimate layer
    popular = ds.labels.mean(axis=0)
    assert popular.max() > 3 * popular.min()            # Zipf-like popularity


def test_npz_and_jsonl_formats_round_trip(tmp_path, small):
    ds, _, _ = small
    part = ds.subset(np.arange(5))
    data.save_npz(part, tmp_path / "npz")
    back = data.load(tmp_path / "npz")
    assert np.array_equal(back.features, part.features) and back.categories == part.categories
    assert list(back.user_ids) == list(part.user_ids)

    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    (rows_dir / "categories.txt").write_text("\n".join(part.categories) + "\n")
    with open(rows_dir / "items.jsonl", "w") as f:
        for u in range(part.n_users):
            labels = [part.categories[c] for c in np.flatnonzero(part.labels[u])]
            for x in part.items(u):
                f.write(json.dumps({"user": part.user_ids[u], "features": x.tolist(),
                                    "labels": labels}) + "\n")
    rows = data.load(rows_dir)
    assert np.array_equal(rows.offsets, part.offsets)
    assert np.array_equal(rows.labels, part.labels)
    assert np.allclose(rows.features, part.features.astype(np.float32))

    with open(rows_dir / "items.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"items\.jsonl:\d+: not JSON"):
        data.load(rows_dir)
    with pytest.raises(DataError, match="no aggregate.npz"):
        data.load(tmp_path)


def test_ranking_metrics_by_hand():
    scores = np.array([[0.9, 0.1, 0.8, 0.2], [0.1, 0.2, 0.3, 0.4]])
    labels = np.array([[1, 0, 0, 1], [0, 0, 0, 0]])  # second user has no label: skipped
    m = data.ranking_metrics(scores, labels, ks=(1, 2, 3))
    assert m["users"] == 1
    assert m["recall@1"] == 0.5 and m["precision@1"] == 1.0
    assert m["recall@2"] == 0.5 and m["precision@2"] == 0.5
    assert m["recall@3"] == 1.0 and m["precision@3"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def trainer():
    return pytest.importorskip("galprof.aggregate.train")


@pytest.fixture(scope="module")
def trained_reduced(trainer, small):
    _, train_set, _ = small
    return trainer.train(train_set, "reduced-attention", epochs=10, seed=0)


def test_training_lowers_the_loss_and_beats_chance(trainer, small, trained_reduced):
    ds, train_set, test_set = small
    losses, val_losses = trained_reduced.losses, trained_reduced.val_losses
    assert len(losses) == len(val_losses) == 10
    assert losses[-1] < 0.8 * losses[0] and min(val_losses) < 0.9 * val_losses[0]
    row = trainer.evaluate(trained_reduced, test_set)
    chance = 5 / ds.n_categories                        # recall@5 of a random ranking
    assert row["recall@5"] > chance + 0.25, row
    assert row["parameters"] == 64 * 128 + 128 + 128 * 20 + 20


def test_reduced_attention_learns_to_look_past_clutter(trainer, small, trained_reduced):
    """The reason attention beats averaging here: clutter photos get small weights."""
    _, _, test_set = small
    agg = infer.Aggregator({"aggregator": "reduced-attention", "dim": test_set.dim,
                            "categories": test_set.categories, "descriptor_size": 128},
                           trainer.export_weights(trained_reduced.model))
    relative = {kind: [] for kind in (synth.INTEREST, synth.CLUTTER)}
    for u in range(200):
        _, weights, _ = agg.forward(test_set.items(u))
        kinds = test_set.kinds[test_set.offsets[u]:test_set.offsets[u + 1]]
        for kind in relative:
            relative[kind].extend(weights[kinds == kind] * len(weights))  # 1 = average pooling
    assert np.mean(relative[synth.CLUTTER]) < 0.7 < 1.0 < np.mean(relative[synth.INTEREST])


def _random_weights(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([0.3 * rng.standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])


@pytest.mark.parametrize("name", AGGREGATORS)
def test_numpy_inference_matches_keras(trainer, small, name):
    from galprof.aggregate import models
    ds, _, test_set = small
    model = models.build(name, ds.dim, ds.n_categories)
    _random_weights(model, AGGREGATORS.index(name))
    part = test_set.subset(np.arange(12))             # mixed item counts: padding is exercised
    assert len(set(part.counts())) > 1
    x, mask, _, users = next(data.batches(part, 12))
    keras_probs = model.predict([x, mask], verbose=0)
    agg = infer.Aggregator({"aggregator": name, "dim": ds.dim, "categories": ds.categories,
                            "descriptor_size": model.get_layer("logits").input.shape[-1]},
                           models.export_weights(model))
    for row, u in enumerate(users):
        descriptor, weights, probs = agg.forward(part.items(u))
        assert np.allclose(probs, keras_probs[row], atol=1e-5), name
        assert weights.shape == (part.counts()[u],) and np.isclose(weights.sum(), 1.0)


def test_exported_model_describes_a_user(trainer, small, trained_reduced, tmp_path):
    _, _, test_set = small
    weights, meta = trainer.export(trained_reduced, tmp_path / "agg.npz")
    agg = infer.load_aggregator(weights)
    assert infer.load_aggregator(meta).name == "reduced-attention"
    keras_probs = trainer.predict(trained_reduced.model, test_set)
    for u in range(5):
        out = agg.describe(test_set.items(u))
        assert out["aggregator"] == "reduced-attention" and out["trained"] is True
        assert len(out["descriptor"]) == 128
        assert len(out["weights"]) == test_set.counts()[u]
        probs = dict(out["interests"])
        assert np.allclose([probs[c] for c in test_set.categories], keras_probs[u], atol=1e-5)
        assert [p for _, p in out["interests"]] == sorted(probs.values(), reverse=True)
    with pytest.raises(DataError, match="expects 64"):
        agg.describe(np.zeros((3, 65)))


def test_average_descriptor_without_a_trained_model():
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    out = infer.average_descriptor(x)
    assert out["descriptor"] == [2.0, 4.0] and out["weights"] == [0.5, 0.5]
    assert out["trained"] is False and "average" in out["note"]
    with pytest.raises(DataError):
        infer.average_descriptor(np.zeros((0, 2)))


def test_cli_synth_train_eval_end_to_end(trainer, tmp_path):
    from galprof.cli import cli
    runner = CliRunner()
    out = tmp_path / "bench"
    r = runner.invoke(cli, ["aggregate", "synth", "--out", str(out), "--users", "300",
                            "--dim", "32", "--categories", "10", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "300 users" in r.output and (out / "aggregate.npz").is_file()

    model = tmp_path / "agg.npz"
    r = runner.invoke(cli, ["aggregate", "train", "--data", str(out), "--model", "average",
                            "--out", str(model), "--epochs", "2", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["aggregator"] == "average" and row["parameters"] == 32 * 10 + 10
    agg = infer.load_aggregator(model)
    assert agg.dim == 32 and len(agg.categories) == 10

    r = runner.invoke(cli, ["aggregate", "eval", "--data", str(out), "--epochs", "1", "-q"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "recall@5" in lines[1] and "precision@15" in lines[1] and "parameters" in lines[1]
    assert [line.split()[0] for line in lines[3:]] == list(AGGREGATORS)

    r = runner.invoke(cli, ["aggregate", "train", "--data", str(tmp_path), "--model", "nan",
                            "--out", str(model)])
    assert r.exit_code == 1 and "Error:" in r.output and "no aggregate.npz" in r.output


def test_inference_and_cli_help_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "import galprof.aggregate, galprof.aggregate.infer, galprof.aggregate.synth\n"
        "from click.testing import CliRunner\n"
        "from galprof.cli import cli\n"
        "r = CliRunner().invoke(cli, ['aggregate', '--help'])\n"
        "assert r.exit_code == 0 and 'synth' in r.output, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_csv_image_rows_get_scene_classifier_features(testmedia, tmp_path):
    scenes = sorted(p for p in (testmedia / "scenes").iterdir() if p.suffix == ".jpg")[:4]
    assert len(scenes) == 4
    with open(tmp_path / "items.csv", "w") as f:
        f.write("user,image,labels\n")
        for i, path in enumerate(scenes):
            f.write(f"u{i // 2},{path},{'animals;travel' if i < 2 else 'food'}\n")
    ds = data.load(tmp_path)
    assert list(ds.user_ids) == ["u0", "u1"] and ds.categories == ["animals", "food", "travel"]
    assert ds.labels.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert ds.features.shape == (4, 1280)             # MobileNetV2's penultimate layer
    assert ds.features.min() >= 0 and np.linalg.norm(ds.features[0] - ds.features[1]) > 1
    from galprof.gallery.frames import decode_photo
    from galprof.vision.scenes import SceneClassifier, ScenesStage
    one = SceneClassifier().analyse(decode_photo(scenes[2], ScenesStage.long_side).frames[0].image)
    assert np.allclose(ds.features[2], one.features)

    (tmp_path / "items.csv").write_text(f"user,image,labels\nu0,{tmp_path / 'missing.jpg'},x\n")
    with pytest.raises(DataError, match=r"items\.csv:2: .*missing\.jpg"):
        data.load(tmp_path)


def test_default_aggregator_path_and_fallback(tmp_path, monkeypatch, isolated_home):
    assert infer.default_path() == isolated_home / "aggregator.npz"
    monkeypatch.setenv("GALPROF_AGGREGATOR", str(tmp_path / "mine.npz"))
    assert infer.default_path() == tmp_path / "mine.npz"
    with pytest.raises(DataError, match="mine.npz: not found"):
        infer.load_aggregator(infer.default_path())
    assert infer.describe(np.ones((2, 3)))["trained"] is False
