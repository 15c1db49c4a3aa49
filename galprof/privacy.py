"""Which photos are private, and so never leave the device.

A media item is private when (any of):
  - the central part of a frame holds a face wider or taller than a fraction of the
    image (a portrait: the photo is *about* that person);
  - a frame holds a face of a close person (one the people pass found in many items,
    or one the user named);
  - a face big enough to be recognised belongs to nobody known yet, because the people
    pass has not clustered this item's faces (conservative: after the first scan every
    such photo stays private until clustering says otherwise);
  - its faces have not been analysed (no "faces" result: nothing is known, so private);
  - the user marked it (`galprof private mark`).
A video is public only if every sampled frame is public. Everything else is public.

Per-item decisions come from the store (faces results, the faces/people tables, the
marks), so `apply_privacy` is a cheap gallery-level pass that can run after every scan.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from galprof.errors import GalprofError
from galprof.store.db import Store, content_hash, now


@dataclass(frozen=True)
class PrivacyThresholds:
    """Every tunable of the privacy rules, with why it has its value. Range-checked."""

    # The central region is this fraction of the width and of the height, centred
    # (0.6: the middle 60 %). A face there is the subject, not a passer-by at the edge.
    central_region: float = 0.6
    # A central face wider or taller than this fraction of the image is a portrait.
    # 0.2 keeps group photos of 4-6 people and selfies private, and crowd or street
    # photos (faces under ~10 % of the width) public.
    face_fraction: float = 0.2
    # A person seen in at least this many media items is close (family, friends). Items,
    # not faces: one video would otherwise make anyone in it close through its frames.
    close_person_items: int = 4
    # Faces the detector is less sure of than this are ignored (the faces stage keeps
    # its own threshold at 0.5; this only lets a user ask for more).
    min_face_score: float = 0.5

    def __post_init__(self):
        checks = {
            "central_region": (0.05, 1.0), "face_fraction": (0.01, 1.0),
            "close_person_items": (1, 100_000), "min_face_score": (0.0, 1.0),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"privacy threshold {name} = {value} is out of range "
                                 f"[{low}, {high}]")

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, float] | None) -> "PrivacyThresholds":
        """Defaults with `overrides` applied; unknown names and bad values raise ValueError."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown privacy threshold(s): {', '.join(sorted(unknown))}")
        return cls(**overrides)


DEFAULT_THRESHOLDS = PrivacyThresholds()


@dataclass
class Decision:
    private: bool
    reasons: list[str]


@dataclass
class People:
    """What the people pass knows about one media item's faces."""

    clustered: bool = False                                     # faces materialised for it
    # (frame index, face position in the frame's payload) -> person id (None: unassigned);
    # for a video: (first frame of the face track, track id) -> person id
    persons: dict[tuple[int, int], int | None] = field(default_factory=dict)
    items: dict[int, int] = field(default_factory=dict)         # person -> media items seen in
    names: dict[int, str] = field(default_factory=dict)         # person -> name (named ones)


def decide(media: Mapping, faces_payload: dict | None, marked: bool, people: People | None,
           thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS) -> Decision:
    """The privacy decision for one media item (see the module docstring for the rules).

    media: a media row (kind, width, height: displayed original pixels);
    faces_payload: the "faces" stage payload, boxes in original pixels (None: not run).
    """
    t = thresholds
    found: dict[str, list] = {}     # reason -> frame indexes, to keep video reasons short

    def add(reason: str, frame: int | None = None) -> None:
        found.setdefault(reason, [])
        if frame is not None and frame not in found[reason]:
            found[reason].append(frame)

    if marked:
        add("marked private by the user")
    if faces_payload is None:
        add("faces not analysed yet (private until the faces stage has run)")
    else:
        width, height = media["width"], media["height"]
        people = people or People()
        lo, hi = (1 - t.central_region) / 2, (1 + t.central_region) / 2
        for position, frame in enumerate(faces_payload.get("frames", [])):
            index = frame.get("index", position)
            for k, face in enumerate(frame.get("faces", [])):
                if (face.get("score") or 1.0) < t.min_face_score:
                    continue
                x1, y1, x2, y2 = face["box"]
                if not width or not height:
                    add("a face in an image of unknown size", index)
                    continue
                cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
                fw, fh = (x2 - x1) / width, (y2 - y1) / height
                if lo <= cx <= hi and lo <= cy <= hi and max(fw, fh) > t.face_fraction:
                    add(f"a face over {t.face_fraction:.0%} of the image in its central "
                        f"{t.central_region:.0%}", index)
                if not face.get("identity"):
                    continue
                if face.get("track") is not None:
                    # the people pass keeps one row per video face track:
                    # (first frame of the track, track id)
                    key = next((fk for fk in people.persons if fk[1] == face["track"]), None)
                else:
                    key = (index, k) if (index, k) in people.persons else (position, k)
                if not people.clustered or key not in people.persons:
                    add("a recognisable face of a person not clustered yet (private until "
                        "the people pass has grouped the faces)", index)
                    continue
                person = people.persons[key]
                if person is None:
                    continue
                if person in people.names:
                    add(f"a face of {people.names[person]} (a named person)", index)
                elif people.items.get(person, 0) >= t.close_person_items:
                    add(f"a face of a close person (person {person}, in "
                        f"{people.items[person]} items)", index)
    if not found:
        what = "every sampled frame is" if media["kind"] == "video" else "it is"
        return Decision(False, [f"public: {what} free of large central faces and of close "
                                "or unclustered people, and not marked"])
    reasons = []
    for reason, frames in found.items():
        if media["kind"] == "video" and frames:
            shown = ", ".join(str(f) for f in frames[:5]) + (", ..." if len(frames) > 5 else "")
            reason += f" (frame{'s' if len(frames) > 1 else ''} {shown})"
        reasons.append(reason)
    return Decision(True, reasons)


# -------------------------------------------------------------- from the store


def _faces_payload(store: Store, digest: str | None) -> dict | None:
    if not digest:
        return None
    row = store.conn.execute("SELECT payload FROM results WHERE content_hash = ? AND "
                             "stage = 'faces'", (digest,)).fetchone()
    return json.loads(row[0]) if row else None


def _person_stats(store: Store) -> tuple[dict[int, int], dict[int, str]]:
    items = dict(store.conn.execute(
        "SELECT person_id, count(DISTINCT media_id) FROM faces WHERE person_id IS NOT NULL "
        "GROUP BY person_id").fetchall())
    names = dict(store.conn.execute(
        "SELECT id, name FROM people WHERE name IS NOT NULL AND name != ''").fetchall())
    return items, names


def _people_for(store: Store, media_id: int, items, names) -> People:
    rows = store.conn.execute("SELECT frame_idx, face_idx, person_id FROM faces "
                              "WHERE media_id = ?", (media_id,)).fetchall()
    return People(clustered=bool(rows), persons={(r[0], r[1]): r[2] for r in rows},
                  items=items, names=names)


def is_marked(store: Store, path: str, digest: str | None) -> bool:
    return store.conn.execute(
        "SELECT 1 FROM private_marks WHERE path = ? OR (content_hash IS NOT NULL AND "
        "content_hash = ?) LIMIT 1", (path, digest)).fetchone() is not None


def decide_for(store: Store, media: Mapping,
               thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS) -> Decision:
    """A fresh decision for one media row, read from the store now."""
    items, names = _person_stats(store)
    return decide(media, _faces_payload(store, media["content_hash"]),
                  is_marked(store, media["path"], media["content_hash"]),
                  _people_for(store, media["id"], items, names), thresholds)


def _in_transaction(store: Store):
    class _Tx:
        def __enter__(self):
            self.own = not store.conn.in_transaction
            if self.own:
                store.conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, *exc):
            if self.own:
                store.conn.execute("ROLLBACK" if exc_type else "COMMIT")
    return _Tx()


def _save(store: Store, media_id: int, decision: Decision) -> None:
    store.conn.execute("UPDATE media SET private = ?, private_reason = ? WHERE id = ?",
                       (int(decision.private), "\n".join(decision.reasons), media_id))


def apply_privacy(store: Store, thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS
                  ) -> dict[str, int]:
    """Decide every readable media item and record `private` and `private_reason`.

    Returns {"private": n, "public": n}."""
    conn = store.conn
    items, names = _person_stats(store)
    marked_paths = {r[0] for r in conn.execute("SELECT path FROM private_marks")}
    marked_hashes = {r[0] for r in conn.execute(
        "SELECT content_hash FROM private_marks WHERE content_hash IS NOT NULL")}
    persons: dict[int, dict] = {}
    for media_id, frame_idx, face_idx, person in conn.execute(
            "SELECT media_id, frame_idx, face_idx, person_id FROM faces"):
        persons.setdefault(media_id, {})[(frame_idx, face_idx)] = person
    counts = {"private": 0, "public": 0}
    decided = []
    # One streaming pass (payloads are not all held in memory), then one write.
    for row in conn.execute(
            "SELECT m.id, m.path, m.content_hash, m.kind, m.width, m.height, r.payload "
            "FROM media m LEFT JOIN results r ON r.content_hash = m.content_hash "
            "AND r.stage = 'faces' WHERE m.status != 'failed' AND m.kind IS NOT NULL"):
        people = People(clustered=row["id"] in persons, persons=persons.get(row["id"], {}),
                        items=items, names=names)
        marked = row["path"] in marked_paths or row["content_hash"] in marked_hashes
        payload = json.loads(row["payload"]) if row["payload"] else None
        decision = decide(row, payload, marked, people, thresholds)
        decided.append((int(decision.private), "\n".join(decision.reasons), row["id"]))
        counts["private" if decision.private else "public"] += 1
    with _in_transaction(store):
        conn.executemany("UPDATE media SET private = ?, private_reason = ? WHERE id = ?", decided)
    return counts


# -------------------------------------------------------------- marks and listings


def _targets(store: Store, path: Path) -> list[tuple[str, str | None, int | None]]:
    """(path, content hash, media id) for a file, or for every known item under a folder."""
    absolute = os.path.abspath(path)
    if os.path.isdir(absolute):
        rows = store.media_under([Path(absolute)])
        if not rows:
            raise GalprofError(f"{path}: no scanned media under this folder; scan it first")
        return [(p, r["content_hash"], r["id"]) for p, r in sorted(rows.items())]
    row = store.media_by_path(absolute)
    if row is not None:
        return [(absolute, row["content_hash"], row["id"])]
    if not os.path.isfile(absolute):
        raise GalprofError(f"{path}: no such file")
    try:
        return [(absolute, content_hash(Path(absolute)), None)]
    except OSError as e:
        raise GalprofError(f"{path}: cannot read ({e.strerror})") from None


def _redecide(store: Store, media_id: int | None,
              thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS) -> None:
    if media_id is None:
        return
    row = store.conn.execute("SELECT * FROM media WHERE id = ?", (media_id,)).fetchone()
    if row is not None and row["status"] != "failed" and row["kind"]:
        _save(store, media_id, decide_for(store, row, thresholds))


def mark(store: Store, paths: list[Path]) -> list[str]:
    """Mark files (or every known item under a folder) private; returns the paths marked.

    A file not scanned yet is marked by its path and content hash, so the first scan
    already finds it private."""
    done = []
    targets = [t for p in paths for t in _targets(store, p)]
    with _in_transaction(store):
        for path, digest, media_id in targets:
            if not is_marked(store, path, digest):
                store.conn.execute("INSERT INTO private_marks (path, content_hash, marked_at) "
                                   "VALUES (?, ?, ?)", (path, digest, now()))
            _redecide(store, media_id)
            done.append(path)
    return done


def unmark(store: Store, paths: list[Path]) -> list[str]:
    """Remove the marks of files (by path or content hash); returns the paths unmarked."""
    done = []
    targets = [t for p in paths for t in _targets(store, p)]
    with _in_transaction(store):
        for path, digest, media_id in targets:
            cur = store.conn.execute(
                "DELETE FROM private_marks WHERE path = ? OR (content_hash IS NOT NULL AND "
                "content_hash = ?)", (path, digest))
            if cur.rowcount:
                done.append(path)
            _redecide(store, media_id)
    return done


def list_private(store: Store) -> list[dict]:
    """Private items with their reasons, and marks of files not scanned (yet)."""
    out = [{"path": r["path"], "kind": r["kind"], "marked": is_marked(store, r["path"],
                                                                      r["content_hash"]),
            "reasons": (r["private_reason"] or "").splitlines()}
           for r in store.conn.execute("SELECT path, kind, content_hash, private_reason "
                                       "FROM media WHERE private = 1 ORDER BY path")]
    listed = {o["path"] for o in out}
    for r in store.conn.execute(
            "SELECT m.path FROM private_marks m WHERE NOT EXISTS (SELECT 1 FROM media x WHERE "
            "x.path = m.path OR x.content_hash = m.content_hash) ORDER BY m.path"):
        if r[0] not in listed:
            out.append({"path": r[0], "kind": None, "marked": True,
                        "reasons": ["marked private by the user (not scanned yet)"]})
    return out


def uploads(store: Store, limit: int | None = None, path: str | None = None) -> list[dict]:
    """The upload audit log, newest first."""
    sql = "SELECT id, at, path, content_hash, bytes, images, sha256, server, status FROM uploads"
    args: list = []
    if path:
        sql += " WHERE path = ?"
        args.append(path)
    sql += " ORDER BY id DESC"
    if limit:
        sql += " LIMIT ?"
        args.append(limit)
    return [dict(r) for r in store.conn.execute(sql, args)]


def describe(store: Store, media: Mapping) -> dict:
    """For `galprof show`: private or public and why, the tier of each result, and the
    uploads of this item. The decision is computed now, from the current store."""
    decision = decide_for(store, media)
    tiers = {r[0]: r[1] for r in store.conn.execute(
        "SELECT stage, tier FROM results WHERE content_hash = ?", (media["content_hash"],))}
    sent = [dict(r) for r in store.conn.execute(
        "SELECT at, server, bytes, images, status FROM uploads WHERE content_hash = ? "
        "ORDER BY id", (media["content_hash"],))]
    return {"private": decision.private, "reasons": decision.reasons,
            "marked": is_marked(store, media["path"], media["content_hash"]),
            "tiers": tiers, "uploads": sent}
