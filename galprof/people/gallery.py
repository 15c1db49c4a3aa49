"""The people pass: from the "faces" stage results in the store to persons and relations.

1. `sync_faces` materialises one face row per detected face of a photo and per face
   track of a video (its averaged feature), from the faces payloads of the media present
   now. Rows keep their person and `manual` flag across re-scans.
2. `update_people` gives new faces a person: first the existing people (centroid
   cosine), then HDBSCAN over the faces no one claimed. `full=True` (`galprof people
   recluster`) redoes everything except what the user fixed by hand; new clusters take
   over the id (and name) of the old person most of their faces belonged to; people
   created here are numbered in the order of their earliest face (capture time, then
   path), which no platform difference can change.
3. `facts_document` summarises each person, finds the owner, the relations and the
   demography: the people pass records it, the profile and `people list` read it.

All SQL is in `galprof.store.people`; this module holds the logic.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict

import numpy as np

from galprof.payloads import FacesPayload
from galprof.people import cluster as clustering
from galprof.people.params import CLUSTER, RELATIONS
from galprof.people.relations import demography, find_owner, relations, summarise_people


def params_digest() -> str:
    """What the clustering and relation rules are set to (part of the pass's inputs)."""
    text = repr((sorted(asdict(CLUSTER).items()), sorted(asdict(RELATIONS).items())))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sync_faces(store) -> int:
    """Bring the face rows in line with the faces results of the media present now."""
    changed = 0
    for media_id, digest, version, data, arrays in list(store.people.faces_results()):
        rows = FacesPayload.from_json(data, arrays).rows()
        store.people.replace_faces(media_id, f"{digest}:{version}", rows)
        changed += 1
    return changed


def update_people(store, full: bool = False) -> dict:
    """Assign faces to people; returns counts of what changed. Call inside a transaction."""
    with store.transaction():
        synced = sync_faces(store)
        faces = store.people.clusterable()
        stats = {"synced": synced, "faces": len(faces.ids), "assigned": 0, "clustered": 0,
                 "people_new": 0}
        previous = list(faces.person)
        if full:
            store.people.unassign_automatic()
            faces.person = [p if m else None for p, m in zip(faces.person, faces.manual)]
        else:
            pending = [i for i, p in enumerate(faces.person) if p is None]
            cents = store.people.centroids()
            if pending and cents:
                got = clustering.assign_new(cents, faces.features[pending],
                                            photo_ids=[faces.photo_ids[i] for i in pending])
                for i, pid in zip(pending, got):
                    if pid is not None:
                        faces.person[i] = pid
                        store.people.set_person([faces.ids[i]], pid)
                        stats["assigned"] += 1
        free = [i for i, p in enumerate(faces.person) if p is None]
        if len(free) >= 2:
            # labels are numbered by each cluster's earliest face (capture time, then path):
            # new people get their ids in that order, whatever the platform's float bits
            labels = clustering.cluster_faces(faces.features[free],
                                              [faces.photo_ids[i] for i in free],
                                              ages=faces.ages[free], years=faces.years[free],
                                              order_keys=[faces.order_keys[i] for i in free])
            for label in sorted(set(labels.tolist()) - {clustering.NOISE}):
                members = [free[k] for k in np.flatnonzero(labels == label)]
                # Keep the id (and name) of the person most of these faces had before.
                old = Counter(previous[i] for i in members if previous[i] is not None)
                taken = {p for p in faces.person if p is not None}
                pid = next((p for p, _ in old.most_common() if p not in taken), None)
                if pid is None or not store.people.exists(pid):
                    pid = store.people.new_person()
                    stats["people_new"] += 1
                for i in members:
                    faces.person[i] = pid
                store.people.set_person(faces.ids[members], pid)
                stats["clustered"] += len(members)
        update_centroids(store)
    return stats


def update_centroids(store) -> None:
    faces = store.people.clusterable()
    assigned = [i for i, pid in enumerate(faces.person) if pid is not None]
    if assigned:
        labels = np.array([faces.person[i] for i in assigned], np.int64)
        store.people.set_centroids(clustering.centroids(faces.features[assigned], labels))
    store.people.drop_empty()


def facts_document(store) -> dict:
    """The profile's `people`, `owner`, `relations` and `demography` keys."""
    rows = store.people.face_facts()
    empty = {"people": [], "owner": None, "relations": [],
             "demography": {"bins": [], "male": [], "female": []}}
    if not rows:
        return empty
    people = summarise_people(
        [r["person_id"] for r in rows], [r["media_id"] for r in rows],
        male_prob=[r["male_prob"] for r in rows], ages=[r["age"] for r in rows],
        dates=[(r["taken_at"] or "")[:10] or None for r in rows],
        is_video=[r["kind"] == "video" for r in rows], selfie=[bool(r["selfie"]) for r in rows])
    names = store.people.names()
    best: dict[int, tuple] = {}
    media: dict[int, list[str]] = {}
    for r in rows:
        box = json.loads(r["box"])
        area = (box[2] - box[0]) * (box[3] - box[1])
        key = (r["kind"] != "video", area * (r["score"] or 0))
        if r["person_id"] not in best or key > best[r["person_id"]][0]:
            best[r["person_id"]] = (key, {"path": r["path"], "box": box})
        media.setdefault(r["person_id"], [])
        if r["path"] not in media[r["person_id"]]:
            media[r["person_id"]].append(r["path"])
    owner = find_owner(people)
    rel = relations(people, owner.person_id, RELATIONS) if owner is not None else {}
    demo = demography(people, owner.person_id if owner else None)
    out = []
    for pid, p in sorted(people.items(), key=lambda kv: (-(kv[1].photos + kv[1].videos), kv[0])):
        role = "owner" if owner and pid == owner.person_id else (rel[pid].role if pid in rel else None)
        out.append({
            "id": pid, "name": names.get(pid), "role": role,
            "gender": {"male": "M", "female": "F"}.get(p.gender), "birth_year": p.birth_year,
            "photos": p.photos, "videos": p.videos,
            "first": p.first.isoformat() if p.first else None,
            "last": p.last.isoformat() if p.last else None,
            "face": best[pid][1], "paths": media.get(pid, []),
        })
    return {"people": out,
            "owner": ({"person_id": owner.person_id, "guess": owner.guess,
                       "selfies": owner.selfies} if owner else None),
            "relations": [{"person_id": r.person_id, "relation": r.role} for r in rel.values()],
            "demography": demo.as_dict()}
