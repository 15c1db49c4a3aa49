"""Privacy decisions on real faces-stage payloads of real photos and videos, the gallery
pass over the store, and the user's marks through the CLI (persistent across re-scans
and moves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from galprof import privacy
from galprof.cli import cli
from galprof.gallery.frames import decode
from galprof.payloads import FacesFrame, FacesPayload
from galprof.privacy import People, PrivacyThresholds, decide
from galprof.pipeline import Settings, run
from galprof.store import open_store

from conftest import SHARED_MODELS


@pytest.fixture(scope="module")
def faces_stage():
    from galprof.vision.faces import FacesStage

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALPROF_MODELS", str(SHARED_MODELS))
        stage = FacesStage()
        stage.load()
    return stage


def analyse(stage, path: Path) -> tuple[dict, FacesPayload]:
    """(media row fields, faces payload) as a scan would store them."""
    kind = "video" if path.suffix == ".mp4" else "photo"
    decoded = decode(path, kind, stage.long_side, 5, 4)
    media = {"kind": kind, "width": decoded.meta.width, "height": decoded.meta.height}
    return media, stage.run(decoded.frames, {})


def clustered(payload: FacesPayload, person, items: int = 0, name: str | None = None) -> People:
    """What the people pass would record: every face of the payload assigned to `person`."""
    persons = {key: person for _, _, _, key in payload.faces()}
    return People(True, persons, {person: items} if person else {},
                  {person: name} if name else {})


def test_a_large_central_face_is_private(faces_stage, testmedia):
    media, payload = analyse(faces_stage, testmedia / "faces/face_recognition/obama.jpg")
    decision = decide(media, payload, False, clustered(payload, None))
    assert decision.private
    assert decision.reasons == ["a face over 20% of the image in its central 60%"]
    # The threshold is a tunable: at 60 % of the image the same portrait is public.
    relaxed = PrivacyThresholds(face_fraction=0.6)
    assert not decide(media, payload, False, clustered(payload, None), relaxed).private


def test_small_faces_depend_on_who_they_are(faces_stage, testmedia):
    media, payload = analyse(faces_stage, testmedia / "scenes/ul_bus.jpg")
    assert payload.count >= 2
    first_scan = decide(media, payload, False, None)
    assert first_scan.private and "not clustered yet" in first_scan.reasons[0]
    assert not decide(media, payload, False, clustered(payload, None)).private   # strangers
    assert not decide(media, payload, False, clustered(payload, 7, items=3)).private
    close = decide(media, payload, False, clustered(payload, 7, items=4))
    assert close.private and close.reasons == ["a face of a close person (person 7, in 4 items)"]
    named = decide(media, payload, False, clustered(payload, 7, items=1, name="Ann"))
    assert named.reasons == ["a face of Ann (a named person)"]


def test_no_faces_marks_and_unanalysed_items(faces_stage, testmedia):
    media, payload = analyse(faces_stage, testmedia / "scenes/coral_kite_and_cold.jpg")
    public = decide(media, payload, False, None)
    assert not public.private and public.reasons[0].startswith("public")
    assert decide(media, payload, True, None).reasons == ["marked private by the user"]
    unknown = decide(media, None, False, None)
    assert unknown.private and "faces not analysed" in unknown.reasons[0]


def test_a_video_is_public_only_if_every_frame_is(faces_stage, testmedia):
    media, payload = analyse(faces_stage, testmedia / "videos/mei_swans_Issue_515.mp4")
    assert not decide(media, payload, False, None).private
    media, payload = analyse(
        faces_stage, testmedia / "videos/derived/intel_head-pose-face-detection-male_from_gif.mp4")
    decision = decide(media, payload, False, clustered(payload, None))
    assert decision.private
    assert decision.reasons[0].startswith(
        "a face over 20% of the image in its central 60% (frames 0,")
    # One private frame is enough: keep only the last frame's faces.
    payload.frames = [FacesFrame(f.index, f.timestamp, []) for f in payload.frames[:-1]] \
        + payload.frames[-1:]
    last = payload.frames[-1].index
    assert decide(media, payload, False, clustered(payload, None)).reasons == [
        f"a face over 20% of the image in its central 60% (frame {last})"]


def test_thresholds_are_range_checked():
    with pytest.raises(ValueError, match="face_fraction = 1.5 is out of range"):
        PrivacyThresholds(face_fraction=1.5)
    with pytest.raises(ValueError, match="unknown privacy threshold"):
        PrivacyThresholds.from_overrides({"face_size": 0.3})
    assert PrivacyThresholds.from_overrides({"central_region": 0.8}).central_region == 0.8


def _scan(store, root: Path, faces_stage):
    summary = run(store, [root], Settings(stages=[faces_stage]))
    assert summary.failed == 0
    return privacy.apply_privacy(store)


def test_gallery_pass_reads_the_people_tables(faces_stage, testmedia, tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    shutil.copy(testmedia / "scenes/ul_bus.jpg", root / "bus.jpg")
    with open_store(tmp_path / "g.db") as store:
        # the people pass ran: the bus's faces are strangers to each other (one photo)
        assert _scan(store, root, faces_stage) == {"private": 0, "public": 1}
        row = store.media.by_path(str(root / "bus.jpg"))
        assert row["private_reason"].startswith("public")
        faces = store.people.clusterable()
        assert len(faces.ids) >= 2 and all(p is None for p in faces.person)
        with store.transaction():              # what a user's merge would make of them
            person = store.people.new_person(manual=True)
            store.people.set_person(faces.ids, person)
        assert privacy.apply_privacy(store) == {"private": 0, "public": 1}   # seen once only
        close = PrivacyThresholds(close_person_items=1)
        assert privacy.apply_privacy(store, close) == {"private": 1, "public": 0}
        with store.transaction():
            store.people.rename(person, "Ann")
        assert privacy.apply_privacy(store) == {"private": 1, "public": 0}
        info = privacy.describe(store, store.media.by_path(str(root / "bus.jpg")))
        assert info["private"] and info["reasons"] == ["a face of Ann (a named person)"]
        assert info["tiers"] == {"faces": "device"} and info["uploads"] == []


def test_marks_survive_rescans_and_moves(faces_stage, testmedia, tmp_path):
    root = tmp_path / "DCIM"
    root.mkdir()
    shutil.copy(testmedia / "scenes/pp_dog_orange.jpg", root / "dog.jpg")
    shutil.copy(testmedia / "scenes/skimage_coffee.png", root / "coffee.png")
    db = tmp_path / "g.db"
    run = lambda *args: CliRunner().invoke(cli, list(args) + ["--db", str(db)])

    r = run("private", "mark", str(root / "coffee.png"))            # before its first scan
    assert r.exit_code == 0 and "marked 1 item" in r.output
    with open_store(db) as store:
        assert _scan(store, root, faces_stage) == {"private": 1, "public": 1}
    assert run("private", "mark", str(root / "dog.jpg")).exit_code == 0
    listed = json.loads(run("private", "list", "--json").stdout)
    assert [(i["path"], i["reasons"]) for i in listed] == [
        (str(root / "coffee.png"), ["marked private by the user"]),
        (str(root / "dog.jpg"), ["marked private by the user"])]

    (root / "dog.jpg").rename(root / "renamed.jpg")
    with open_store(db) as store:
        assert _scan(store, root, faces_stage) == {"private": 2, "public": 0}
    listed = json.loads(run("private", "list", "--json").stdout)
    assert {i["path"] for i in listed} == {str(root / "coffee.png"), str(root / "renamed.jpg")}

    r = run("private", "unmark", str(root / "renamed.jpg"))
    assert r.exit_code == 0 and "unmarked 1 item" in r.output
    with open_store(db) as store:
        assert _scan(store, root, faces_stage) == {"private": 1, "public": 1}
    r = run("private", "list")
    assert r.exit_code == 0 and str(root / "coffee.png") in r.stdout
    assert "renamed.jpg" not in r.stdout
    r = run("private", "uploads")
    assert r.exit_code == 0 and r.stdout == ""

    r = run("private", "mark", str(root / "missing.jpg"))
    assert r.exit_code == 1 and "missing.jpg: no such file" in r.output


def test_video_face_tracks_map_to_their_people(faces_stage, testmedia, tmp_path):
    """The people pass keeps one faces row per video track; a named person in any frame
    makes the video private."""
    root = tmp_path / "g"
    root.mkdir()
    video = root / "clip.mp4"
    shutil.copyfile(testmedia / "videos/derived/intel_head-pose-face-detection-male_from_gif.mp4", video)
    for name in ("obama.jpg", "obama1.jpg"):
        shutil.copyfile(testmedia / "faces/face_recognition" / name, root / name)
    store = open_store(tmp_path / "g.db")
    run(store, [root], Settings(stages=[faces_stage], max_frames=6))
    row = store.media.by_path(str(video))
    tracks = store.conn.execute("SELECT frame_idx, face_idx, track FROM faces WHERE media_id = ?",
                                (row["id"],)).fetchall()
    assert tracks and all(r["face_idx"] == r["track"] for r in tracks)
    person = store.conn.execute("SELECT person_id FROM faces WHERE media_id = ? AND person_id "
                                "IS NOT NULL", (row["id"],)).fetchone()
    if person is None:      # the clip's man met no one else: give his track a person by hand
        pid = store.conn.execute("INSERT INTO people (created_at) VALUES ('now')").lastrowid
        store.conn.execute("UPDATE faces SET person_id = ? WHERE media_id = ?", (pid, row["id"]))
    else:
        pid = person[0]
    store.conn.execute("UPDATE people SET name = 'Max' WHERE id = ?", (pid,))
    relaxed = PrivacyThresholds(face_fraction=0.9)
    decision = privacy.decide_for(store, row, relaxed)     # the size rule out of the way
    assert decision.private
    assert any("a face of Max (a named person)" in r for r in decision.reasons)
    # every frame's face is found through its track, none is "not clustered yet"
    assert not any("not clustered" in r for r in decision.reasons), decision.reasons
