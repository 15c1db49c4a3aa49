"""The aggregation data set: users, their items' feature vectors, and their interest labels.

A data directory holds one of (looked up in this order; see docs/aggregate.md):

- ``aggregate.npz``: arrays ``user_ids`` [U] (str), ``offsets`` [U+1] (int64; user u owns rows
  ``offsets[u]:offsets[u+1]`` of ``features``), ``features`` [N, D] (float16 or float32),
  ``labels`` [U, C] (0/1), ``categories`` [C] (str), optionally ``item_kinds`` [N] (synthetic
  data: 0 interest, 1 off-topic, 2 clutter). ``galprof aggregate synth`` writes this.
- ``items.jsonl``: one JSON object per item: ``{"user": "u1", "features": [..D floats..],
  "labels": ["shoes", "books"]}``; instead of ``features`` a row may give ``"image": "path"``
  (relative to the directory), whose features the scene classifier computes.
- ``items.csv``: columns ``user,image,labels`` (labels separated by ``;``): image rows only.

A user's labels are the union of the labels on its rows. The category order is
``categories.txt`` (one per line) when present, else the sorted union of all labels.
Numpy only: no TensorFlow here.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galprof.errors import GalprofError

NPZ_NAME = "aggregate.npz"
JSONL_NAME = "items.jsonl"
CSV_NAME = "items.csv"
CATEGORIES_NAME = "categories.txt"


class DataError(GalprofError):
    """An aggregation data file that is missing or malformed; the message names the file."""


@dataclass
class Dataset:
    user_ids: np.ndarray       # [U] str
    offsets: np.ndarray        # [U+1] int64
    features: np.ndarray       # [N, D] float16/float32
    labels: np.ndarray         # [U, C] uint8
    categories: list[str]
    # synthetic data only: what each item is (synth.INTEREST, OFFTOPIC, CLUTTER), for analysis
    kinds: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def counts(self) -> np.ndarray:
        """Number of items of each user."""
        return np.diff(self.offsets)

    def items(self, u: int) -> np.ndarray:
        """The float32 features [M, D] of user u."""
        return np.asarray(self.features[self.offsets[u]:self.offsets[u + 1]], dtype=np.float32)

    def subset(self, users: np.ndarray) -> "Dataset":
        """A data set of the given user indices (features copied, in that order)."""
        users = np.asarray(users, dtype=np.int64)
        counts = self.counts()[users]
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = np.concatenate([np.arange(self.offsets[u], self.offsets[u + 1]) for u in users]) \
            if len(users) else np.zeros(0, dtype=np.int64)
        return Dataset(self.user_ids[users], offsets, self.features[rows], self.labels[users],
                       list(self.categories), None if self.kinds is None else self.kinds[rows])

    def validate(self, source: str) -> "Dataset":
        u = self.n_users
        if self.features.ndim != 2:
            raise DataError(f"{source}: features must be a 2-D array [items, D], "
                            f"got shape {self.features.shape}")
        if self.offsets.shape != (u + 1,) or self.offsets[0] != 0 \
                or self.offsets[-1] != len(self.features) or np.any(np.diff(self.offsets) < 1):
            raise DataError(f"{source}: offsets must rise from 0 to the number of feature rows, "
                            "with at least one item per user")
        if self.labels.shape != (u, len(self.categories)):
            raise DataError(f"{source}: labels shape {self.labels.shape}, expected "
                            f"({u}, {len(self.categories)}) (users x categories)")
        if self.kinds is not None and self.kinds.shape != (len(self.features),):
            raise DataError(f"{source}: item_kinds must have one entry per feature row")
        if not np.all(np.isfinite(self.features)):
            raise DataError(f"{source}: features contain NaN or infinite values")
        return self


def save_npz(ds: Dataset, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NPZ_NAME
    extra = {} if ds.kinds is None else {"item_kinds": ds.kinds}
    np.savez(path, user_ids=ds.user_ids.astype(str), offsets=ds.offsets, features=ds.features,
             labels=ds.labels.astype(np.uint8), categories=np.array(ds.categories, dtype=str),
             **extra)
    return path


def load(directory: Path, feature_fn=None) -> Dataset:
    """Read a data directory (npz, else JSON lines, else CSV).

    `feature_fn(path) -> np.ndarray [D]` computes features for image rows; by default the
    scene classifier's feature vector (loaded only when an image row is met).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    if (directory / NPZ_NAME).is_file():
        return _load_npz(directory / NPZ_NAME)
    if (directory / JSONL_NAME).is_file():
        return _load_rows(directory, _jsonl_rows(directory / JSONL_NAME), feature_fn)
    if (directory / CSV_NAME).is_file():
        return _load_rows(directory, _csv_rows(directory / CSV_NAME), feature_fn)
    raise DataError(f"{directory}: no {NPZ_NAME}, {JSONL_NAME} or {CSV_NAME} "
                    "(see docs/aggregate.md, or make one with `galprof aggregate synth`)")


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            ds = Dataset(z["user_ids"].astype(str), z["offsets"].astype(np.int64), z["features"],
                         z["labels"].astype(np.uint8), [str(c) for c in z["categories"]],
                         z["item_kinds"] if "item_kinds" in z.files else None)
    except KeyError as e:
        raise DataError(f"{path}: missing array {e}") from e
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable npz file ({e})") from e
    if ds.features.dtype not in (np.float16, np.float32, np.float64):
        raise DataError(f"{path}: features must be float, got {ds.features.dtype}")
    return ds.validate(str(path))


def _jsonl_rows(path: Path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not JSON ({e.msg})") from e
            if not isinstance(row, dict) or "user" not in row:
                raise DataError(f"{path}:{n}: each line must be an object with a \"user\" key")
            labels = row.get("labels", [])
            if isinstance(labels, str):
                labels = [s for s in labels.split(";") if s]
            yield f"{path}:{n}", str(row["user"]), row.get("features"), row.get("image"), labels


def _csv_rows(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"user", "image", "labels"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for n, row in enumerate(reader, 2):
            labels = [s.strip() for s in (row["labels"] or "").split(";") if s.strip()]
            yield f"{path}:{n}", row["user"], None, row["image"], labels


def _load_rows(directory: Path, rows, feature_fn) -> Dataset:
    by_user: dict[str, tuple[list[np.ndarray], set[str]]] = {}
    dim = None
    for where, user, vector, image, labels in rows:
        if vector is not None:
            x = np.asarray(vector, dtype=np.float32)
        elif image:
            if feature_fn is None:
                feature_fn = scene_features()
            try:
                x = np.asarray(feature_fn(directory / image), dtype=np.float32).reshape(-1)
            except (GalprofError, OSError) as e:
                raise DataError(f"{where}: {e}") from e
        else:
            raise DataError(f"{where}: a row needs \"features\" or \"image\"")
        if x.ndim != 1 or (dim is not None and x.shape[0] != dim):
            raise DataError(f"{where}: feature vector of length {x.size}, expected {dim}")
        dim = x.shape[0]
        feats, labs = by_user.setdefault(user, ([], set()))
        feats.append(x)
        labs.update(str(s) for s in labels)
    if not by_user:
        raise DataError(f"{directory}: no rows")
    cat_file = directory / CATEGORIES_NAME
    if cat_file.is_file():
        categories = [s.strip() for s in cat_file.read_text(encoding="utf-8").splitlines()
                      if s.strip()]
    else:
        categories = sorted(set().union(*(labs for _, labs in by_user.values())))
    index = {c: i for i, c in enumerate(categories)}
    users = list(by_user)
    labels = np.zeros((len(users), len(categories)), dtype=np.uint8)
    for u, user in enumerate(users):
        for c in by_user[user][1]:
            if c not in index:
                raise DataError(f"{cat_file}: label {c!r} of user {user} is not listed")
            labels[u, index[c]] = 1
    counts = [len(by_user[user][0]) for user in users]
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    features = np.stack([x for user in users for x in by_user[user][0]])
    return Dataset(np.array(users, dtype=str), offsets, features, labels,
                   categories).validate(str(directory))


def scene_features():
    """The feature function of image rows: the scene classifier's photo feature vector
    (MobileNetV2's 1280-d penultimate layer with the default model), as `scan` computes it.

    Imported here, when first needed, so reading vector-only data never loads a model.
    """
    from galprof.gallery.frames import decode_photo
    from galprof.vision.scenes import ScenesStage, SceneClassifier
    classifier = SceneClassifier().load()

    def features(path: Path) -> np.ndarray:
        frame = decode_photo(Path(path), ScenesStage.long_side).frames[0]
        return classifier.analyse(frame.image).features

    return features


def split(n_users: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test user indices: a seeded random permutation, test = the last fraction."""
    order = np.random.default_rng(seed).permutation(n_users)
    n_test = max(1, int(round(n_users * test_fraction)))
    return np.sort(order[:-n_test]), np.sort(order[-n_test:])


def batches(ds: Dataset, batch_size: int, rng: np.random.Generator | None = None):
    """Yield (features [B, Mmax, D] float32, mask [B, Mmax] float32, labels [B, C], users).

    Users are padded to the longest in their batch and the mask marks real items. With an
    rng the order is shuffled, and users of similar item counts are batched together
    (sorted within windows of 50 batches) so that padding stays small.
    """
    counts = ds.counts()
    if rng is None:
        order = np.arange(ds.n_users)
    else:
        order = rng.permutation(ds.n_users)
        window = batch_size * 50
        chunks = [order[i:i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort(counts[c], kind="stable")] for c in chunks])
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    for users in groups:
        width = int(counts[users].max())
        x = np.zeros((len(users), width, ds.dim), dtype=np.float32)
        mask = np.zeros((len(users), width), dtype=np.float32)
        for i, u in enumerate(users):
            m = counts[u]
            x[i, :m] = ds.features[ds.offsets[u]:ds.offsets[u + 1]]
            mask[i, :m] = 1.0
        yield x, mask, ds.labels[users].astype(np.float32), users


def ranking_metrics(scores: np.ndarray, labels: np.ndarray, ks=(5, 10, 15)) -> dict:
    """Mean recall@k and precision@k over users, ranking the C categories by score.

    Users without any positive label are skipped (recall is undefined for them).
    """
    labels = np.asarray(labels) > 0
    keep = labels.any(axis=1)
    scores, labels = np.asarray(scores)[keep], labels[keep]
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(labels, order, axis=1)
    n_pos = labels.sum(axis=1)
    out = {"users": int(keep.sum())}
    for k in ks:
        found = hits[:, :k].sum(axis=1)
        out[f"recall@{k}"] = float(np.mean(found / n_pos))
        out[f"precision@{k}"] = float(np.mean(found / k))
    return out
