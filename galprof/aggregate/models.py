"""The five aggregators of the paper's Table 3 as Keras models (needs the `train` extra).

Every model takes two inputs, the padded item features [B, M, D] and a mask [B, M] (1 for a
real item, 0 for padding), scales each item to unit root mean square, and outputs C sigmoid
probabilities. The layer before the sigmoid
is named "logits" so training can use a numerically safe loss on logits; the layer names are
the keys of the numpy export that `galprof.aggregate.infer` reads.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from galprof.aggregate import AGGREGATORS, HIDDEN_SIZE, REDUCED_SIZE

_NEG = -1e9  # score of a padded item: zero weight after the softmax


def masked_softmax(scores, mask):
    scores = ops.where(mask > 0, scores, _NEG)
    return ops.softmax(scores, axis=-1) * mask


@keras.saving.register_keras_serializable(package="galprof")
class RMSNormalize(layers.Layer):
    """Each item's features scaled to a root mean square of 1 (padding, all zeros, stays zero).

    The same scale for every photo whatever the network that made the features; unit RMS
    rather than unit length keeps the values near 1, where the default initialisations and
    Adam's step size suit every aggregator alike.
    """

    def call(self, x):
        return x / ops.maximum(ops.sqrt(ops.mean(x * x, axis=-1, keepdims=True)), 1e-12)


@keras.saving.register_keras_serializable(package="galprof")
class MaskedMean(layers.Layer):
    """Average pooling over the real items of each user."""

    def call(self, inputs):
        x, mask = inputs
        total = ops.sum(x * ops.expand_dims(mask, -1), axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)


@keras.saving.register_keras_serializable(package="galprof")
class Attention(layers.Layer):
    """w(m) = softmax over the user's items of q^T s(m); returns (sum_m w(m) s(m), w).

    With `learned_query` the query q is one learned vector (initialised to zero, so training
    starts from average pooling); otherwise it is a third input [B, dim] (NAN's second block).
    """

    def __init__(self, learned_query: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.learned_query = learned_query

    def build(self, input_shape):
        if self.learned_query:
            self.q = self.add_weight(name="q", shape=(input_shape[0][-1],), initializer="zeros")

    def call(self, inputs):
        if self.learned_query:
            s, mask = inputs
            scores = ops.einsum("bmd,d->bm", s, self.q)
        else:
            s, mask, q = inputs
            scores = ops.einsum("bmd,bd->bm", s, q)
        w = masked_softmax(scores, mask)
        return ops.einsum("bm,bmd->bd", w, s), w

    def get_config(self):
        return {**super().get_config(), "learned_query": self.learned_query}


def _context_gating(r, name: str):
    """Y = sigmoid(W r + b) * r (Miech et al.): features re-weighted by their context."""
    gate = layers.Dense(r.shape[-1], activation="sigmoid", name=name)(r)
    return layers.Multiply(name=f"{name}_apply")([r, gate])


def build(name: str, dim: int, n_categories: int, reduced: int = REDUCED_SIZE,
          hidden: int = HIDDEN_SIZE, dropout: float = 0.0) -> keras.Model:
    """The Keras model of aggregator `name` (one of AGGREGATORS)."""
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {name!r}; choose from {', '.join(AGGREGATORS)}")
    features = keras.Input((None, dim), name="features")
    mask = keras.Input((None,), name="mask")
    x = RMSNormalize(name="normalize")(features)
    if name == "average":
        descriptor = MaskedMean(name="mean")([x, mask])
    elif name == "attention-cg":
        pooled, _ = Attention(name="attention")([x, mask])
        descriptor = _context_gating(pooled, "gating")
    elif name in ("nan", "nan-cg-fc"):
        r1, _ = Attention(name="attention1")([x, mask])
        # zero-initialised like the learned queries: training starts from average pooling
        q2 = layers.Dense(dim, activation="tanh", kernel_initializer="zeros", name="query2")(r1)
        descriptor, _ = Attention(learned_query=False, name="attention2")([x, mask, q2])
        if name == "nan-cg-fc":
            gated = _context_gating(descriptor, "gating")
            descriptor = layers.Dense(hidden, activation="relu", name="hidden")(gated)
    else:  # reduced-attention, equations (1)-(3)
        s = layers.Dense(reduced, use_bias=False, name="project")(x)
        descriptor, _ = Attention(name="attention")([s, mask])
    if dropout:
        descriptor = layers.Dropout(dropout, name="dropout")(descriptor)
    logits = layers.Dense(n_categories, name="logits")(descriptor)
    probs = layers.Activation("sigmoid", name="interests")(logits)
    return keras.Model([features, mask], probs, name=name)


def logits_model(model: keras.Model) -> keras.Model:
    """The same weights, stopping before the sigmoid (for the loss)."""
    return keras.Model(model.inputs, model.get_layer("logits").output)


def export_weights(model: keras.Model) -> dict:
    """{"layer/variable": array} for every weight, the keys `infer` reads."""
    return {w.path: keras.ops.convert_to_numpy(w.value) for w in model.weights}
