"""Decoding: draft mode, orientation, video sampling and rotation, and bad input."""

import csv

import numpy as np
import pytest
from PIL import Image

from galprof.errors import MediaError
from galprof.gallery import frames
from galprof.gallery.frames import decode, decode_photo, decode_video, thumbnail
from galprof.gallery.walk import walk


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory, testmedia):
    """A 12 MP JPEG made from a real photo (4000x3000), with EXIF Orientation=6."""
    src = Image.open(testmedia / "scenes" / "darknet_dog.jpg").convert("RGB")
    path = tmp_path_factory.mktemp("big") / "IMG_12MP.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    src.resize((4000, 3000), Image.BICUBIC).save(path, quality=90, exif=exif)
    return path


def test_draft_mode_never_fully_decodes(big_jpeg):
    d = decode_photo(big_jpeg, 416)
    img = d.frames[0].image
    # oriented (portrait after Orientation 6) and at analysis size
    assert img.shape == (416, 312, 3)
    assert (d.meta.width, d.meta.height) == (3000, 4000)
    assert d.frames[0].scale == pytest.approx(312 / 3000)
    # the JPEG decoder itself was asked for a 1/8 scale: 500x375, not 4000x3000
    im = Image.open(big_jpeg)
    frames._draft(im, 416)
    im.load()
    assert im.size == (500, 375)


def test_a_large_photo_is_turned_after_it_is_shrunk(big_jpeg, monkeypatch):
    turned = []
    transpose = Image.Image.transpose

    def recorded(img, method):
        turned.append(img.size)
        return transpose(img, method)
    monkeypatch.setattr(Image.Image, "transpose", recorded)
    frame = decode_photo(big_jpeg, 1280).frames[0]
    # the 2000 x 1500 draft is shrunk to 1280 x 960 first, and that is what is turned
    assert turned == [(1280, 960)]
    assert frame.image.shape == (1280, 960, 3)
    monkeypatch.setattr(Image.Image, "transpose", transpose)
    # the same picture as turning the draft first, within a rounding level
    im = Image.open(big_jpeg)
    frames._draft(im, 1280)
    im = im.transpose(Image.Transpose.ROTATE_270)
    expected = np.asarray(im.resize((960, 1280), Image.BILINEAR, reducing_gap=2.0))
    assert np.abs(frame.image.astype(int) - expected.astype(int)).max() <= 1


def test_all_orientations_look_the_same(testmedia):
    for shape in ("landscape", "portrait"):
        ref = decode_photo(testmedia / f"exif/orientation/ias_{shape}_1.jpg", 256).frames[0].image
        for o in range(2, 9):
            img = decode_photo(testmedia / f"exif/orientation/ias_{shape}_{o}.jpg", 256).frames[0].image
            assert img.shape == ref.shape, (shape, o)
            # the variants differ in their text overlays (about 14 grey levels); a wrong
            # flip or turn costs more than 45
            right = np.abs(img.astype(int) - ref.astype(int)).mean()
            mirrored = np.abs(img[:, ::-1].astype(int) - ref.astype(int)).mean()
            assert right < 20 and right < mirrored / 2, (shape, o)


def test_video_sampling_and_rotation(testmedia):
    path = testmedia / "videos/rotated_iPhone6_with-gps.mov"     # stored 568x320, shown portrait
    d = decode_video(path, 1024, frame_step=5, max_frames=40)
    assert d.meta.rotation == -90
    assert (d.meta.width, d.meta.height) == (320, 568)
    assert all(f.image.shape == (568, 320, 3) for f in d.frames)
    assert [f.index for f in d.frames] == list(range(0, 120, 5))
    assert d.frames[1].timestamp > d.frames[0].timestamp


def test_long_video_is_covered_within_max_frames(testmedia):
    d = decode_video(testmedia / "videos/intel_bottle-detection.mp4", 320, frame_step=3, max_frames=8)
    # widened step (149 frames): the samples reach the end of the 40 s clip; its five
    # groups of pictures are up to 250 frames long, so the 8 samples meet at 5 keyframes
    assert len(d.frames) == 5
    assert d.frames[-1].timestamp > 30
    assert len(decode_video(testmedia / "videos/intel_bottle-detection.mp4", 320,
                            frame_step=3, max_frames=40).frames) == 40


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (3000, 3000)).save(path)
    monkeypatch.setattr(frames, "MAX_PIXELS", 4_000_000)
    with pytest.raises(MediaError, match="too large"):
        decode_photo(path, 416)


def test_gif_first_frame_and_webp(tmp_path, testmedia):
    src = Image.open(testmedia / "scenes/pp_limes.jpg").convert("RGB").resize((200, 150))
    gif = tmp_path / "anim.gif"
    src.save(gif, save_all=True, append_images=[Image.new("RGB", (200, 150), "red")])
    webp = tmp_path / "x.webp"
    src.save(webp)
    for p in (gif, webp):
        img = decode_photo(p, 416).frames[0].image
        assert img.shape == (150, 200, 3)
        assert abs(int(img[..., 0].mean()) - 255) > 50       # not the red second frame


def _expected():
    with open(frames_dir() / "expected.csv") as f:
        return list(csv.DictReader(f))


def frames_dir():
    from conftest import TESTMEDIA
    return TESTMEDIA / "corrupt"


@pytest.mark.parametrize("row", _expected(), ids=lambda r: r["file"])
def test_corrupt_files(testmedia, row):
    path = testmedia / row["file"]
    fails = row["pillow_13_0_result"].startswith("FAIL(open)")
    kind = "photo"
    if fails:
        with pytest.raises(MediaError) as e:
            decode(path, kind, 416)
        assert str(path) in str(e.value) and e.value.reason
    else:
        d = decode(path, kind, 416)
        assert d.frames[0].image.ndim == 3
        if "truncated" in row["what_it_is"] and "HEIC" not in row["what_it_is"]:
            assert any("truncated" in w for w in d.warnings)


def test_every_other_testmedia_file_is_read(testmedia):
    bad = []
    for f in walk([testmedia]).items:
        if f.path.parent.name == "corrupt":
            continue
        try:
            d = decode(f.path, f.kind, 320, frame_step=10, max_frames=3)
            assert d.frames and d.frames[0].image.dtype == np.uint8
        except MediaError as e:
            bad.append(str(e))
    assert bad == []


def test_thumbnail_of_heic_and_video(testmedia):
    t = thumbnail(testmedia / "exif/phone/pp_iPhone7.heic", 128)
    assert max(t.size) == 128 and t.mode == "RGB"
    t = thumbnail(testmedia / "videos/rotated_iPadmini_quicktime-hvc1.mov", 128)
    assert t.size[1] > t.size[0]           # rotated to portrait


def test_iphone_mpo_jpeg_is_drafted_too(testmedia):
    # iPhone JPEGs are MPO files (a depth map as a second picture): still DCT-scaled
    path = testmedia / "exif/phone/dc_iPhone13Pro_IMG_8566_o6.JPG"
    img, stored, _ = frames._load(path.read_bytes(), 512, path)
    assert img.format == "MPO" and stored == (4032, 3024)
    assert img.size == (1008, 756)
