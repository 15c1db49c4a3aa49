"""SQL of the `results` table: stage payloads cached per content hash, stage and version.

Payloads go in and come out as the typed classes of `galprof.payloads`; their numpy
arrays live in an .npz BLOB beside the JSON and can be purged.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from galprof import payloads
from galprof.store.db import now


def pack_arrays(arrays: dict[str, np.ndarray] | None) -> bytes | None:
    if not arrays:
        return None
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def unpack_arrays(blob: bytes | None) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files}


@dataclass
class Result:
    stage: str
    version: str
    tier: str                 # 'device' or 'remote'
    payload: Any              # the stage's payload class (None when the stage failed)
    error: str | None = None  # why the stage failed on this item, at this version


class ResultsTable:
    def __init__(self, store):
        self.store = store

    @property
    def conn(self):
        return self.store.conn

    def versions(self) -> dict[str, dict[str, str]]:
        """content_hash -> {stage: version}, failures included (for deciding what to run)."""
        out: dict[str, dict[str, str]] = {}
        for h, stage, version in self.conn.execute(
                "SELECT content_hash, stage, version FROM results"):
            out.setdefault(h, {})[stage] = version
        return out

    def remote(self) -> list[tuple[str, str]]:
        """(content_hash, stage) of results the remote tier gave (they stand in for the
        device stages' own, so a re-scan keeps them)."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT content_hash, stage FROM results WHERE tier = 'remote'")]

    def get(self, content_hash: str | None, stage: str, arrays: bool = True) -> Result | None:
        if not content_hash:
            return None
        row = self.conn.execute(
            "SELECT stage, version, tier, payload, error" + (", arrays" if arrays else "")
            + " FROM results WHERE content_hash = ? AND stage = ?", (content_hash, stage)).fetchone()
        return _result(row, arrays)

    def payload(self, content_hash: str | None, stage: str, arrays: bool = True):
        """The typed payload of a stage for a content hash, or None (missing or failed)."""
        result = self.get(content_hash, stage, arrays)
        return result.payload if result is not None else None

    def all(self, content_hash: str | None, arrays: bool = False) -> dict[str, Result]:
        if not content_hash:
            return {}
        rows = self.conn.execute(
            "SELECT stage, version, tier, payload, error" + (", arrays" if arrays else "")
            + " FROM results WHERE content_hash = ?", (content_hash,))
        return {r["stage"]: _result(r, arrays) for r in rows}

    def put(self, content_hash: str, stage: str, version: str, payload,
            tier: str = "device") -> None:
        data, arrays = payloads.encode(payload)
        self.conn.execute(
            "INSERT OR REPLACE INTO results (content_hash, stage, version, payload, arrays, tier,"
            " created_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (content_hash, stage, version, json.dumps(data, separators=(",", ":")),
             pack_arrays(arrays), tier, now()))

    def put_error(self, content_hash: str, stage: str, version: str, reason: str) -> None:
        """Record that `stage` at `version` failed on this content (not retried until the
        version changes); a result of an earlier version is replaced."""
        self.conn.execute(
            "INSERT OR REPLACE INTO results (content_hash, stage, version, payload, arrays, tier,"
            " created_at, error) VALUES (?, ?, ?, 'null', NULL, 'device', ?, ?)",
            (content_hash, stage, version, now(), reason))

    def forget_errors(self, content_hashes: list[str], stage: str) -> None:
        self.conn.executemany("DELETE FROM results WHERE content_hash = ? AND stage = ? AND "
                              "error IS NOT NULL", [(h, stage) for h in content_hashes])

    def feature_blobs(self, stage: str, key: str) -> list[np.ndarray]:
        """One array `key` of `stage` per present media item that has one (photo features)."""
        out = []
        for digest, blob in self.conn.execute(
                "SELECT r.content_hash, r.arrays FROM results r WHERE r.stage = ? AND "
                "r.arrays IS NOT NULL AND r.content_hash IN (SELECT content_hash FROM media "
                "WHERE status != 'failed') ORDER BY r.content_hash", (stage,)):
            arrays = unpack_arrays(blob)
            if key in arrays:
                out.append(arrays[key])
        return out

    def fingerprint_rows(self, stages: tuple[str, ...]) -> list[tuple]:
        """(media id, content hash, stage, version, failed) of present media: what the
        passes are computed from."""
        marks = ",".join("?" * len(stages))
        return self.conn.execute(
            "SELECT m.id, m.content_hash, r.stage, r.version, r.error IS NOT NULL FROM media m "
            f"JOIN results r ON r.content_hash = m.content_hash AND r.stage IN ({marks}) "
            "WHERE m.status != 'failed' ORDER BY m.id, r.stage", stages).fetchall()

    def rewrite(self, stage: str, change) -> int:
        """Replace every good result of `stage` by `change(payload)` (same version, so it
        is not computed again); returns how many were rewritten."""
        rows = self.conn.execute("SELECT content_hash, payload, arrays FROM results WHERE "
                                 "stage = ? AND error IS NULL", (stage,)).fetchall()
        for digest, data, blob in rows:
            payload = change(payloads.decode(stage, json.loads(data), unpack_arrays(blob)))
            new, arrays = payloads.encode(payload)
            self.conn.execute("UPDATE results SET payload = ?, arrays = ? WHERE content_hash = ? "
                              "AND stage = ?", (json.dumps(new, separators=(",", ":")),
                                                pack_arrays(arrays), digest, stage))
        return len(rows)

    def delete_stage(self, stage: str) -> int:
        return self.conn.execute("DELETE FROM results WHERE stage = ?", (stage,)).rowcount

    def clear_arrays(self, stage: str) -> None:
        self.conn.execute("UPDATE results SET arrays = NULL WHERE stage = ?", (stage,))


def _result(row, arrays: bool) -> Result | None:
    if row is None:
        return None
    if row["error"] is not None:
        return Result(row["stage"], row["version"], row["tier"], None, row["error"])
    data = json.loads(row["payload"])
    blob = unpack_arrays(row["arrays"]) if arrays else None
    return Result(row["stage"], row["version"], row["tier"],
                  payloads.decode(row["stage"], data, blob))
