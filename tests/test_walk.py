"""Discovery on real media and on phone-gallery layouts built in tmp_path."""

import multiprocessing
import os
import shutil
import sys
import tempfile
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
    # Every media file of the manifest, with the Live Photo's .mov folded into its still.
    assert len(result.items) == 258
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
