"""SQL of the `faces`, `people` and `people_sync` tables.

`faces` holds one row per person-bearing face (a photo face, or a video face track;
see `payloads.FaceKey`), materialised from the faces stage results by the people pass;
`people` the persons they were clustered into. `manual` marks what the user decided (a
name, a merge, a split): the people pass never undoes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from galprof.payloads import FaceKey, FaceRow
from galprof.store.db import now, path_from_db, path_to_db
from galprof.store.results import unpack_arrays

FEATURE_DIM = 1024


def _blob(vector) -> bytes | None:
    return None if vector is None else np.asarray(vector, np.float32).tobytes()


def _vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, np.float32)


@dataclass
class FaceTable:
    """The clusterable faces (with features) of present media, one array entry per face."""

    ids: np.ndarray            # faces.id
    features: np.ndarray       # [N, 1024] float32
    photo_ids: list[str]       # faces of one photo (or one video track) never share a person
    ages: np.ndarray
    years: np.ndarray          # photo year (NaN when unknown)
    order_keys: list[tuple]    # (taken_at, path, frame, face): a platform-independent order
    person: list               # person id or None
    manual: np.ndarray         # person set by the user


class PeopleTable:
    def __init__(self, store):
        self.store = store

    @property
    def conn(self):
        return self.store.conn

    # -- materialising faces from results
    def faces_results(self) -> Iterator[tuple[int, str, str, dict, dict]]:
        """(media id, content hash, version, payload JSON, arrays) of present media with a
        faces result, for media whose face rows are not in sync with that result."""
        synced = dict(self.conn.execute("SELECT media_id, value FROM people_sync").fetchall())
        for row in self.conn.execute(
                "SELECT m.id, m.content_hash, r.version FROM media m JOIN results r ON "
                "r.content_hash = m.content_hash AND r.stage = 'faces' WHERE m.status != 'failed' "
                "AND r.error IS NULL ORDER BY m.id").fetchall():
            if synced.get(row[0]) == f"{row[1]}:{row[2]}":
                continue
            payload, blob = self.conn.execute(
                "SELECT payload, arrays FROM results WHERE content_hash = ? AND stage = 'faces'",
                (row[1],)).fetchone()
            yield row[0], row[1], row[2], json.loads(payload), unpack_arrays(blob)

    def replace_faces(self, media_id: int, marker: str, rows: list[FaceRow]) -> None:
        """Make the media's face rows these (keeping person and manual flags of the keys
        that stay), and record which result they came from."""
        keys = set()
        for r in rows:
            keys.add(tuple(r.key))
            self.conn.execute(
                "INSERT INTO faces (media_id, frame_idx, face_idx, track, box, score, age,"
                " male_prob, features) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(media_id, frame_idx, face_idx) DO UPDATE SET track = excluded.track,"
                " box = excluded.box, score = excluded.score, age = excluded.age,"
                " male_prob = excluded.male_prob, features = excluded.features,"
                " person_id = CASE WHEN faces.manual THEN faces.person_id ELSE NULL END",
                (media_id, r.key.frame_idx, r.key.face_idx, r.track, json.dumps(list(r.box)),
                 r.score, r.age, r.male_prob, _blob(r.features)))
        for fid, frame_idx, face_idx in self.conn.execute(
                "SELECT id, frame_idx, face_idx FROM faces WHERE media_id = ?", (media_id,)).fetchall():
            if (frame_idx, face_idx) not in keys:
                self.conn.execute("DELETE FROM faces WHERE id = ?", (fid,))
        self.conn.execute("INSERT OR REPLACE INTO people_sync (media_id, value) VALUES (?, ?)",
                          (media_id, marker))

    # -- clustering input and output
    def clusterable(self) -> FaceTable:
        rows = self.conn.execute(
            "SELECT f.id, f.features, f.media_id, f.frame_idx, f.face_idx, f.track, f.age,"
            " f.person_id, f.manual, m.kind, m.taken_at, m.path FROM faces f JOIN media m"
            " ON m.id = f.media_id WHERE f.features IS NOT NULL AND m.status != 'failed'"
            " ORDER BY f.id").fetchall()
        feats = (np.stack([_vector(r["features"]) for r in rows]) if rows
                 else np.zeros((0, FEATURE_DIM), np.float32))
        photo_ids = [f"m{r['media_id']}" if r["kind"] != "video" else
                     f"m{r['media_id']}t{r['track']}" for r in rows]
        years = np.array([float(r["taken_at"][:4]) if r["taken_at"] else np.nan for r in rows])
        ages = np.array([np.nan if r["age"] is None else r["age"] for r in rows], np.float64)
        keys = [(r["taken_at"] or "~", _sortable(r["path"]), r["frame_idx"], r["face_idx"])
                for r in rows]
        return FaceTable(np.array([r["id"] for r in rows], np.int64), feats, photo_ids, ages,
                         years, keys, [r["person_id"] for r in rows],
                         np.array([r["manual"] for r in rows], bool))

    def set_person(self, face_ids: Iterable[int], person_id: int | None) -> None:
        self.conn.executemany("UPDATE faces SET person_id = ? WHERE id = ?",
                              [(person_id, int(f)) for f in face_ids])

    def new_person(self, manual: bool = False) -> int:
        return self.conn.execute("INSERT INTO people (created_at, manual) VALUES (?, ?)",
                                 (now(), int(manual))).lastrowid

    def exists(self, person_id: int) -> bool:
        return self.conn.execute("SELECT 1 FROM people WHERE id = ?", (person_id,)).fetchone() is not None

    def centroids(self) -> dict[int, np.ndarray]:
        return {r[0]: _vector(r[1]) for r in self.conn.execute(
            "SELECT id, centroid FROM people WHERE centroid IS NOT NULL")}

    def set_centroids(self, centroids: dict[int, np.ndarray]) -> None:
        self.conn.executemany("UPDATE people SET centroid = ? WHERE id = ?",
                              [(_blob(v), int(k)) for k, v in centroids.items()])

    def drop_empty(self) -> None:
        """People left without faces go, unless the user named or made them."""
        self.conn.execute("DELETE FROM people WHERE manual = 0 AND id NOT IN "
                          "(SELECT DISTINCT person_id FROM faces WHERE person_id IS NOT NULL)")

    # -- what the people facts, privacy and show read
    def face_facts(self) -> list[dict]:
        """One row per assigned face of present media, with what the facts need."""
        return [dict(r, path=path_from_db(r["path"])) for r in self.conn.execute(
            "SELECT f.person_id, f.media_id, f.male_prob, f.age, f.box, f.score, m.taken_at,"
            " m.kind, m.selfie, m.path, m.width, m.height FROM faces f JOIN media m"
            " ON m.id = f.media_id WHERE f.person_id IS NOT NULL AND m.status != 'failed'"
            " ORDER BY f.person_id, f.id")]

    def names(self, named_only: bool = False) -> dict[int, str | None]:
        sql = "SELECT id, name FROM people"
        if named_only:
            sql += " WHERE name IS NOT NULL AND name != ''"
        return dict(self.conn.execute(sql).fetchall())

    def items_per_person(self) -> dict[int, int]:
        return dict(self.conn.execute(
            "SELECT person_id, count(DISTINCT media_id) FROM faces WHERE person_id IS NOT NULL "
            "GROUP BY person_id").fetchall())

    def persons_by_media(self) -> dict[int, dict[FaceKey, int | None]]:
        out: dict[int, dict[FaceKey, int | None]] = {}
        for media_id, frame_idx, face_idx, person in self.conn.execute(
                "SELECT media_id, frame_idx, face_idx, person_id FROM faces"):
            out.setdefault(media_id, {})[FaceKey(frame_idx, face_idx)] = person
        return out

    def persons_of(self, media_id: int) -> dict[FaceKey, int | None]:
        return {FaceKey(r[0], r[1]): r[2] for r in self.conn.execute(
            "SELECT frame_idx, face_idx, person_id FROM faces WHERE media_id = ?", (media_id,))}

    def fingerprint_rows(self) -> dict[str, list]:
        """The user's fixes (they steer the people pass) and the assignments and names
        (they steer privacy)."""
        q = self.conn.execute
        return {
            "media": q("SELECT id, taken_at, path, selfie FROM media WHERE status != 'failed' AND "
                       "content_hash IN (SELECT content_hash FROM results WHERE stage = 'faces') "
                       "ORDER BY id").fetchall(),
            "manual_faces": q("SELECT id, person_id FROM faces WHERE manual = 1 ORDER BY id").fetchall(),
            "manual_people": q("SELECT id FROM people WHERE manual = 1 ORDER BY id").fetchall(),
            "assigned": q("SELECT media_id, frame_idx, face_idx, person_id FROM faces "
                          "ORDER BY media_id, frame_idx, face_idx").fetchall(),
            "names": q("SELECT id, name FROM people WHERE name IS NOT NULL ORDER BY id").fetchall(),
            "synced": q("SELECT media_id, value FROM people_sync ORDER BY media_id").fetchall(),
        }

    # -- the user's fixes
    def person(self, person_id: int) -> dict | None:
        row = self.conn.execute("SELECT id, name, manual, created_at FROM people WHERE id = ?",
                                (person_id,)).fetchone()
        return dict(row) if row else None

    def media_of(self, person_id: int) -> list[dict]:
        return [dict(r, path=path_from_db(r["path"])) for r in self.conn.execute(
            "SELECT m.path, count(*) AS faces, max(f.manual) AS manual FROM faces f "
            "JOIN media m ON m.id = f.media_id WHERE f.person_id = ? GROUP BY m.path "
            "ORDER BY m.path", (person_id,))]

    def rename(self, person_id: int, name: str) -> None:
        self.conn.execute("UPDATE people SET name = ?, manual = 1 WHERE id = ?", (name, person_id))

    def merge(self, keep: int, other: int) -> None:
        name = self.conn.execute("SELECT name FROM people WHERE id = ?", (other,)).fetchone()[0]
        self.conn.execute("UPDATE faces SET person_id = ?, manual = 1 WHERE person_id = ?",
                          (keep, other))
        if name:
            self.conn.execute("UPDATE people SET name = coalesce(name, ?) WHERE id = ?", (name, keep))
        self.conn.execute("UPDATE people SET manual = 1 WHERE id = ?", (keep,))
        self.conn.execute("DELETE FROM people WHERE id = ?", (other,))

    def move_faces(self, person_id: int, media_path: str, to_person: int) -> int:
        return self.conn.execute(
            "UPDATE faces SET person_id = ?, manual = 1 WHERE person_id = ? AND media_id = "
            "(SELECT id FROM media WHERE path = ?)",
            (to_person, person_id, path_to_db(media_path))).rowcount

    def unassign_automatic(self) -> None:
        self.conn.execute("UPDATE faces SET person_id = NULL WHERE manual = 0")

    def purge_faces(self) -> int:
        """Delete every face-derived datum: face rows (boxes, ages, genders, features),
        people that only the faces made (named or user-made people stay, without
        centroid), and the sync markers. Returns the number of face rows deleted."""
        n = self.conn.execute("SELECT count(*) FROM faces").fetchone()[0]
        self.conn.execute("DELETE FROM faces")
        self.conn.execute("DELETE FROM people_sync")
        self.conn.execute("DELETE FROM people WHERE manual = 0")
        self.conn.execute("UPDATE people SET centroid = NULL")
        return n


def _sortable(path) -> str:
    return path_from_db(path).encode("utf-8", "surrogateescape").decode("latin-1")
