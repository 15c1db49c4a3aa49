"""People: clustering, incremental assignment, owner, relations and demography.

Face features are real: the FaceDetector and FaceAnalyzer run once per session on the photos
of ../shared/testmedia/faces (bench/cluster_quality.py holds the loop and the labelling).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from galprof.people import (CLUSTER, RELATIONS, ClusterParams, RelationParams, age_bin,
                            assign_new, auto_min_cluster_size, bcubed, centroids,
                            cluster_faces, demography, distance_matrix, find_owner,
                            relations, summarise_people)
from galprof.people.hdbscan import hdbscan

REPO = Path(__file__).resolve().parents[1]
GROUP_PHOTOS = ["faces/face_recognition/obama_and_biden.jpg", "faces/deepface/couple.jpg",
                "faces/deepface/selfie-many-people.jpg", "faces/face_recognition/two_people.jpg",
                "faces/face_recognition/kit_with_rose.jpg", "faces/photoprism/pp_face_16.jpg"]


def _quality_module():
    spec = importlib.util.spec_from_file_location("cluster_quality",
                                                  REPO / "bench" / "cluster_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def faces(testmedia, shared_models):
    """Every detected face of testmedia/faces with real features, and its identity."""
    import os

    os.environ.setdefault("GALPROF_MODELS", str(shared_models))
    quality = _quality_module()
    table = quality.face_table(testmedia)
    table["truth"] = np.array(quality.identities(testmedia, table["file"], table["features"]))
    table["keys"] = quality.order_keys(table["file"])
    table["file"] = np.array(table["file"])
    return table


@pytest.fixture(scope="session")
def labels(faces):
    return cluster_faces(faces["features"], faces["file"], faces["age"],
                         order_keys=faces["keys"])


def _majority(labels, truth, name):
    """The cluster holding most faces of identity `name`."""
    counts = Counter(int(label) for label, t in zip(labels, truth) if t == name and label >= 0)
    return counts.most_common(1)[0][0]


# --- features and clustering on real faces ----------------------------------------------

def test_same_person_pairs_are_closer_than_different_person_pairs(faces):
    feats, truth, files = faces["features"], faces["truth"], faces["file"]
    known = np.flatnonzero(truth != "")
    sims = feats[known] @ feats[known].T
    t, f = truth[known], files[known]
    other_photo = f[:, None] != f[None, :]
    same = sims[(t[:, None] == t[None, :]) & other_photo & np.triu(np.ones_like(sims, bool), 1)]
    diff = sims[(t[:, None] != t[None, :]) & np.triu(np.ones_like(sims, bool), 1)]
    assert same.mean() - diff.mean() > 0.2
    auc = (same[:, None] > diff[None, :]).mean()
    assert auc > 0.93, auc  # measured 0.95
    # Nearest face in another photo is the same person for nearly every face.
    masked = np.where(other_photo, sims, -np.inf)
    np.fill_diagonal(masked, -np.inf)
    has_mate = np.array([(t == t[i]).sum() > 1 for i in range(len(t))])
    hits = t[masked.argmax(1)] == t
    assert hits[has_mate].mean() >= 0.95


def test_bcubed_on_testmedia_faces_meets_the_target(faces, labels):
    scored = faces["truth"] != ""
    precision, recall, f = bcubed(faces["truth"][scored], labels[scored])
    # Measured: precision 1.000, recall 0.866, F 0.928 (issue target F >= 0.9).
    assert precision >= 0.95 and recall >= 0.8 and f >= 0.9, (precision, recall, f)


@pytest.mark.parametrize("photo", GROUP_PHOTOS)
def test_cannot_link_holds_on_group_photos(faces, labels, photo):
    on_photo = labels[faces["file"] == photo]
    assert len(on_photo) >= 2
    people = on_photo[on_photo >= 0]
    assert len(people) == len(set(people.tolist()))


def test_known_pairs_land_in_their_own_clusters(faces, labels):
    truth = faces["truth"]
    obama, biden = _majority(labels, truth, "obama"), _majority(labels, truth, "biden")
    assert obama != biden
    both = faces["file"] == "faces/face_recognition/obama_and_biden.jpg"
    assert {obama, biden} <= set(labels[both].tolist())


def test_distance_matrix_rules():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((4, 8)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    plain = distance_matrix(f, ["a", "b", "c", "d"])
    assert np.allclose(plain, 1 - f.astype(np.float64) @ f.T.astype(np.float64), atol=1e-6)
    linked = distance_matrix(f, ["a", "a", "c", "d"])
    assert linked[0, 1] == CLUSTER.cannot_link_distance and linked[0, 2] == plain[0, 2]
    # Face 0 is a 3-year-old in 2020 (born 2017), face 1 an adult born 1990, face 2 a
    # 5-year-old in 2022 (born 2017): the penalty follows the birth-year gap, only for children.
    ages, years = np.array([3, 30, 5, 40.0]), np.array([2020, 2020, 2022, 2020])
    aged = distance_matrix(f, ["a", "b", "c", "d"], ages, years)
    step = CLUSTER.child_penalty_per_year
    assert aged[0, 1] == pytest.approx(plain[0, 1] + 27 * step)
    assert aged[0, 2] == pytest.approx(plain[0, 2])        # same birth year
    assert aged[1, 3] == pytest.approx(plain[1, 3])        # two adults
    assert np.allclose(aged, aged.T)


def _sklearn_labels(dist, min_size, min_samples, single):
    from sklearn.cluster import HDBSCAN
    return HDBSCAN(min_cluster_size=min_size, min_samples=min_samples, metric="precomputed",
                   allow_single_cluster=single, copy=True).fit(dist).labels_


@pytest.mark.parametrize("single", [False, True])
def test_hdbscan_gives_scikit_learns_labels_on_real_faces(faces, single):
    """galprof's HDBSCAN (people/hdbscan.py) against scikit-learn's, the one the people
    pass used before, on the real faces' distances (cannot-links and ages included) and on
    subsets of them, over the minimum sizes and neighbour counts a library may get."""
    dist = distance_matrix(faces["features"], faces["file"], faces["age"])
    rng = np.random.default_rng(3)
    clustered = 0
    for subset in [np.arange(len(dist))] + [np.sort(rng.choice(len(dist), k, replace=False))
                                           for k in (5, 12, 40, 80)]:
        part = dist[np.ix_(subset, subset)]
        for min_size, min_samples in [(2, 2), (2, 1), (3, 2), (4, 3), (6, 2)]:
            want = _sklearn_labels(part.copy(), min_size, min_samples, single)
            got = hdbscan(part.copy(), min_size, min_samples, single)
            assert np.array_equal(got, want), (len(subset), min_size, min_samples)
            clustered += int(want.max() >= 0)
            if len(subset) == len(dist) and not single:
                assert want.max() >= 5          # the whole set: several people
    assert clustered >= 15                      # of 25: most cases find someone


def test_hdbscan_gives_scikit_learns_labels_on_ties_duplicates_and_one_group():
    rng = np.random.default_rng(5)
    blobs = np.repeat(rng.standard_normal((3, 6)) * 4, 15, axis=0) + rng.standard_normal((45, 6))
    cases = {
        "blobs": blobs,
        "duplicates": np.vstack([blobs[:10], np.repeat(blobs[10:11], 8, axis=0)]),  # d = 0
        "ties": np.round(blobs, 0),                                    # equal distances
        "one group": rng.standard_normal((20, 6)) * 0.1,
        "two points": rng.standard_normal((2, 6)),
    }
    for name, points in cases.items():
        dist = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
        for single in (False, True):
            for min_size, min_samples in [(2, 1), (2, 2), (5, 3)]:
                min_samples = min(min_samples, len(points))     # as cluster.py asks
                want = _sklearn_labels(dist.copy(), min_size, min_samples, single)
                got = hdbscan(dist.copy(), min_size, min_samples, single)
                assert np.array_equal(got, want), (name, single, min_size, min_samples)
    one = cases["one group"]
    dist = np.sqrt(((one[:, None] - one[None]) ** 2).sum(-1))
    assert hdbscan(dist, 5, 2, allow_single_cluster=True).max() == 0   # found as one
    dist[0, 1] = dist[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hdbscan(dist, 5, 2)


def test_clustering_imports_no_scikit_learn():
    """The people pass runs without scikit-learn (its import took 0.85 s and ~97 MB)."""
    code = ("import sys, numpy as np\n"
            "from galprof.people import cluster_faces\n"
            "f = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)\n"
            "f /= np.linalg.norm(f, axis=1, keepdims=True)\n"
            "cluster_faces(f, [str(i) for i in range(30)])\n"
            "print(any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_child_age_penalty_separates_children_born_years_apart(faces):
    """One adult's real faces, posing as two children born 5 years apart: the features alone
    make one person; the birth-year penalty for children makes two."""
    idx = np.flatnonzero(faces["truth"] == "DF02")[:8]
    feats, photos = faces["features"][idx], [f"p{i}" for i in range(len(idx))]
    assert len(set(cluster_faces(feats, photos).tolist()) - {-1}) == 1
    ages = np.full(len(idx), 3.0)
    years = np.array([2015] * 4 + [2020] * 4)
    split = cluster_faces(feats, photos, ages, years)
    assert len(set(split[:4].tolist()) & set(split[4:].tolist()) - {-1}) == 0
    assert (split >= 0).sum() >= 4


def test_cannot_link_split_after_clustering(faces):
    """A copy of a face put in another face's photo of the same person: HDBSCAN links them
    through the others; the split pass must still separate the two faces of that photo."""
    idx = np.flatnonzero(faces["truth"] == "DF03")
    feats = np.vstack([faces["features"][idx], faces["features"][idx[0]][None] * 0.999])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    photos = [f"p{i}" for i in range(len(idx))] + ["p1"]
    labels = cluster_faces(feats, photos)
    same_photo = labels[[1, len(idx)]]
    assert not (same_photo[0] >= 0 and same_photo[0] == same_photo[1])
    assert (labels >= 0).sum() >= len(idx) - 1


def _cluster_keyed(faces, perm, features=None):
    feats = faces["features"] if features is None else features
    return cluster_faces(feats[perm], faces["file"][perm], faces["age"][perm],
                         order_keys=[faces["keys"][i] for i in perm])


def _perturbed(features, seed: int, scale: float = 1e-6) -> np.ndarray:
    """Every feature moved by about `scale`, far below the int8 rounding of the HSE model's
    output (a step of ~1/128 of its range) but enough to change the float32 bits, as a
    different CPU's arithmetic does."""
    noise = np.random.default_rng(seed).standard_normal(features.shape) * scale
    out = (features.astype(np.float64) + noise).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    assert (out != features).mean() > 0.9
    return out


def test_deterministic_and_independent_of_input_order(faces, labels):
    again = cluster_faces(faces["features"], faces["file"], faces["age"],
                          order_keys=faces["keys"])
    assert np.array_equal(again, labels)
    for seed in (7, 8, 9):
        perm = np.random.default_rng(seed).permutation(len(labels))
        assert np.array_equal(_cluster_keyed(faces, perm), labels[perm])


def test_labels_are_numbered_by_the_first_face_in_key_order(faces, labels):
    firsts = [min(faces["keys"][i] for i in np.flatnonzero(labels == k))
              for k in range(labels.max() + 1)]
    assert firsts == sorted(firsts) and labels.max() >= 10
    # Other keys, other numbers, same partition: the keys decide the numbering.
    reverse = [(-i,) for i in range(len(labels))]
    flipped = cluster_faces(faces["features"], faces["file"], faces["age"], order_keys=reverse)
    assert not np.array_equal(flipped, labels)
    assert len(set(zip(flipped.tolist(), labels.tolist()))) == len(set(labels.tolist()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tiny_feature_differences_change_neither_ids_nor_owner(faces, labels, seed):
    """The arm64 finding: last-bit differences renumbered the people and flipped a tied
    owner guess. Perturbed by 1e-6 and re-ordered, the same labels (as numbers) and owner."""
    perm = np.random.default_rng(100 + seed).permutation(len(labels))
    moved = _cluster_keyed(faces, perm, _perturbed(faces["features"], seed))
    back = np.empty_like(moved)
    back[perm] = moved
    assert np.array_equal(back, labels)
    before, after = _pp_people(faces, labels, None), _pp_people(faces, back, None)
    assert find_owner(after) == find_owner(before)


def test_partitioned_path_ignores_tiny_feature_differences_too(faces):
    params = dataclasses.replace(CLUSTER, exact_max_faces=40, partition_size=20,
                                 min_cluster_size=2)
    plain = cluster_faces(faces["features"], faces["file"], faces["age"], params=params,
                          order_keys=faces["keys"])
    perm = np.random.default_rng(11).permutation(len(plain))
    moved = cluster_faces(_perturbed(faces["features"], 11)[perm], faces["file"][perm],
                          faces["age"][perm], params=params,
                          order_keys=[faces["keys"][i] for i in perm])
    assert np.array_equal(moved, plain[perm]) and plain.max() >= 10


def test_tied_owner_guess_goes_to_the_person_seen_first(faces, labels):
    """PP_A and PP_B: 8 photos on 8 days each, no selfies. The tie is broken by the id, and
    the id by the first face in key order (the store's: earliest photo, smallest path)."""
    people = _pp_people(faces, labels, None)
    owner = people[find_owner(people).person_id]
    tied = [p.person_id for p in people.values() if (p.days, p.photos) == (owner.days, owner.photos)]
    assert find_owner(people).guess and len(tied) == 2
    first_key = {pid: min(faces["keys"][i] for i in np.flatnonzero(labels == pid)) for pid in tied}
    assert owner.person_id == min(tied) == min(first_key, key=first_key.get)


def test_without_keys_the_order_of_the_photos_does_not_matter(faces):
    """The fallback order: photo id as text, then the position among the faces of a photo."""
    plain = cluster_faces(faces["features"], faces["file"], faces["age"])
    rank = {f: r for r, f in enumerate(np.random.default_rng(5).permutation(
        sorted(set(faces["file"].tolist()))))}
    perm = np.array(sorted(range(len(plain)), key=lambda i: (rank[faces["file"][i]], i)))
    shuffled = cluster_faces(faces["features"][perm], faces["file"][perm], faces["age"][perm])
    assert np.array_equal(shuffled, plain[perm])
    assert np.array_equal(
        cluster_faces(_perturbed(faces["features"], 4), faces["file"], faces["age"]), plain)


def test_order_keys_are_checked():
    f = np.eye(3, 4, dtype=np.float32)
    with pytest.raises(ValueError, match="one key per face"):
        cluster_faces(f, ["a", "b", "c"], order_keys=[1, 2])
    with pytest.raises(ValueError, match="unique"):
        cluster_faces(f, ["a", "b", "c"], order_keys=[("x", 1), ("y", 2), ("x", 1)])
    with pytest.raises(ValueError, match="comparable"):
        cluster_faces(f, ["a", "b", "c"], order_keys=[1, "2", 3])


def test_partitioned_path_for_large_libraries(faces, labels):
    """The large-library path (partitions + centroid merge), forced on the small set."""
    params = dataclasses.replace(CLUSTER, exact_max_faces=40, partition_size=20,
                                 min_cluster_size=2)
    parted = cluster_faces(faces["features"], faces["file"], faces["age"], params=params)
    scored = faces["truth"] != ""
    precision, recall, f = bcubed(faces["truth"][scored], parted[scored])
    assert precision >= 0.9 and f >= 0.8, (precision, recall, f)
    for photo in set(faces["file"].tolist()):
        on = parted[(faces["file"] == photo) & (parted >= 0)]
        assert len(on) == len(set(on.tolist()))


def test_strangers_are_not_a_person(faces):
    """One face each of every labelled identity: nobody is seen twice, so nobody is a person."""
    truth = faces["truth"]
    one_each = [np.flatnonzero(truth == name)[0] for name in sorted(set(truth) - {""})]
    labels = cluster_faces(faces["features"][one_each], faces["file"][one_each])
    assert len(one_each) >= 15 and (labels == -1).all(), labels
    orthogonal = np.eye(4, 8, dtype=np.float32)
    assert cluster_faces(orthogonal, ["a", "b", "c", "d"]).tolist() == [-1, -1, -1, -1]


def test_refinement_needs_two_photos():
    rng = np.random.default_rng(3)
    base = rng.standard_normal(16)
    feats = base + 0.01 * rng.standard_normal((3, 16))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    # Three near-identical faces in three photos: one person.
    assert cluster_faces(feats, ["a", "b", "c"]).tolist() == [0, 0, 0]
    params = dataclasses.replace(CLUSTER, min_photos=4)
    assert cluster_faces(feats, ["a", "b", "c"], params=params).tolist() == [-1, -1, -1]


def test_min_cluster_size_grows_with_the_library():
    assert [auto_min_cluster_size(n) for n in (10, 300, 1000, 10_000, 50_000)] == [2, 2, 3, 4, 5]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one id per face"):
        cluster_faces(np.zeros((3, 4), np.float32), ["a"])
    with pytest.raises(ValueError, match="NaN"):
        cluster_faces(np.full((2, 4), np.nan, np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="merge_cosine"):
        cluster_faces(np.zeros((2, 4), np.float32), ["a", "b"],
                      params=ClusterParams(merge_cosine=1.5))
    assert cluster_faces(np.zeros((0, 4), np.float32), []).tolist() == []


# --- incremental assignment --------------------------------------------------------------

def test_assign_new_keeps_existing_people(faces):
    truth, feats = faces["truth"], faces["features"]
    names = ["DF01", "DF02", "DF03", "DF04", "obama", "PP_A", "PP_B"]
    held = [np.flatnonzero(truth == n)[-1] for n in names]
    keep = np.setdiff1d(np.arange(len(truth)), held)
    labels = cluster_faces(feats[keep], faces["file"][keep], faces["age"][keep])
    people = {}
    for label, vec in centroids(feats[keep], labels).items():
        members = Counter(truth[keep][labels == label].tolist())
        people[f"person-{members.most_common(1)[0][0]}"] = vec
    got = assign_new(people, feats[held])
    right = sum(g == f"person-{n}" for g, n in zip(got, names))
    wrong = sum(g is not None and g != f"person-{n}" for g, n in zip(got, names))
    assert right >= 6 and wrong == 0, got
    # A stranger (only one photo in the set, so in no cluster) stays unknown.
    stranger = np.flatnonzero(truth == "lin_manuel_miranda")
    assert assign_new(people, feats[stranger]) == [None]
    # Two faces of one photo never join the same person: the closer one wins.
    twice = np.vstack([feats[held[0]], feats[held[0]] * 0.99])
    pair = assign_new(people, twice, photo_ids=["x", "x"])
    assert pair.count(None) == 1 and pair[0] == "person-DF01"


# --- owner, relations, demography -------------------------------------------------------

def _pp_people(faces, labels, selfie_of: str | None):
    pp = np.flatnonzero(np.char.startswith(faces["file"], "faces/photoprism/"))
    truth = faces["truth"][pp]
    files = faces["file"][pp]
    holders = {f for f, t in zip(files, truth) if t == selfie_of}
    # Photo dates: one per photo, a week apart, so that days differ.
    day = {f: dt.date(2024, 1, 1) + dt.timedelta(days=7 * i)
           for i, f in enumerate(sorted(set(files)))}
    return summarise_people(labels[pp], files, faces["male_prob"][pp], faces["age"][pp],
                            [day[f] for f in files], selfie=[f in holders for f in files])


@pytest.mark.parametrize("selfie_of", ["PP_A", "PP_B"])
def test_owner_is_the_person_with_the_most_selfies(faces, labels, selfie_of):
    people = _pp_people(faces, labels, selfie_of)
    owner = find_owner(people)
    assert owner.person_id == _majority(labels, faces["truth"], selfie_of)
    assert owner.guess is False and owner.selfies >= 5


def test_owner_without_selfies_is_a_guess_by_distinct_days(faces, labels):
    people = _pp_people(faces, labels, None)
    owner = find_owner(people)
    assert owner.guess is True
    assert owner.days == max(p.days for p in people.values())
    pp_b = people[_majority(labels, faces["truth"], "PP_B")]
    assert pp_b.gender == "female" and pp_b.photos >= 6


def _face_rows(pid, n, age, male, start, step_days, year_offset=0, video_every=0):
    """n faces of one person, one per media, `step_days` apart from `start`."""
    rows = []
    for i in range(n):
        when = start + dt.timedelta(days=i * step_days)
        rows.append((pid, f"{pid}-{i}", male, age + (when.year - 2024) + year_offset, when,
                     bool(video_every and i % video_every == 0)))
    return rows


def _constructed_people():
    d0 = dt.date(2024, 1, 1)
    rows = (_face_rows("owner", 30, 30, 0.9, d0, 5)         # male, bin 24-34
            + _face_rows("anna", 20, 28, 0.1, d0, 10)       # female friend, lead -> partner
            + _face_rows("bea", 6, 31, 0.2, d0, 20)         # female friend, fewer photos
            + _face_rows("carl", 8, 26, 0.95, d0, 10)       # male friend
            + _face_rows("mum", 7, 58, 0.05, d0, 30)        # 2+ bins older, female
            + _face_rows("dad", 7, 62, 0.97, d0, 30, video_every=3)
            + _face_rows("kid", 9, 4, 0.5, d0, 20)          # 2+ bins younger
            + _face_rows("ed", 10, 40, 0.8, d0, 20)         # one bin older: other
            + _face_rows("few", 4, 30, 0.8, d0, 30)         # 4 photos: not qualified
            + _face_rows("brief", 12, 29, 0.2, d0, 1))      # 11 days: not qualified
    pid, media, male, age, when, video = zip(*rows)
    return summarise_people(list(pid), list(media), list(male), list(age), list(when),
                            is_video=list(video))


def test_person_facts():
    people = _constructed_people()
    dad = people["dad"]
    assert (dad.photos, dad.videos, dad.gender) == (4, 3, "male")
    assert dad.first == dt.date(2024, 1, 1) and dad.last == dt.date(2024, 6, 29)
    assert dad.birth_year == 1962 and dad.span_days == 180
    assert people["kid"].gender == "female"       # 0.5 < 0.6: not male
    assert people["kid"].birth_year == 2020
    as_dict = people["owner"].as_dict()
    assert as_dict["first"] == "2024-01-01" and as_dict["span_days"] == 145


def test_relations_follow_the_seed_rules():
    people = _constructed_people()
    owner = find_owner(people)
    assert owner.person_id == "owner" and owner.guess
    roles = {pid: r.role for pid, r in relations(people, "owner").items()}
    assert roles == {"anna": "partner", "bea": "friend", "carl": "friend", "mum": "mother",
                     "dad": "father", "kid": "child", "ed": "other"}
    # Without a clear lead (anna's photos no more than 1.5x bea's) there is no partner.
    even = dataclasses.replace(RELATIONS, partner_lead=5.0)
    assert relations(people, "owner", even)["anna"].role == "friend"
    # Looser qualification lets "few" in (same bin → friend).
    loose = dataclasses.replace(RELATIONS, min_photos=4)
    assert relations(people, "owner", loose)["few"].role == "friend"


def test_demography_counts_close_people_by_bin_and_gender():
    people = _constructed_people()
    demo = demography(people, "owner")
    assert demo.labels[:3] == ["0-6", "7-11", "12-16"] and len(demo.labels) == 8
    labels = demo.labels
    assert demo.female[labels.index("24-33")] == 2      # anna, bea
    assert demo.male[labels.index("24-33")] == 1        # carl
    assert demo.male[labels.index("34-43")] == 1        # ed
    assert demo.female[labels.index("54-99")] == 1      # mum
    assert demo.male[labels.index("54-99")] == 1        # dad
    assert demo.female[labels.index("0-6")] == 1        # kid
    assert sum(demo.male) + sum(demo.female) + sum(demo.unknown) == 7
    assert demo.as_dict()["bins"] == labels


def test_owner_ties_go_to_the_smallest_id_by_value():
    """Store ids are integers: on a full tie 9 wins over 10 (as text "10" would win)."""
    rows = _face_rows(10, 6, 30, 0.9, dt.date(2024, 1, 1), 3) + \
        _face_rows(9, 6, 30, 0.1, dt.date(2024, 2, 1), 3)
    pid, media, male, age, when, video = zip(*rows)
    people = summarise_people(list(pid), list(media), list(male), list(age), list(when))
    assert people[9].days == people[10].days and people[9].photos == people[10].photos
    assert find_owner(people).person_id == 9
    assert find_owner({k: people[k] for k in (10, 9)}).person_id == 9


def test_age_bins_and_param_checks():
    assert [age_bin(a) for a in (0, 6.9, 7, 33.9, 34, 99, 140)] == [0, 0, 1, 4, 5, 7, 7]
    assert age_bin(None) is None
    with pytest.raises(ValueError, match="age_bins"):
        RelationParams(age_bins=(0, 20, 10)).check()
    with pytest.raises(ValueError, match="not one of the people"):
        relations(_constructed_people(), "nobody")
