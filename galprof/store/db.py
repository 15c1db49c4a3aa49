"""Connection, migrations and the few queries everyone needs.

Plain stdlib sqlite3 in WAL mode: readers (profile, show, report) never block a
running scan. Only one process writes at a time: a scan holds an advisory lock
file beside the database and a second scan exits with a clear message.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from galprof.errors import DatabaseBusy, SetupError

SCHEMA = Path(__file__).with_name("schema.sql")


# Named, ordered steps (SQL); each runs in one transaction and is recorded in
# `migrations`. The schema version (PRAGMA user_version) is the number of steps applied.
MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", SCHEMA.read_text()),
    ("0002_people", SCHEMA.with_name("0002_people.sql").read_text()),
    ("0003_privacy", SCHEMA.with_name("0003_privacy.sql").read_text()),
]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def content_hash(path: Path, size: int | None = None, chunk: int = 256 * 1024) -> str:
    """A fingerprint of a file's bytes: its size plus its head, middle and tail.

    Reading three chunks instead of the whole file keeps re-hashing cheap for videos;
    photos differ in their first bytes anyway (EXIF, timestamps)."""
    size = path.stat().st_size if size is None else size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        if size <= 3 * chunk:
            h.update(f.read())
        else:
            for offset in (0, size // 2 - chunk // 2, size - chunk):
                f.seek(offset)
                h.update(f.read(chunk))
    return h.hexdigest()


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


class Store:
    """A galprof database. Use `open_store(path)`."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self._lock_file = None

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()
        self.release_writer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def acquire_writer(self) -> None:
        """Become the only writing process, or raise DatabaseBusy naming the holder."""
        lock_path = Path(str(self.path) + ".lock")
        f = open(lock_path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise DatabaseBusy(f"{self.path} is being written by another galprof scan "
                               f"(pid {holder}); wait for it to finish and run again") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def release_writer(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # -- media -----------------------------------------------------------------------
    def media_under(self, roots: Iterable[Path]) -> dict[str, sqlite3.Row]:
        """Known media whose path lies under one of `roots` (or is one of them), by path."""
        out = {}
        for root in roots:
            root = str(root)
            rows = self.conn.execute(
                "SELECT * FROM media WHERE path = ? OR path LIKE ? ESCAPE '\\'",
                (root, _like_prefix(root)))
            out.update((r["path"], r) for r in rows)
        return out

    def media_by_path(self, path: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM media WHERE path = ?", (path,)).fetchone()

    def results(self, content_hash_: str, with_arrays: bool = False) -> dict[str, dict]:
        """Cached stage results of a content hash: stage -> {version, payload, tier[, arrays]}."""
        cols = "stage, version, payload, tier" + (", arrays" if with_arrays else "")
        out = {}
        for r in self.conn.execute(f"SELECT {cols} FROM results WHERE content_hash = ?",
                                   (content_hash_,)):
            out[r["stage"]] = {"version": r["version"], "payload": json.loads(r["payload"]),
                               "tier": r["tier"]}
            if with_arrays:
                out[r["stage"]]["arrays"] = unpack_arrays(r["arrays"])
        return out

    def result_versions(self) -> dict[str, dict[str, str]]:
        """content_hash -> {stage: version}, for deciding what a scan must (re)run."""
        out: dict[str, dict[str, str]] = {}
        for h, stage, version in self.conn.execute(
                "SELECT content_hash, stage, version FROM results"):
            out.setdefault(h, {})[stage] = version
        return out

    def put_result(self, content_hash_: str, stage: str, version: str, payload: dict,
                   tier: str = "device") -> None:
        payload = dict(payload)
        arrays = payload.pop("arrays", None)
        self.conn.execute(
            "INSERT OR REPLACE INTO results (content_hash, stage, version, payload, arrays, tier,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (content_hash_, stage, version, json.dumps(payload, separators=(",", ":")),
             pack_arrays(arrays), tier, now()))

    def log_error(self, path: str, stage: str, message: str) -> None:
        self.conn.execute("INSERT INTO errors (path, stage, message, at) VALUES (?, ?, ?, ?)",
                          (path, stage, message, now()))

    def errors_for(self, path: str) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT stage, message, at FROM errors WHERE path = ? "
                                 "ORDER BY id", (path,)).fetchall()


def _like_prefix(root: str) -> str:
    escaped = root.rstrip(os.sep).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + os.sep + "%"


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS migrations"
                 " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
    for number, (name, sql) in enumerate(MIGRATIONS, start=1):
        if name in done:
            continue
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\n"
                f"INSERT INTO migrations (name, applied_at) VALUES ('{name}', '{now()}');\n"
                f"PRAGMA user_version = {number};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def open_store(path: Path, create: bool = True) -> Store:
    """Open (and create or migrate) the database at `path`."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise SetupError(f"no galprof database at {path}; run `galprof scan FOLDER` first")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SetupError(f"cannot create {path.parent}: {e.strerror}") from None
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        migrate(conn)
    except sqlite3.DatabaseError as e:
        raise SetupError(f"{path} is not a usable galprof database ({e})") from None
    return Store(path, conn)
