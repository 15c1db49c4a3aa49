"""When the database itself is the problem: a mark during a scan, a full disk, a database the
user cannot write. One clear line and a defined exit status each; read commands still work."""

import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from galprof.errors import SetupError
from galprof.pipeline import Settings, run
from galprof.store import open_store


def galprof(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "galprof", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture
def many(tmp_path, testmedia):
    root = tmp_path / "DCIM"
    root.mkdir()
    src = (testmedia / "scenes/pp_limes.jpg").read_bytes()
    for i in range(1500):
        (root / f"IMG_{i:04d}.jpg").write_bytes(src + f"copy {i}".encode())
    return root


def test_a_mark_while_a_scan_runs_neither_fails_nor_breaks_the_scan(tmp_path, many):
    db = tmp_path / "g.db"
    scan = subprocess.Popen([sys.executable, "-m", "galprof", "scan", str(many), "--db", str(db),
                             "--stages", "none", "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not db.exists():
        time.sleep(0.05)
    # the report: 3 of 3 tries crashed the scan
    marks = [subprocess.Popen([sys.executable, "-m", "galprof", "private", "mark",
                               str(many / f"IMG_{i:04d}.jpg"), "--db", str(db)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    results = [m.communicate(timeout=120) for m in marks]
    assert scan.poll() is None, "the scan should still be running during the marks"
    _, err = scan.communicate(timeout=300)
    assert scan.returncode == 0, err
    assert all(m.returncode == 0 and "marked 1 item" in out for m, (out, _) in zip(marks, results)), \
        results
    store = open_store(db)
    for i in range(3):
        row = store.media.by_path(str(many / f"IMG_{i:04d}.jpg"))
        assert row["private"] == 1 and "marked private by the user" in row["private_reason"], (
            store.privacy.marks(), row)
    assert store.media.counts()["photos"] == 1500


def test_a_full_disk_is_one_clear_line_and_keeps_what_was_committed(tmp_path, many):
    store = open_store(tmp_path / "g.db")
    run(store, [many / "IMG_0000.jpg"], Settings())
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")   # what a full disk looks like
    with pytest.raises(SetupError, match="the disk is full; free some space"):
        run(store, [many], Settings())
    store.conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.integrity() == "ok"
    assert store.media.by_path(str(many / "IMG_0000.jpg"))["status"] == "ok"


def _as_nobody(conn, *args) -> None:
    os.setgid(65534)
    os.setuid(65534)
    out = galprof(*args)
    conn.send((out.returncode, out.stdout, out.stderr))


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                    reason="needs root to drop to another user")
def test_a_database_the_user_cannot_write(tmp_path, testmedia):
    """Root may write any file, so the commands run as 'nobody' on root's database, in a
    folder nobody can write (no -shm file can be made there either)."""
    root = tmp_path / "g"
    root.mkdir()
    shutil.copyfile(testmedia / "scenes/pp_dog_orange.jpg", root / "dog.jpg")
    db = tmp_path / "db" / "g.db"
    db.parent.mkdir()
    store = open_store(db)
    run(store, [root], Settings())
    store.close()
    db.chmod(0o644)
    for p in (tmp_path, db.parent, root):
        p.chmod(0o755)
    ctx = multiprocessing.get_context("fork")

    def as_nobody(*args):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_as_nobody, args=(child, *args))
        proc.start()
        proc.join(120)
        return parent.recv()

    code, out, err = as_nobody("profile", "--json", "--db", db)
    assert code == 0, err
    assert '"photos": 1' in out
    code, out, err = as_nobody("show", root / "dog.jpg", "--db", db)
    assert code == 0 and "dog.jpg" in out, err
    code, out, err = as_nobody("scan", root, "--stages", "none", "--db", db)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("Error: ") and "g.db" in line and "Traceback" not in err
    code, out, err = as_nobody("private", "mark", root / "dog.jpg", "--db", db)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
