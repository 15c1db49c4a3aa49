"""SQL of the privacy decisions (`media.private`), the user's marks and the upload log.

A mark matches a media item by path OR by content hash, so a moved or renamed file stays
marked and a re-scan never loses a mark.
"""

from __future__ import annotations

import json

from galprof import payloads
from galprof.store.db import now, path_from_db, path_to_db


class PrivacyTable:
    def __init__(self, store):
        self.store = store

    @property
    def conn(self):
        return self.store.conn

    # -- marks (`public` = 0: the user's "private"; 1: the user's "public")
    def mark_of(self, path: str, content_hash: str | None) -> str | None:
        """"private", "public" or None: the user's mark on this path or content."""
        row = self.conn.execute(
            "SELECT public FROM private_marks WHERE path = ? OR (content_hash IS NOT NULL AND "
            "content_hash = ?) ORDER BY public LIMIT 1", (path_to_db(path), content_hash)).fetchone()
        return None if row is None else ("public" if row[0] else "private")

    def is_marked(self, path: str, content_hash: str | None) -> bool:
        return self.mark_of(path, content_hash) == "private"

    def marks(self, public: bool = False) -> tuple[set[str], set[str]]:
        """(marked paths, marked content hashes) of the private (or the public) marks."""
        rows = self.conn.execute("SELECT path, content_hash FROM private_marks WHERE public = ?",
                                 (int(public),)).fetchall()
        return ({path_from_db(r[0]) for r in rows}, {r[1] for r in rows if r[1] is not None})

    def add_mark(self, path: str, content_hash: str | None, public: bool = False) -> None:
        """Mark private (or public), replacing a mark of the other kind."""
        self.remove_marks(path, content_hash)
        self.conn.execute("INSERT INTO private_marks (path, content_hash, marked_at, public) "
                          "VALUES (?, ?, ?, ?)", (path_to_db(path), content_hash, now(), int(public)))

    def remove_marks(self, path: str, content_hash: str | None) -> int:
        return self.conn.execute(
            "DELETE FROM private_marks WHERE path = ? OR (content_hash IS NOT NULL AND "
            "content_hash = ?)", (path_to_db(path), content_hash)).rowcount

    def unscanned_marks(self) -> list[str]:
        return [path_from_db(r[0]) for r in self.conn.execute(
            "SELECT m.path FROM private_marks m WHERE NOT EXISTS (SELECT 1 FROM media x WHERE "
            "x.path = m.path OR x.content_hash = m.content_hash) ORDER BY m.path")]

    def fingerprint_rows(self) -> list[tuple]:
        return self.conn.execute("SELECT path, content_hash, public FROM private_marks "
                                 "ORDER BY path, content_hash").fetchall()

    # -- decisions
    _DECISION_COLUMNS = ("id, path, content_hash, kind, width, height, format, make, model, "
                         "focal_length, status")

    def decision_inputs(self) -> list[tuple]:
        """What every decision depends on besides faces, people, text and marks."""
        return self.conn.execute(
            f"SELECT {self._DECISION_COLUMNS} FROM media WHERE status != 'failed' AND "
            "kind IS NOT NULL ORDER BY id").fetchall()

    def decision_rows(self):
        """(media row as a dict, faces payload, text payload) of every readable item,
        streamed (None for a stage that has no good result)."""
        cols = ", ".join(f"m.{c.strip()}" for c in self._DECISION_COLUMNS.split(","))
        for row in self.conn.execute(
                f"SELECT {cols}, f.payload AS faces, f.error AS faces_error, t.payload AS text, "
                "t.error AS text_error FROM media m LEFT JOIN results f ON f.content_hash = "
                "m.content_hash AND f.stage = 'faces' LEFT JOIN results t ON t.content_hash = "
                "m.content_hash AND t.stage = 'text' WHERE m.status != 'failed' AND "
                "m.kind IS NOT NULL ORDER BY m.id"):
            media = {k: row[k] for k in row.keys() if k not in ("faces", "faces_error", "text",
                                                                 "text_error")}
            media["path"] = path_from_db(media["path"])
            decoded = {}
            for stage in ("faces", "text"):
                ok = row[stage] is not None and row[f"{stage}_error"] is None
                decoded[stage] = payloads.decode(stage, json.loads(row[stage])) if ok else None
            yield media, decoded["faces"], decoded["text"]

    def save_decisions(self, decisions: list[tuple[int, bool, str]]) -> None:
        """(media id, private, reasons joined by newlines)."""
        self.conn.executemany("UPDATE media SET private = ?, private_reason = ? WHERE id = ?",
                              [(int(p), r, i) for i, p, r in decisions])

    def private_items(self) -> list[dict]:
        return [{"path": path_from_db(r[0]), "kind": r[1], "content_hash": r[2],
                 "reasons": (r[3] or "").splitlines()}
                for r in self.conn.execute("SELECT path, kind, content_hash, private_reason "
                                           "FROM media WHERE private = 1 ORDER BY path")]

    def counts(self) -> dict[str, int]:
        rows = dict(self.conn.execute("SELECT private, count(*) FROM media WHERE status != 'failed' "
                                      "AND kind IS NOT NULL GROUP BY private").fetchall())
        return {"private": rows.get(1, 0), "public": rows.get(0, 0), "undecided": rows.get(None, 0)}

    # -- uploads (the audit log)
    def upload_candidates(self, stages: tuple[str, ...]) -> list[dict]:
        """Public, readable items whose results of `stages` are not all the remote tier's."""
        marks = ",".join("?" * len(stages))
        return [dict(r, path=path_from_db(r["path"])) for r in self.conn.execute(
            "SELECT m.* FROM media m WHERE m.private = 0 AND m.status != 'failed' "
            "AND m.kind IN ('photo', 'video') AND m.content_hash IS NOT NULL AND "
            "(SELECT count(*) FROM results r WHERE r.content_hash = m.content_hash AND "
            f" r.stage IN ({marks}) AND r.tier = 'remote') < ? ORDER BY m.path",
            (*stages, len(stages)))]

    def start_upload(self, path: str, content_hash: str, nbytes: int, images: int,
                     sha256: list[str], server: str) -> int:
        """Log an upload as 'sending' before its bytes leave the device."""
        with self.store.transaction():
            return self.conn.execute(
                "INSERT INTO uploads (at, path, content_hash, bytes, images, sha256, server, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'sending')",
                (now(), path_to_db(path), content_hash, nbytes, images, ",".join(sha256),
                 server)).lastrowid

    def finish_upload(self, upload_id: int, status: str) -> None:
        self.conn.execute("UPDATE uploads SET status = ? WHERE id = ?", (status, upload_id))

    def uploads(self, limit: int | None = None, path: str | None = None,
                content_hash: str | None = None) -> list[dict]:
        """The upload audit log, newest first."""
        sql = "SELECT id, at, path, content_hash, bytes, images, sha256, server, status FROM uploads"
        args: list = []
        if path is not None:
            sql += " WHERE path = ?"
            args.append(path_to_db(path))
        elif content_hash is not None:
            sql += " WHERE content_hash = ?"
            args.append(content_hash)
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [dict(r, path=path_from_db(r["path"])) for r in self.conn.execute(sql, args)]
