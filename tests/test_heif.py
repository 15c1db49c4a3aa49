"""heif.py on the test HEICs: the container read as libheif reads it, the picture within
a level or two of libheif's, every malformed file refused with a reason (never a crash or
a hang), and decode_photo falling back to libheif for what the module does not take."""

from __future__ import annotations

import functools
import io
import random

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageOps

from conftest import TESTMEDIA
from galprof.errors import MediaError
from galprof.gallery import frames, heif
from galprof.gallery.frames import decode_photo

HEICS = sorted(str(p.relative_to(TESTMEDIA)) for p in TESTMEDIA.glob("**/*")
               if p.suffix.lower() in (".heic", ".heif") and p.parent.name != "corrupt")
CORRUPT = sorted(str(p.relative_to(TESTMEDIA)) for p in (TESTMEDIA / "corrupt").glob("*")
                 if p.suffix.lower() in (".heic", ".heif"))
LIMITED_RANGE = "exif/phone/ias_HMD_Nokia_8.3_5G_hdr.heif"
ROTATED = "exif/phone/pp_iPhone15Pro.heic"          # irot: stored landscape, shown portrait
REFUSED = (heif.Unsupported, ValueError)


def _fit(side):
    return lambda size: frames._fitted_size(size, side)


def _libheif(data: bytes) -> Image.Image:
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def test_the_test_media_hold_heics_of_every_kind_the_module_reads():
    assert len(HEICS) == 15 and len(CORRUPT) >= 4


@pytest.mark.parametrize("rel", HEICS)
def test_a_heics_layout_is_the_picture_libheif_reads(testmedia, rel):
    data = (testmedia / rel).read_bytes()
    shape = heif.layout(data)
    shown = Image.open(io.BytesIO(data)).size
    oriented = shape.size if shape.rotation % 2 == 0 else shape.size[::-1]
    assert oriented == shown
    assert len(shape.tiles) == shape.columns * shape.rows
    assert shape.columns * shape.tile_size[0] >= shape.size[0] > (shape.columns - 1) * shape.tile_size[0]
    assert shape.rows * shape.tile_size[1] >= shape.size[1] > (shape.rows - 1) * shape.tile_size[1]
    assert shape.depth in (8, 10) and all(tile for tile in shape.tiles)


def test_a_rotated_heic_is_stored_on_its_side():
    shape = heif.layout((TESTMEDIA / ROTATED).read_bytes())
    assert shape.rotation % 2 == 1 and shape.size[0] > shape.size[1]


@pytest.mark.parametrize("rel", HEICS)
def test_the_picture_is_within_a_level_or_two_of_libheifs(testmedia, rel):
    """Against libheif's decode and Pillow's resize: the colour conversions round apart
    (at most 2 levels on flat areas), the filters differ on sharp edges (a few pixels)."""
    data = (testmedia / rel).read_bytes()
    full = _libheif(data)
    for side, mean, p99 in ((1280, 1.0, 8), (320, 1.5, 16)):
        got = heif.fitted_picture(data, _fit(side))
        want = full.resize(got.size, Image.BILINEAR, reducing_gap=2.0)
        assert got.size == frames._fitted_size(full.size, side)
        diff = np.asarray(got).astype(int) - np.asarray(want)
        assert np.abs(diff).mean() < mean, (rel, side)
        assert np.percentile(np.abs(diff), 99) <= p99, (rel, side)
        assert np.all(np.abs(diff.mean(axis=(0, 1))) < 1), (rel, side)   # no colour cast


@functools.lru_cache(maxsize=None)
def _one_picture_heic(bits: int) -> bytes:
    """A real photo at 2016 x 1512 (not a multiple of 64 wide) as libheif's encoder writes
    it (GIMP, ImageMagick, converters): one picture of the whole size, not a grid."""
    photo = Image.open(TESTMEDIA / "exif/phone/dc_iPhoneXR_IMG_3580.JPG").convert("RGB")
    photo = photo.resize((2016, 1512), Image.BILINEAR)
    if bits == 8:
        image = pillow_heif.from_pillow(photo)
    else:
        samples = np.asarray(photo).astype(np.uint16) << 8      # 10 bits (v * 4), MSB-aligned
        image = pillow_heif.from_bytes("RGB;16", photo.size, samples.astype("<u2").tobytes())
    out = io.BytesIO()
    image.save(out, quality=90)
    return out.getvalue()


@pytest.mark.parametrize("bits", [8, 10])
def test_a_heic_of_one_picture_not_a_grid_is_read_by_the_module(bits):
    """Phones write grids of 512 px tiles; a picture of one tile is decoded with slice
    threads."""
    data = _one_picture_heic(bits)
    shape = heif.layout(data)
    assert (len(shape.tiles), shape.tile_size, shape.depth) == (1, (2016, 1512), bits)
    got = heif.fitted_picture(data, _fit(1280))
    if bits == 8:
        full = _libheif(data)
    else:   # libheif's own 8 bits truncate (a level dark): its 10 bits, rounded
        wide = np.asarray(pillow_heif.open_heif(data, convert_hdr_to_8bit=False))
        full = Image.fromarray(np.round(wide / 256).astype(np.uint8))
    want = full.resize(got.size, Image.BILINEAR, reducing_gap=2.0)
    diff = np.asarray(got).astype(int) - np.asarray(want)
    assert got.size == (1280, 960)
    assert np.abs(diff).mean() < 1.0 and np.percentile(np.abs(diff), 99) <= 8
    assert np.all(np.abs(diff.mean(axis=(0, 1))) < 1)           # no colour cast
    assert np.array_equal(decode_photo(data, 1280).frames[0].image, np.asarray(got))


def test_a_stream_larger_than_its_declared_picture_is_refused():
    """The decoder's frames are bounded by the picture the container declares (ispe):
    a stream of 2016 x 1512 in a picture said to be 1024 x 768 does not decode."""
    data = _one_picture_heic(8)
    assert data.count(b"ispe") == 1
    at = data.index(b"ispe") + 8                     # after the version and flags
    small = data[:at] + (1024).to_bytes(4, "big") + (768).to_bytes(4, "big") + data[at + 8:]
    assert heif.layout(small).tile_size == (1024, 768)
    with pytest.raises(ValueError, match="does not decode"):
        heif.fitted_picture(small, _fit(320))


def test_limited_range_samples_are_stretched_to_full_range():
    luma, chroma = heif._range_expansion(8)
    assert (luma[16], luma[235], luma[0], luma[255]) == (0, 255, 0, 255)
    assert (chroma[16], chroma[128], chroma[240]) == (0, 128, 255)
    luma, chroma = heif._range_expansion(10)
    assert (luma[64], luma[940], chroma[512], chroma[960]) == (0, 1023, 512, 1023)
    # the limited-range Nokia photo: no cast against libheif (swscale alone is 2 levels dark)
    data = (TESTMEDIA / LIMITED_RANGE).read_bytes()
    assert heif.layout(data).colour is None           # the range comes from the stream
    got = np.asarray(heif.fitted_picture(data, _fit(1280))).astype(int)
    want = np.asarray(_libheif(data).resize(got.shape[1::-1], Image.BILINEAR, reducing_gap=2.0))
    assert np.all(np.abs((got - want).mean(axis=(0, 1))) < 0.6)


@pytest.mark.parametrize("rel", HEICS)
def test_decode_photo_takes_a_full_heic_from_the_module(testmedia, rel):
    data = (testmedia / rel).read_bytes()
    frame = decode_photo(data, 1280).frames[0]
    assert np.array_equal(frame.image, np.asarray(heif.fitted_picture(data, _fit(1280))))


def test_a_heic_the_module_does_not_take_is_decoded_by_libheif(testmedia):
    """A mirrored picture (imir, here made from a rotated one by renaming its box, whose
    one-byte payload both share): Unsupported, and decode_photo's frame is libheif's."""
    data = (testmedia / ROTATED).read_bytes()
    assert data.count(b"irot") == 1
    mirrored = data.replace(b"irot", b"imir")
    with pytest.raises(heif.Unsupported, match="mirrored"):
        heif.fitted_picture(mirrored, _fit(1280))
    frame = decode_photo(mirrored, 1280).frames[0]
    assert np.array_equal(frame.image, np.asarray(frames._libheif_fitted(mirrored, 1280)))
    assert frame.image.shape[:2] == (960, 1280)        # mirrored, not turned


@pytest.mark.parametrize("rel", CORRUPT)
def test_a_corrupt_heic_is_refused_with_a_reason(testmedia, rel):
    data = (testmedia / rel).read_bytes()
    with pytest.raises(REFUSED) as refused:
        heif.fitted_picture(data, _fit(1280))
    assert str(refused.value)


def test_a_truncated_heic_is_refused_or_decoded_never_read_past_its_end(testmedia):
    data = (testmedia / "exif/phone/pp_iPhone7.heic").read_bytes()
    for end in list(range(0, 4096, 97)) + list(range(4096, len(data), len(data) // 23)):
        try:
            heif.fitted_picture(data[:end], _fit(320))
        except REFUSED:
            continue
        raise AssertionError(f"{end} of {len(data)} bytes decoded")


def test_a_heic_with_damaged_header_bytes_is_refused_or_decoded_and_the_scan_goes_on(testmedia):
    """Random bytes of the header changed (a bounded, seeded loop): the module refuses the
    file with a reason or decodes a picture of the asked size, and decode_photo gives a
    frame or a MediaError naming the file."""
    data = (testmedia / "exif/phone/mei_Samsung_SM-G975F_Issue_487.heic").read_bytes()
    meta, header_end = next((s, e) for kind, s, e in heif._boxes(data, 0, len(data))
                            if kind == "meta")
    rng = random.Random(15)
    outcomes = {"refused": 0, "decoded": 0}
    for _ in range(60):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(meta, header_end)] = rng.randrange(256)
        damaged = bytes(damaged)
        try:
            picture = heif.fitted_picture(damaged, _fit(320))
            assert max(picture.size) == 320
            outcomes["decoded"] += 1
        except REFUSED as e:
            assert str(e)
            outcomes["refused"] += 1
        try:
            frame = decode_photo(damaged, 320, name="damaged.heic").frames[0]
            assert max(frame.image.shape[:2]) <= 320
        except MediaError as e:
            assert "damaged.heic" in str(e)
    assert outcomes["refused"] and outcomes["decoded"], outcomes
