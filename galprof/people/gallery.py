"""The people pass: from the "faces" stage results in the store to persons and relations.

1. `sync_faces` materialises one `faces` row per detected face of a photo and per face
   track of a video (its averaged feature), from the cached stage payloads of the media
   present now. Rows keep their person and `manual` flag across re-scans.
2. `update_people` gives new faces a person: first the existing people (centroid
   cosine), then HDBSCAN over the faces no one claimed. `full=True` (`galprof people
   recluster`) redoes everything except what the user fixed by hand; new clusters take
   over the id (and name) of the old person most of their faces belonged to.
3. `people_facts` summarises each person, finds the owner and the relations, and the
   demography; the profile and the CLI read it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from galprof.people import cluster as clustering
from galprof.people.relations import (Demography, Owner, Person, Relation, demography,
                                      find_owner, relations, summarise_people)
from galprof.people.params import RELATIONS
from galprof.store.db import Store, now, unpack_arrays

FEATURE_DIM = 1024


def _blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, np.float32).tobytes()


def _vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, np.float32)


def _face_rows(payload: dict, arrays: dict) -> list[dict]:
    """One row per photo face, or per video face track."""
    features = arrays.get("features")
    tracks = payload.get("tracks") or []
    rows = []
    if tracks:
        track_features = arrays.get("track_features")
        # One pass over the faces: each track's first appearance, ages and male probabilities.
        first: dict[int, tuple[int, dict]] = {}
        ages: dict[int, list[float]] = defaultdict(list)
        males: dict[int, list[float]] = defaultdict(list)
        for f in payload["frames"]:
            for face in f["faces"]:
                t = face.get("track")
                if t is None:
                    continue
                first.setdefault(t, (f["index"], face))
                if face.get("age") is not None:
                    ages[t].append(face["age"])
                if face.get("male_prob") is not None:
                    males[t].append(face["male_prob"])
        for t in tracks:
            frame_idx, face = first[t["id"]]
            feature = None
            if t.get("feature_row") is not None and track_features is not None:
                feature = track_features[t["feature_row"]]
            rows.append({"frame_idx": frame_idx, "face_idx": t["id"], "track": t["id"],
                         "box": face["box"], "score": face["score"],
                         "age": float(np.median(ages[t["id"]])) if ages[t["id"]] else None,
                         "male_prob": float(np.mean(males[t["id"]])) if males[t["id"]] else None,
                         "features": feature})
        return rows
    for f in payload["frames"]:
        for i, face in enumerate(f["faces"]):
            feature = None
            if face.get("feature_row") is not None and features is not None:
                feature = features[face["feature_row"]]
            rows.append({"frame_idx": f["index"], "face_idx": i, "track": None,
                         "box": face["box"], "score": face["score"], "age": face.get("age"),
                         "male_prob": face.get("male_prob"), "features": feature})
    return rows


def sync_faces(store: Store) -> int:
    """Bring the `faces` table in line with the faces results of the media present now."""
    conn = store.conn
    media = conn.execute("SELECT id, content_hash FROM media WHERE status != 'failed' "
                         "AND content_hash IS NOT NULL").fetchall()
    changed = 0
    conn.execute("BEGIN")
    try:
        for m in media:
            row = conn.execute("SELECT version, payload, arrays FROM results "
                               "WHERE content_hash = ? AND stage = 'faces'",
                               (m["content_hash"],)).fetchone()
            if row is None:
                continue
            marker = f"{m['content_hash']}:{row['version']}"
            known = conn.execute("SELECT value FROM people_sync WHERE media_id = ?",
                                 (m["id"],)).fetchone()
            if known and known[0] == marker:
                continue
            rows = _face_rows(json.loads(row["payload"]), unpack_arrays(row["arrays"]))
            keys = []
            for r in rows:
                keys.append((r["frame_idx"], r["face_idx"]))
                conn.execute(
                    "INSERT INTO faces (media_id, frame_idx, face_idx, track, box, score, age,"
                    " male_prob, features) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(media_id, frame_idx, face_idx) DO UPDATE SET track = excluded.track,"
                    " box = excluded.box, score = excluded.score, age = excluded.age,"
                    " male_prob = excluded.male_prob, features = excluded.features,"
                    " person_id = CASE WHEN faces.manual THEN faces.person_id ELSE NULL END",
                    (m["id"], r["frame_idx"], r["face_idx"], r["track"], json.dumps(r["box"]),
                     r["score"], r["age"], r["male_prob"], _blob(r["features"])))
            for fid, frame_idx, face_idx in conn.execute(
                    "SELECT id, frame_idx, face_idx FROM faces WHERE media_id = ?", (m["id"],)).fetchall():
                if (frame_idx, face_idx) not in keys:
                    conn.execute("DELETE FROM faces WHERE id = ?", (fid,))
            conn.execute("INSERT OR REPLACE INTO people_sync (media_id, value) VALUES (?, ?)",
                         (m["id"], marker))
            changed += 1
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return changed


@dataclass
class _Faces:
    ids: np.ndarray
    features: np.ndarray
    photo_ids: list
    ages: np.ndarray
    years: np.ndarray
    person: list
    manual: np.ndarray


def _load_faces(store: Store) -> _Faces:
    rows = store.conn.execute(
        "SELECT f.id, f.features, f.media_id, f.frame_idx, f.track, f.age, f.person_id, f.manual,"
        " m.kind, m.taken_at FROM faces f JOIN media m ON m.id = f.media_id "
        "WHERE f.features IS NOT NULL AND m.status != 'failed' ORDER BY f.id").fetchall()
    feats = np.stack([_vector(r["features"]) for r in rows]) if rows else np.zeros((0, FEATURE_DIM), np.float32)
    # Faces of one photo are never one person; a video's tracks may be one person seen twice.
    photo_ids = [f"m{r['media_id']}" if r["kind"] != "video" else f"m{r['media_id']}t{r['track']}"
                 for r in rows]
    years = np.array([float(r["taken_at"][:4]) if r["taken_at"] else np.nan for r in rows])
    ages = np.array([np.nan if r["age"] is None else r["age"] for r in rows], np.float64)
    return _Faces(np.array([r["id"] for r in rows], np.int64), feats, photo_ids, ages, years,
                  [r["person_id"] for r in rows], np.array([r["manual"] for r in rows], bool))


def _set_person(store: Store, face_ids, person_id) -> None:
    store.conn.executemany("UPDATE faces SET person_id = ? WHERE id = ?",
                           [(person_id, int(f)) for f in face_ids])


def new_person(store: Store) -> int:
    return store.conn.execute("INSERT INTO people (created_at) VALUES (?)", (now(),)).lastrowid


def update_centroids(store: Store) -> None:
    faces = _load_faces(store)
    assigned = [i for i, pid in enumerate(faces.person) if pid is not None]
    if assigned:
        labels = np.array([faces.person[i] for i in assigned], np.int64)
        for pid, mean in clustering.centroids(faces.features[assigned], labels).items():
            store.conn.execute("UPDATE people SET centroid = ? WHERE id = ?", (_blob(mean), pid))
    # People left without faces go, unless the user named or made them.
    store.conn.execute("DELETE FROM people WHERE manual = 0 AND id NOT IN "
                       "(SELECT DISTINCT person_id FROM faces WHERE person_id IS NOT NULL)")


def update_people(store: Store, full: bool = False) -> dict:
    """Assign faces to people; returns counts of what changed."""
    sync_faces(store)
    conn = store.conn
    conn.execute("BEGIN")
    try:
        faces = _load_faces(store)
        stats = {"faces": len(faces.ids), "assigned": 0, "clustered": 0, "people_new": 0}
        previous = list(faces.person)
        if full:
            auto = ~faces.manual
            _set_person(store, faces.ids[auto], None)
            faces.person = [p if m else None for p, m in zip(faces.person, faces.manual)]
        else:
            pending = [i for i, p in enumerate(faces.person) if p is None]
            cents = {r["id"]: _vector(r["centroid"]) for r in conn.execute(
                "SELECT id, centroid FROM people WHERE centroid IS NOT NULL")}
            if pending and cents:
                got = clustering.assign_new(cents, faces.features[pending],
                                            photo_ids=[faces.photo_ids[i] for i in pending])
                for i, pid in zip(pending, got):
                    if pid is not None:
                        faces.person[i] = pid
                        _set_person(store, [faces.ids[i]], pid)
                        stats["assigned"] += 1
        free = [i for i, p in enumerate(faces.person) if p is None]
        if len(free) >= 2:
            labels = clustering.cluster_faces(faces.features[free], [faces.photo_ids[i] for i in free],
                                              ages=faces.ages[free], years=faces.years[free])
            for label in sorted(set(labels.tolist()) - {clustering.NOISE}):
                members = [free[k] for k in np.flatnonzero(labels == label)]
                # Keep the id (and name) of the person most of these faces had before.
                old = Counter(previous[i] for i in members if previous[i] is not None)
                taken = {p for p in faces.person if p is not None}
                pid = next((p for p, _ in old.most_common() if p not in taken), None)
                if pid is None or not conn.execute("SELECT 1 FROM people WHERE id = ?", (pid,)).fetchone():
                    pid = new_person(store)
                    stats["people_new"] += 1
                for i in members:
                    faces.person[i] = pid
                _set_person(store, faces.ids[members], pid)
                stats["clustered"] += len(members)
        update_centroids(store)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return stats


@dataclass
class PeopleFacts:
    people: dict[int, Person] = field(default_factory=dict)
    names: dict[int, str | None] = field(default_factory=dict)
    owner: Owner | None = None
    relations: dict[int, Relation] = field(default_factory=dict)
    demography: Demography | None = None
    faces: dict[int, dict] = field(default_factory=dict)      # representative face per person
    media: dict[int, list[str]] = field(default_factory=dict)  # paths per person


def people_facts(store: Store) -> PeopleFacts:
    rows = store.conn.execute(
        "SELECT f.person_id, f.media_id, f.male_prob, f.age, f.box, f.score, m.taken_at,"
        " m.kind, m.selfie, m.path, m.width, m.height FROM faces f JOIN media m ON m.id = f.media_id "
        "WHERE f.person_id IS NOT NULL AND m.status != 'failed' ORDER BY f.person_id, f.id").fetchall()
    facts = PeopleFacts()
    if not rows:
        return facts
    facts.people = summarise_people(
        [r["person_id"] for r in rows], [r["media_id"] for r in rows],
        male_prob=[r["male_prob"] for r in rows], ages=[r["age"] for r in rows],
        dates=[(r["taken_at"] or "")[:10] or None for r in rows],
        is_video=[r["kind"] == "video" for r in rows], selfie=[bool(r["selfie"]) for r in rows])
    facts.names = {r["id"]: r["name"] for r in store.conn.execute("SELECT id, name FROM people")}
    best: dict[int, tuple] = {}
    for r in rows:
        box = json.loads(r["box"])
        area = (box[2] - box[0]) * (box[3] - box[1])
        key = (r["kind"] != "video", area * (r["score"] or 0))
        if r["person_id"] not in best or key > best[r["person_id"]][0]:
            best[r["person_id"]] = (key, {"path": r["path"], "box": box})
        facts.media.setdefault(r["person_id"], [])
        if r["path"] not in facts.media[r["person_id"]]:
            facts.media[r["person_id"]].append(r["path"])
    facts.faces = {pid: v[1] for pid, v in best.items()}
    facts.owner = find_owner(facts.people)
    if facts.owner is not None:
        facts.relations = relations(facts.people, facts.owner.person_id, RELATIONS)
    facts.demography = demography(facts.people, facts.owner.person_id if facts.owner else None)
    return facts


def profile_sections(store: Store) -> dict:
    """The profile's `people`, `owner`, `relations` and `demography` keys."""
    facts = people_facts(store)
    people = []
    for pid, p in sorted(facts.people.items(), key=lambda kv: -(kv[1].photos + kv[1].videos)):
        role = None
        if facts.owner and pid == facts.owner.person_id:
            role = "owner"
        elif pid in facts.relations:
            role = facts.relations[pid].role
        people.append({
            "id": pid, "name": facts.names.get(pid), "role": role,
            "gender": {"male": "M", "female": "F"}.get(p.gender), "birth_year": p.birth_year,
            "photos": p.photos, "videos": p.videos,
            "first": p.first.isoformat() if p.first else None,
            "last": p.last.isoformat() if p.last else None,
            "face": facts.faces.get(pid), "paths": facts.media.get(pid, []),
        })
    owner = None
    if facts.owner:
        owner = {"person_id": facts.owner.person_id, "guess": facts.owner.guess,
                 "selfies": facts.owner.selfies}
    demo = facts.demography.as_dict() if facts.demography else {"bins": [], "male": [], "female": []}
    return {"people": people, "owner": owner,
            "relations": [{"person_id": r.person_id, "relation": r.role}
                          for r in facts.relations.values()],
            "demography": demo}


def purge_biometrics(store: Store) -> int:
    """Delete every face feature: in `faces`, the people's centroids and the cached faces
    results (so the next scan that runs the faces stage computes them again). People keep
    their ids, names and faces' boxes."""
    conn = store.conn
    conn.execute("BEGIN")
    n = conn.execute("UPDATE faces SET features = NULL WHERE features IS NOT NULL").rowcount
    conn.execute("UPDATE people SET centroid = NULL")
    conn.execute("DELETE FROM results WHERE stage = 'faces'")
    conn.execute("DELETE FROM people_sync")
    conn.execute("COMMIT")
    conn.execute("VACUUM")     # the freed pages would otherwise still hold the bytes
    return n
