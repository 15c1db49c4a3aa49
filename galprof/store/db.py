"""The connection: WAL mode, migrations, transactions, the writer lock, path encoding.

Plain stdlib sqlite3. Readers (profile, show, report) never block a running scan.
Every SQL statement of galprof lives in this package: `Store` carries one object per
table group (`store.media`, `store.results`, `store.people`, `store.privacy`,
`store.passes`), each owning its statements, the way sqlite-utils' `Table` does.

Two levels of writing:
  - `with store.transaction():` one atomic unit (BEGIN IMMEDIATE, so two processes
    never deadlock upgrading a read lock; nested calls join the outer one);
  - `with store.writer():` the process-level lock (a `flock` on FILE.lock naming the
    holder's pid) for work made of many transactions that must not interleave with
    another such run: a scan and its passes, `people` fixes, purges.
A transaction of a process without the writer lock (`galprof private mark` during a
scan) announces itself with a shared `flock` on FILE.wait while it waits and runs; the
writer's long run lets it in between two of its own transactions (`let_waiting_in`):
SQLite's busy handler polls, and would rarely find the moment between a commit and the
next BEGIN on its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

from galprof.errors import DatabaseBusy, SetupError
from galprof.paths import make_private_dir

HERE = Path(__file__).parent
# The longest a writer's run waits between two transactions for another process's (a
# mark takes milliseconds; a stuck process must not stall a scan).
WAITING_LIMIT_S = 5.0

# Named, ordered steps (SQL files beside this module); each runs in one transaction and is
# recorded in `migrations`. PRAGMA user_version is the number of steps applied.
MIGRATIONS = ["0001_initial", "0002_people", "0003_privacy", "0004_passes", "0005_public_marks"]
# How long a statement waits for another process's write transaction to end.
BUSY_TIMEOUT_S = 30


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ paths

def path_to_db(path: str | os.PathLike | None):
    """A file path as SQLite keeps it: TEXT when it is valid UTF-8, else its raw bytes as
    a BLOB (a name from an old camera or a FAT card). Lossless both ways."""
    if path is None:
        return None
    path = os.fspath(path)
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def path_from_db(value) -> str | None:
    return os.fsdecode(value) if isinstance(value, bytes) else value


# ------------------------------------------------------------------ the store

class Store:
    """A galprof database. Use `open_store(path)`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, read_only: bool = False):
        from galprof.store.media import MediaTable
        from galprof.store.passes import PassTable
        from galprof.store.people import PeopleTable
        from galprof.store.privacy import PrivacyTable
        from galprof.store.results import ResultsTable

        self.path = path
        self.conn = conn
        self.read_only = read_only
        self._depth = 0
        self._lock_file = None
        self._lock_depth = 0
        self.media = MediaTable(self)
        self.results = ResultsTable(self)
        self.people = PeopleTable(self)
        self.privacy = PrivacyTable(self)
        self.passes = PassTable(self)

    # -- lifecycle
    def close(self) -> None:
        self.conn.close()
        if self._lock_file is not None:
            self._lock_depth = 1
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def integrity(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # -- transactions
    @contextlib.contextmanager
    def transaction(self):
        """One atomic unit of writes; nested calls join the outermost one."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        with contextlib.nullcontext() if self.holds_writer else self._announced():
            _guard(self, "BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException as e:
                self._depth = 0
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.OperationalError):
                    raise SetupError(explain(self.path, e)) from None
                raise
            self._depth = 0
            _guard(self, "COMMIT")

    @contextlib.contextmanager
    def _announced(self):
        """A shared lock on FILE.wait while this transaction waits and runs (see the module
        docstring); without a lock file (an unwritable folder) nobody is told."""
        fd = self._wait_file()
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)                           # releases the lock

    def let_waiting_in(self, limit_s: float = WAITING_LIMIT_S) -> None:
        """Between two transactions of the writer lock's holder: wait (up to `limit_s`)
        until the transactions other processes announced have run."""
        fd = self._wait_file()
        if fd is None:
            return
        try:
            deadline = time.monotonic() + limit_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return                         # nobody waits
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return
                    time.sleep(0.01)
        finally:
            os.close(fd)

    def _wait_file(self) -> int | None:
        try:
            return os.open(str(self.path) + ".wait", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None

    def checkpoint(self) -> bool:
        """Fold the write-ahead log into the main file and truncate it. False when a reader
        in another process still holds an older snapshot (the log could not be emptied)."""
        return not self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]

    def vacuum(self) -> None:
        """Rewrite the file: freed pages (and what they held) do not survive."""
        self.conn.execute("VACUUM")

    def secure_delete(self) -> None:
        """From now on, deleted content is overwritten with zeros on this connection."""
        self.conn.execute("PRAGMA secure_delete = ON")

    # -- the writer lock
    @contextlib.contextmanager
    def writer(self, wait: float = 0.0, what: str = "galprof scan"):
        """Hold the process-level writer lock (re-entrant). Another holder makes this
        wait up to `wait` seconds, then raise DatabaseBusy naming its pid."""
        self._acquire(wait, what)
        try:
            yield self
        finally:
            self._release()

    @property
    def holds_writer(self) -> bool:
        return self._lock_file is not None

    def _acquire(self, wait: float, what: str) -> None:
        if self._lock_file is not None:
            self._lock_depth += 1
            return
        if self.read_only:
            raise SetupError(f"{self.path} is opened read-only")
        lock_path = Path(str(self.path) + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        f = os.fdopen(fd, "r+")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.seek(0)
                    holder = f.read().strip() or "another process"
                    f.close()
                    raise DatabaseBusy(f"{self.path} is being written by another galprof "
                                       f"process ({holder}); wait for it to finish and run "
                                       "again") from None
                time.sleep(0.2)
        f.seek(0)
        f.truncate()
        f.write(f"{what}, pid {os.getpid()}")
        f.flush()
        self._lock_file = f
        self._lock_depth = 1

    def _release(self) -> None:
        self._lock_depth -= 1
        if self._lock_depth > 0 or self._lock_file is None:
            return
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
        self._lock_file = None


def _guard(store: Store, sql: str) -> None:
    """Run a transaction statement, turning SQLite's operational failures into one line."""
    try:
        store.conn.execute(sql)
    except sqlite3.OperationalError as e:
        if store.conn.in_transaction and sql == "COMMIT":
            store.conn.execute("ROLLBACK")
        raise SetupError(explain(store.path, e)) from None


def explain(path: Path, e: sqlite3.Error) -> str:
    """One line saying what went wrong with the database file, in a user's words."""
    text = str(e)
    if "locked" in text or "busy" in text:
        return (f"{path} stayed locked by another process for {BUSY_TIMEOUT_S} s; "
                "run again when it has finished")
    if "readonly" in text or "read-only" in text:
        return f"{path} is read-only: galprof cannot write to it ({text})"
    if "full" in text:
        return f"{path}: the disk is full; free some space and run again (nothing was lost)"
    if "disk I/O" in text or "unable to open" in text:
        return f"{path}: cannot write the database file ({text}); is the disk full or read-only?"
    return f"{path}: database error ({text})"


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS migrations"
                 " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
    for number, name in enumerate(MIGRATIONS, start=1):
        if name in done:
            continue
        sql = (HERE / ("schema.sql" if number == 1 else f"{name}.sql")).read_text()
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\n"
                f"INSERT INTO migrations (name, applied_at) VALUES ('{name}', '{now()}');\n"
                f"PRAGMA user_version = {number};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _private_file(path: Path) -> None:
    """Create `path` readable by its owner only (it will hold biometric data)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


def open_store(path: Path, create: bool = True, read_only: bool = False) -> Store:
    """Open (and create or migrate) the database at `path`.

    read_only: for commands that only read (profile, report, show, lists); works on a
    database the user cannot write, and never migrates (an old schema is refused with
    the command that upgrades it)."""
    path = Path(path)
    if not path.exists():
        if not create or read_only:
            raise SetupError(f"no galprof database at {path}; run `galprof scan FOLDER` first")
        try:
            make_private_dir(path.parent)
            _private_file(path)
        except OSError as e:
            raise SetupError(f"cannot create {path}: {e.strerror}") from None
    try:
        if read_only:
            conn = _connect_read_only(path)
        else:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            migrate(conn)
            _restrict_side_files(path)
    except sqlite3.DatabaseError as e:
        raise SetupError(explain(path, e) if isinstance(e, sqlite3.OperationalError)
                         else f"{path} is not a usable galprof database ({e})") from None
    store = Store(path, conn, read_only)
    if read_only and store.schema_version < len(MIGRATIONS):
        conn.close()
        raise SetupError(f"{path} was written by an older galprof; run `galprof scan` once "
                         "to upgrade it")
    return store


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = "file:" + path.resolve().as_posix().replace("?", "%3f").replace("#", "%23")
    conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                           isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # A WAL database in a folder we cannot write (no -shm can be made): read it as an
        # immutable file, which is right when nothing else is writing it.
        conn.close()
        conn = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
    return conn


def _restrict_side_files(path: Path) -> None:
    """The -wal and -shm files hold the same data as the database: owner-only too."""
    for suffix in ("", "-wal", "-shm"):
        side = Path(str(path) + suffix)
        try:
            mode = stat.S_IMODE(side.stat().st_mode)
            if mode & 0o077 and side.stat().st_uid == os.getuid():
                os.chmod(side, mode & 0o700)
        except OSError:
            pass
