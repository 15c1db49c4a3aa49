"""What a file says about itself: EXIF of photos (Pillow) and container tags of videos (PyAV).

EXIF is read from bytes only, with Pillow's TIFF-directory parser: nothing here takes the
data for a file name (piexif's `load` opens a file when the bytes do not look like EXIF).
Entries are checked one by one before they are decoded, so one malformed entry costs only
itself: the rest of its directory is kept and the skipped ones are named in one warning
(empty entries and repeats of a tag, which lose nothing, are passed over silently).
Text tags are taken whole whether or not their writer ended them with a NUL.

Everything here is best effort: corrupt metadata never fails a file, it only leaves
fields empty (and one warning line). Invalid GPS (0,0, NaN, out of range) is dropped
rather than propagated.
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from PIL import ExifTags, TiffImagePlugin, TiffTags


@dataclass
class Metadata:
    taken_at: str | None = None          # ISO 8601; with its UTC offset when the file gives one
    make: str | None = None
    model: str | None = None
    lens_model: str | None = None
    focal_length: float | None = None    # mm
    focal_length_35mm: float | None = None
    orientation: int | None = None       # EXIF 1-8
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    width: int | None = None             # as displayed (after orientation / rotation)
    height: int | None = None
    duration: float | None = None        # seconds (videos)
    fps: float | None = None
    rotation: int | None = None          # degrees counter-clockwise to display (videos)
    front_camera: bool = False           # the lens model names a front camera
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("warnings")
        return d


# Pillow reports what it skips in an EXIF directory with warnings.warn (stderr, raw text);
# the entries are checked and reported here instead, as one line in Metadata.warnings.
warnings.filterwarnings(
    "ignore", module=r"PIL\.TiffImagePlugin",
    message=r"(Possibly corrupt EXIF|Corrupt EXIF|Tag data larger than|Tag offset too large"
            r"|Truncated File Read|Metadata Warning)")

_IFD0, _EXIF_IFD, _GPS_IFD = 0, int(ExifTags.IFD.Exif), int(ExifTags.IFD.GPSInfo)
_POINTERS = (_EXIF_IFD, _GPS_IFD)
_DIRECTORY_NAMES = {_IFD0: "main", _EXIF_IFD: "Exif", _GPS_IFD: "GPS"}
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
# Bytes per value of each TIFF type (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE, UNDEFINED,
# SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD): what an entry's count is multiplied by.
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_EXIF = 4 << 20                      # bytes read of a block (a JPEG's is at most 64 KB)
_MAX_TEXT = 255                          # a longer make/model/lens string is garbage, not a name

_B, _G = ExifTags.Base, ExifTags.GPS
_TEXT, _INT = (str, bytes), (int,)
_NUMBER = (int, float, TiffImagePlugin.IFDRational)
_NUMBERS = _NUMBER + (tuple,)
# The Python types Pillow gives for the entries read here: another one means the entry was
# written with a wrong type (a Make stored as numbers), which is malformed, not absent.
_EXPECTED = {
    (_IFD0, _B.Make): _TEXT, (_IFD0, _B.Model): _TEXT, (_IFD0, _B.DateTime): _TEXT,
    (_IFD0, _B.Orientation): _INT,
    (_EXIF_IFD, _B.LensModel): _TEXT, (_EXIF_IFD, _B.DateTimeOriginal): _TEXT,
    (_EXIF_IFD, _B.DateTimeDigitized): _TEXT, (_EXIF_IFD, _B.OffsetTime): _TEXT,
    (_EXIF_IFD, _B.OffsetTimeOriginal): _TEXT, (_EXIF_IFD, _B.OffsetTimeDigitized): _TEXT,
    (_EXIF_IFD, _B.FocalLength): _NUMBER, (_EXIF_IFD, _B.FocalLengthIn35mmFilm): _NUMBER,
    (_GPS_IFD, _G.GPSLatitudeRef): _TEXT, (_GPS_IFD, _G.GPSLongitudeRef): _TEXT,
    (_GPS_IFD, _G.GPSLatitude): _NUMBERS, (_GPS_IFD, _G.GPSLongitude): _NUMBERS,
    (_GPS_IFD, _G.GPSAltitude): _NUMBER, (_GPS_IFD, _G.GPSAltitudeRef): _TEXT + _INT,
}

# The tags decoded from each directory: the fields above and, in the main one, the pointers.
_WANTED = {g: {t for gg, t in _EXPECTED if gg == g} for g in _DIRECTORY_NAMES}
_WANTED[_IFD0] |= set(_POINTERS)


class _Directories:
    """The main, Exif and GPS directories of one EXIF block, and what was wrong in them."""

    def __init__(self, data: bytes):
        self.skipped: Counter[str] = Counter()   # names of malformed entries left out
        self.unreadable: list[str] = []          # directories that could not be read at all
        self.cut_short: list[str] = []           # directories whose entry table is cut off
        self.ifd0: dict[int, Any] = {}
        self.exif: dict[int, Any] = {}
        self.gps: dict[int, Any] = {}
        tiff = _tiff(data[:_MAX_EXIF])
        if tiff is None:
            raise ValueError("no TIFF header")
        self._endian = "<" if tiff[:2] == b"II" else ">"
        self._head = bytes(tiff[:8])
        self._buf = bytearray(tiff)
        (first,) = struct.unpack_from(self._endian + "L", tiff, 4)
        self.ifd0 = self._read(first, _IFD0)
        self.exif = self._sub(_EXIF_IFD)
        self.gps = self._sub(_GPS_IFD)

    def _sub(self, pointer_tag: int) -> dict[int, Any]:
        if pointer_tag not in self.ifd0:
            return {}
        offset = self.ifd0[pointer_tag]
        if not isinstance(offset, int) or isinstance(offset, bool):
            self.unreadable.append(_DIRECTORY_NAMES[pointer_tag])
            return {}
        return self._read(offset, pointer_tag)

    def _read(self, offset: int, group: int) -> dict[int, Any]:
        """One directory, entry by entry: the malformed ones are neutralised before Pillow
        sees them (an entry whose data runs past the block stops Pillow's loop, losing every
        entry after it), then each value read here is decoded and type-checked on its own."""
        if not 0 <= offset <= len(self._buf) - 2:
            self.unreadable.append(_DIRECTORY_NAMES[group])
            return {}
        listed = self._check_entries(offset, group)
        ifd = TiffImagePlugin.ImageFileDirectory_v2(self._head, group=group or None)
        fp = io.BytesIO(self._buf)
        fp.seek(offset)
        try:
            ifd.load(fp)
        except Exception:  # noqa: BLE001 -- a parser bug on outsider data must not fail the file
            self.unreadable.append(_DIRECTORY_NAMES[group])
            return {}
        values: dict[int, Any] = {}
        for tag in sorted(_WANTED[group] & set(ifd)):
            try:
                value = _single(ifd[tag])
            except Exception:  # noqa: BLE001
                value = None
            expected = _EXPECTED.get((group, tag), object)
            if value is None or isinstance(value, bool) or not isinstance(value, expected):
                self.skipped[_tag_name(tag, group)] += 1
                listed.discard(tag)
                continue
            values[tag] = value
        for tag in listed - set(ifd):        # sound, yet Pillow left it out: count it too
            self.skipped[_tag_name(tag, group)] += 1
        return values

    def _check_entries(self, offset: int, group: int) -> set[int]:
        """Tags of the directory's entries that hold a value. Entries of unknown type or whose
        data runs past the block are counted as skipped (and the latter blanked in the buffer);
        empty entries and repeats of a tag (Pillow keeps the first) lose nothing and are not."""
        e = self._endian
        (count,) = struct.unpack_from(e + "H", self._buf, offset)
        room = (len(self._buf) - offset - 2) // 12
        if count > room:
            self.cut_short.append(_DIRECTORY_NAMES[group])
        kept: set[int] = set()
        for i in range(min(count, room)):
            at = offset + 2 + 12 * i
            tag, typ, n, value_offset = struct.unpack_from(e + "HHLL", self._buf, at)
            if tag in kept or n == 0:
                continue
            size = n * _TYPE_SIZES.get(typ, 0)
            if size == 0 or (size > 4 and value_offset + size > len(self._buf)):
                self.skipped[_tag_name(tag, group)] += 1
                if size > 4:
                    struct.pack_into(e + "H", self._buf, at + 2, 0)   # type 0: Pillow skips it
                continue
            kept.add(tag)
        return kept

    def warning(self) -> str | None:
        parts = [f"the {name} directory is unreadable" for name in self.unreadable]
        parts += [f"the {name} directory is cut short" for name in self.cut_short]
        n = sum(self.skipped.values())
        if n:
            names = sorted(self.skipped)
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            parts.append(f"{n} malformed {'entry' if n == 1 else 'entries'} skipped ({shown})")
        return "EXIF: " + "; ".join(parts) if parts else None


def _tiff(data: bytes) -> bytes | None:
    """The TIFF structure of an EXIF block: a JPEG APP1 payload starts with 'Exif\\0\\0'
    (doubled or padded by some writers), a PNG eXIf, WebP EXIF or HEIF Exif item may start
    right at the TIFF header."""
    for header in _TIFF_HEADERS:
        at = data[:16].find(header)
        if at == 0 or (at > 0 and data.startswith(b"Exif")):
            return data[at:] if len(data) - at >= 8 else None
    return None


def _tag_name(tag: int, group: int) -> str:
    name = TiffTags.lookup(tag, group or None).name
    return name if name != "unknown" else f"tag 0x{tag:04x}"


def _single(value):
    return value[0] if isinstance(value, tuple) and len(value) == 1 else value


def _text(value) -> str | None:
    """An EXIF text value, whole: up to the first NUL if there is one (a writer that leaves
    the NUL out still means every character), UTF-8 when it decodes as such."""
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")   # Pillow decodes ASCII as Latin-1: undo it
    if not isinstance(value, bytes):
        return None
    raw = value.split(b"\x00", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.strip()
    return text[:_MAX_TEXT] or None


def _number(value) -> float | None:
    """A finite number from an EXIF SHORT/LONG/RATIONAL/FLOAT value (x/0 rationals are NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, TiffImagePlugin.IFDRational)):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _dms(values, ref) -> float | None:
    """Degrees from [degrees, minutes, seconds] rationals (fewer components are accepted).

    A component stored as x/0 counts as 0 (cameras write 0/0 seconds); a coordinate whose
    every component is x/0 is absent. The reference letter S or W makes it negative."""
    values = values if isinstance(values, tuple) else (values,)
    if not 1 <= len(values) <= 3:
        return None
    parts = []
    for v in values:
        if isinstance(v, TiffImagePlugin.IFDRational) and v.denominator == 0:
            parts.append(None)
            continue
        f = _number(v)
        if f is None:
            return None
        parts.append(f)
    if all(p is None for p in parts):
        return None
    deg = sum((p or 0.0) / 60 ** i for i, p in enumerate(parts))
    return -abs(deg) if (_text(ref) or "").upper() in ("S", "W") else deg


def valid_gps(lat: float | None, lon: float | None) -> bool:
    """False for missing, NaN, out-of-range and the 0,0 that broken phones write."""
    if lat is None or lon is None or math.isnan(lat) or math.isnan(lon):
        return False
    if abs(lat) > 90 or abs(lon) > 180:
        return False
    return not (abs(lat) < 1e-6 and abs(lon) < 1e-6)


_EXIF_DATE = re.compile(r"\s*(\d{4})[:\-](\d\d)[:\-](\d\d)[ T](\d\d):(\d\d):(\d\d)"
                        r"(?:[.,]\d+)?\s*(Z|[+-]\d\d:?\d\d)?")
_OFFSET = re.compile(r"^([+-])(\d\d):?(\d\d)$")


def _offset(text: str | None) -> str | None:
    """'+0100' / '+01:00' / 'Z' → '+01:00' / '+00:00'; None for anything else or out of range."""
    if text == "Z":
        return "+00:00"
    m = _OFFSET.match(text or "")
    if not m or int(m.group(2)) > 14 or int(m.group(3)) > 59:
        return None
    return f"{m.group(1)}{m.group(2)}:{m.group(3)}"


def _exif_datetime(value, offset=None) -> str | None:
    """ISO 8601 from an EXIF date ('2019:05:21 10:45:52'), with the UTC offset of its
    OffsetTime* tag. An offset written into the date string itself ('...10:45:52+01:00',
    non-standard writers) wins over the tag: it was written with that very value, while
    the tag may be left over from the camera when a tool rewrote the time."""
    m = _EXIF_DATE.match(_text(value) or "")
    if not m:
        return None
    try:
        dt = datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        return None           # 0000:00:00 00:00:00 and friends
    off = _offset(m.group(7)) or _offset(_text(offset))
    return dt.isoformat() + (off or "")


def exif_from_bytes(exif_bytes: bytes | None, meta: Metadata) -> None:
    """Fill `meta` from raw EXIF bytes (APP1 payload or bare TIFF); the data is only ever
    parsed, never opened; malformed entries are skipped and named in one warning."""
    if not exif_bytes:
        return
    try:
        d = _Directories(bytes(exif_bytes))
    except Exception as e:  # noqa: BLE001 -- no header, or a parser bug on outsider data
        reason = str(e) if isinstance(e, ValueError) else type(e).__name__
        meta.warnings.append(f"unreadable EXIF ({reason})")
        return
    ifd0, ex, gps = d.ifd0, d.exif, d.gps
    meta.make = _text(ifd0.get(_B.Make))
    meta.model = _text(ifd0.get(_B.Model))
    orientation = ifd0.get(_B.Orientation)
    meta.orientation = (orientation if isinstance(orientation, int) and 1 <= orientation <= 8
                        else None)
    meta.lens_model = _text(ex.get(_B.LensModel))
    focal = _number(ex.get(_B.FocalLength))
    meta.focal_length = focal if focal and focal > 0 else None
    f35 = _number(ex.get(_B.FocalLengthIn35mmFilm))
    meta.focal_length_35mm = f35 if f35 and f35 > 0 else None
    meta.taken_at = (
        _exif_datetime(ex.get(_B.DateTimeOriginal), ex.get(_B.OffsetTimeOriginal))
        or _exif_datetime(ex.get(_B.DateTimeDigitized), ex.get(_B.OffsetTimeDigitized))
        or _exif_datetime(ifd0.get(_B.DateTime), ex.get(_B.OffsetTime)))
    if gps:
        lat = _dms(gps.get(_G.GPSLatitude), gps.get(_G.GPSLatitudeRef))
        lon = _dms(gps.get(_G.GPSLongitude), gps.get(_G.GPSLongitudeRef))
        if valid_gps(lat, lon):
            meta.gps_lat, meta.gps_lon = round(lat, 7), round(lon, 7)
            alt = _number(gps.get(_G.GPSAltitude))
            if alt is not None:
                below = gps.get(_G.GPSAltitudeRef) in (1, b"\x01")
                meta.gps_alt = round(-alt if below else alt, 2)
    meta.front_camera = is_front_lens(meta.lens_model)
    warning = d.warning()
    if warning:
        meta.warnings.append(warning)


def original_orientation(img) -> int | None:
    """The orientation a photo's file stores, when its decoder already applied it to the
    pixels and rewrote the EXIF tag to 1 (pillow-heif does so for HEIC/AVIF and keeps the
    value in `info['original_orientation']`); None when the decoder left the tag alone, so
    that the EXIF value is the file's own. Report it; never rotate by it again."""
    value = getattr(img, "info", {}).get("original_orientation")
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8 \
        else None


def is_front_lens(lens_model: str | None) -> bool:
    """Phones name the selfie lens, e.g. 'iPhone 13 Pro front camera 2.71mm f/2.2'."""
    return bool(lens_model) and bool(re.search(r"\b(front|selfie)\b", lens_model, re.I))


_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?")


def parse_iso6709(text: str | None) -> tuple[float, float, float | None] | None:
    """'+52.4597+013.3220+051.178/' → (52.4597, 13.322, 51.178); None when invalid."""
    m = _ISO6709.match((text or "").strip())
    if not m:
        return None
    lat, lon = float(m.group(1)), float(m.group(2))
    if not valid_gps(lat, lon):
        return None
    alt = float(m.group(3)) if m.group(3) else None
    return lat, lon, alt


def _video_time(tags: dict) -> str | None:
    local = tags.get("com.apple.quicktime.creationdate")
    if local:
        try:
            return datetime.strptime(local, "%Y-%m-%dT%H:%M:%S%z").isoformat()
        except ValueError:
            pass
    utc = tags.get("creation_time")
    if utc:
        for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S"):
            try:
                dt = datetime.strptime(utc, fmt)
            except ValueError:
                continue
            if utc.endswith("Z"):
                dt = dt.replace(tzinfo=timezone.utc)
            if dt.year > 1971:        # 1904/1970 epochs mean "not set"
                return dt.isoformat()
    return None


def _tag_text(value: str | None) -> str | None:
    return (value or "").split("\x00", 1)[0].strip()[:_MAX_TEXT] or None


def _container_tags(container) -> dict[str, str]:
    tags = {}
    for k, v in dict(container.metadata or {}).items():
        if isinstance(k, str) and isinstance(v, str):
            tags[k if k.startswith("com.apple") else k.lower()] = v
    return tags


def video_metadata(container) -> Metadata:
    """Metadata of an open PyAV container (tags, duration, size, frame rate).

    Never raises: what a strange container does not give stays empty, with one warning
    line per problem (e.g. a stream whose codec this FFmpeg build has no decoder for has
    no known size)."""
    meta = Metadata()
    try:
        tags = _container_tags(container)
    except Exception:  # noqa: BLE001 -- outsider data through a C library
        tags = {}
        meta.warnings.append("unreadable container tags (time, camera and place unknown)")
    meta.taken_at = _video_time(tags)
    meta.make = _tag_text(tags.get("com.apple.quicktime.make") or tags.get("make"))
    meta.model = _tag_text(tags.get("com.apple.quicktime.model") or tags.get("model"))
    loc = parse_iso6709(tags.get("com.apple.quicktime.location.ISO6709") or tags.get("location")
                        or tags.get("location-eng"))
    if loc:
        meta.gps_lat, meta.gps_lon, meta.gps_alt = loc
    try:
        duration = container.duration
        if duration and duration > 0:
            meta.duration = round(duration / 1_000_000, 3)
    except Exception:  # noqa: BLE001
        meta.warnings.append("unreadable container duration")
    try:
        streams = list(container.streams.video)
    except Exception:  # noqa: BLE001
        streams = []
        meta.warnings.append("unreadable list of video streams")
    if streams:
        _video_stream(streams[0], meta)
    return meta


def _video_stream(stream, meta: Metadata) -> None:
    try:
        rate = stream.average_rate
        if rate and float(rate) > 0:
            meta.fps = round(float(rate), 3)
    except Exception:  # noqa: BLE001
        pass                          # no frame rate: frames are then sampled by index only
    if getattr(stream, "codec_context", None) is None:
        meta.warnings.append("the video stream's codec is not supported (no decoder for it "
                             "in this FFmpeg build): its size is unknown")
        return
    try:
        w, h = stream.codec_context.width, stream.codec_context.height
    except Exception:  # noqa: BLE001
        w = h = None
    if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
        meta.width, meta.height = w, h
    else:
        meta.warnings.append("the video stream does not say its size")
