"""Face identity clusters: HDBSCAN on cosine distances with the seed's rules.

Pure functions over arrays, so the store can feed them and tests can call them directly:
features `[N, D]` float32 L2-normalised, one photo id per face, optional age and photo year
per face, optional sort key per face. Labels are ints, -1 = unknown.

Same answer on every platform: faces are processed in a canonical order that comes from
the caller's `order_keys` (the store passes `(taken_at or "", media path, frame, face)`:
earliest photo first, then the smallest path), or without keys from the photo ids as text
and then the input position. Never from the feature values: the same models on x86 and
arm64 agree only to within int8 rounding, and a hash of the feature bytes (the order used
before) renumbered the people, and so changed a tied owner, on a last-bit difference.

Pipeline: distances (cosine + cannot-link + child age penalty) → HDBSCAN (hdbscan.py;
exact matrix up to `exact_max_faces`, else similarity partitions clustered exactly one by
one) → split any cluster holding two faces of one photo → merge clusters with close
centroids that never share a photo → faces far from the rest of their cluster become
unknown → unknown faces join a cluster whose centroid they match as closely as `assign_new`
requires → refinement (>= `min_faces` faces from >= `min_photos` photos) → labels numbered
0, 1, 2... by their first face in canonical order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from galprof.people.hdbscan import hdbscan
from galprof.people.params import CLUSTER, ClusterParams

NOISE = -1


def auto_min_cluster_size(n_faces: int) -> int:
    """Grows with the library: 2 fragments big libraries into pairs of look-alikes."""
    return max(2, round(math.log10(max(n_faces, 1))))


def birth_years(ages: np.ndarray | None, years: np.ndarray | None, n: int) -> np.ndarray:
    """Photo year minus estimated age; NaN where unknown. Without years, -age (same day)."""
    if ages is None:
        return np.full(n, np.nan)
    if years is None:
        return -_floats(ages)
    return _floats(years) - _floats(ages)


def _floats(values) -> np.ndarray:
    """Floats with None as NaN (store columns may be NULL)."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def distance_matrix(features: np.ndarray, photo_ids: Sequence[Hashable],
                    ages: np.ndarray | None = None, years: np.ndarray | None = None,
                    params: ClusterParams = CLUSTER) -> np.ndarray:
    """Cosine distance with the cannot-link rule and the child age penalty, float64 [N, N]."""
    features = _check_features(features)
    n = len(features)
    photos = _photo_codes(photo_ids, n)
    by = birth_years(ages, years, n)
    age = np.full(n, np.nan) if ages is None else _floats(ages)
    return _distances(features, photos, by, age, params)


def cluster_faces(features: np.ndarray, photo_ids: Sequence[Hashable],
                  ages: np.ndarray | None = None, years: np.ndarray | None = None,
                  params: ClusterParams | None = None,
                  order_keys: Sequence | None = None) -> np.ndarray:
    """Label each face with a person index (0..K-1) or -1 (unknown).

    features: [N, D] L2-normalised identity features. photo_ids: one per face; faces of one
    photo (or one video frame) are never one person. ages: estimated age per face, years:
    the photo's year per face (birth year = year - age drives the child penalty; without
    years, ages are compared as if taken the same day).

    order_keys: one sortable, unique key per face, e.g. `(taken_at or "", path, frame,
    face)`. Faces are processed in key order and labels are numbered by their first face in
    it: person 0 is the one whose smallest key is the smallest. So the numbers depend on the
    keys, never on the input order or the feature bits; a difference far below the model's
    int8 rounding can only move a face whose distance sits that close to a threshold.
    Without keys, the order is the photo ids as text, then the input position (so it does
    not depend on the order of the photos, but does on the order of the faces within one
    photo).
    """
    params = (params or CLUSTER).check()
    features = _check_features(features)
    n = len(features)
    photos = _photo_codes(photo_ids, n)
    if ages is not None and len(ages) != n or years is not None and len(years) != n:
        raise ValueError(f"ages/years must have one value per face ({n})")
    order = _canonical_order(photo_ids, order_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    feats = np.ascontiguousarray(features[order], dtype=np.float32)
    phot = photos[order]
    age = np.full(n, np.nan) if ages is None else _floats(ages)[order]
    by = birth_years(ages, years, n)[order]
    min_size = params.min_cluster_size or auto_min_cluster_size(n)

    if n <= params.exact_max_faces:
        labels = _hdbscan(feats, phot, by, age, min_size, params)
    else:
        labels = np.full(n, NOISE, dtype=np.int64)
        next_label = 0
        for part in _partitions(feats, params):
            sub = _hdbscan(feats[part], phot[part], by[part], age[part], min_size, params)
            labels[part] = np.where(sub >= 0, sub + next_label, NOISE)
            next_label += int(sub.max()) + 1 if len(sub) else 0

    labels = _split_conflicts(labels, feats, phot)
    labels = _merge_clusters(labels, feats, phot, by, age, params)
    labels = _prune_loose(labels, feats, params.member_cosine)
    labels = _attach_noise(labels, feats, phot, by, age, params)
    labels = _refine(labels, phot, params.min_faces, params.min_photos)
    labels = _renumber(labels)
    out = np.empty(n, dtype=np.int64)
    out[order] = labels
    return out


def centroids(features: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """L2-normalised mean feature of every cluster (label >= 0)."""
    features = _check_features(features)
    labels = np.asarray(labels)
    ids = np.unique(labels[labels >= 0])
    sums = _label_sums(features, labels, ids)
    return {int(label): _normalise(total) for label, total in zip(ids, sums)}


def assign_new(existing_centroids: Mapping[Hashable, np.ndarray], new_features: np.ndarray,
               threshold: float | None = None,
               photo_ids: Sequence[Hashable] | None = None) -> list[Hashable | None]:
    """Person id for each new face whose centroid cosine is >= threshold, else None.

    Keeps existing people (names, manual fixes) across re-scans. With photo_ids, two new faces
    of one photo never join the same person: the closer face wins, the other is None.
    """
    threshold = CLUSTER.assign_cosine if threshold is None else threshold
    new_features = _check_features(new_features)
    m = len(new_features)
    if not existing_centroids or m == 0:
        return [None] * m
    keys = list(existing_centroids)
    matrix = np.stack([_normalise(np.asarray(existing_centroids[k], np.float64)) for k in keys])
    if matrix.shape[1] != new_features.shape[1]:
        raise ValueError(f"centroids have {matrix.shape[1]} features, new faces "
                         f"{new_features.shape[1]}")
    sims = new_features.astype(np.float64) @ matrix.T
    photos = _photo_codes(photo_ids, m) if photo_ids is not None else np.arange(m)
    result: list[Hashable | None] = [None] * m
    taken: set[tuple[int, int]] = set()
    # Strongest matches first, so a same-photo conflict is lost by the weaker face.
    faces, people = np.nonzero(sims >= threshold)
    strength = sims[faces, people]
    for k in np.lexsort((people, faces, -strength)):
        face, person = int(faces[k]), int(people[k])
        if result[face] is not None or (int(photos[face]), person) in taken:
            continue
        result[face] = keys[person]
        taken.add((int(photos[face]), person))
    return result


def bcubed(truth: Sequence[Hashable], predicted: np.ndarray) -> tuple[float, float, float]:
    """BCubed precision, recall and F over the faces; predicted -1 counts as a singleton."""
    truth = np.asarray([str(t) for t in truth])
    pred = np.asarray(predicted).copy()
    if len(truth) != len(pred) or len(pred) == 0:
        raise ValueError("bcubed needs one predicted label per true label, at least one")
    noise = pred < 0
    pred[noise] = pred.max(initial=0) + 1 + np.arange(noise.sum())
    _, t = np.unique(truth, return_inverse=True)
    _, q = np.unique(pred, return_inverse=True)
    _, both, both_count = np.unique(t * (q.max() + 1) + q, return_inverse=True, return_counts=True)
    shared = both_count[both]
    precision = float(np.mean(shared / np.bincount(q)[q]))
    recall = float(np.mean(shared / np.bincount(t)[t]))
    return precision, recall, 2 * precision * recall / (precision + recall)


# --- internals ------------------------------------------------------------------------

def _check_features(features) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}")
    if len(features) and not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinity")
    return features


def _photo_codes(photo_ids, n: int) -> np.ndarray:
    if photo_ids is None or len(photo_ids) != n:
        raise ValueError(f"photo_ids must have one id per face ({n})")
    codes: dict = {}
    return np.fromiter((codes.setdefault(p, len(codes)) for p in photo_ids), np.int64, n)


def _canonical_order(photo_ids, order_keys) -> np.ndarray:
    """Positions in processing order: by `order_keys`, else by photo id as text then input
    position. Never by feature values (see the module docstring)."""
    n = len(photo_ids)
    if order_keys is None:
        names = [str(p) for p in photo_ids]
        return np.array(sorted(range(n), key=lambda i: (names[i], i)), dtype=np.int64)
    keys = [tuple(k.tolist()) if isinstance(k, np.ndarray) else k for k in order_keys]
    if len(keys) != n:
        raise ValueError(f"order_keys must have one key per face ({n}), got {len(keys)}")
    try:
        order = sorted(range(n), key=keys.__getitem__)
        ties = [keys[a] for a, b in zip(order, order[1:]) if not keys[a] < keys[b]]
    except TypeError as e:
        raise ValueError(f"order_keys must be comparable with each other: {e}") from None
    if ties:
        raise ValueError(f"order_keys must be unique, {ties[0]!r} is there twice")
    return np.array(order, dtype=np.int64)


def _label_sums(feats: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Float64 sum of the features of each label in `ids` (sorted), one cluster at a time:
    no copy of all the features, and far faster than np.add.at on rows."""
    members = np.flatnonzero(labels >= 0)
    members = members[np.argsort(labels[members], kind="stable")]
    bounds = np.searchsorted(labels[members], np.append(ids, ids[-1] + 1) if len(ids) else ids)
    sums = np.zeros((len(ids), feats.shape[1]))
    for i in range(len(ids)):
        sums[i] = feats[members[bounds[i]:bounds[i + 1]]].sum(0, dtype=np.float64)
    return sums


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1)


def _distances(feats: np.ndarray, photos: np.ndarray, by: np.ndarray, age: np.ndarray,
               params: ClusterParams) -> np.ndarray:
    feats = feats.astype(np.float32, copy=False)
    # In place where it can be: at 4,000 faces every n x n float64 temporary is 128 MB.
    dist = (feats @ feats.T).astype(np.float64)
    np.subtract(1.0, dist, out=dist)
    np.clip(dist, 0.0, 2.0, out=dist)
    child = np.nan_to_num(age, nan=np.inf) < params.child_age
    if child.any():
        # The seed's rule: when either face is a child, the birth-year gap adds distance.
        gap = np.abs(by[:, None] - by[None, :])
        gap[~((child[:, None] | child[None, :]) & np.isfinite(gap))] = 0.0
        gap *= params.child_penalty_per_year
        dist += gap
        del gap
    dist[photos[:, None] == photos[None, :]] = params.cannot_link_distance
    np.fill_diagonal(dist, 0.0)
    return dist


def _hdbscan(feats, photos, by, age, min_size: int, params: ClusterParams) -> np.ndarray:
    n = len(feats)
    if n < max(min_size, 2):
        return np.full(n, NOISE, dtype=np.int64)
    # hdbscan counts the face itself among its min_samples neighbours (params do not, as
    # the `hdbscan` package did not): +1 gives the same core distances.
    min_samples = min(params.min_samples + 1, n)
    # Several clusters first: allowing a single one lets the root win over two real people.
    # Only when HDBSCAN finds none is the whole set tried as one person (a one-person input).
    for single in (False, True):
        # hdbscan turns the matrix into reachability distances in place (no second n x n
        # copy), so the rare second try computes the distances again.
        dist = _distances(feats, photos, by, age, params)
        labels = hdbscan(dist, min_size, min_samples, allow_single_cluster=single)
        del dist
        if labels.max() >= 0:
            break
    return labels.astype(np.int64)


def _partitions(feats: np.ndarray, params: ClusterParams) -> list[np.ndarray]:
    """Split a large library into similarity groups of about `partition_size` faces.

    PCA (covariance eigenvectors, signs fixed) then a few k-means steps seeded at evenly
    spaced faces of the canonical order; groups larger than twice the target are halved
    along their main axis. No randomness.
    """
    n = len(feats)
    # The main axes of the library need only a sample of it (evenly spaced, so deterministic).
    sample = feats[:: max(1, n // 20000)]
    mean = sample.mean(0, dtype=np.float64)
    centred = sample - mean.astype(np.float32)
    _, vecs = np.linalg.eigh((centred.T @ centred).astype(np.float64) / len(sample))
    vecs = vecs[:, ::-1][:, :params.partition_dims]
    vecs *= np.sign(vecs[np.abs(vecs).argmax(0), np.arange(vecs.shape[1])])
    proj = ((feats - mean.astype(np.float32)) @ vecs.astype(np.float32))
    k = max(1, math.ceil(n / params.partition_size))
    centres = proj[np.linspace(0, n - 1, k).astype(int)]
    sq = (proj * proj).sum(1)
    for _ in range(8):
        assign = np.argmin(sq[:, None] - 2 * proj @ centres.T + (centres * centres).sum(1), 1)
        for c in range(k):
            members = assign == c
            if members.any():
                centres[c] = proj[members].mean(0)
    groups = [np.flatnonzero(assign == c) for c in range(k)]
    out = []
    while groups:
        group = groups.pop(0)
        if len(group) == 0:
            continue
        if len(group) <= 2 * params.partition_size:
            out.append(group)
            continue
        sub = proj[group] - proj[group].mean(0)
        axis = np.linalg.eigh(sub.T.astype(np.float64) @ sub)[1][:, -1]
        score = sub @ axis.astype(np.float32)
        split = np.argsort(score, kind="stable")
        half = len(group) // 2
        groups += [np.sort(group[split[:half]]), np.sort(group[split[half:]])]
    return out


def _split_conflicts(labels: np.ndarray, feats: np.ndarray, photos: np.ndarray) -> np.ndarray:
    """Cannot-link after clustering: a cluster holding two faces of one photo is split.

    The faces of its most crowded photo seed the parts; every other member, most similar
    first, joins the most similar part that has no face of its photo yet, else becomes -1.
    """
    labels = labels.copy()
    next_label = int(labels.max(initial=-1)) + 1
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        codes, counts = np.unique(photos[members], return_counts=True)
        if counts.max() < 2:
            continue
        crowded = codes[counts == counts.max()]
        seed_photo = min(crowded, key=lambda c: members[photos[members] == c][0])
        seeds = members[photos[members] == seed_photo]
        sums = [feats[s].astype(np.float64) for s in seeds]
        used = [{int(seed_photo)} for _ in seeds]
        group_of = {int(s): g for g, s in enumerate(seeds)}
        rest = members[photos[members] != seed_photo]
        sims = feats[rest] @ feats[seeds].T
        for i in np.lexsort((rest, -sims.max(1))):
            face = int(rest[i])
            best, best_sim = None, -np.inf
            for g, total in enumerate(sums):
                if int(photos[face]) in used[g]:
                    continue
                sim = float(feats[face] @ _normalise(total))
                if sim > best_sim:
                    best, best_sim = g, sim
            group_of[face] = best if best is not None else -1
            if best is not None:
                sums[best] = sums[best] + feats[face]
                used[best].add(int(photos[face]))
        for face, g in group_of.items():
            labels[face] = NOISE if g < 0 else (label if g == 0 else next_label + g - 1)
        next_label += len(seeds) - 1
    return labels


def _merge_clusters(labels, feats, photos, by, age, params: ClusterParams) -> np.ndarray:
    """Join clusters whose centroids are close and that never share a photo.

    Candidate pairs come from the first centroids, strongest first; a pair is joined only if
    the current (merged) centroids still pass the threshold, so chains do not drift.
    """
    ids = np.unique(labels[labels >= 0])
    if len(ids) < 2:
        return labels
    index = {int(c): i for i, c in enumerate(ids)}
    k = len(ids)
    sums = _label_sums(feats, labels, ids)
    photo_sets = [set() for _ in range(k)]
    ages: list[list[float]] = [[] for _ in range(k)]
    years: list[list[float]] = [[] for _ in range(k)]
    for face in np.flatnonzero(labels >= 0):
        c = index[int(labels[face])]
        photo_sets[c].add(int(photos[face]))
        if np.isfinite(age[face]):
            ages[c].append(float(age[face]))
        if np.isfinite(by[face]):
            years[c].append(float(by[face]))
    sims = _normalise(sums) @ _normalise(sums).T
    a_idx, b_idx = np.nonzero(np.triu(sims, 1) >= params.merge_cosine)
    parent = list(range(k))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in np.lexsort((b_idx, a_idx, -sims[a_idx, b_idx])):
        a, b = root(int(a_idx[p])), root(int(b_idx[p]))
        if a == b or photo_sets[a] & photo_sets[b]:
            continue
        sim = float(_normalise(sums[a]) @ _normalise(sums[b]))
        if (ages[a] and ages[b] and years[a] and years[b]
                and min(np.median(ages[a]), np.median(ages[b])) < params.child_age):
            sim -= abs(np.median(years[a]) - np.median(years[b])) * params.child_penalty_per_year
        if sim < params.merge_cosine:
            continue
        a, b = min(a, b), max(a, b)
        parent[b] = a
        sums[a] += sums[b]
        photo_sets[a] |= photo_sets[b]
        ages[a] += ages[b]
        years[a] += years[b]
    out = labels.copy()
    mask = labels >= 0
    roots = np.array([root(i) for i in range(k)])
    out[mask] = ids[roots[np.searchsorted(ids, labels[mask])]]
    return out


def _prune_loose(labels, feats, floor: float) -> np.ndarray:
    """Faces whose mean cosine to the other faces of their cluster is below `floor` become
    unknown, the worst first, one at a time: HDBSCAN always groups something, even strangers
    (their features share a common direction, so their centroid looks close to each)."""
    out = labels.copy()
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        vecs = feats[members].astype(np.float64)
        total = vecs.sum(0)
        alive = np.ones(len(members), bool)
        while alive.sum() >= 2:
            mean = (vecs @ total - 1.0) / (alive.sum() - 1)
            mean[~alive] = np.inf
            worst = int(np.argmin(mean))
            if mean[worst] >= floor:
                break
            alive[worst] = False
            total -= vecs[worst]
        out[members[~alive]] = NOISE
    return out


def _attach_noise(labels, feats, photos, by, age, params: ClusterParams) -> np.ndarray:
    """An unknown face joins the cluster whose centroid it matches as well as a re-scanned face
    would (`assign_cosine`), if that cluster has no face of its photo. Where a child is
    involved, the birth-year gap to the cluster's median counts as in the distances, and a
    child without a birth year stays unknown."""
    noise = np.flatnonzero(labels < 0)
    cents = centroids(feats, labels)
    if not len(noise) or not cents:
        return labels
    ids = np.array(sorted(cents))
    sims = feats[noise].astype(np.float64) @ np.stack([cents[i] for i in ids]).T
    child_age = np.array([_median(age[labels == i]) for i in ids])
    child_by = np.array([_median(by[labels == i]) for i in ids])
    child = (np.nan_to_num(age[noise], nan=np.inf)[:, None] < params.child_age) | \
        (np.nan_to_num(child_age, nan=np.inf)[None, :] < params.child_age)
    gap = np.abs(by[noise][:, None] - child_by[None, :])
    sims = np.where(child, np.where(np.isfinite(gap), sims - gap * params.child_penalty_per_year,
                                    -np.inf), sims)
    best = sims.argmax(1)
    out = labels.copy()
    taken = {(int(p), int(c)) for p, c in zip(photos[labels >= 0], labels[labels >= 0])}
    strength = sims[np.arange(len(noise)), best]
    for k in np.lexsort((noise, -strength)):
        face, label = int(noise[k]), int(ids[best[k]])
        if strength[k] >= params.assign_cosine and (int(photos[face]), label) not in taken:
            out[face] = label
            taken.add((int(photos[face]), label))
    return out


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def _refine(labels, photos, min_faces: int, min_photos: int) -> np.ndarray:
    out = labels.copy()
    for label in np.unique(labels[labels >= 0]):
        members = labels == label
        if members.sum() < min_faces or len(np.unique(photos[members])) < min_photos:
            out[members] = NOISE
    return out


def _renumber(labels: np.ndarray) -> np.ndarray:
    """0, 1, 2... in order of each cluster's first face (canonical order)."""
    out = np.full_like(labels, NOISE)
    mapping: dict[int, int] = {}
    for i, label in enumerate(labels):
        if label >= 0:
            out[i] = mapping.setdefault(int(label), len(mapping))
    return out
