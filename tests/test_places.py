"""Offline reverse geocoding on the real geotagged photos and videos of testmedia."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys

import av
import pytest
from PIL import Image

from galprof import places
from galprof.gallery.metadata import parse_iso6709

try:
    import pillow_heif
    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass

GPS_IFD = 0x8825


def _ratio(v) -> float:
    try:
        return float(v)
    except ZeroDivisionError:
        return math.nan


def read_gps(path) -> tuple[float, float] | None:
    """Latitude/longitude straight from the EXIF GPS IFD, invalid values left as they are."""
    with Image.open(path) as img:
        gps = img.getexif().get_ifd(GPS_IFD)
    if 2 not in gps or 4 not in gps:
        return None

    def dms(values, ref):
        d, m, s = (_ratio(x) for x in values)
        deg = d + m / 60 + s / 3600
        return -deg if str(ref).upper().startswith(("S", "W")) else deg

    return dms(gps[2], gps.get(1, "N")), dms(gps[4], gps.get(3, "E"))


# file under exif/ -> the city the test-media manifest names
CITIES = {
    "camera/mei_FujiFilm_S2Pro_paris_gps.jpg": ("Paris", "FR"),
    "phone/mei_Samsung_SM-G935L_Galaxy_S7_Edge.jpg": ("Paris", "FR"),
    "phone/ias_HMD_Nokia_8.3_5G.jpg": ("Helsinki", "FI"),
    "phone/mei_Apple_iPhone_XR_Issue_263.heic": ("Lisbon", "PT"),
    "phone/mei_HTC_Desire.jpg": ("Milan", "IT"),
    "phone/mei_Apple_iPhone_4.jpg": ("Rome", "IT"),
    "phone/mei_Apple_iPhone_5.jpg": ("Seattle", "US"),
    "phone/pp_Samsung_SM-G900F_nice.jpg": ("Nice", "FR"),
    "phone/pp_Huawei_ELE-L29_orientation0.jpg": ("Berlin", "DE"),
    "phone/pp_Huawei_ELE-L29_photoshop.jpg": ("Berlin", "DE"),
    "phone/pp_iPhone15Pro.heic": ("Berlin", "DE"),
    "phone/pp_iPhoneSE_building_mono.jpg": ("Berlin", "DE"),
    "camera/ias_Nikon_D70s_florence_gps.jpg": ("Florence", "IT"),
    "phone/ias_iPhone6_hdr_NO.jpg": ("Madrid", "ES"),
    "camera/pp_Canon_EOS_6D_ferriswheel.jpg": ("Santa Monica", "US"),
    "camera/pp_Canon_EOS_6D_ocean.jpg": ("Cape Town", "ZA"),
    "phone/mei_Apple_iPhone_8.heic": ("Guangzhou", "CN"),
    "phone/pp_Xiaomi_MiA1_ship.jpg": ("Bydgoszcz", "PL"),
    "phone/pp_Samsung_SM-C200_panorama360.jpg": ("Saint Petersburg", "RU"),
}

INVALID = [
    "phone/pp_Samsung_GT-I9000_gps_zero.jpg",        # 0,0
    "phone/mei_Samsung_GT-I9000_Galaxy_S.jpg",       # 0,0
    "camera/pp_Olympus_TG-830_snow_gps_nan.jpg",     # NaN
    "phone/mei_Samsung_SM-G975F_Issue_487.heic",     # NaN
    "metadata_only/pp_Xiaomi_MiMix2_buggy_gps.jpg",  # latitude 213.6
]


@pytest.fixture(scope="module")
def city_points(testmedia):
    return {name: read_gps(testmedia / "exif" / name) for name in CITIES}


def test_geotagged_photos_get_their_manifest_city(city_points):
    names = list(CITIES)
    found = places.locate([city_points[n] for n in names])
    got = {n: (p.city, p.country_code) if p else None for n, p in zip(names, found)}
    assert got == CITIES
    paris = found[0]
    assert paris.country == "France" and paris.admin1 == "Île-de-France"
    assert 0 < paris.distance_km < 10


@pytest.mark.parametrize("name", INVALID)
def test_invalid_gps_gives_no_place(testmedia, name):
    point = read_gps(testmedia / "exif" / name)
    assert point is not None, "the file should carry (broken) GPS tags"
    assert places.locate([point]) == [None]


@pytest.mark.parametrize("point", [
    (0.0, 0.0), (math.nan, 13.4), (52.5, math.inf), (213.64, 103.48), (45.0, -181.0),
    (None, 13.4), ("north", "east"),
])
def test_invalid_coordinates_give_none(point):
    assert places.locate([point, (52.52, 13.40)])[0] is None


def test_country_fallback_and_open_sea():
    iceland_highlands, south_pacific = (65.05558, -16.6257), (-50.0, -140.0)
    inland, at_sea = places.locate([iceland_highlands, south_pacific])
    assert inland.city is None and inland.admin1 is None
    assert (inland.country, inland.country_code) == ("Iceland", "IS")
    assert places.CITY_LIMIT_KM < inland.distance_km <= places.COUNTRY_LIMIT_KM
    assert at_sea is None
    # a tighter city limit turns a suburb photo into a country-level answer
    (helsinki,) = places.locate([(60.14671, 24.90677)], city_limit_km=1.0)
    assert helsinki.city is None and helsinki.country == "Finland"


@pytest.mark.parametrize("video, city", [
    ("rotated_iPadmini_quicktime-hvc1.mov", "Berlin"),
    ("rotated_iPhone6_with-gps.mov", "IL"),   # the manifest names only the country
    ("mei_swans_Issue_515.mp4", "NL"),
])
def test_video_iso6709_location(testmedia, video, city):
    with av.open(str(testmedia / "videos" / video)) as c:
        tags = c.metadata
        text = tags.get("com.apple.quicktime.location.ISO6709") or tags.get("location")
    lat, lon, _alt = parse_iso6709(text)
    (place,) = places.locate([(lat, lon)])
    if len(city) == 2:
        assert place.country_code == city and place.city
    else:
        assert (place.city, place.country_code) == (city, "DE")


def test_summarise_groups_cities_most_popular_first(testmedia, city_points):
    items = []
    for i, (name, point) in enumerate(city_points.items()):
        items.append({"path": str(testmedia / "exif" / name), "lat": point[0], "lon": point[1],
                      "taken_at": f"2019-0{1 + i % 9}-1{i % 10}T10:00:00", "kind": "photo"})
    items.append({"path": "/v/berlin.mov", "lat": 52.4597, "lon": 13.322,
                  "taken_at": "2021:03:04 12:00:00", "kind": "video"})
    items.append({"path": "/x/nowhere.jpg", "lat": 0.0, "lon": 0.0, "taken_at": None,
                  "kind": "photo"})
    locations = places.summarise(items)
    top, second = locations[0], locations[1]
    assert (top["city"], top["country"], top["media"]) == ("Berlin", "Germany", 5)
    assert (top["photos"], top["videos"]) == (4, 1)
    assert top["last"] == "2021-03-04" and top["paths"][-1] == "/v/berlin.mov"
    assert top["first"] <= top["last"]
    assert (second["city"], second["media"]) == ("Paris", 2)
    assert [e["media"] for e in locations] == sorted((e["media"] for e in locations), reverse=True)
    assert sum(e["media"] for e in locations) == len(items) - 1  # 0,0 is nowhere
    assert all(not p.endswith("nowhere.jpg") for e in locations for p in e["paths"])


def test_no_network_needed():
    """Loading the places and geocoding works with every socket refused."""
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from galprof import places\n"
        "print(places.locate([(60.17, 24.94)])[0].city)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Helsinki"


def _fresh_gazetteer(monkeypatch, home):
    monkeypatch.setenv("GALPROF_HOME", str(home))
    monkeypatch.setattr(places, "_gazetteer", None)
    return places.gazetteer()


POINTS = [(48.8584, 2.2945), (60.14671, 24.90677), (65.05558, -16.6257), (-33.86, 151.21),
          (35.68, 139.76), (-50.0, -140.0)]


def test_the_places_are_parsed_once_and_kept_private_in_the_data_dir(monkeypatch, tmp_path):
    """The first load parses the package's JSON and keeps the columns (0600, in a 0700
    folder); the next process loads them without reading the JSON, to the same places."""
    parsed = _fresh_gazetteer(monkeypatch, tmp_path / "home")
    want = places.locate(POINTS)
    assert [p.city if p else None for p in want][:2] == ["Paris", "Helsinki"]
    (kept,) = (tmp_path / "home" / "cache").iterdir()
    assert kept.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home" / "cache").stat().st_mode & 0o777 == 0o700

    def no_json(*a, **k):
        raise AssertionError("the package's JSON was read again")
    monkeypatch.setattr(places.gzip, "open", no_json)
    again = _fresh_gazetteer(monkeypatch, tmp_path / "home")
    assert again is not parsed and again.size == parsed.size
    assert places.locate(POINTS) == want
    # a place without an admin1 name has None, as in the package's data
    monkeypatch.undo()
    geocode_file, _ = places._data_files()
    with gzip.open(geocode_file) as f:
        without = sum(r.get("state") is None for r in json.loads(f.read()))
    assert sum(again.text("state", j) is None for j in range(again.size)) == without > 0


def test_a_damaged_or_unwritable_copy_of_the_places_costs_only_a_parse(monkeypatch, tmp_path):
    _fresh_gazetteer(monkeypatch, tmp_path / "home")
    want = places.locate(POINTS)
    (kept,) = (tmp_path / "home" / "cache").iterdir()
    kept.write_bytes(kept.read_bytes()[:1000])                # cut short
    _fresh_gazetteer(monkeypatch, tmp_path / "home")
    assert places.locate(POINTS) == want
    assert kept.stat().st_size > 1_000_000                     # written again, whole
    blocked = tmp_path / "a file"
    blocked.write_bytes(b"")                    # a data dir that cannot be made (even as root)
    _fresh_gazetteer(monkeypatch, blocked / "home")
    assert places.locate(POINTS) == want
