"""Real galleries are messy: strange names, non-files, sidecars, bombs and broken files
go through the whole scan, one line each, and cost no other file its results."""

import os
import random
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from galprof.bench import run_measured
from galprof.pipeline import Settings, run
from galprof.store import open_store

from conftest import SHARED_MODELS
from test_metadata import _mkv_with_unknown_codec

BAD_NAME = os.fsdecode(b"IMG_\xe9t\xe9_\xff.jpg")        # Latin-1 bytes from an old FAT card


def galprof(*args, db: Path, check: bool = True, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GALPROF_MODELS": str(SHARED_MODELS), **(env_extra or {})}
    out = subprocess.run([sys.executable, "-m", "galprof", *map(os.fsencode, args), "--db", str(db)],
                         env=env, capture_output=True)
    if check:
        assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


class MeanColour:
    name = "colour"
    requires = ()
    long_side = 96
    version = "1"

    def load(self):
        pass

    def run(self, frames, upstream):
        return {"means": [f.image.reshape(-1, 3).mean(axis=0).round(2).tolist() for f in frames]}


def test_a_name_that_is_not_utf8_round_trips_through_every_command(tmp_path, testmedia):
    root = tmp_path / "DCIM"
    root.mkdir()
    bad = root / BAD_NAME
    shutil.copyfile(testmedia / "faces/face_recognition/obama.jpg", bad)
    for name in ("obama1.jpg", "obama2.jpg"):
        shutil.copyfile(testmedia / "faces/face_recognition" / name, root / name)
    shutil.copyfile(testmedia / "scenes/pp_dog_orange.jpg", root / "zz_after.jpg")   # sorts after it
    db = tmp_path / "g.db"
    scan = galprof("scan", str(root), "--stages", "faces", db=db)
    assert b"Traceback" not in scan.stderr
    store = open_store(db)
    row = store.media.by_path(str(bad))
    assert row is not None and row["path"] == str(bad) and os.fsencode(row["path"]).endswith(
        b"\xe9t\xe9_\xff.jpg")
    assert store.media.by_path(str(root / "zz_after.jpg"))["status"] == "ok"
    show = galprof("show", str(bad), db=db)
    assert b"IMG_\\xe9t\\xe9_\\xff.jpg" in show.stdout            # readable, not mojibake
    person = store.people.persons_of(row["id"])
    (pid,) = [p for p in person.values() if p is not None]
    listing = galprof("people", "show", str(pid), db=db)
    assert b"IMG_\\xe9t\\xe9_\\xff.jpg" in listing.stdout
    galprof("private", "mark", str(bad), db=db)
    store = open_store(db)
    assert store.privacy.is_marked(str(bad), row["content_hash"])
    galprof("report", "--out", str(tmp_path / "r.html"), db=db)
    assert (tmp_path / "r.html").stat().st_size > 1000
    again = galprof("scan", str(root), "--stages", "faces", "--json", db=db)
    assert b'"unchanged": 4' in again.stdout


def test_control_characters_in_a_file_name_reach_the_terminal_escaped(tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    evil = root / "\x1b]0;pwned\x07\x1b[2J.jpg"
    evil.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = galprof("scan", str(root), "--stages", "none", db=tmp_path / "g.db", check=False)
    assert out.returncode == 3
    assert b"\x1b" not in out.stderr and b"\\x1b]0;pwned\\x07" in out.stderr


@pytest.mark.slow
def test_a_quiet_scan_with_models_prints_each_bad_file_and_nothing_else(tmp_path, testmedia):
    # fd 2 is the whole process's: the TFLite runtime's INFO line is kept off it, and the
    # models opened while the scan runs never swallow a bad file's line (vision/runtime.py)
    root = tmp_path / "g"
    root.mkdir()
    corrupt = (testmedia / "corrupt/phf_corrupted.heic").read_bytes()
    for i in range(3):
        (root / f"bad_{i}.heic").write_bytes(corrupt + b"copy %d" % i)
    for name in ("scenes/pp_limes.jpg", "faces/children/hse_family.jpg"):
        shutil.copy(testmedia / name, root)
    expected = sorted(f"error: {root}/bad_{i}.heic: not a readable image (unrecognised or "
                      "corrupt image data)" for i in range(3))
    for attempt in range(2):
        out = galprof("scan", str(root), "--stages", "objects,scenes,faces", "--quiet",
                      db=tmp_path / f"g{attempt}.db", check=False)
        assert out.returncode == 3
        assert sorted(out.stderr.decode().splitlines()) == expected


def test_fifos_devices_and_broken_links_are_reported_once_and_never_read(tmp_path, testmedia):
    root = tmp_path / "g"
    root.mkdir()
    os.mkfifo(root / "photo.jpg")                       # opening it would block forever
    os.symlink("/dev/zero", root / "zero.jpg")          # reading it would never end
    os.symlink(root / "gone.jpg", root / "dangling.jpg")
    shutil.copyfile(testmedia / "scenes/pp_limes.jpg", root / "limes.jpg")
    db = tmp_path / "g.db"
    started = time.monotonic()
    first = galprof("scan", str(root), "--stages", "none", db=db, check=False)
    assert time.monotonic() - started < 60
    assert first.returncode == 3
    lines = first.stderr.decode().splitlines()
    assert sum("photo.jpg: not a regular file (a FIFO)" in line for line in lines) == 1
    assert sum("zero.jpg: not a regular file (a character device)" in line for line in lines) == 1
    assert sum("dangling.jpg: broken symbolic link" in line for line in lines) == 1
    second = galprof("scan", str(root), "--stages", "none", db=db, check=False)
    assert second.returncode == 0 and second.stderr == b""          # cron stays quiet
    errors = galprof("errors", db=db).stdout.decode()
    assert "photo.jpg: walk: not a regular file" in errors and "dangling.jpg" in errors
    assert open_store(db).media.by_path(str(root / "limes.jpg"))["status"] == "ok"


def test_a_canon_thm_is_its_videos_thumbnail_not_a_live_photo(tmp_path, testmedia):
    root = tmp_path / "DCIM" / "100CANON"
    root.mkdir(parents=True)
    shutil.copyfile(testmedia / "videos/rotated_iPhone6_with-gps.mov", root / "MVI_0001.MOV")
    shutil.copyfile(testmedia / "scenes/pp_limes.jpg", root / "MVI_0001.THM")
    store = open_store(tmp_path / "g.db")
    s = run(store, [root.parent], Settings(stages=[MeanColour()]))
    assert (s.photos, s.videos, s.failed) == (0, 1, 0)
    video = store.media.by_path(str(root / "MVI_0001.MOV"))
    assert video["kind"] == "video" and video["motion_path"] is None
    assert store.results.payload(video["content_hash"], "colour")


def test_a_video_without_a_decoder_fails_in_one_line(tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    _mkv_with_unknown_codec(root / "MVI_0002.mkv")
    s = run(open_store(tmp_path / "g.db"), [root], Settings(stages=[MeanColour()]))
    assert s.failed == 1
    assert s.failures[0]["reason"] == "video codec not supported (no decoder for it in this FFmpeg build)"


def _flat_png(path: Path, width: int, height: int) -> None:
    """A valid RGB PNG of any size written row by row (a few hundred KB for 250 MP)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    z = zlib.compressobj(9)
    row = b"\x00" + b"\x40\x80\x20" * width
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                                      8, 2, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_a_decompression_bomb_under_the_pixel_cap_stays_within_memory(tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    _flat_png(root / "bomb.png", 15800, 15800)          # 250 MP: just under the 250 MP guard
    assert (root / "bomb.png").stat().st_size < 2_000_000
    _flat_png(root / "fine.png", 2000, 1500)
    db = tmp_path / "g.db"
    cmd = [sys.executable, "-m", "galprof", "scan", str(root), "--db", str(db), "--stages", "none",
           "--quiet"]
    out, rss_kb = run_measured(cmd)
    err = out.stderr
    assert out.returncode == 3, err
    assert rss_kb / 1024 < 600, f"peak RSS {rss_kb / 1024:.0f} MB"
    (line,) = err.splitlines()
    assert "bomb.png: image too large to decode within the memory limit" in line
    assert open_store(db).media.by_path(str(root / "fine.png"))["status"] == "ok"


# -------------------------------------------------------------- the fuzz test

SEEDS = ["scenes/pp_dog_orange.jpg", "exif/phone/pp_iPhone7.heic", "scenes/skimage_coffee.png",
         "exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg", "exif/phone/ias_Jolla.jpg",
         "videos/intel_asl_learn.mkv", "scenes/sklearn_china.jpg", "exif/orientation/ias_portrait_6.jpg"]


def _mutants(testmedia: Path, count: int, rng: random.Random):
    """(name, bytes): truncations, byte flips in the header, zeroed and oversized segment
    lengths, duplicated markers, absurd dimensions."""
    sources = [(Path(rel).name, (testmedia / rel).read_bytes()) for rel in SEEDS]
    for i in range(count):
        name, data = sources[i % len(sources)]
        data = bytearray(data)
        kind = i // len(sources) % 6
        if kind == 0:
            data = data[:rng.randrange(1, len(data))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 16)):
                data[rng.randrange(min(len(data), 4096))] ^= 1 << rng.randrange(8)
        elif kind == 2 and data[:2] == b"\xff\xd8":
            pos = data.find(b"\xff\xe1")                   # the EXIF segment's length
            if pos > 0:
                data[pos + 2:pos + 4] = rng.choice([b"\x00\x00", b"\xff\xff", b"\x00\x02"])
        elif kind == 3:
            at = rng.randrange(2, min(len(data), 2048))
            data[at:at] = data[2:2 + rng.randrange(4, 64)]   # a repeated marker / header run
        elif kind == 4:
            for marker in (b"\xff\xc0", b"\xff\xc2", b"IHDR", b"ispe"):
                pos = data.find(marker)
                if pos > 0:
                    start = pos + (5 if marker[:1] == b"\xff" else 4)
                    data[start:start + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x01",
                                                         b"\x7f\xff\x00\x01"])
                    break
        else:
            data[rng.randrange(len(data)):] = bytes(rng.randrange(256) for _ in range(32))
        yield f"m{i:03d}_{name}", bytes(data)


@pytest.mark.slow
def test_fuzzed_files_never_crash_hang_or_touch_good_results(tmp_path, testmedia):
    good = tmp_path / "good"
    good.mkdir()
    for rel in SEEDS:
        shutil.copyfile(testmedia / rel, good / Path(rel).name)
    store = open_store(tmp_path / "g.db")
    stage = MeanColour()
    assert run(store, [good], Settings(stages=[stage])).failed == 0
    before = {p: (r["content_hash"], store.results.payload(r["content_hash"], "colour"))
              for p, r in store.media.under([good]).items()}

    fuzz = tmp_path / "fuzz"
    fuzz.mkdir()
    rng = random.Random(20261203)
    names = []
    for name, data in _mutants(testmedia, 300, rng):
        (fuzz / name).write_bytes(data)
        names.append(name)
    times: list[float] = []
    last = [time.monotonic()]

    def tick(done, total, phase):
        now = time.monotonic()
        times.append(now - last[0])
        last[0] = now

    problems: list[tuple[str, str, str]] = []
    s = run(store, [good, fuzz], Settings(stages=[stage], decode_workers=1), on_progress=tick,
            on_problem=lambda p, level, reason: problems.append((p, level, reason)))
    assert s.new == len(names)
    assert max(times) < 10, f"slowest file took {max(times):.1f} s"
    for path, level, reason in problems:
        assert reason and "\n" not in reason and "Traceback" not in reason, (path, reason)
    failed = [p for p, level, _ in problems if level == "error"]
    assert len(failed) == len(set(failed)) == s.failed        # one reason per failed file
    after = {p: (r["content_hash"], store.results.payload(r["content_hash"], "colour"))
             for p, r in store.media.under([good]).items()}
    assert after == before
    assert store.integrity() == "ok"
