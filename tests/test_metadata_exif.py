"""EXIF blocks built byte by byte: what real cameras and broken writers put in files.

The blocks are written into real photos from ../shared/testmedia and read back through
frames.read_metadata, as a scan reads them. piexif, which always ends text with a NUL and
cannot write a malformed entry, is used only where the block is well formed.
"""

import os
import random
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import piexif
import pillow_heif
import pytest
from PIL import Image

from galprof.gallery.frames import read_metadata
from galprof.gallery.metadata import Metadata, exif_from_bytes

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 1, 2, 3, 4, 5, 7
MAKE, MODEL, ORIENTATION, SOFTWARE, XRES = 0x010F, 0x0110, 0x0112, 0x0131, 0x011A
DATETIME_ORIGINAL, OFFSET_ORIGINAL, FOCAL, MAKERNOTE = 0x9003, 0x9011, 0x920A, 0x927C
LENS, FOCAL_35 = 0xA434, 0xA405
GPS_PHOTO = "exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg"     # a real photo with camera + GPS

# pytest resets warning filters around each test, undoing metadata's own filter of Pillow's
# EXIF warnings; test_pillow_warnings_never_reach_stderr checks that filter in a fresh process.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")


# --- a TIFF/EXIF writer that can also lie -------------------------------------------------

def text(tag, value, nul=True):
    raw = value.encode() + (b"\x00" if nul else b"")
    return (tag, ASCII, len(raw), raw, None)


def short(tag, value):
    return (tag, SHORT, 1, struct.pack(">H", value), None)


def rational(tag, *pairs):
    return (tag, RATIONAL, len(pairs), b"".join(struct.pack(">LL", *p) for p in pairs), None)


def entry(tag, typ, count, payload=b"", offset=None):
    """An entry as given: its count need not match its payload, its offset may point anywhere."""
    return (tag, typ, count, payload, offset)


def exif_block(ifd0, exif=None, gps=None) -> bytes:
    """'Exif\\0\\0' + a big-endian TIFF: IFD0, then the Exif and GPS directories, then the data
    of values longer than 4 bytes (an entry with an explicit offset gets no data written)."""
    dirs = [list(ifd0)]
    if exif is not None:
        dirs[0].append((0x8769, LONG, 1, len(dirs), None))
        dirs.append(list(exif))
    if gps is not None:
        dirs[0].append((0x8825, LONG, 1, len(dirs), None))
        dirs.append(list(gps))
    starts, pos = [], 8
    for d in dirs:
        starts.append(pos)
        pos += 2 + 12 * len(d) + 4
    out, data = bytearray(b"MM\x00*" + struct.pack(">L", 8)), bytearray()
    for d in dirs:
        out += struct.pack(">H", len(d))
        for tag, typ, count, payload, offset in d:
            if isinstance(payload, int):                      # pointer to directory n
                payload = struct.pack(">L", starts[payload])
            if offset is None and len(payload) <= 4:
                field = payload.ljust(4, b"\x00")
            else:
                field = struct.pack(">L", pos + len(data) if offset is None else offset)
                if offset is None:
                    data += payload
            out += struct.pack(">HHL", tag, typ, count) + field
        out += struct.pack(">L", 0)
    return b"Exif\x00\x00" + bytes(out + data)


def photo_with_exif(testmedia, tmp_path, exif: bytes, fmt="JPEG") -> Path:
    """A real photo from the test media, saved with the given EXIF block."""
    path = tmp_path / f"photo.{fmt.lower()}"
    with Image.open(testmedia / "scenes" / "pp_dog_orange.jpg") as img:
        img.convert("RGB").resize((64, 48)).save(path, fmt, exif=exif)
    return path


# --- a guard that notices any file being opened --------------------------------------------

_watch = threading.local()


def _audit(event, args):
    opened = getattr(_watch, "opened", None)
    if opened is not None and event == "open":
        opened.append(args[0])


sys.addaudithook(_audit)      # hooks cannot be removed; this one only records while watching


@contextmanager
def no_file_opened():
    """Collects every open (builtins.open, io.open, os.open) made by this thread meanwhile."""
    exif_from_bytes(exif_block([text(MAKE, "warm-up")]), Metadata())   # lazy imports open files
    _watch.opened = []
    try:
        yield _watch.opened
    finally:
        del _watch.opened


@contextmanager
def fifo_watchdog(fifo: Path, after: float = 3.0):
    """Unblocks whoever opened `fifo` for reading (an open of a FIFO blocks until a writer
    comes), so that a reader that should never have opened it fails instead of hanging."""
    released, done = [], threading.Event()

    def watch():
        start = time.monotonic()
        while not done.wait(0.05):
            if time.monotonic() - start < after:
                continue
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)   # succeeds only with a reader
            except OSError:
                continue
            released.append(fifo)
            os.close(fd)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield released
    finally:
        done.set()
        t.join()


# --- EXIF is parsed, never opened -----------------------------------------------------------

def test_a_path_in_the_exif_chunk_never_leaks_another_photos_camera_and_gps(testmedia, tmp_path):
    other = os.fsencode(testmedia / GPS_PHOTO)
    webp = photo_with_exif(testmedia, tmp_path, other, "WEBP")
    with Image.open(webp) as img:
        assert img.info["exif"] == other          # the chunk really holds the other photo's path
    m = read_metadata(webp, "photo")
    assert (m.make, m.model, m.gps_lat, m.gps_lon, m.taken_at) == (None, None, None, None, None)
    assert m.warnings == ["unreadable EXIF (no TIFF header)"]
    with no_file_opened() as opened:
        exif_from_bytes(other, Metadata())
    assert opened == []


def test_a_fifo_path_in_the_exif_chunk_does_not_hang_the_scan(testmedia, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    webp = photo_with_exif(testmedia, tmp_path, os.fsencode(fifo), "WEBP")
    with fifo_watchdog(fifo) as released, no_file_opened() as opened:
        start = time.monotonic()
        m = Metadata()
        with Image.open(webp) as img:
            exif_from_bytes(img.info["exif"], m)
        elapsed = time.monotonic() - start
    assert released == [] and str(fifo) not in map(str, opened)
    assert elapsed < 2.0
    assert m.make is None and m.warnings


# --- text tags, malformed entries, GPS and time ---------------------------------------------

def test_text_without_a_trailing_nul_is_read_whole(testmedia, tmp_path):
    block = exif_block([text(MAKE, "HT", nul=False), text(MODEL, "HTC One_M", nul=False)],
                       [text(DATETIME_ORIGINAL, "2014:03:25 18:01:02", nul=False),
                        text(LENS, "Koda", nul=False)])
    m = read_metadata(photo_with_exif(testmedia, tmp_path, block), "photo")
    assert (m.make, m.model, m.lens_model) == ("HT", "HTC One_M", "Koda")
    assert m.taken_at == "2014-03-25T18:01:02"
    assert m.warnings == []


def test_text_with_nul_padding_and_utf8_is_clean(testmedia, tmp_path):
    block = exif_block([entry(MAKE, ASCII, 8, b"Canon\x00\x00\x00"),
                        entry(MODEL, ASCII, 12, "Ærø Cam".encode() + b"\x00\x00\x00")])
    m = read_metadata(photo_with_exif(testmedia, tmp_path, block), "photo")
    assert (m.make, m.model) == ("Canon", "Ærø Cam")


@pytest.mark.parametrize("bad,name", [
    (entry(SOFTWARE, 0, 1, b"abcd"), "Software"),                         # type 0: no such type
    (entry(XRES, RATIONAL, 1, offset=99_999), "XResolution"),             # data past the block
    (entry(0x0128, SHORT, 1000, offset=60), "ResolutionUnit"),            # count far too big
])
def test_one_malformed_main_entry_costs_only_itself(testmedia, tmp_path, bad, name):
    block = exif_block([text(MAKE, "Canon"), bad, text(MODEL, "Canon PowerShot S30"),
                        short(ORIENTATION, 6)],
                       [text(DATETIME_ORIGINAL, "2003:01:02 03:04:05"), rational(FOCAL, (71, 10)),
                        text(LENS, "7.1-21.3 mm"), short(FOCAL_35, 35)])
    m = read_metadata(photo_with_exif(testmedia, tmp_path, block), "photo")
    assert (m.make, m.model, m.orientation) == ("Canon", "Canon PowerShot S30", 6)
    assert (m.taken_at, m.focal_length, m.lens_model, m.focal_length_35mm) == (
        "2003-01-02T03:04:05", 7.1, "7.1-21.3 mm", 35.0)
    assert m.warnings == [f"EXIF: 1 malformed entry skipped ({name})"]


def test_a_makernote_past_the_block_keeps_the_entries_after_it(testmedia, tmp_path):
    # Pillow alone stops counting data after an oversized entry and loses the lens model.
    block = exif_block([text(MAKE, "NIKON"), text(MODEL, "NIKON D1X")],
                       [text(DATETIME_ORIGINAL, "2002:11:02 08:10:00"),
                        entry(MAKERNOTE, UNDEFINED, 500_000, offset=60),
                        entry(FOCAL, RATIONAL, 1, offset=60_000),
                        text(LENS, "24-85mm f/2.8-4"), short(FOCAL_35, 36)],
                       [text(1, "N"), rational(2, (48, 1), (51, 1), (30, 1)),
                        text(3, "E"), rational(4, (2, 1), (17, 1), (40, 1))])
    m = read_metadata(photo_with_exif(testmedia, tmp_path, block), "photo")
    assert (m.make, m.model, m.taken_at) == ("NIKON", "NIKON D1X", "2002-11-02T08:10:00")
    assert (m.lens_model, m.focal_length_35mm, m.focal_length) == ("24-85mm f/2.8-4", 36.0, None)
    assert m.gps_lat == pytest.approx(48.858333) and m.gps_lon == pytest.approx(2.294444)
    assert m.warnings == ["EXIF: 2 malformed entries skipped (FocalLength, MakerNote)"]


def test_a_directory_cut_short_keeps_its_first_entries():
    block = exif_block([text(MAKE, "HTC"), short(ORIENTATION, 8), text(MODEL, "HTC One_M8")])
    cut = block[:6 + 8 + 2 + 12 * 2 + 5]          # the third entry is half there
    m = Metadata()
    exif_from_bytes(cut, m)
    assert (m.make, m.orientation, m.model) == ("HTC", 8, None)
    assert m.warnings == ["EXIF: the main directory is cut short"]


def test_an_exif_pointer_out_of_the_block_loses_only_that_directory():
    block = bytearray(exif_block(
        [text(MAKE, "SONY")], [text(DATETIME_ORIGINAL, "2010:05:15 17:12:05")],
        [text(1, "N"), rational(2, (51, 1), (46, 1), (43, 1)),
         text(3, "W"), rational(4, (1, 1), (15, 1), (0, 1))]))
    at = block.index(struct.pack(">HHL", 0x8769, LONG, 1)) + 8
    block[at:at + 4] = struct.pack(">L", 10_000_000)
    m = Metadata()
    exif_from_bytes(bytes(block), m)
    assert m.make == "SONY" and m.taken_at is None
    assert m.gps_lat == pytest.approx(51.778611) and m.gps_lon == pytest.approx(-1.25)
    assert m.warnings == ["EXIF: the Exif directory is unreadable"]


def test_a_field_written_with_the_wrong_type_is_malformed_not_absent():
    block = exif_block([entry(MAKE, SHORT, 2, struct.pack(">HH", 67, 97)), text(MODEL, "EOS 20D")],
                       [entry(DATETIME_ORIGINAL, LONG, 1, struct.pack(">L", 2003))])
    m = Metadata()
    exif_from_bytes(block, m)
    assert (m.make, m.model, m.taken_at) == (None, "EOS 20D", None)
    assert m.warnings == ["EXIF: 2 malformed entries skipped (DateTimeOriginal, Make)"]


def test_pillow_warnings_never_reach_stderr():
    block = exif_block([text(MAKE, "HTC"), entry(ORIENTATION, SHORT, 2, b"\x00\x06\x00\x01"),
                        text(MODEL, "HTC One_M8")])
    code = ("import sys; from galprof.gallery.metadata import Metadata, exif_from_bytes; "
            "m = Metadata(); exif_from_bytes(sys.stdin.buffer.read(), m); print(m.warnings)")
    run = subprocess.run([sys.executable, "-c", code], input=block[:6 + 8 + 2 + 12 * 2 + 5],
                         capture_output=True, timeout=60)
    assert run.returncode == 0 and run.stderr == b""
    assert run.stdout.decode().strip() == "['EXIF: the main directory is cut short']"


def test_repeated_and_empty_entries_are_not_warnings():
    # Huawei phones repeat MakerNote; the first of a repeated tag counts, as in Pillow.
    block = exif_block([text(MAKE, "HUAWEI"), text(MAKE, "OTHER"), entry(MODEL, ASCII, 0),
                        text(MODEL, "ELE-L29")])
    m = Metadata()
    exif_from_bytes(block, m)
    assert (m.make, m.model, m.warnings) == ("HUAWEI", "ELE-L29", [])


def _gps_photo(testmedia, tmp_path, lat, lon, alt=None):
    gps = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: lat,
           piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: lon}
    if alt is not None:
        gps[piexif.GPSIFD.GPSAltitude], gps[piexif.GPSIFD.GPSAltitudeRef] = alt, 1
    block = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon"}, "GPS": gps})
    return read_metadata(photo_with_exif(testmedia, tmp_path, block), "photo")


def test_gps_seconds_stored_as_0_over_0_count_as_zero(testmedia, tmp_path):
    m = _gps_photo(testmedia, tmp_path, ((48, 1), (51, 1), (0, 0)), ((2, 1), (17, 1), (0, 0)),
                   alt=(35, 1))
    assert m.gps_lat == pytest.approx(48.85) and m.gps_lon == pytest.approx(2.283333)
    assert m.gps_alt == -35.0                   # altitude reference 1: below sea level


@pytest.mark.parametrize("lat,lon", [
    (((0, 0), (0, 0), (0, 0)), ((0, 0), (0, 0), (0, 0))),      # every component x/0: no GPS
    (((0, 0), (0, 0), (0, 0)), ((2, 1), (17, 1), (40, 1))),    # a latitude with no value
    (((0, 1), (0, 1), (0, 1)), ((0, 1), (0, 1), (0, 1))),      # 0,0
    (((213, 1), (38, 1), (0, 1)), ((103, 1), (28, 1), (0, 1))),  # out of range
])
def test_invalid_gps_is_still_dropped(testmedia, tmp_path, lat, lon):
    m = _gps_photo(testmedia, tmp_path, lat, lon)
    assert (m.gps_lat, m.gps_lon, m.gps_alt) == (None, None, None)


@pytest.mark.parametrize("original,offset_tag,expected", [
    ("2019:05:21 10:45:52+01:00", None, "2019-05-21T10:45:52+01:00"),
    ("2019:05:21 10:45:52-0330", None, "2019-05-21T10:45:52-03:30"),
    ("2019:05:21 10:45:52Z", None, "2019-05-21T10:45:52+00:00"),
    ("2019:05:21 10:45:52.250+01:00", None, "2019-05-21T10:45:52+01:00"),
    ("2019:05:21 10:45:52+01:00", "-05:00", "2019-05-21T10:45:52+01:00"),   # the string wins
    ("2019:05:21 10:45:52", "-05:00", "2019-05-21T10:45:52-05:00"),
    ("2019:05:21 10:45:52+25:00", None, "2019-05-21T10:45:52"),             # no such offset
    ("0000:00:00 00:00:00", None, None),
])
def test_offset_in_the_date_string_is_kept(testmedia, tmp_path, original, offset_tag, expected):
    exif = {piexif.ExifIFD.DateTimeOriginal: original.encode()}
    if offset_tag:
        exif[piexif.ExifIFD.OffsetTimeOriginal] = offset_tag.encode()
    block = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon"}, "Exif": exif})
    assert read_metadata(photo_with_exif(testmedia, tmp_path, block), "photo").taken_at == expected


# --- fuzz: mutants of real EXIF blocks ------------------------------------------------------

FUZZ_SOURCES = [
    "exif/camera/mei_FujiFilm_S2Pro_paris_gps.jpg", "exif/camera/ias_Nikon_D70s_florence_gps.jpg",
    "exif/camera/pp_Canon_EOS_6D_zebra.jpg", "exif/camera/ias_Kodak_CX7530_gps.jpg",
    "exif/phone/ias_HMD_Nokia_8.3_5G.jpg", "exif/phone/pp_Huawei_ELE-L29_hammock.jpg",
    "exif/metadata_only/exiftool_Google.jpg", "exif/phone/mei_Apple_iPhone_XR_Issue_263.heic",
    "exif/selfie/dc_iPhone13Pro_IMG_8569_front_camera.HEIC",
]
MUTANTS_PER_BLOCK = 30


def _real_blocks(testmedia, tmp_path) -> list[bytes]:
    """EXIF blocks of real JPEGs and HEICs, and the same blocks as PNG and WebP carry them."""
    pillow_heif.register_heif_opener()
    blocks = []
    for name in FUZZ_SOURCES:
        with Image.open(testmedia / name) as img:
            blocks.append(img.info["exif"])
    for fmt in ("PNG", "WEBP"):
        path = photo_with_exif(testmedia, tmp_path, blocks[0], fmt)
        with Image.open(path) as img:
            img.load()                                  # PNG keeps eXIf after the pixels
            blocks.append(img.info["exif"])
    return blocks


def _directories(tiff: bytes) -> list[int]:
    """Offsets of IFD0 and of the Exif/GPS directories it points to (for aimed mutations)."""
    e = "<" if tiff[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(e + "L", tiff, 4)
    found = [ifd0]
    (n,) = struct.unpack_from(e + "H", tiff, ifd0)
    for i in range(n):
        tag, _, _, value = struct.unpack_from(e + "HHLL", tiff, ifd0 + 2 + 12 * i)
        if tag in (0x8769, 0x8825) and value + 2 <= len(tiff):
            found.append(value)
    return found


def _mutate(block: bytes, rng: random.Random, fifo: bytes) -> bytes:
    prefix = 6 if block.startswith(b"Exif\x00\x00") else 0
    tiff = bytearray(block[prefix:])
    e = "<" if tiff[:2] == b"II" else ">"
    dirs = _directories(bytes(tiff))
    d = rng.choice(dirs)
    (n,) = struct.unpack_from(e + "H", tiff, d)
    at = d + 2 + 12 * rng.randrange(max(n, 1))          # one entry of that directory
    kind = rng.randrange(9)
    if kind == 0:                                        # truncation anywhere
        return bytes(block[:prefix + rng.randrange(len(tiff))])
    if kind == 1:                                        # byte flips in the header / IFD0 start
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(len(tiff), dirs[0] + 2 + 12 * 4))
            tiff[i] ^= 1 << rng.randrange(8)
    elif kind == 2:                                      # zeroed or oversized count
        struct.pack_into(e + "L", tiff, at + 4, rng.choice([0, 0xFFFFFFFF, 1 << 20,
                                                            rng.randrange(1 << 32)]))
    elif kind == 3:                                      # offset zeroed, past the end, anywhere
        struct.pack_into(e + "L", tiff, at + 8, rng.choice([0, len(tiff) - 1, 0xFFFFFFF0,
                                                            rng.randrange(1 << 32)]))
    elif kind == 4:                                      # duplicated entries
        for _ in range(rng.randint(1, 3)):
            j = d + 2 + 12 * rng.randrange(max(n, 1))
            tiff[j:j + 12] = tiff[at:at + 12]
    elif kind == 5:                                      # entry count of a directory
        struct.pack_into(e + "H", tiff, d, rng.choice([0, 0xFFFF, n + 1, n * 3]))
    elif kind == 6:                                      # random type
        struct.pack_into(e + "H", tiff, at + 2, rng.randrange(20))
    elif kind == 7:                                      # a sub-directory pointer anywhere
        struct.pack_into(e + "L", tiff, at + 8, rng.randrange(len(tiff)))
        struct.pack_into(e + "HH", tiff, at, rng.choice([0x8769, 0x8825]), LONG)
    else:                                                # a FIFO's path instead of the data
        return rng.choice([fifo, b"Exif\x00\x00" + fifo, b"Exif" + fifo])
    return bytes(block[:prefix]) + bytes(tiff)


def test_fuzzed_exif_never_raises_opens_a_file_or_hangs(testmedia, tmp_path):
    fifo = tmp_path / "fuzz.fifo"
    os.mkfifo(fifo)
    rng = random.Random(11)
    blocks = _real_blocks(testmedia, tmp_path)
    mutants = [_mutate(b, rng, os.fsencode(fifo)) for b in blocks for _ in range(MUTANTS_PER_BLOCK)]
    slowest = 0.0
    with fifo_watchdog(fifo) as released, no_file_opened() as opened:
        for mutant in mutants:
            m = Metadata()
            start = time.monotonic()
            exif_from_bytes(mutant, m)
            slowest = max(slowest, time.monotonic() - start)
            assert len(m.warnings) <= 1 and all("\n" not in w for w in m.warnings)
            m.to_dict()
    assert len(mutants) >= 300
    assert opened == [] and released == []
    assert slowest < 2.0, f"one mutant took {slowest:.2f} s"


def test_fuzz_mutants_are_mostly_still_partly_readable(testmedia, tmp_path):
    # The fuzz above must exercise the parser, not only its "no TIFF header" exit.
    rng = random.Random(11)
    blocks = _real_blocks(testmedia, tmp_path)
    readable = 0
    for b in blocks:
        for _ in range(MUTANTS_PER_BLOCK):
            m = Metadata()
            exif_from_bytes(_mutate(b, rng, b"/nonexistent"), m)
            readable += m.make is not None or m.taken_at is not None
    assert readable > len(blocks) * MUTANTS_PER_BLOCK // 2
