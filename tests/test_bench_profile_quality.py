"""bench/profile_quality.py: the rolls file, the roll files it writes, the scoring, and one tiny
roll measured end to end through the CLI with the real models."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import piexif
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pq():
    spec = importlib.util.spec_from_file_location("profile_quality", REPO / "bench" / "profile_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


TINY_RULES = """
version = 1
groups = ["Outdoors", "Indoors", "Food", "Transport", "Activity", "Sports", "Music/instruments", "Appliances", "Children", "Fashion", "Product/service", "Planting", "Pets/animals", "Culture events"]
[rules]
items = [5, 45]
portrait_share = [0.1, 0.5]
false_share = 0.10
dominant_share = 0.20
groups_at_false_share = 2
[children.girl]
box = [232, 198, 470, 588]
groups = ["Children"]
why = "the girl on her tricycle"
"""

TINY_PHOTOS = """
[photos."scenes/coral_cat_720p.jpg"]
groups = ["Pets/animals"]
why = "cat"
[photos."scenes/skimage_chelsea.png"]
groups = ["Pets/animals"]
why = "cat"
[photos."scenes/pp_dog_orange.jpg"]
groups = ["Pets/animals"]
why = "puppy"
[photos."scenes/tfod_dogs.jpg"]
groups = ["Pets/animals"]
why = "beagles"
[photos."exif/phone/pp_iPhoneSE_cat_brown.jpg"]
groups = ["Pets/animals"]
why = "cat"
[photos."scenes/pp_limes.jpg"]
groups = ["Food"]
why = "limes"
[photos."scenes/skimage_coffee.png"]
groups = ["Food"]
why = "espresso"
[photos."faces/deepface/img18.jpg"]
portrait = true
groups = []
why = "portrait, suit"
[photos."faces/face_recognition/obama.jpg"]
portrait = true
groups = []
why = "portrait, suit and tie"
[photos."scenes/imm_tanners_ridge.jpg"]
groups = ["Outdoors"]
why = "meadow"
"""

# Ten items whose truth is known: 6 pets (a 2-shot burst among them), 2 food, 2 portraits that
# show nothing. So Pets/animals is 60 %, Food 20 %, every other group 0 %: any top-3 group
# other than these two is false.
TINY_ROLL = """
[[rolls]]
name = "tiny"
dominant = ["Pets/animals"]
why = "test"
items = [
  { src = "scenes/coral_cat_720p.jpg" },
  { src = "scenes/skimage_chelsea.png" },
  { src = "scenes/pp_dog_orange.jpg" },
  { src = "scenes/tfod_dogs.jpg" },
  { src = "exif/phone/pp_iPhoneSE_cat_brown.jpg", burst = 2 },
  { src = "scenes/pp_limes.jpg" },
  { src = "scenes/skimage_coffee.png", edit = "crop=0.8@0.45,0.5 warm" },
  { src = "faces/deepface/img18.jpg" },
  { src = "faces/face_recognition/obama.jpg" },
]
"""


def write_rolls(tmp_path: Path, rolls: str, photos: str = TINY_PHOTOS) -> Path:
    path = tmp_path / "rolls.toml"
    path.write_text(TINY_RULES + photos + rolls)
    return path


def test_shipped_rolls_look_like_galleries(pq, testmedia):
    rules, rolls = pq.load_rolls(pq.DEFAULT_ROLLS, testmedia)
    assert len(rolls) >= 6 and len({r.name for r in rolls}) == len(rolls)
    for roll in rolls:
        n = len(roll.items)
        assert 37 <= n <= 45, roll.name
        assert 0.30 <= roll.portraits() / n <= 0.36, roll.name
        assert len({item.name for item in roll.items}) == n
        reaching = [g for g, c in roll.counts().items() if c >= 0.10 * n]
        assert len(reaching) >= 3 and set(roll.dominant) <= set(reaching), roll.name
    assert any(item.burst for roll in rolls for item in roll.items)
    parent = next(r for r in rolls if "Children" in r.dominant)
    children = [item for item in parent.items if item.child]
    assert len(children) >= 12 and any(item.on for item in children)
    assert all("Children" in item.truth for item in children)


def test_rolls_file_errors_name_the_roll(pq, testmedia, tmp_path):
    short = '[[rolls]]\nname = "short"\ndominant = ["Food"]\nitems = [ { src = "scenes/pp_limes.jpg" } ]\n'
    with pytest.raises(pq.RollError, match=r"roll short: 1 items, want 5-45"):
        pq.load_rolls(write_rolls(tmp_path, short), testmedia)
    untruthful = TINY_ROLL.replace('{ src = "scenes/pp_limes.jpg" }', '{ src = "scenes/ul_bus.jpg" }')
    with pytest.raises(pq.RollError, match=r"roll tiny item 6: scenes/ul_bus.jpg has no \[photos\] entry"):
        pq.load_rolls(write_rolls(tmp_path, untruthful), testmedia)
    with pytest.raises(pq.RollError, match=r"bad edit op 'spin=3'"):
        pq.load_rolls(write_rolls(tmp_path, TINY_ROLL.replace("warm", "spin=3")), testmedia)
    with pytest.raises(pq.RollError, match=r"no roll named 'nope'"):
        pq.load_rolls(write_rolls(tmp_path, TINY_ROLL), testmedia, only=["nope"])


def test_score_uses_the_profile_order_without_locations(pq):
    categories = [{"group": "Locations", "media": 9}, {"group": "Pets/animals", "media": 6},
                  {"group": "Fashion", "media": 4}, {"group": "Food", "media": 2},
                  {"group": "Outdoors", "media": 2}]
    counts = {"Pets/animals": 6, "Food": 1, "Outdoors": 3}
    s = pq.score(categories, counts, 10, ["Pets/animals"])
    assert [t["group"] for t in s["top3"]] == ["Pets/animals", "Fashion", "Food"]
    assert s["hit_at_3"] is True and s["dominant_rank"] == {"Pets/animals": 1}
    # Food: 1 of 10 items is exactly 10 %, which is not "under 10 %".
    assert [f["group"] for f in s["false_top3"]] == ["Fashion"]
    assert s["false_top3"][0]["true_share"] == 0.0
    assert s["tie_at_3"] == ["Food", "Outdoors"]
    miss = pq.score(categories, {"Food": 0}, 11, ["Pets/animals", "Outdoors"])
    assert miss["hit_at_3"] is False and miss["dominant_rank"] == {"Pets/animals": 1, "Outdoors": 4}
    assert [f["group"] for f in miss["false_top3"]] == ["Pets/animals", "Fashion", "Food"]
    assert pq.summarize([s, miss]) == {"rolls": 2, "hit_at_3": 1, "false_top3_rolls": 2,
                                       "hit_rate": 0.5, "false_top3_rate": 1.0}


def test_written_rolls_are_distinct_files_with_burst_times(pq, testmedia, tmp_path):
    rolls_file = write_rolls(tmp_path, TINY_ROLL.replace(
        '{ src = "faces/deepface/img18.jpg" },',
        '{ src = "faces/deepface/img18.jpg" },\n  { child = "girl" },\n'
        '  { child = "girl", on = "scenes/imm_tanners_ridge.jpg", at = 0.3 },'))
    rules, [roll] = pq.load_rolls(rolls_file, testmedia)
    paths = pq.build_roll(roll, rules, testmedia, tmp_path / "roll")
    assert len(paths) == 12
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(digests) == 12
    # Originals are copied byte for byte.
    assert (tmp_path / "roll" / "01_coral_cat_720p.jpg").read_bytes() == \
        (testmedia / "scenes/coral_cat_720p.jpg").read_bytes()
    shots = sorted(p for p in paths if "_b" in p.stem)
    times = [datetime.strptime(piexif.load(str(p))["Exif"][piexif.ExifIFD.DateTimeOriginal].decode(),
                               "%Y:%m:%d %H:%M:%S") for p in shots]
    assert len(times) == 2 and 0 < (times[1] - times[0]).total_seconds() <= 60
    girl = next(p for p in paths if p.name.endswith("child_girl.jpg"))
    assert Image.open(girl).size == (470 - 232, 588 - 198)
    pasted = next(p for p in paths if "_on_" in p.name)
    assert Image.open(pasted).size == Image.open(testmedia / "scenes/imm_tanners_ridge.jpg").size
    assert {"Children", "Outdoors"} == next(i.truth for i in roll.items if i.on)


def test_tiny_roll_through_the_cli(pq, testmedia, tmp_path, capsys):
    rolls_file = write_rolls(tmp_path, TINY_ROLL)
    keep = tmp_path / "work"
    assert pq.main(["--rolls-file", str(rolls_file), "--media", str(testmedia), "--json",
                    "--keep", str(keep)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"summary", "rolls"} and out["summary"]["rolls"] == 1
    [roll] = out["rolls"]
    assert roll["roll"] == "tiny" and roll["items"] == 10 and roll["portraits"] == 2
    assert roll["failed"] == 0 and roll["analysed"] == 10
    assert roll["true_shares"] == {"Pets/animals": 0.6, "Food": 0.2}

    # The top-3 is the profile's own ranking, read again here from the kept database.
    env = pq.galprof_env(keep / "home")
    proc = subprocess.run([sys.executable, "-m", "galprof", "profile", "--db", roll["db"], "--json"],
                          env=env, capture_output=True, text=True, check=True)
    ranked = [c for c in json.loads(proc.stdout)["categories"] if c["group"] != "Locations"]
    top3 = [c["group"] for c in ranked[:3]]
    assert [t["group"] for t in roll["top3"]] == top3
    assert [t["media"] for t in roll["top3"]] == [c["media"] for c in ranked[:3]]

    # Six of ten photos are pets: under any scoring they lead; the rest follows from the truth.
    assert top3[0] == "Pets/animals" and roll["hit_at_3"] is True
    assert [f["group"] for f in roll["false_top3"]] == [g for g in top3 if g not in ("Pets/animals", "Food")]
    assert all(f["true_share"] == 0.0 for f in roll["false_top3"])
    assert out["summary"]["false_top3_rolls"] == int(bool(roll["false_top3"]))
    assert out["summary"]["hit_at_3"] == 1
    assert sorted(os.listdir(keep / "tiny"))[0] == "01_coral_cat_720p.jpg"
