"""When the database itself is the problem: a mark during a scan, a full disk, a database the
user cannot write. One clear line and a defined exit status each; read commands still work."""

import shutil
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


def copies(root: Path, src: Path, n: int) -> Path:
    root.mkdir()
    data = src.read_bytes()
    for i in range(n):
        (root / f"IMG_{i:04d}.jpg").write_bytes(data + f"copy {i}".encode())
    return root


@pytest.fixture
def many(tmp_path, testmedia):
    return copies(tmp_path / "DCIM", testmedia / "scenes/pp_limes.jpg", 400)


def test_a_mark_while_a_scan_runs_neither_fails_nor_breaks_the_scan(tmp_path, testmedia):
    # faces on 300 portraits: a scan long enough for three marks to land while it runs
    many = copies(tmp_path / "DCIM", testmedia / "faces/face_recognition/obama.jpg", 300)
    db = tmp_path / "g.db"
    scan = subprocess.Popen([sys.executable, "-m", "galprof", "scan", str(many), "--db", str(db),
                             "--stages", "faces", "--quiet"], stderr=subprocess.PIPE, text=True)
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
    assert store.media.counts()["photos"] == 300


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


def _immutable(*paths: Path, on: bool) -> bool:
    flag = "+i" if on else "-i"
    return all(subprocess.run(["chattr", flag, str(p)], capture_output=True).returncode == 0
               for p in paths)


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr")
def test_an_immutable_database_serves_reads_and_refuses_writes_in_one_line(tmp_path, testmedia):
    """An immutable file (chattr +i: not even root may write it) in a folder where no
    -wal or -shm file can be made: read commands work, writing ones say why in one line."""
    root = tmp_path / "g"
    root.mkdir()
    shutil.copyfile(testmedia / "scenes/pp_dog_orange.jpg", root / "dog.jpg")
    db = tmp_path / "db" / "g.db"
    db.parent.mkdir()
    store = open_store(db)
    run(store, [root], Settings())
    store.checkpoint()
    store.close()
    for side in db.parent.iterdir():
        if side != db:
            side.unlink()
    if not _immutable(db, db.parent, on=True):
        pytest.skip("this file system has no immutable flag")
    try:
        out = galprof("profile", "--json", "--db", db)
        assert out.returncode == 0, out.stderr
        assert '"photos": 1' in out.stdout
        out = galprof("show", root / "dog.jpg", "--db", db)
        assert out.returncode == 0 and "dog.jpg" in out.stdout, out.stderr
        for args in (["scan", root, "--stages", "none"], ["private", "mark", root / "dog.jpg"]):
            out = galprof(*args, "--db", db)
            assert out.returncode == 1, out.stderr
            (line,) = out.stderr.strip().splitlines()
            assert line.startswith("Error: ") and "g.db" in line, line
    finally:
        _immutable(db, db.parent, on=False)
