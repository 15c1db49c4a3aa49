"""Run a trained aggregator with numpy alone (no TensorFlow): photo features → descriptor.

`galprof aggregate train` exports a model as ``NAME.npz`` (the weights, keyed "layer/variable")
and ``NAME.json`` beside it (aggregator name, D, descriptor size, category names). This
module re-implements the five forward passes of `galprof.aggregate.models` on one user's
items, so `galprof profile` can add a descriptor and predicted interests on a phone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from galprof.aggregate import AGGREGATORS
from galprof.aggregate.data import DataError

EXPORT_FORMAT = "galprof-aggregator"

# weights each aggregator needs, by layer
_LAYERS = {
    "average": ["logits/kernel", "logits/bias"],
    "attention-cg": ["attention/q", "gating/kernel", "gating/bias", "logits/kernel", "logits/bias"],
    "nan": ["attention1/q", "query2/kernel", "query2/bias", "logits/kernel", "logits/bias"],
    "nan-cg-fc": ["attention1/q", "query2/kernel", "query2/bias", "gating/kernel", "gating/bias",
                  "hidden/kernel", "hidden/bias", "logits/kernel", "logits/bias"],
    "reduced-attention": ["project/kernel", "attention/q", "logits/kernel", "logits/bias"],
}

UNTRAINED_NOTE = "no trained aggregator: the descriptor is the average of the photo features"


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max())
    return e / e.sum()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _check_features(features, dim: int | None) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"features must be an array [items, D] with at least one item, "
                        f"got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"features have {x.shape[1]} dimensions, the aggregator expects {dim}")
    if not np.all(np.isfinite(x)):
        raise DataError("features contain NaN or infinite values")
    return x


class Aggregator:
    """A trained aggregator: `describe(features)` for one user, numpy only."""

    def __init__(self, meta: dict, weights: dict[str, np.ndarray], source: str = "aggregator"):
        self.name: str = meta["aggregator"]
        self.dim: int = int(meta["dim"])
        self.descriptor_size: int = int(meta["descriptor_size"])
        self.categories: list[str] = list(meta["categories"])
        self.meta = meta
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        if self.name not in AGGREGATORS:
            raise DataError(f"{source}: unknown aggregator {self.name!r}")
        missing = [k for k in _LAYERS[self.name] if k not in self.w]
        if missing:
            raise DataError(f"{source}: missing weights {', '.join(missing)}")
        if self.w["logits/kernel"].shape != (self.descriptor_size, len(self.categories)):
            raise DataError(f"{source}: logits layer has shape {self.w['logits/kernel'].shape}, "
                            f"metadata says ({self.descriptor_size}, {len(self.categories)})")

    def _attend(self, s: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = _softmax(s @ q)
        return weights @ s, weights

    def forward(self, features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(descriptor [S], per-item attention weights [M], interest probabilities [C])."""
        x = _check_features(features, self.dim)
        x = x / np.maximum(np.sqrt(np.mean(x * x, axis=1, keepdims=True)), 1e-12)  # RMSNormalize
        w = self.w
        if self.name == "average":
            descriptor, weights = x.mean(axis=0), np.full(len(x), 1.0 / len(x))
        elif self.name == "attention-cg":
            pooled, weights = self._attend(x, w["attention/q"])
            descriptor = pooled * _sigmoid(pooled @ w["gating/kernel"] + w["gating/bias"])
        elif self.name in ("nan", "nan-cg-fc"):
            r1, _ = self._attend(x, w["attention1/q"])
            q2 = np.tanh(r1 @ w["query2/kernel"] + w["query2/bias"])
            descriptor, weights = self._attend(x, q2)
            if self.name == "nan-cg-fc":
                gated = descriptor * _sigmoid(descriptor @ w["gating/kernel"] + w["gating/bias"])
                descriptor = np.maximum(gated @ w["hidden/kernel"] + w["hidden/bias"], 0.0)
        else:  # reduced-attention
            s = x @ w["project/kernel"]
            descriptor, weights = self._attend(s, w["attention/q"])
        probs = _sigmoid(descriptor @ w["logits/kernel"] + w["logits/bias"])
        return descriptor, weights, probs

    def describe(self, features, top: int | None = None) -> dict:
        """The profile's `descriptor` entry for one user's item features [M, D].

        Returns {"aggregator", "trained": True, "descriptor": S floats, "weights": M floats
        (attention of each item, in input order), "interests": [(category, probability)]
        sorted by probability, the `top` first or all C}.
        """
        descriptor, weights, probs = self.forward(features)
        order = np.argsort(-probs, kind="stable")[:top]
        return {
            "aggregator": self.name,
            "trained": True,
            "descriptor": [float(v) for v in descriptor],
            "weights": [float(v) for v in weights],
            "interests": [(self.categories[i], float(probs[i])) for i in order],
        }


def load_aggregator(path) -> Aggregator:
    """Load an exported aggregator from its .npz (or its .json: the other file sits beside it)."""
    path = Path(path)
    npz, meta_path = path.with_suffix(".npz"), path.with_suffix(".json")
    for p in (npz, meta_path):
        if not p.is_file():
            raise DataError(f"{p}: not found (export one with `galprof aggregate train`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{meta_path}: unreadable metadata ({e})") from e
    if meta.get("format") != EXPORT_FORMAT:
        raise DataError(f"{meta_path}: not a galprof aggregator (format {meta.get('format')!r})")
    for key in ("aggregator", "dim", "descriptor_size", "categories"):
        if key not in meta:
            raise DataError(f"{meta_path}: metadata lacks {key!r}")
    try:
        with np.load(npz, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{npz}: unreadable weights ({e})") from e
    return Aggregator(meta, weights, source=str(npz))


def average_descriptor(features) -> dict:
    """The fallback without a trained aggregator: the mean feature vector, and a note saying so."""
    x = _check_features(features, None)
    return {
        "aggregator": "average",
        "trained": False,
        "descriptor": [float(v) for v in x.mean(axis=0)],
        "weights": [1.0 / len(x)] * len(x),
        "interests": [],
        "note": UNTRAINED_NOTE,
    }


def default_path() -> Path:
    """Where `galprof profile` looks for a trained aggregator: $GALPROF_AGGREGATOR, else
    aggregator.npz in the data directory (copy the output of `aggregate train` there)."""
    import os

    from galprof.paths import data_dir
    env = os.environ.get("GALPROF_AGGREGATOR")
    return Path(env) if env else data_dir() / "aggregator.npz"


def describe(features, aggregator: Aggregator | None = None, top: int | None = None) -> dict:
    """`aggregator.describe(features)`, or the average fallback when there is no aggregator."""
    if aggregator is None:
        return average_descriptor(features)
    return aggregator.describe(features, top)


def aggregator_identity() -> list:
    """Which aggregator the descriptor pass would use (part of its inputs): the path and
    the size and mtime of its two files."""
    path = default_path()
    stamps = []
    for p in (path.with_suffix(".npz"), path.with_suffix(".json")):
        try:
            st = p.stat()
            stamps.append((st.st_size, st.st_mtime_ns))
        except OSError:              # absent, or a data dir this user cannot read
            stamps.append(None)
    return [str(path), stamps]


def gallery_descriptor(features: list[np.ndarray]) -> dict:
    """The profile's `descriptor`: the paper's attention pooling of the photo features (one
    per media item: the scene classifier's pooled layer) when a trained aggregator is
    installed (`default_path()`), else their mean, saying so. {} without features."""
    if not features:
        return {}
    path = default_path()
    aggregator = load_aggregator(path) if path.exists() else None
    out = describe(np.stack(features), aggregator, top=15)
    out.pop("weights")
    out["interests"] = [{"category": c, "probability": round(p, 4)} for c, p in out["interests"]]
    return {**out, "items": len(features)}
