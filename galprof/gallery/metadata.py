"""What a file says about itself: EXIF of photos (piexif) and container tags of videos (PyAV).

Everything here is best effort: corrupt metadata never fails a file, it only
leaves fields empty (and a warning). Invalid GPS (0,0, NaN, out of range) is
dropped rather than propagated.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import piexif


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


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _rational(value) -> float | None:
    try:
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):
            num, den = value
            return num / den if den else None
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _dms(values, ref) -> float | None:
    try:
        d, m, s = (_rational(v) for v in values)
    except (TypeError, ValueError):
        return None
    if d is None or m is None or s is None:
        return None
    deg = d + m / 60 + s / 3600
    ref = _text(ref) or ""
    return -deg if ref.upper() in ("S", "W") else deg


def valid_gps(lat: float | None, lon: float | None) -> bool:
    """False for missing, NaN, out-of-range and the 0,0 that broken phones write."""
    if lat is None or lon is None or math.isnan(lat) or math.isnan(lon):
        return False
    if abs(lat) > 90 or abs(lon) > 180:
        return False
    return not (abs(lat) < 1e-6 and abs(lon) < 1e-6)


_EXIF_DATE = re.compile(r"(\d{4})[:\-](\d\d)[:\-](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_OFFSET = re.compile(r"^([+-])(\d\d):?(\d\d)$")


def _exif_datetime(value, offset=None) -> str | None:
    text = _text(value)
    m = _EXIF_DATE.match(text or "")
    if not m:
        return None
    try:
        dt = datetime(*(int(g) for g in m.groups()))
    except ValueError:
        return None           # 0000:00:00 00:00:00 and friends
    iso = dt.isoformat()
    off = _OFFSET.match(_text(offset) or "")
    if off:
        iso += f"{off.group(1)}{off.group(2)}:{off.group(3)}"
    return iso


def exif_from_bytes(exif_bytes: bytes | None, meta: Metadata) -> None:
    """Fill `meta` from raw EXIF bytes (APP1 payload or TIFF); corrupt IFDs become warnings."""
    if not exif_bytes:
        return
    try:
        exif = piexif.load(exif_bytes)
    except Exception as e:  # piexif raises many types on corrupt data
        meta.warnings.append(f"unreadable EXIF ({type(e).__name__}: {e})")
        return
    zeroth, ex, gps = exif.get("0th", {}), exif.get("Exif", {}), exif.get("GPS", {})
    meta.make = _text(zeroth.get(piexif.ImageIFD.Make))
    meta.model = _text(zeroth.get(piexif.ImageIFD.Model))
    orientation = zeroth.get(piexif.ImageIFD.Orientation)
    meta.orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None
    meta.lens_model = _text(ex.get(piexif.ExifIFD.LensModel))
    meta.focal_length = _rational(ex.get(piexif.ExifIFD.FocalLength))
    f35 = ex.get(piexif.ExifIFD.FocalLengthIn35mmFilm)
    meta.focal_length_35mm = float(f35) if isinstance(f35, int) and f35 > 0 else None
    meta.taken_at = (
        _exif_datetime(ex.get(piexif.ExifIFD.DateTimeOriginal), ex.get(0x9011))
        or _exif_datetime(ex.get(piexif.ExifIFD.DateTimeDigitized), ex.get(0x9012))
        or _exif_datetime(zeroth.get(piexif.ImageIFD.DateTime), ex.get(0x9010)))
    if gps:
        lat = _dms(gps.get(piexif.GPSIFD.GPSLatitude), gps.get(piexif.GPSIFD.GPSLatitudeRef))
        lon = _dms(gps.get(piexif.GPSIFD.GPSLongitude), gps.get(piexif.GPSIFD.GPSLongitudeRef))
        if valid_gps(lat, lon):
            meta.gps_lat, meta.gps_lon = round(lat, 7), round(lon, 7)
            alt = _rational(gps.get(piexif.GPSIFD.GPSAltitude))
            if alt is not None and math.isfinite(alt):
                below = gps.get(piexif.GPSIFD.GPSAltitudeRef) == 1
                meta.gps_alt = round(-alt if below else alt, 2)
    meta.front_camera = is_front_lens(meta.lens_model)


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


def video_metadata(container) -> Metadata:
    """Metadata of an open PyAV container (tags, duration, size, frame rate)."""
    tags = {k.lower() if not k.startswith("com.apple") else k: v
            for k, v in (container.metadata or {}).items()}
    meta = Metadata()
    meta.taken_at = _video_time(tags)
    meta.make = tags.get("com.apple.quicktime.make") or tags.get("make")
    meta.model = tags.get("com.apple.quicktime.model") or tags.get("model")
    loc = parse_iso6709(tags.get("com.apple.quicktime.location.ISO6709") or tags.get("location")
                        or tags.get("location-eng"))
    if loc:
        meta.gps_lat, meta.gps_lon, meta.gps_alt = loc
    if container.duration:
        meta.duration = round(container.duration / 1_000_000, 3)
    if container.streams.video:
        stream = container.streams.video[0]
        meta.width, meta.height = stream.width, stream.height
        if stream.average_rate:
            meta.fps = round(float(stream.average_rate), 3)
    return meta
