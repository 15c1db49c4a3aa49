"""Train, evaluate and export the aggregators (needs TensorFlow: `pip install 'galprof[train]'`).

Training: weighted binary cross-entropy on the logits (positives weighted by the ratio of
negative to positive labels in the training set, so that the sparse labels are not drowned
out), Adam, mini-batches of users padded to the longest user of the batch with a mask.
"""

from __future__ import annotations

import json
import os
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off stderr

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from galprof.aggregate import AGGREGATORS, DROPOUT, EPOCHS, TOP_K  # noqa: E402
from galprof.aggregate.data import Dataset, batches, ranking_metrics, split  # noqa: E402
from galprof.aggregate.models import build, export_weights, logits_model  # noqa: E402

EXPORT_FORMAT = "galprof-aggregator"
EXPORT_VERSION = 1


@dataclass
class Trained:
    name: str
    model: keras.Model
    categories: list[str]
    pos_weight: float
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean training loss of each epoch
    val_losses: list[float] = field(default_factory=list)  # validation loss of each epoch
    best_epoch: int = 0                                 # the epoch whose weights were kept

    @property
    def parameters(self) -> int:
        return int(self.model.count_params())

    @property
    def descriptor_size(self) -> int:
        return int(self.model.get_layer("logits").input.shape[-1])


def _signature(dim: int, n_categories: int | None = None):
    spec = [tf.TensorSpec([None, None, dim], tf.float32), tf.TensorSpec([None, None], tf.float32)]
    if n_categories is not None:
        spec.append(tf.TensorSpec([None, n_categories], tf.float32))
    return spec


def train(ds: Dataset, name: str, epochs: int = EPOCHS, batch_size: int = 64,
          learning_rate: float = 1e-3, seed: int = 0, validation_fraction: float = 0.1,
          dropout: float | None = None, progress=None) -> Trained:
    """Train aggregator `name` on the users of `ds`.

    A seeded `validation_fraction` of them is held out; the weights of the epoch with the
    lowest validation loss are kept (early stopping without stopping). `dropout` defaults to
    the aggregator's entry in DROPOUT. `progress(epoch, loss, val_loss)` is called after
    each epoch.
    """
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {name!r}; choose from {', '.join(AGGREGATORS)}")
    val = None
    if validation_fraction > 0 and ds.n_users >= 20:
        fit_idx, val_idx = split(ds.n_users, validation_fraction, seed + 1)
        ds, val = ds.subset(fit_idx), ds.subset(val_idx)
    keras.utils.set_random_seed(seed)
    model = build(name, ds.dim, ds.n_categories,
                  dropout=DROPOUT[name] if dropout is None else dropout)
    to_logits = logits_model(model)
    positives = float(ds.labels.sum())
    pos_weight = (ds.labels.size - positives) / max(positives, 1.0)
    optimizer = keras.optimizers.Adam(learning_rate)
    variables = to_logits.trainable_variables
    optimizer.build(variables)

    @tf.function(input_signature=_signature(ds.dim, ds.n_categories))
    def step(x, mask, y):
        with tf.GradientTape() as tape:
            logits = to_logits([x, mask], training=True)
            loss = tf.reduce_mean(tf.nn.weighted_cross_entropy_with_logits(y, logits, pos_weight))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(seed)
    trained = Trained(name, model, list(ds.categories), pos_weight, epochs, 0.0)
    best, best_weights = np.inf, None
    start = time.perf_counter()
    for epoch in range(epochs):
        total, count = 0.0, 0
        for x, mask, y, users in batches(ds, batch_size, rng):
            total += float(step(x, mask, y)) * len(users)
            count += len(users)
        trained.losses.append(total / count)
        if val is not None:
            trained.val_losses.append(loss(trained, val))
            if trained.val_losses[-1] < best:
                best, best_weights = trained.val_losses[-1], model.get_weights()
                trained.best_epoch = epoch + 1
        if progress:
            progress(epoch + 1, trained.losses[-1],
                     trained.val_losses[-1] if trained.val_losses else None)
    if best_weights is not None:
        model.set_weights(best_weights)
    else:
        trained.best_epoch = epochs
    trained.seconds = time.perf_counter() - start
    return trained


_forwards: "weakref.WeakKeyDictionary[keras.Model, object]" = weakref.WeakKeyDictionary()


def predict(model: keras.Model, ds: Dataset, batch_size: int = 256) -> np.ndarray:
    """Interest probabilities [U, C] of every user of `ds`, in order."""
    forward = _forwards.get(model)
    if forward is None:  # traced once per model, not once per call
        forward = _forwards[model] = tf.function(
            lambda x, mask: model([x, mask], training=False), input_signature=_signature(ds.dim))
    out = np.zeros((ds.n_users, model.output.shape[-1]), dtype=np.float32)
    for x, mask, _, users in batches(ds, batch_size):
        out[users] = forward(x, mask).numpy()
    return out


def loss(trained: Trained, ds: Dataset) -> float:
    """Mean weighted cross-entropy of `ds` under the trained model (same weighting)."""
    p = np.clip(predict(trained.model, ds).astype(np.float64), 1e-7, 1 - 1e-7)
    y = ds.labels.astype(np.float64)
    return float(np.mean(-(trained.pos_weight * y * np.log(p) + (1 - y) * np.log(1 - p))))


def evaluate(trained: Trained, test: Dataset, ks=TOP_K) -> dict:
    """Recall@k, precision@k on `test` and the parameter count (one row of Table 3)."""
    metrics = ranking_metrics(predict(trained.model, test), test.labels, ks)
    return {"aggregator": trained.name, "parameters": trained.parameters,
            "train_seconds": round(trained.seconds, 1), "best_epoch": trained.best_epoch,
            **metrics}


def export(trained: Trained, path: Path, extra: dict | None = None) -> tuple[Path, Path]:
    """Write the weights (`path`, .npz) and the metadata beside them (.json) for `infer`."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **export_weights(trained.model))
    meta = {
        "format": EXPORT_FORMAT, "format_version": EXPORT_VERSION,
        "aggregator": trained.name,
        "dim": int(trained.model.inputs[0].shape[-1]),
        "descriptor_size": trained.descriptor_size,
        "categories": trained.categories,
        "parameters": trained.parameters,
        "pos_weight": trained.pos_weight,
        "epochs": trained.epochs,
        "best_epoch": trained.best_epoch,
        "losses": trained.losses, "val_losses": trained.val_losses,
        **(extra or {}),
    }
    meta_path = path.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path, meta_path
