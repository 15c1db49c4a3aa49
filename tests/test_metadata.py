"""EXIF and container metadata on real files from many phones and cameras."""

import csv
import io
import math

import av
import numpy as np
import pillow_heif
import pytest
from conftest import TESTMEDIA
from PIL import Image

from galprof.gallery.frames import decode_photo, read_metadata
from galprof.gallery.metadata import (Metadata, exif_from_bytes, original_orientation,
                                      parse_iso6709, valid_gps, video_metadata)


def photo_meta(path) -> Metadata:
    return read_metadata(path, "photo")


def test_iphone_heic_exif(testmedia):
    m = photo_meta(testmedia / "exif/selfie/dc_iPhone13Pro_IMG_8569_front_camera.HEIC")
    assert (m.make, m.model) == ("Apple", "iPhone 13 Pro")
    assert m.lens_model == "iPhone 13 Pro front camera 2.71mm f/2.2"
    assert m.front_camera is True
    assert m.focal_length == pytest.approx(2.71)
    assert m.taken_at == "2021-09-27T07:14:30-06:00"       # DateTimeOriginal + OffsetTimeOriginal


def test_back_lens_is_not_front(testmedia):
    m = photo_meta(testmedia / "exif/phone/dc_iPhone13Pro_IMG_8563_ultrawide.HEIC")
    assert m.focal_length == pytest.approx(1.57)
    assert "back" in m.lens_model and m.front_camera is False


@pytest.mark.parametrize("name,lat,lon", [
    ("exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg", 48.86, 2.29),
    ("exif/phone/ias_HMD_Nokia_8.3_5G.jpg", 60.16, 24.95),
    ("exif/phone/mei_Apple_iPhone_XR_Issue_263.heic", 38.70, -9.21),
    ("exif/metadata_only/exiftool_Google.jpg", 40.40, -3.71),
])
def test_gps(testmedia, name, lat, lon):
    m = photo_meta(testmedia / name)
    assert m.gps_lat == pytest.approx(lat, abs=0.05)
    assert m.gps_lon == pytest.approx(lon, abs=0.05)


@pytest.mark.parametrize("name", [
    "exif/phone/pp_Samsung_GT-I9000_gps_zero.jpg",          # 0,0
    "exif/phone/mei_Samsung_GT-I9000_Galaxy_S.jpg",         # 0,0
    "exif/camera/pp_Olympus_TG-830_snow_gps_nan.jpg",       # NaN
    "exif/phone/mei_Samsung_SM-G975F_Issue_487.heic",       # NaN
    "exif/phone/imm_motorola_g9plus_empty_gps.jpg",         # empty tags
    "exif/metadata_only/pp_Xiaomi_MiMix2_buggy_gps.jpg",    # latitude 213.6
])
def test_invalid_gps_is_dropped(testmedia, name):
    m = photo_meta(testmedia / name)
    assert m.gps_lat is None and m.gps_lon is None


def test_altitude_and_35mm(testmedia):
    m = photo_meta(testmedia / "exif/metadata_only/pp_TCL_S950_altitude.jpg")
    assert m.gps_alt is not None and m.gps_alt > 0
    m = photo_meta(testmedia / "exif/metadata_only/exiftool_Google.jpg")
    assert m.focal_length_35mm and m.focal_length_35mm > m.focal_length


def test_corrupt_exif_is_a_warning_not_a_failure(testmedia):
    d = decode_photo(testmedia / "corrupt/ias_invalid_image01088.jpg", 256)
    assert d.frames[0].image.shape[2] == 3
    m = Metadata()
    exif_from_bytes(b"Exif\x00\x00MM\x00*garbage", m)
    assert m.warnings and m.make is None


def test_valid_gps():
    assert valid_gps(48.8, 2.3)
    assert not valid_gps(0.0, 0.0)
    assert not valid_gps(math.nan, 2.0)
    assert not valid_gps(91.0, 2.0)
    assert not valid_gps(10.0, 181.0)


def test_iso6709():
    assert parse_iso6709("+52.4597+013.3220+051.178/") == (52.4597, 13.322, 51.178)
    assert parse_iso6709("-33.9249+018.4241/") == (-33.9249, 18.4241, None)
    assert parse_iso6709("+00.0000+000.0000/") is None
    assert parse_iso6709("garbage") is None


@pytest.mark.parametrize("name,taken,lat,lon", [
    ("videos/rotated_iPhone6_with-gps.mov", "2019-07-24T11:25:40+03:00", 32.0929, 34.862),
    ("videos/rotated_iPadmini_quicktime-hvc1.mov", "2023-09-22T18:34:05+02:00", 52.4597, 13.322),
    ("videos/mei_swans_Issue_515.mp4", "2020-11-20T14:04:36+00:00", 52.3693, 6.6761),
    ("videos/intel_asl_book.mkv", None, None, None),
])
def test_video_container_metadata(testmedia, name, taken, lat, lon):
    with av.open(str(testmedia / name)) as c:
        m = video_metadata(c)
    assert m.taken_at == taken
    assert m.gps_lat == (pytest.approx(lat) if lat else None)
    assert m.gps_lon == (pytest.approx(lon) if lon else None)
    assert m.duration and m.duration > 1 and m.fps and m.fps > 5


# --- HEIC orientation: the file's own value, not pillow-heif's rewritten one ---------------

def _heics(testmedia):
    return sorted(p for p in testmedia.rglob("*") if p.suffix.lower() in (".heic", ".heif")
                  and "corrupt" not in p.parts)


def _stored_orientation(path) -> int | None:
    """The Orientation tag as stored in the file: pillow-heif's own reader, which (unlike
    its Pillow plugin) leaves the EXIF bytes untouched, parsed by Pillow."""
    heif = pillow_heif.open_heif(path)
    exif = Image.Exif()
    exif.load(heif.info.get("exif") or b"")
    return exif.get(0x0112)


def test_heic_original_orientation_is_the_files_own(testmedia):
    heics = _heics(testmedia)
    assert len(heics) >= 15
    rotated = 0
    for path in heics:
        with Image.open(path) as img:
            m = Metadata()
            exif_from_bytes(img.info.get("exif"), m)
            reported = original_orientation(img) or m.orientation
        assert reported == _stored_orientation(path), path.name
        # what `galprof show` reports (the store keeps the decode's metadata)
        assert read_metadata(path, "photo").orientation == reported, path.name
        decoded = decode_photo(path, 256)
        assert decoded.meta.orientation == reported, path.name
        rotated += reported not in (None, 1)
    assert rotated >= 5          # iPhone portraits store 6: the case that showed 1 before


def test_original_orientation_is_none_when_the_decoder_kept_the_tag(testmedia):
    with Image.open(testmedia / "exif/orientation/ias_portrait_6.jpg") as img:
        assert original_orientation(img) is None
        m = Metadata()
        exif_from_bytes(img.info.get("exif"), m)
        assert m.orientation == 6


# --- agreement with the reference reader (media_index.csv, extracted with Pillow) -----------

def _index_rows():
    with open(TESTMEDIA / "media_index.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "image"
                and any(r[k] for k in ("make", "model", "datetime_original", "gps_lat"))]


@pytest.mark.parametrize("row", _index_rows(), ids=lambda r: r["file"])
def test_exif_agrees_with_the_reference_reader(testmedia, row):
    m = photo_meta(testmedia / row["file"])
    assert (m.make or "", m.model or "", m.lens_model or "") == (
        row["make"], row["model"], row["lens_model"])
    if row["focal_length"] and float(row["focal_length"]) > 0:      # 0 mm is "not recorded"
        assert m.focal_length == pytest.approx(float(row["focal_length"]))
    if row["datetime_original"]:
        d = row["datetime_original"]
        assert (m.taken_at or "")[:19] == f"{d[:4]}-{d[5:7]}-{d[8:10]}T{d[11:19]}"
    # 0 is not an orientation; the index read HEICs after pillow-heif rewrote their tag
    # (test_heic_original_orientation_is_the_files_own checks those against the file)
    if row["exif_orientation"] not in ("", "0") and row["format"] != "HEIF":
        assert m.orientation == int(row["exif_orientation"])
    if row["gps_lat"] and valid_gps(float(row["gps_lat"]), float(row["gps_lon"])):
        assert (m.gps_lat, m.gps_lon) == (pytest.approx(float(row["gps_lat"]), abs=1e-5),
                                          pytest.approx(float(row["gps_lon"]), abs=1e-5))


# --- a video stream without a decoder -------------------------------------------------------

def _mkv_with_unknown_codec(path):
    """A real MKV (written by PyAV) whose codec id is renamed to one no FFmpeg knows."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            pixels = np.full((48, 64, 3), i * 8, np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = buf.getvalue()
    assert data.count(b"V_MPEG4/ISO/ASP") == 1
    path.write_bytes(data.replace(b"V_MPEG4/ISO/ASP", b"V_GALPROF/NONE!"))
    return path


def test_video_without_a_decoder_gives_partial_metadata(tmp_path):
    path = _mkv_with_unknown_codec(tmp_path / "MVI_0001.mkv")
    with av.open(str(path), metadata_errors="ignore") as c:
        assert c.streams.video[0].codec_context is None
        m = video_metadata(c)
    assert (m.duration, m.fps, m.width, m.height) == (3.0, 10.0, None, None)
    assert len(m.warnings) == 1 and "\n" not in m.warnings[0]
    assert "codec is not supported" in m.warnings[0]
