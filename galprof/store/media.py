"""SQL of the `media`, `frames`, `errors` and `scans` tables.

Rows come back as plain dicts with paths decoded (see `db.path_from_db`), so a file name
that is not valid UTF-8 round-trips losslessly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from galprof.store.db import now, path_from_db, path_to_db

PATH_COLUMNS = ("path", "root", "motion_path")
# Columns a scan writes from what it read (metadata and identity of the file).
COLUMNS = ("path", "root", "size", "mtime_ns", "content_hash", "hash_scheme", "kind", "format",
           "motion_path", "width", "height", "taken_at", "make", "model", "lens_model",
           "focal_length", "focal_length_35mm", "orientation", "gps_lat", "gps_lon", "gps_alt",
           "duration", "fps", "rotation", "front_camera", "status", "error", "scanned_at")


def row_dict(row) -> dict | None:
    if row is None:
        return None
    d = dict(row)
    for key in PATH_COLUMNS:
        if key in d:
            d[key] = path_from_db(d[key])
    return d


class MediaTable:
    def __init__(self, store):
        self.store = store

    @property
    def conn(self):
        return self.store.conn

    # -- reading
    def under(self, roots: Iterable[Path | str]) -> dict[str, dict]:
        """Known media whose path lies under one of `roots` (or is one of them), by path."""
        out = {}
        for root in roots:
            root = os.fspath(root)
            text = _text(root.rstrip(os.sep) + os.sep)
            raw = os.fsencode(root.rstrip(os.sep) + os.sep)
            rows = self.conn.execute(
                "SELECT * FROM media WHERE path = ? "
                "OR (typeof(path) = 'text' AND substr(path, 1, ?) = ?) "
                "OR (typeof(path) = 'blob' AND substr(path, 1, ?) = ?)",
                (path_to_db(root), len(text), text, len(raw), raw))
            out.update((d["path"], d) for d in map(row_dict, rows))
        return out

    def by_path(self, path: str | os.PathLike) -> dict | None:
        return row_dict(self.conn.execute("SELECT * FROM media WHERE path = ?",
                                          (path_to_db(path),)).fetchone())

    def by_id(self, media_id: int) -> dict | None:
        return row_dict(self.conn.execute("SELECT * FROM media WHERE id = ?",
                                          (media_id,)).fetchone())

    def matching(self, path: str, content_hash: str | None) -> list[dict]:
        """Rows with this path or this content hash (what a private mark covers)."""
        return [row_dict(r) for r in self.conn.execute(
            "SELECT * FROM media WHERE path = ? OR (? IS NOT NULL AND content_hash = ?)",
            (path_to_db(path), content_hash, content_hash))]

    def present(self) -> list[dict]:
        """Media in the gallery now that were read (failed files count only as failed)."""
        return [row_dict(r) for r in self.conn.execute(
            "SELECT * FROM media WHERE status != 'failed' ORDER BY path")]

    def by_ids(self, ids: Iterable[int]) -> list[dict]:
        ids = list(ids)
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += [row_dict(r) for r in self.conn.execute(
                f"SELECT * FROM media WHERE id IN ({','.join('?' * len(chunk))})", chunk)]
        return out

    def counts(self) -> dict[str, int]:
        """photos, videos (present), failed, frames (of present media)."""
        kinds = dict(self.conn.execute(
            "SELECT kind, count(*) FROM media WHERE status != 'failed' GROUP BY kind").fetchall())
        failed = self.conn.execute("SELECT count(*) FROM media WHERE status = 'failed'").fetchone()[0]
        frames = self.conn.execute(
            "SELECT count(*) FROM frames JOIN media ON media.id = frames.media_id "
            "WHERE media.status != 'failed'").fetchone()[0]
        return {"photos": kinds.get("photo", 0), "videos": kinds.get("video", 0),
                "failed": failed, "frames": frames}

    def roots(self) -> list[str]:
        return sorted(path_from_db(r[0]) for r in self.conn.execute("SELECT DISTINCT root FROM media"))

    def frames(self, media_id: int) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT idx, timestamp, width, height FROM frames WHERE media_id = ? ORDER BY idx",
            (media_id,))]

    def with_gps(self) -> list[dict]:
        return [row_dict(r) for r in self.conn.execute(
            "SELECT id, path, kind, taken_at, gps_lat, gps_lon FROM media WHERE status != 'failed' "
            "AND gps_lat IS NOT NULL AND gps_lon IS NOT NULL ORDER BY id")]

    def legacy_hashed(self) -> list[dict]:
        """Rows hashed by 0.1.0's chunked content hash (hash_scheme 1)."""
        return [row_dict(r) for r in self.conn.execute(
            "SELECT id, path, size, mtime_ns, content_hash FROM media WHERE hash_scheme = 1 "
            "AND content_hash IS NOT NULL")]

    # -- writing (inside store.transaction())
    def save(self, media_id: int | None, row: dict) -> int:
        """Insert or update one media row; returns its id."""
        values = {k: (path_to_db(v) if k in PATH_COLUMNS else v) for k, v in row.items()}
        cols = list(values)
        if media_id is not None:
            self.conn.execute(f"UPDATE media SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?",
                              [values[c] for c in cols] + [media_id])
            return media_id
        cur = self.conn.execute(
            f"INSERT INTO media ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(path) DO UPDATE SET {', '.join(c + ' = excluded.' + c for c in cols)} "
            "RETURNING id", [values[c] for c in cols])
        return cur.fetchone()[0]

    def move(self, media_id: int, path: str, root: str, mtime_ns: int) -> None:
        self.conn.execute("UPDATE media SET path = ?, root = ?, mtime_ns = ? WHERE id = ?",
                          (path_to_db(path), path_to_db(root), mtime_ns, media_id))

    def rehash(self, media_id: int, old: str, new: str) -> None:
        """Give a row the current content hash; its results and marks are copied to it
        (another copy of the file may still have the old hash)."""
        with self.store.transaction():
            self.conn.execute("UPDATE media SET content_hash = ?, hash_scheme = 2 WHERE id = ?",
                              (new, media_id))
            if new != old:
                self.conn.execute(
                    "INSERT OR IGNORE INTO results (content_hash, stage, version, payload, arrays,"
                    " tier, created_at, error) SELECT ?, stage, version, payload, arrays, tier,"
                    " created_at, error FROM results WHERE content_hash = ?", (new, old))
                self.conn.execute(
                    "INSERT INTO private_marks (path, content_hash, marked_at) SELECT path, ?, "
                    "marked_at FROM private_marks WHERE content_hash = ?", (new, old))

    def delete_paths(self, paths: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM media WHERE path = ?", [(path_to_db(p),) for p in paths])

    def replace_frames(self, media_id: int, frames: list[tuple[int, float | None, int, int]]) -> None:
        """frames: (index, timestamp, width, height) of the analysed frames."""
        self.conn.execute("DELETE FROM frames WHERE media_id = ?", (media_id,))
        self.conn.executemany(
            "INSERT INTO frames (media_id, idx, timestamp, width, height) VALUES (?, ?, ?, ?, ?)",
            [(media_id, *f) for f in frames])

    def selfie_inputs(self) -> list[tuple]:
        return self.conn.execute(
            "SELECT id, kind, status, make, model, lens_model, focal_length, front_camera "
            "FROM media ORDER BY id").fetchall()

    def mark_selfies(self) -> int:
        """Selfie evidence over the whole gallery; returns the number of selfies.

        A front-camera lens model is a selfie. For photos whose lens model says nothing
        (older phones), the seed paper's rule: the shortest focal length seen for a camera
        model that shows several focal lengths in the gallery. Photos that name a back
        lens are exempt: the iPhone's ultra-wide back lens is shorter than its front one."""
        self.conn.execute("UPDATE media SET selfie = front_camera, selfie_reason = "
                          "CASE WHEN front_camera THEN 'front-camera lens model' END")
        self.conn.execute("""
            WITH unnamed AS (
                SELECT id, make, model, focal_length FROM media
                WHERE kind = 'photo' AND status != 'failed' AND model IS NOT NULL
                  AND focal_length > 0 AND (lens_model IS NULL OR lens_model = '')),
            per_model AS (
                SELECT make, model, min(focal_length) AS shortest FROM unnamed
                GROUP BY make, model HAVING count(DISTINCT focal_length) > 1)
            UPDATE media SET selfie = 1, selfie_reason = 'shortest focal length of its camera model'
            WHERE id IN (SELECT u.id FROM unnamed u JOIN per_model p
                         ON u.make IS p.make AND u.model = p.model AND u.focal_length = p.shortest)
            """)
        return self.conn.execute("SELECT count(*) FROM media WHERE selfie = 1").fetchone()[0]

    # -- errors
    def log_error(self, path: str, stage: str, message: str) -> None:
        self.conn.execute("INSERT INTO errors (path, stage, message, at) VALUES (?, ?, ?, ?)",
                          (path_to_db(path), stage, message, now()))

    def errors_for(self, path: str) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT stage, message, at FROM errors WHERE path = ? ORDER BY id", (path_to_db(path),))]

    def known_failures(self, walk_problems: list[dict] | None = None) -> list[dict]:
        """Every file that fails now: unreadable media, stages that failed on a present
        item, and the walk problems (default: those of the latest scan)."""
        out = [{"path": d["path"], "stage": "read", "reason": d["error"] or "",
                "since": d["scanned_at"]}
               for d in map(row_dict, self.conn.execute(
                   "SELECT path, error, scanned_at FROM media WHERE status = 'failed' ORDER BY path"))]
        for r in self.conn.execute(
                "SELECT m.path, r.stage, r.error, r.created_at FROM results r JOIN media m "
                "ON m.content_hash = r.content_hash WHERE r.error IS NOT NULL AND "
                "m.status != 'failed' ORDER BY m.path, r.stage"):
            out.append({"path": path_from_db(r[0]), "stage": r[1], "reason": r[2], "since": r[3]})
        if walk_problems is None:
            last = self.last_scan() or {}
            walk_problems = last.get("summary", {}).get("walk_problems", [])
        for p in walk_problems:
            out.append({"path": p["path"], "stage": "walk", "reason": p["reason"], "since": None})
        return out

    # -- scans
    def start_scan(self, roots: list[str]) -> int:
        with self.store.transaction():
            return self.conn.execute("INSERT INTO scans (started_at, roots) VALUES (?, ?)",
                                     (now(), json.dumps([_text(r) for r in roots]))).lastrowid

    def finish_scan(self, scan_id: int, summary: dict) -> None:
        with self.store.transaction():
            self.conn.execute("UPDATE scans SET finished_at = ?, summary = ? WHERE id = ?",
                              (now(), json.dumps(summary, default=str), scan_id))

    def last_scan(self, finished: bool = True) -> dict | None:
        row = self.conn.execute(
            "SELECT * FROM scans " + ("WHERE finished_at IS NOT NULL " if finished else "")
            + "ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        d = dict(row)
        d["summary"] = json.loads(d["summary"]) if d.get("summary") else {}
        return d


def _text(path: str) -> str:
    """A path made valid for JSON and LIKE patterns (undecodable bytes as U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")
