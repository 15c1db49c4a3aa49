"""Discovery on real media and on phone-gallery layouts built in tmp_path."""

import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from galprof.gallery.walk import sniff, walk


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_walk_finds_every_testmedia_file(testmedia):
    result = walk([testmedia])
    paths = {p.relative_to(testmedia).as_posix() for f in result.items for p in [f.path]}
    # Every media file of the manifest, with the Live Photo's .mov folded into its still:
    # every file but the CSV/Markdown labels, less that one .mov.
    files = [p for p in testmedia.rglob("*") if p.is_file() and p.suffix not in (".csv", ".md")]
    assert len(result.items) == len(files) - 1 == 259
    assert "videos/livephoto/IMG_3589.mov" not in paths
    assert not any(p.endswith((".csv", ".md")) for p in paths)
    live = next(f for f in result.items if f.path.name == "IMG_3589.HEIC")
    assert live.motion_path.name == "IMG_3589.mov"
    assert result.problems == []


@pytest.mark.parametrize("name,kind,fmt", [
    ("exif/phone/mei_Apple_iPhone_8.heic", "photo", "HEIF"),
    ("corrupt/pp_wrong_ext_jpeg_named.heic", "photo", "JPEG"),
    ("scenes/skimage_coffee.png", "photo", "PNG"),
    ("scenes/coral_squat.bmp", "photo", "BMP"),
    ("videos/intel_asl_book.mkv", "video", "MKV"),
    ("videos/mei_Canon_MVI_4823_roadtrip.AVI", "video", "AVI"),
    ("videos/rotated_iPhone6_with-gps.mov", "video", "MOV"),
    ("videos/mei_swans_Issue_515.mp4", "video", "MP4"),
])
def test_kind_comes_from_content(testmedia, name, kind, fmt):
    with open(testmedia / name, "rb") as f:
        assert sniff(f.read(64)) == (kind, fmt)


def test_phone_gallery_rules(testmedia, tmp_path):
    photo = testmedia / "scenes" / "pp_dog_orange.jpg"
    dcim = tmp_path / "DCIM"
    keep = [_copy(photo, dcim / "Camera" / "IMG_1.jpg"),
            _copy(photo, dcim / "Camera" / "no_extension_jpeg")]
    _copy(photo, dcim / ".thumbnails" / "IMG_1.jpg")
    _copy(photo, dcim / "Camera" / ".trashed-1700000000-IMG_2.jpg")
    _copy(photo, dcim / "Camera" / ".pending-1700000000-IMG_3.jpg")
    _copy(photo, dcim / "WhatsApp" / "Private" / "IMG_4.jpg")
    (dcim / "WhatsApp" / "Private" / ".nomedia").touch()
    (dcim / "Camera" / "notes.txt").write_text("not media")
    # a symlink loop must not hang the walk
    os.symlink(dcim, dcim / "Camera" / "loop")
    result = walk([dcim])
    assert sorted(f.path for f in result.items) == sorted(keep)


def test_live_photo_pair_is_one_item(testmedia, tmp_path):
    _copy(testmedia / "videos/livephoto/IMG_3589.HEIC", tmp_path / "IMG_3589.HEIC")
    _copy(testmedia / "videos/livephoto/IMG_3589.mov", tmp_path / "IMG_3589.mov")
    _copy(testmedia / "videos/intel_asl_learn.mkv", tmp_path / "IMG_3590.mov")
    items = walk([tmp_path]).items
    assert [(f.path.name, f.kind, f.motion_path and f.motion_path.name) for f in items] == [
        ("IMG_3589.HEIC", "photo", "IMG_3589.mov"), ("IMG_3590.mov", "video", None)]


def _walk_as_nobody(root: Path, conn) -> None:
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    r = walk([root])
    conn.send(([f.path.name for f in r.items], r.problems))


@pytest.mark.skipif(sys.platform != "linux", reason="needs fork and setuid")
def test_unreadable_folder_is_reported_not_fatal(testmedia):
    # Root reads every folder, so the walk runs in a forked child that drops to 'nobody'.
    base = Path(tempfile.mkdtemp(prefix="galprof-walk-"))
    try:
        os.chmod(base, 0o755)
        _copy(testmedia / "scenes" / "pp_dog_orange.jpg", base / "ok" / "a.jpg")
        _copy(testmedia / "scenes" / "pp_limes.jpg", base / "locked" / "b.jpg")
        os.chmod(base / "ok", 0o755)
        os.chmod(base / "ok" / "a.jpg", 0o644)
        os.chmod(base / "locked", 0o000)
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_walk_as_nobody, args=(base, child))
        proc.start()
        names, problems = parent.recv()
        proc.join()
        assert names == ["a.jpg"]
        assert [(Path(p).name, reason) for p, reason in problems] == [("locked", "Permission denied")]
    finally:
        os.chmod(base / "locked", 0o755)
        shutil.rmtree(base)


# --- files that are not regular files ------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_and_device_are_reported_once_and_never_opened(testmedia, tmp_path):
    ok = _copy(testmedia / "scenes" / "pp_dog_orange.jpg", tmp_path / "DCIM" / "a.jpg")
    os.mkfifo(tmp_path / "DCIM" / "photo.jpg")
    os.symlink("/dev/zero", tmp_path / "DCIM" / "zero.jpg")
    os.mkfifo(tmp_path / "DCIM" / "pipe")                  # no media extension: not ours
    result = _walk_with_watchdog(tmp_path / "DCIM", [tmp_path / "DCIM" / "photo.jpg",
                                                    tmp_path / "DCIM" / "pipe"])
    assert [f.path for f in result.items] == [ok]
    assert sorted((Path(p).name, r) for p, r in result.problems) == [
        ("photo.jpg", "not a regular file (a FIFO)"),
        ("zero.jpg", "not a regular file (a character device)")]


def _walk_with_watchdog(root, fifos):
    """walk(root) in a thread; a FIFO it opened for reading is unblocked by opening it for
    writing, so that the test fails (instead of hanging) if the walk opens one."""
    done, out = threading.Event(), {}
    t = threading.Thread(target=lambda: (out.update(result=walk([root])), done.set()), daemon=True)
    t.start()
    released = []
    deadline = time.monotonic() + 10
    while not done.wait(0.5) and time.monotonic() < deadline:
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))   # only with a reader
                released.append(fifo)
            except OSError:
                pass
    t.join(5)
    assert released == [] and done.is_set(), "the walk opened a FIFO"
    return out["result"]


def test_fifo_named_as_a_root_is_reported(tmp_path):
    os.mkfifo(tmp_path / "IMG_0001.HEIC")
    result = _walk_with_watchdog(tmp_path / "IMG_0001.HEIC", [tmp_path / "IMG_0001.HEIC"])
    assert result.items == []
    assert result.problems == [(str(tmp_path / "IMG_0001.HEIC"), "not a regular file (a FIFO)")]


def test_broken_symlinks_say_so(testmedia, tmp_path):
    os.symlink(tmp_path / "gone.jpg", tmp_path / "IMG_1.jpg")
    os.symlink(tmp_path / "IMG_2.jpg", tmp_path / "IMG_2.jpg")
    os.symlink(tmp_path / "gone.txt", tmp_path / "notes.txt")     # not media: not reported
    result = walk([tmp_path])
    assert result.items == []
    assert sorted((Path(p).name, r) for p, r in result.problems) == [
        ("IMG_1.jpg", "broken symbolic link (its target does not exist)"),
        ("IMG_2.jpg", "broken symbolic link (it points to itself in a loop)")]


# --- camera thumbnails, names from old cameras ---------------------------------------------

def test_thm_thumbnail_is_attached_to_its_video_never_a_photo(testmedia, tmp_path):
    thumb = testmedia / "scenes" / "pp_dog_orange.jpg"              # a THM is a small JPEG
    mov = _copy(testmedia / "videos/rotated_iPhone6_with-gps.mov", tmp_path / "MVI_0001.MOV")
    thm = _copy(thumb, tmp_path / "MVI_0001.THM")
    avi = _copy(testmedia / "videos/mei_Canon_MVI_4823_roadtrip.AVI", tmp_path / "MVI_0002.AVI")
    _copy(thumb, tmp_path / "MVI_0003.THM")                         # its video was deleted
    items = walk([tmp_path]).items
    assert [(f.path, f.kind, f.motion_path, f.thumbnail_path) for f in items] == [
        (mov, "video", None, thm), (avi, "video", None, None)]


def test_names_that_are_not_utf8_survive_the_walk(testmedia, tmp_path):
    base = os.fsencode(tmp_path)
    names = [b"IMG_\xe9t\xe9.jpg", b"\xff\xfe_0001.HEIC", b"\xff\xfe_0001.mov", b"CAF\xc9.THM",
             b"CAF\xc9.AVI"]
    sources = ["scenes/pp_dog_orange.jpg", "videos/livephoto/IMG_3589.HEIC",
               "videos/livephoto/IMG_3589.mov", "scenes/pp_limes.jpg",
               "videos/mei_Canon_MVI_4823_roadtrip.AVI"]
    os.mkdir(base + b"/DCIM_\xa0")
    for name, src in zip(names, sources):
        shutil.copyfile(os.fsencode(testmedia / src), base + b"/DCIM_\xa0/" + name)
    result = walk([tmp_path])
    assert result.problems == []
    got = [(os.fsencode(f.path), f.kind, f.format, f.motion_path and os.fsencode(f.motion_path),
            f.thumbnail_path and os.fsencode(f.thumbnail_path)) for f in result.items]
    d = base + b"/DCIM_\xa0/"
    assert sorted(got) == sorted([
        (d + names[0], "photo", "JPEG", None, None),
        (d + names[1], "photo", "HEIF", d + names[2], None),
        (d + names[4], "video", "AVI", None, d + names[3])])
    for f in result.items:                       # the paths open as they are
        with open(f.path, "rb") as fh:
            assert sniff(fh.read(64))[1] == f.format
