"""The fast paths of issue 15 on real media: a HEIC from its embedded preview, videos
decoded only where sampled, still shots analysed once, stage inputs made once per frame,
and the phone-roll benchmark. Each path must give what the slow one gives."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TESTMEDIA
from galprof import bench, tunables
from galprof.cli import cli
from galprof.errors import SetupError
from galprof.gallery import frames as frames_mod
from galprof.gallery.frames import decode_photo, decode_video, read_media
from galprof.gallery.hashing import hash_bytes
from galprof.payloads import encode
from galprof.pipeline import Settings, run
from galprof.stages import Frame, model_threads
from galprof.store import open_store
from galprof.vision.faces import FacesStage
from galprof.vision.objects import ObjectsStage
from galprof.vision.scenes import ScenesStage

IPHONE_HEIC = "exif/phone/dc_iPhone13Pro_IMG_8565_tele.HEIC"       # 240 x 320 preview
NO_PREVIEW_HEIC = "exif/phone/ias_iPhone11ProMax_IMG_5195.HEIC"
FACES = ["faces/photoprism/pp_face_1.jpg", "faces/photoprism/pp_face_3.jpg",
         "faces/photoprism/pp_face_8.jpg", "faces/photoprism_nofaces/pp_noface_9.jpg"]


@pytest.fixture(scope="module")
def stages(shared_models):
    return (ObjectsStage(threads=2, models_dir=shared_models),
            ScenesStage(threads=2, models_dir=shared_models),
            FacesStage(threads=2, models_dir=shared_models))


# -- HEIC --------------------------------------------------------------------------------

def test_a_heic_preview_decodes_its_full_picture_once_on_demand(testmedia):
    data = (testmedia / IPHONE_HEIC).read_bytes()
    fast = decode_photo(data, 1280, preview=True).frames[0]
    full = decode_photo(data, 1280).frames[0]
    assert fast.reduced and not full.reduced
    assert min(fast.image.shape[:2]) >= tunables.section("decode")["heic_preview_min_side"]
    assert max(fast.image.shape[:2]) < max(full.image.shape[:2])
    assert fast.at_least(200) is fast                     # the preview is enough for that
    larger = fast.at_least(1280)
    assert np.array_equal(larger.image, full.image) and larger.scale == full.scale
    assert fast.at_least(1280) is larger                  # decoded once
    assert fast.largest_decoded() is larger


LARGE_HEICS = sorted(str(p.relative_to(TESTMEDIA)) for p in TESTMEDIA.glob("**/*")
                     if p.suffix.lower() in (".heic", ".heif") and p.parent.name != "corrupt")


@pytest.mark.parametrize("rel", LARGE_HEICS)
def test_libheifs_full_heic_picture_shrinks_to_the_pixels_pillow_gives(testmedia, rel):
    """The libheif decode (for HEICs heif.py does not take) is shrunk a strip of rows at a
    time, to what Pillow's own decode and resize give: at the analysis size (a horizontal
    pass, then a vertical one) and at a quarter of it (Pillow's box reduction first, for a
    picture 4 times the size)."""
    from PIL import Image, ImageOps
    data = (testmedia / rel).read_bytes()
    img = Image.open(io.BytesIO(data))
    assert max(img.size) > 1280                    # the path under test: a shrunk picture
    img = ImageOps.exif_transpose(img).convert("RGB")
    for side in (1280, 320):
        got = frames_mod._libheif_fitted(data, side)
        want = img.resize(got.size, Image.BILINEAR, reducing_gap=2.0)
        assert max(got.size) == side
        assert np.array_equal(np.asarray(got), np.asarray(want)), (rel, side)


# HEICs from three makers (iPhone, Samsung and Nokia grids of 512 px tiles, the Nokia one
# in limited range).
SHRUNK_HEICS = [IPHONE_HEIC, "exif/phone/mei_Samsung_SM-G975F_Issue_487.heic",
                "exif/phone/phf_Samsung_GalaxyS25Ultra.heic",
                "exif/phone/ias_HMD_Nokia_8.3_5G_hdr.heif"]
_DECODE_GROWTH = """
import io, sys
from PIL import Image
from galprof.gallery.frames import decode_photo
def peak_kb():       # this process's own peak (ru_maxrss starts at the parent's)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
way, small, data = sys.argv[1], *(open(p, "rb").read() for p in sys.argv[2:4])
decode_photo(small, 1280)                          # the decoders and their threads started
w, h = Image.open(io.BytesIO(data)).size
before = peak_kb()
if way == "galprof":
    decode_photo(data, 1280)
else:                                              # Pillow's own load and resize
    Image.open(io.BytesIO(data)).resize((1280, 1280 * h // w), Image.BILINEAR)
print((peak_kb() - before) * 1024 / (w * h * 3))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("rel", SHRUNK_HEICS)
def test_a_full_heic_decode_holds_no_more_than_its_colour_planes(testmedia, rel):
    """What a full HEIC decode shrunk to analysis size adds to a process's peak memory,
    in sizes of the picture in RGB: its Y, Cb and Cr planes are half of one; libheif's
    planes and RGB copy, and Pillow's load and resize, hold two (measured: 0.13-0.36
    against 1.9-2.3)."""
    def growth(way: str) -> float:
        out = subprocess.run([sys.executable, "-c", _DECODE_GROWTH, way,
                              str(testmedia / "exif/phone/phf_Xiaomi_M2012K11AG.heic"),
                              str(testmedia / rel)],
                             capture_output=True, text=True, check=True)
        return float(out.stdout)
    ours, pillows = growth("galprof"), growth("pillow")
    assert ours < 0.6 and ours < pillows - 1.2, (rel, ours, pillows)


def test_only_the_stages_read_a_heic_from_its_preview(testmedia, tmp_path):
    path = testmedia / IPHONE_HEIC
    digest, for_stages = read_media(path, "photo", 1280, for_stages=True)
    assert digest == hash_bytes(path.read_bytes())        # the bytes hashed are the bytes decoded
    assert for_stages.frames[0].reduced
    _, plain = read_media(path, "photo", 1280)            # uploads and reports: the picture
    assert not plain.frames[0].reduced
    no_preview = decode_photo((testmedia / NO_PREVIEW_HEIC).read_bytes(), 1280, preview=True)
    assert not no_preview.frames[0].reduced


def test_the_faces_stage_looks_at_the_full_picture_when_a_preview_shows_a_face(
        testmedia, stages):
    """Each face photo as if it were a HEIC with a 320 px preview: the same faces."""
    from PIL import Image

    faces = stages[2]
    for rel in FACES:
        data = (testmedia / rel).read_bytes()
        full = decode_photo(data, faces.long_side).frames[0]
        small = Image.fromarray(full.image)
        small.thumbnail((320, 320))
        preview = Frame(0, None, np.asarray(small), full.scale * small.width / full.image.shape[1],
                        enlarge=lambda full=full: (full.image, full.scale))
        on_full, on_preview = faces.run([full], {}), faces.run([preview], {})
        boxes = [[round(v) for v in f.box] for fr in on_full.frames for f in fr.faces]
        assert [[round(v) for v in f.box] for fr in on_preview.frames for f in fr.faces] == boxes
        assert (preview.largest_decoded() is not preview) == bool(boxes), rel


# HEICs whose preview makes a stage ask for the full picture (objects, faces), and one whose
# preview is enough.
ON_DEMAND_HEICS = ["exif/phone/imm_iPhone7_IMG_2682.heic", "exif/phone/mei_Apple_iPhone_8.heic",
                   "exif/phone/pp_iPhone15Pro.heic", IPHONE_HEIC]


def _heic_gallery(testmedia, folder):
    folder.mkdir()
    for rel in ON_DEMAND_HEICS + FACES:
        shutil.copy(testmedia / rel, folder / Path(rel).name)
    return folder


def test_a_scan_decodes_full_heic_pictures_in_its_decode_threads_with_the_same_results(
        testmedia, tmp_path, stages, monkeypatch):
    folder = _heic_gallery(testmedia, tmp_path / "roll")
    threads = []
    decode_larger = Frame.decode_larger

    def noted(frame):
        if "larger" not in frame._cache:
            threads.append(threading.current_thread() is threading.main_thread())
        return decode_larger(frame)
    monkeypatch.setattr(Frame, "decode_larger", noted)
    with open_store(tmp_path / "g.db") as store:
        summary = run(store, [folder], Settings(stages=list(stages)))
        assert summary.failed == 0 and summary.analysed == len(ON_DEMAND_HEICS + FACES)
        stored = {p.name: store.results.all(store.media.by_path(str(p))["content_hash"],
                                            arrays=True) for p in folder.iterdir()}
    assert threads and not any(threads)       # 3 full pictures, none on the inference thread
    assert len(threads) == 3
    monkeypatch.setattr(Frame, "decode_larger", decode_larger)
    for name, results in stored.items():      # the same as each stage asking inline
        frames = read_media(folder / name, "photo", 1280, for_stages=True)[1].frames
        upstream = {}
        for stage in stages:
            upstream[stage.name] = stage.run(frames, {d: upstream[d] for d in stage.requires})
            want, want_arrays = encode(upstream[stage.name])
            assert results[stage.name].error is None, (name, stage.name)
            got, got_arrays = encode(results[stage.name].payload)
            assert got == want and got_arrays.keys() == want_arrays.keys(), (name, stage.name)
            assert all(np.allclose(got_arrays[k], want_arrays[k]) for k in want_arrays)


def test_a_full_heic_picture_that_cannot_be_decoded_is_the_asking_stages_error(
        testmedia, tmp_path, stages):
    """Within --max-decode-mb the preview decodes, the 12 MP picture does not: the stage
    that asked for it fails on that photo with the reason, the others keep their results."""
    folder = _heic_gallery(testmedia, tmp_path / "roll")
    problems = []
    with open_store(tmp_path / "g.db") as store:
        summary = run(store, [folder], Settings(stages=list(stages), max_decode_mb=20),
                      on_problem=lambda *a: problems.append(a))
        iphone7 = store.results.all(store.media.by_path(
            str(folder / "imm_iPhone7_IMG_2682.heic"))["content_hash"])
        jpeg = store.results.all(store.media.by_path(str(folder / "pp_face_1.jpg"))["content_hash"])
    assert "too large to decode within the memory limit" in iphone7["objects"].error
    assert iphone7["scenes"].error is None and iphone7["faces"].error is None
    assert all(r.error is None for r in jpeg.values())
    assert any("imm_iPhone7_IMG_2682.heic" in p[0] and "objects" in p[-1] for p in problems)
    assert summary.analysed == len(ON_DEMAND_HEICS + FACES)


# -- video -------------------------------------------------------------------------------

def _clip(path, frames: int, gop: int, still: bool = False, size=(160, 120)) -> None:
    """An H.264 clip with short groups of pictures: a square moving across a gradient
    (or, with `still`, a tripod shot with sensor noise)."""
    import av

    w, h = size
    rng = np.random.default_rng(7)
    base = np.zeros((h, w, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                          "preset": "veryfast"}
        for i in range(frames):
            img = base.copy()
            if still:
                img = np.clip(img + rng.normal(0, 1.0, img.shape), 0, 255).astype(np.uint8)
            else:
                x = (i * 3) % (w - 30)
                img[40:70, x:x + 30] = (255, 255, 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _every_frame(path, step: int, max_frames: int) -> dict[int, np.ndarray]:
    import av

    out = {}
    with av.open(str(path)) as container:
        for i, vf in enumerate(container.decode(video=0)):
            if i % step == 0 and len(out) < max_frames:
                out[i] = vf.to_ndarray(width=vf.width, height=vf.height, format="rgb24")
    return out


# step 5 in groups of 12 (the 24 samples would meet at 10 keyframes: each stays where the
# step puts it); step 20 skips groups of 10
@pytest.mark.parametrize("max_frames, gop", [(40, 12), (6, 10)])
def test_decoding_only_what_is_sampled_gives_the_same_frames(tmp_path, max_frames, gop):
    path = tmp_path / "VID_0001.mp4"
    _clip(path, 120, gop=gop)
    step = max(5, math.ceil(120 / max_frames))
    want = _every_frame(path, step, max_frames)
    got = decode_video(path, 640, 5, max_frames)
    assert [f.index for f in got.frames] == sorted(want)
    for f in got.frames:
        assert np.array_equal(f.image, want[f.index]), f.index
        assert f.same_as is None                          # repeats only for the stages


def test_a_step_longer_than_every_group_samples_the_nearest_keyframes(tmp_path):
    """120 frames in groups of 10, 5 samples: the step (24) spans whole groups, so each
    sample moves to its nearest keyframe (0, 24, 48, 72, 96 -> 0, 20, 50, 70, 100), which
    decodes alone; same count, the same pixels as decoding every frame gives there."""
    path = tmp_path / "VID_0001.mp4"
    _clip(path, 120, gop=10)
    got = decode_video(path, 640, 5, 5)
    assert [f.index for f in got.frames] == [0, 20, 50, 70, 100]
    every = _every_frame(path, 1, 120)
    for f in got.frames:
        assert np.array_equal(f.image, every[f.index]), f.index


def test_samples_meeting_at_keyframes_are_one_frame_while_most_stay_apart(tmp_path):
    """120 frames in groups of 10, at most 16 samples: the step (8) is under a group, the
    15 samples (0, 8, 16, ...) move to 12 keyframes (16 and 24 -> 20 are one frame): every
    keyframe once, the pixels of a full decode there. In groups of 20 they would meet at
    6 of 15, under half: the step's frames are decoded."""
    path = tmp_path / "VID_0001.mp4"
    _clip(path, 120, gop=10)
    got = decode_video(path, 640, 5, 16)
    assert [f.index for f in got.frames] == list(range(0, 120, 10))
    every = _every_frame(path, 1, 120)
    for f in got.frames:
        assert np.array_equal(f.image, every[f.index]), f.index
    _clip(path, 120, gop=20)
    assert [f.index for f in decode_video(path, 640, 5, 16).frames] == list(range(0, 120, 8))


def test_a_small_video_decodes_beside_a_full_size_decode_and_a_large_one_waits(tmp_path):
    small, large = tmp_path / "720p.mp4", tmp_path / "1080p.mp4"
    _clip(small, 6, 3, size=(1280, 720))
    _clip(large, 6, 3, size=(1920, 1080))
    done: dict[str, threading.Event] = {}

    def decode_in_a_thread(path) -> threading.Event:
        done[path.name] = threading.Event()
        threading.Thread(target=lambda: (decode_video(path, 1280, 1, 10),
                                         done[path.name].set()), daemon=True).start()
        return done[path.name]
    with frames_mod._FULL_SIZE_DECODES:          # a HEIC's full picture decoding meanwhile
        assert decode_in_a_thread(small).wait(20)
        large_done = decode_in_a_thread(large)
        assert not large_done.wait(1.0)            # waits for the full-size decode's slot
    assert large_done.wait(20)


def test_a_still_shot_is_analysed_once_and_still_counts_every_sampled_frame(tmp_path, stages):
    still, moving = tmp_path / "still.mp4", tmp_path / "moving.mp4"
    _clip(still, 60, gop=30, still=True)
    _clip(moving, 60, gop=30)
    plain = decode_video(still, 640, 5, 40)
    repeats = decode_video(still, 640, 5, 40, repeats=True)
    assert [f.index for f in repeats.frames] == [f.index for f in plain.frames]   # 12 frames
    assert repeats.frames[0].same_as is None
    assert all(f.same_as == 0 for f in repeats.frames[1:])
    assert not any(f.same_as is not None
                   for f in decode_video(moving, 640, 5, 40, repeats=True).frames)
    # the stages give a repeat its frame's result, under its own index
    objects, scenes, _ = stages
    result = objects.run(repeats.frames, {})
    assert [i for i, _ in result.frames] == [f.index for f in repeats.frames]
    assert all(d == result.frames[0][1] for _, d in result.frames)
    classes = scenes.run(repeats.frames, {}).frames
    assert all(c == classes[0][1] for _, c in classes)


# -- per-frame inputs --------------------------------------------------------------------

def test_inputs_made_ahead_in_a_decode_thread_are_what_run_makes(testmedia, stages):
    data = (testmedia / "scenes/darknet_dog.jpg").read_bytes()
    for stage in stages:
        fresh = decode_photo(data, stage.long_side).frames
        ahead = decode_photo(data, stage.long_side).frames
        stage.prepare(ahead)
        assert ahead[0]._cache, stage.name                # prepare left its inputs
        (made, made_arrays), (own, own_arrays) = (encode(stage.run(ahead, {})),
                                                  encode(stage.run(fresh, {})))
        assert made == own, stage.name
        assert made_arrays.keys() == own_arrays.keys()
        assert all(np.array_equal(made_arrays[k], own_arrays[k]) for k in own_arrays)


def test_the_stages_inputs_come_from_one_picture_let_go_after(testmedia, stages, monkeypatch):
    """A frame is copied into Pillow once for every stage's resizes (a photo not at all:
    the decoder's own picture is kept), and the picture is let go once the inputs are
    made, and once the faces stage, which crops from it, is done."""
    from PIL import Image

    from galprof.pipeline.ingest import _prepare
    from galprof.stages import PICTURE
    photo = decode_photo((testmedia / "scenes/darknet_dog.jpg").read_bytes(), 1280).frames[0]
    assert photo.picture() is photo.picture()
    assert np.array_equal(np.asarray(photo.picture()), photo.image)
    video = decode_video(testmedia / "videos/derived/intel_head-pose-face-detection-female-"
                                     "and-male_from_gif.mp4", 1280, 5, 2).frames[0]
    copies = []
    real = Image.fromarray
    monkeypatch.setattr(Image, "fromarray", lambda *a, **k: copies.append(1) or real(*a, **k))
    _prepare(list(stages), [photo])
    assert copies == []
    _prepare(list(stages), [video])
    assert copies == [1]
    monkeypatch.undo()
    for frame in (photo, video):
        assert PICTURE not in frame._cache
        assert all(stage._input_key() in frame._cache for stage in stages)
    # frame by frame: one picture alive at a time, whatever the number of frames
    frames = decode_video(testmedia / "videos/derived/intel_head-pose-face-detection-female-"
                                      "and-male_from_gif.mp4", 1280, 5, 4).frames
    alive = []

    class Counting:                   # a stage that only looks
        def prepare(self, some):
            alive.append(sum(PICTURE in f._cache for f in frames))
    _prepare([*stages, Counting()], frames)
    assert len(alive) == len(frames) > 1 and set(alive) == {1}
    faces = stages[2]
    faces.run([video], {})
    assert PICTURE not in video._cache and ("faces", "found") in video._cache


def test_a_photos_picture_waits_for_the_faces_stage_and_a_video_frame_brings_its_own(
        testmedia, stages, monkeypatch):
    """No frame is copied into Pillow twice: a photo keeps the decoder's picture through
    its inputs for the faces stage, which crops from it and lets it go; a video frame
    handed on as it decodes comes with the picture its still-shot signature was made
    from, which its inputs are resized from and let go."""
    from PIL import Image

    from galprof.pipeline.ingest import _prepare
    from galprof.stages import PICTURE
    photo = decode_photo((testmedia / "faces/deepface/couple.jpg").read_bytes(), 1280).frames[0]
    picture = photo.picture()
    _prepare(list(stages), [photo], keep_picture=True)
    assert photo._cache[PICTURE].picture is picture
    copies = []
    real = Image.fromarray
    monkeypatch.setattr(Image, "fromarray", lambda *a, **k: copies.append(a[0].shape) or
                        real(*a, **k))
    faces = stages[2]
    assert faces.run([photo], {}).frames[0].faces           # faces found, crops made
    assert PICTURE not in photo._cache
    assert all(shape[:2] != photo.image.shape[:2] for shape in copies)  # none of the frame
    copies.clear()
    arrived = []

    def on_frame(frame):
        arrived.append((PICTURE in frame._cache, len(copies)))
        _prepare(list(stages), [frame])
        arrived[-1] += (len(copies), PICTURE in frame._cache)
    read_media(testmedia / "videos/derived/intel_head-pose-face-detection-female-and-male_"
                           "from_gif.mp4", "video", 1280, 5, 4, for_stages=True,
               on_frame=on_frame)
    assert arrived and all(had and before == after and not left
                           for had, before, after, left in arrived)


def test_a_frame_is_resized_at_full_size_once_for_every_stage(testmedia, stages, monkeypatch):
    """The objects' letterbox is the frame's one downscaled copy (the pixels a direct resize
    gives); the scenes' and the face detector's inputs are resized from that copy."""
    from PIL import Image

    from galprof.pipeline.ingest import _prepare
    from galprof.stages import DOWNSCALED_SIDE, PICTURE
    frame = decode_photo((testmedia / "scenes/darknet_dog.jpg").read_bytes(), 1280).frames[0]
    picture = frame.picture()
    assert max(picture.size) > DOWNSCALED_SIDE
    sources = []
    real = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize",
                        lambda self, *a, **k: sources.append(self.size) or real(self, *a, **k))
    _prepare(list(stages), [frame])
    monkeypatch.undo()
    assert sources.count(picture.size) == 1 and len(sources) == 3
    objects, scenes, faces = stages
    letterboxed, _ = frame._cache[objects._input_key()]
    assert np.array_equal(letterboxed, objects.detector.letterboxed(picture)[0])
    copy = picture.resize(letterboxed.shape[1::-1], Image.BILINEAR)
    assert np.array_equal(frame._cache[scenes._input_key()], scenes.classifier.cropped(copy))
    canvas, (scale, _, _) = frame._cache[faces._input_key()]
    assert np.array_equal(canvas, faces.detector.full_pass_input(copy)[0])
    assert scale == pytest.approx(faces.detector.input_size / max(picture.size))  # frame pixels
    assert PICTURE not in frame._cache                  # the copy, let go with the picture


def test_photos_behind_a_video_still_decoding_are_finished_first(testmedia, tmp_path, stages,
                                                                 monkeypatch):
    """The inference thread does not wait for a long decode at the head of the queue
    while files behind it are ready: the video (first in the walk) is held in its decode
    thread until both photos are recorded, which happens within the 10 s allowed."""
    from galprof.pipeline import ingest

    folder = tmp_path / "roll"
    folder.mkdir()
    shutil.copy(testmedia / "videos/derived/intel_head-pose-face-detection-male_from_gif.mp4",
                folder / "0_clip.mp4")
    shutil.copy(testmedia / "scenes/darknet_dog.jpg", folder / "1_dog.jpg")
    shutil.copy(testmedia / "scenes/ul_bus.jpg", folder / "2_bus.jpg")
    started, finished, photos_done = [], [], threading.Event()
    real_read, real_finish, real_decode = frames_mod.read_media, ingest._finish, \
        frames_mod.decode_video

    def noted_read(path, *a, **k):
        started.append(Path(path).name)
        return real_read(path, *a, **k)

    def noted_finish(store, w, *a, **k):
        waiting = real_finish(store, w, *a, **k)
        if waiting is None:
            finished.append(w.found.path.name)
            if {"1_dog.jpg", "2_bus.jpg"} <= set(finished):
                photos_done.set()
        return waiting

    def held_decode(*a, **k):
        held.append(photos_done.wait(10))
        return real_decode(*a, **k)
    held: list[bool] = []
    monkeypatch.setattr(frames_mod, "read_media", noted_read)
    monkeypatch.setattr(ingest, "_finish", noted_finish)
    monkeypatch.setattr(frames_mod, "decode_video", held_decode)
    with open_store(tmp_path / "g.db") as store:
        summary = run(store, [folder], Settings(stages=list(stages)))
    assert summary.failed == 0 and summary.analysed == 3
    assert started[0] == "0_clip.mp4"
    assert held == [True] and finished == ["1_dog.jpg", "2_bus.jpg", "0_clip.mp4"]


def analysing_thread() -> bool:
    """Whether this is the inference thread or an analysis helper (not a decode thread)."""
    thread = threading.current_thread()
    return thread is threading.main_thread() or thread.name.startswith("galprof-analyse")


def test_a_video_is_analysed_while_it_decodes_with_the_same_results(
        testmedia, tmp_path, stages, monkeypatch):
    folder = tmp_path / "roll"
    folder.mkdir()
    shutil.copy(testmedia / "videos/derived/intel_head-pose-face-detection-female-and-male_from_gif.mp4",
                folder / "VID_0001.mp4")
    analysed: list[tuple[str, int, bool]] = []   # stage, frame, while the decode went on
    inputs_kept: list[bool] = []                 # a model input still held once analysed
    decoding = threading.Event()
    turn, gave_up = threading.Condition(), []
    real_decode, real_add = frames_mod.decode_video, frames_mod._Sampler.add

    def noted_decode(*a, **k):
        decoding.set()
        try:
            return real_decode(*a, **k)
        finally:
            decoding.clear()

    def add_in_turn(sampler, index, vf, time_base=None):
        # the decoder goes on once every stage has analysed the frame handed over (waiting
        # 10 s once at most): every frame can be analysed early, on any machine
        before = len(sampler.frames)
        real_add(sampler, index, vf, time_base)
        frame = sampler.frames[-1]
        if (sampler.on_frame is not None and len(sampler.frames) > before
                and frame.same_as is None and not gave_up):
            with turn:
                if not turn.wait_for(lambda: all((s.name, frame.index, True) in analysed
                                                 for s in stages), 10):
                    gave_up.append(frame.index)
    monkeypatch.setattr(frames_mod, "decode_video", noted_decode)
    monkeypatch.setattr(frames_mod._Sampler, "add", add_in_turn)
    inputs_at_run: list[bool] = []               # an input made again for a frame analysed
    for stage in stages:
        def timed_run(frames, upstream, stage=stage, run_=stage.run):
            inputs_at_run.extend(stage._input_key() in f._cache for f in frames)
            return run_(frames, upstream)
        monkeypatch.setattr(stage, "run", timed_run)

        def noted(frame, stage=stage, analyse=stage.analyse):
            analyse(frame)
            inputs_kept.append(stage._input_key() in frame._cache)
            with turn:
                analysed.append((stage.name, frame.index, decoding.is_set()
                                 and analysing_thread()))
                turn.notify_all()
        monkeypatch.setattr(stage, "analyse", noted)
    with open_store(tmp_path / "g.db") as store:
        summary = run(store, [folder], Settings(stages=list(stages)))
        assert summary.failed == 0 and summary.frames >= 10
        stored = store.results.all(store.media.by_path(str(folder / "VID_0001.mp4"))["content_hash"],
                                   arrays=True)
    monkeypatch.undo()
    frames = read_media(folder / "VID_0001.mp4", "video", 1280, for_stages=True)[1].frames
    fresh = [f.index for f in frames if f.same_as is None]
    for stage in stages:     # every frame, on an analysing thread, while the video decoded
        assert sorted(i for name, i, early in analysed if name == stage.name and early) == fresh
        want, want_arrays = encode(stage.run(frames, {}))      # as run alone makes it
        got, got_arrays = encode(stored[stage.name].payload)
        assert got == want and got_arrays.keys() == want_arrays.keys(), stage.name
        assert all(np.allclose(got_arrays[k], want_arrays[k]) for k in want_arrays)
    assert sum(len(f.faces) for f in stored["faces"].payload.frames) >= 10   # faces to compare
    assert inputs_kept and not any(inputs_kept)  # the results wait for the video, not inputs
    assert inputs_at_run and not any(inputs_at_run)   # nor are they made again after it


def test_a_frame_derives_each_input_once():
    frame = Frame(0, None, np.zeros((4, 4, 3), np.uint8), 1.0)
    calls = []
    assert frame.cached("k", lambda img: calls.append(1) or img.sum()) == 0
    assert frame.cached("k", lambda img: calls.append(1) or 1) == 0
    assert calls == [1]
    frame.cached("input", lambda img: img + 1)
    assert frame.cached("result", lambda img: 2, consumes=("input",)) == 2
    assert frame.cached("input", lambda img: calls.append(2) or 3) == 3   # made again
    assert calls == [1, 2]


# -- the benchmark -----------------------------------------------------------------------

def test_a_roll_is_the_phone_mix_of_unique_copies(testmedia, tmp_path):
    built = bench.build_roll([testmedia], tmp_path / "roll", 20)
    assert built["by_class"] == {"jpeg": 12, "heic": 6, "video": 2}
    files = [p for p in (tmp_path / "roll").iterdir()]
    assert len(files) == 20
    assert len({hash_bytes(p.read_bytes()) for p in files}) == 20


def _megapixels(path: Path) -> float:
    from PIL import Image
    import pillow_heif

    pillow_heif.register_heif_opener()
    with Image.open(path) as img:
        return img.width * img.height / 1e6


def test_a_roll_of_large_photos_draws_only_photos_of_that_size(testmedia, tmp_path):
    """A camera roll's photos are 12 MP, the test media's mostly under 1: with
    min_megapixels the roll draws only photos that large, and reports their median."""
    import statistics

    phone = testmedia / "exif/phone"
    sizes = {}
    for name, least in (("any", 0), ("large", 4)):
        built = bench.build_roll([phone], tmp_path / name, 20, min_megapixels=least)
        assert built["by_class"] == {"jpeg": 14, "heic": 6}      # no videos: their share moves
        assert built["min_megapixels"] == least
        sizes[name] = [_megapixels(p) for p in (tmp_path / name).iterdir()]
        assert built["photo_megapixels"] == round(statistics.median(sizes[name]), 1)
    assert min(sizes["large"]) >= 4 > min(sizes["any"])
    assert len(sizes["large"]) == 20
    with pytest.raises(SetupError, match=r"no JPEG, HEIC or MP4/MOV media \(photos of 100 MP "
                                         r"or more\) found"):
        bench.build_roll([phone], tmp_path / "none", 5, min_megapixels=100)
    r = CliRunner().invoke(cli, ["benchmark", str(phone), "--min-megapixels", "4"])
    assert r.exit_code == 1 and "give --roll N too" in r.output     # a usage error


def test_a_roll_from_a_messy_folder_names_its_failures_and_decodes_by_content(testmedia,
                                                                               tmp_path):
    """A user's folder: a truncated JPEG (opens, fails to decode) under a name that is
    not UTF-8 and looks like markup, and a JPEG named .heic. The failure is reported
    with the user's file it was copied from, and decode time goes by what a file holds,
    not by its name."""
    source = tmp_path / "DCIM"
    source.mkdir()
    bad_name = os.fsdecode(b"\xffbad[red].jpg")
    shutil.copy(testmedia / "corrupt/exifr_truncated_32d08f4a.jpg", source / bad_name)
    for rel in ("corrupt/pp_wrong_ext_jpeg_named.heic", "exif/phone/pp_iPhone7.heic",
                "exif/phone/pp_iPhoneSE_cat_brown.jpg"):
        shutil.copy(testmedia / rel, source)
    built = bench.build_roll([source], tmp_path / "roll", 4)
    assert built["by_class"] == {"jpeg": 3, "heic": 1}        # no videos: their share moves
    assert sorted(Path(p).name for p in built["copies"].values()) == sorted(
        p.name for p in source.iterdir())
    report = bench.roll_report(bench.measured_scan(tmp_path / "roll", ["scenes"]), built=built)
    assert report["failed"] == 1 and report["media"] == 3
    (failure,) = report["failures"]
    assert failure["source"] == str(source / bad_name)
    assert "decode" in failure["reason"]
    # read: the good JPEG and the JPEG named .heic (by name: 1 jpeg, 2 heic), the HEIC
    assert {fmt: d["files"] for fmt, d in report["decode"].items()} == {"jpeg": 2, "heic": 1}
    assert "copies" not in report["built"] and report["built"]["media"] == 4
    report["stage_names"] = ["scenes"]
    text = _rendered(bench.render_roll(report))
    assert "4 media (3 jpeg, 1 heic), 1 failed" in text
    assert f"{built['photo_megapixels']:g} MP median (a phone camera's: 12" in text
    assert "DCIM/\\xffbad[red].jpg): cannot decode" in text
    report["failures"] *= bench.FAILURES_SHOWN + 2          # a folder of broken files
    text = _rendered(bench.render_roll(report))
    assert text.count("cannot decode") == bench.FAILURES_SHOWN
    assert "and 2 more (--json lists them)" in text


def _rendered(table) -> str:
    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(table)
    return console.export_text()


def test_a_roll_that_would_fill_the_disk_is_refused_before_writing(testmedia, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr(bench, "ROLL_FREE_MARGIN_BYTES", shutil.disk_usage(tmp_path).free)
    with pytest.raises(SetupError, match=r"a roll needs at least \S+ MB in .* and \d+ MB left free; it has \S+ MB free: "
                       "ask for fewer media"):
        bench.build_roll([testmedia / "exif/phone"], tmp_path / "roll", 10)
    assert not list((tmp_path / "roll").iterdir())


def test_a_generated_phone_clip_has_1_s_groups_and_no_repeated_samples(tmp_path):
    """6 s at 30 frames/s in groups of 30; sampled at a 45-frame step (as a 60 s clip is
    with 40 samples) its frames move to keyframes (0, 30, 90, 120) whose pictures differ
    from the one before, so none is analysed as a repeat."""
    import av

    path = bench.generate_clip(tmp_path / "clip.mp4", "libx264", (320, 180), 6, 1_000_000)
    with av.open(str(path)) as c:
        keys = [i for i, p in enumerate(p for p in c.demux(video=0) if p.size)
                if p.is_keyframe]
    assert keys == [0, 30, 60, 90, 120, 150]
    for seconds in (2, 4):                    # shorter than a segment; one group past it
        short = bench.generate_clip(tmp_path / f"{seconds}.mp4", "libx264", (160, 90),
                                    seconds, 500_000)
        with av.open(str(short)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 30 * seconds
    got = decode_video(path, 320, 5, 4, repeats=True)
    assert [f.index for f in got.frames] == [0, 30, 90, 120]
    assert all(f.same_as is None for f in got.frames)


def test_a_clip_benchmark_scans_a_clip_against_real_time(tmp_path):
    spec = ("180p H.264 6 s", "libx264", (320, 180), 6, 1_000_000)
    result = bench.clip_benchmark(spec, tmp_path, ["scenes"], repeat=2)
    assert result["name"] == spec[0] and result["duration_s"] == 6
    assert result["frames"] == 36 and result["seconds"] > 0           # step 5: 36 samples
    assert result["real_time"] == round(6 / result["seconds"], 1)
    # two scans of the clip, the slower reported
    assert len(result["runs"]) == 2
    assert result["real_time"] == min(run["real_time"] for run in result["runs"])
    assert result["decode_seconds"] > 0 and result["peak_rss_mb"] > 0
    assert "scenes" in result["stage_seconds"]


@pytest.mark.slow
def test_benchmark_roll_reports_stages_decodes_and_memory(testmedia):
    result = CliRunner().invoke(cli, ["benchmark", str(testmedia), "--roll", "10",
                                      "--runs", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    roll = report["roll"]
    # the scan's model calls at the latency table's figures (at the scan's threads per
    # call), two at a time, and the bound
    latency = {row["model"]: cell["mean_ms"] for row in report["models"]
               for cell in row["latency"] if cell["threads"] == model_threads()}
    calls = {m: v["calls"] for s in roll["stages"].values() for m, v in s["models"].items()
             if v["calls"]}
    assert set(roll["models_alone"]["models"]) == set(calls) <= set(latency)
    alone = sum(n * latency[m] / 1000 for m, n in calls.items()) / min(2, os.cpu_count())
    assert roll["models_alone"]["seconds"] == pytest.approx(alone, abs=1e-3)
    assert roll["models_alone"]["media_per_s"] == round(10 / alone, 2) > roll["media_per_s"]
    assert roll["media"] == 10 and roll["failed"] == 0
    assert roll["frames"] >= roll["frames_analysed"] >= 10
    assert set(roll["stages"]) >= {"objects", "scenes", "faces"}
    for stage in roll["stages"].values():
        assert stage["ms_per_frame"] >= stage["model_ms_per_frame"] > 0
    assert set(roll["decode"]) == {"jpeg", "heic", "video"}
    assert roll["peak_rss_mb"] > 50 and 0 <= roll["outside_models_share"] < 1
