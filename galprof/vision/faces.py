"""Faces: BlazeFace detection (with tiling), the HSE network (identity, age, gender),
and the "faces" stage that runs both on the frames of a media item.

The model contracts (anchors, keypoint order, crop, colour order, outputs) are the
ones verified in `shared/models/MANIFEST.md` and declared in `models/manifest.toml`.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
from PIL import Image

from galprof import tunables
from galprof.errors import ModelMismatch
from galprof.payloads import Face, FacesFrame, FacesPayload, Track
from galprof.stages import PICTURE, Frame
from galprof.vision import transforms
from galprof.vision.base import Model
from galprof.vision.runtime import Session

# Bump when a change here can change the payload of the faces stage.
CODE_REVISION = 3


@tunables.defaults("faces")
class FaceTunables:
    """Every threshold of the face branch; values and the reasons for them are in
    galprof/tunables.toml [faces]."""

    min_score: float
    nms_iou: float
    tile_grid: int
    tile_overlap: float
    tile_min_score: float
    tile_hint_score: float
    tile_hint_side: float
    tile_min_short_side: int
    tile_edge_margin: float
    min_identity_side_original: float
    crop_scale: float
    track_min_cosine: float
    track_min_iou_no_features: float

    def digest(self) -> str:
        """A short hash of every value, for the stage version."""
        text = repr(sorted(asdict(self).items()))
        return hashlib.sha256(text.encode()).hexdigest()[:8]


DEFAULT_TUNABLES = FaceTunables()


@dataclass
class FaceBox:
    """One detected face, in pixels of the image given to the detector."""

    box: tuple[float, float, float, float]      # x1, y1, x2, y2
    score: float
    keypoints: list[tuple[float, float]]        # 0/1 eyes (image-left, image-right), 2 nose,
                                                # 3 mouth, 4/5 ears (image-left, image-right)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def roll(self) -> float:
        """The angle (radians, y down) of the line from the image-left to the image-right eye."""
        (lx, ly), (rx, ry) = self.keypoints[0], self.keypoints[1]
        return math.atan2(ry - ly, rx - lx)


@dataclass
class FaceAttributes:
    """What the HSE network says about one aligned face."""

    features: np.ndarray      # float32 (1024,), L2-normalised; compare by dot product
    age: float                # years, expectation over the 0..99 softmax
    male_prob: float          # sigmoid output; male when >= RelationParams.male_threshold


def _check_outputs(spec, session: Session, names: dict[str, str], widths: dict[str, int]) -> None:
    """Refuse a graph whose named outputs (from the manifest) are missing or mis-shaped."""
    have = {o.name: o.shape for o in session.outputs}
    for key, width in widths.items():
        name = names.get(key)
        if not name:
            raise ModelMismatch(f"{spec.file}: the manifest declares no output {key!r} for {spec.id}")
        if name not in have:
            raise ModelMismatch(f"{spec.file}: no output {name!r} (has {', '.join(have)})")
        if have[name][-1] != width and width > 0:
            raise ModelMismatch(f"{spec.file}: output {name} has shape {list(have[name])}, "
                                f"expected last dimension {width}")


# ---------------------------------------------------------------- detection


def _lowest_logit(p: float) -> float:
    """The logit under which no score reaches p, the inverse of the sigmoid less a margin
    that leaves the exact test to the scores (-inf outside 0 < p < 1: every logit may)."""
    return math.log(p / (1.0 - p)) - 1e-3 if 0.0 < p < 1.0 else -math.inf


_TILE_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="galprof-tiles")


def _made_ahead(make: Callable[[Any], Any], items: list) -> Iterator:
    """make(item) of each item in order: the first made here, the others in a helper
    thread meanwhile, so that the network runs on one while the next is made (Pillow
    lets go of the GIL while it resizes). Waiting on the helper for the first cost a
    hand-over between threads, in a scan often longer than the resize."""
    ahead = [_TILE_POOL.submit(make, item) for item in items[1:]]
    if items:
        yield make(items[0])
    for future in ahead:
        yield future.result()


class FaceDetector(Model):
    """BlazeFace full-range: faces with 6 keypoints, on the whole image and on tiles."""

    role: ClassVar[str] = "face_detector"
    GRID = 48            # 48 x 48 anchors, stride 4 on the 192 px input, one per cell
    VALUES = 16          # cx, cy, w, h, then 6 x (x, y)

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir=None, tunables: FaceTunables = DEFAULT_TUNABLES):
        super().__init__(model_id, threads, models_dir)
        self.tunables = tunables
        cells = (np.arange(self.GRID, dtype=np.float32) + 0.5) / self.GRID
        ax, ay = np.meshgrid(cells, cells)
        self._anchors = np.stack([ax.ravel(), ay.ravel()], axis=1)   # row-major, x fastest
        self.passes = 0      # network calls made by detect(), for benchmarks

    @property
    def input_size(self) -> int:
        return int(self.spec.input["shape"][1])

    def _check_contract(self, session: Session) -> None:
        super()._check_contract(session)
        shape = self.spec.input.get("shape")
        if not shape or list(session.inputs[0].shape) != list(shape):
            raise ModelMismatch(f"{self.spec.file}: input shape {list(session.inputs[0].shape)}, "
                                f"manifest says {shape}")
        if shape[1] != self.GRID * 4:
            raise ModelMismatch(f"{self.spec.file}: input {shape[1]} px does not fit a "
                                f"{self.GRID}x{self.GRID} stride-4 anchor grid")
        _check_outputs(self.spec, session, self.spec.output,
                       {"regressors": self.VALUES, "classifiers": 1})
        rows = {o.name: o.shape[1] for o in session.outputs}
        if rows[self.spec.output["regressors"]] != self.GRID * self.GRID:
            raise ModelMismatch(f"{self.spec.file}: {rows[self.spec.output['regressors']]} "
                                f"anchors, expected {self.GRID * self.GRID}")

    # One pass over one image (the base class's predict): a list of FaceBox.
    def _preprocess(self, image: np.ndarray):
        return self._letterbox(Image.fromarray(image), None)

    def _canvas(self, picture: Image.Image, window: tuple[int, int, int, int] | None):
        """A region of the picture (all of it when window is None), centred on the
        network's square uint8 input; the context maps input pixels back to the picture.
        Resizing straight from a region of one PIL image, tiles cost no array copy.
        """
        size = self.input_size
        x1, y1, x2, y2 = window or (0, 0, picture.width, picture.height)
        scale = min(size / (x2 - x1), size / (y2 - y1))
        nw, nh = max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale))
        ox, oy = (size - nw) // 2, (size - nh) // 2
        small = picture.resize((nw, nh), Image.BILINEAR, box=(x1, y1, x2, y2), reducing_gap=3.0)
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[oy:oy + nh, ox:ox + nw] = np.asarray(small)
        return canvas, (scale, ox - x1 * scale, oy - y1 * scale)

    def _letterbox(self, picture: Image.Image, window: tuple[int, int, int, int] | None):
        canvas, context = self._canvas(picture, window)
        return [transforms.normalise_minus_one_to_one(canvas)[None]], context

    def full_pass_input(self, image: np.ndarray | Image.Image):
        """(uint8 canvas, context) of the pass over the whole image (or its PIL picture);
        pure, so a decode thread may make it ahead (Frame.cached)."""
        return self._canvas(transforms.resizable(image), None)

    def _outputs(self, canvas: np.ndarray) -> dict[str, np.ndarray]:
        """The network's outputs on one canvas, read in place: what is decoded from them
        is a copy, and the views must be gone before the next call."""
        outputs = self.session.run([transforms.normalise_minus_one_to_one(canvas)[None]],
                                   copy=False)
        self.passes += 1
        return outputs

    def _run_pass(self, canvas: np.ndarray, context, hints: bool = False):
        """Faces of one letterboxed region; with `hints`, also the boxes (N, 4, picture
        pixels) of what the pass could not resolve: found faces under tile_hint_side at
        the detector input and unsure face-like candidates away from them (see
        FaceTunables.tile_hint_score)."""
        outputs = self._outputs(canvas)
        t = self.tunables
        unsure_too = hints and t.tile_hint_score > 0   # 0: every tile, always (tiles_at)
        # one decode for faces and hints: the faces are the candidates at min_score or above
        boxes, scores, points = self._decode(
            outputs, context, min(t.tile_hint_score, t.min_score) if unsure_too else t.min_score)
        sure = scores >= t.min_score
        faces = self._merged(boxes[sure], scores[sure], points[sure])
        if not hints:
            return faces
        if not unsure_too:
            return faces, np.zeros((0, 4), np.float32)
        scale = context[0]
        small = [f.box for f in faces if min(f.width, f.height) * scale < t.tile_hint_side]
        unsure = boxes[~sure]
        apart = np.ones(len(unsure), bool)
        for face in faces:
            apart &= transforms.iou(np.array(face.box), unsure) <= t.nms_iou
        return faces, np.concatenate([np.array(small, np.float32).reshape(-1, 4),
                                      unsure[apart].astype(np.float32)])

    def glance(self, image: np.ndarray, full_pass=None) -> bool:
        """Whether one pass over the whole image sees a face or a face-like candidate
        (an anchor scoring at least tile_hint_score): a preview without either has no
        face that the full picture would show at the detector's 192 px, and no hint that
        would make the full picture's tiles run. `full_pass`: full_pass_input(image)."""
        self.load()
        t = self.tunables
        canvas, context = full_pass if full_pass is not None else self.full_pass_input(image)
        outputs = self._outputs(canvas)
        if t.tile_hint_score <= 0:
            return True
        _, scores, _ = self._decode(outputs, context, min(t.tile_hint_score, t.min_score))
        return bool(len(scores))

    def _decode(self, outputs: dict[str, np.ndarray], context, threshold: float):
        """Boxes (N, 4), scores (N,) and keypoints (N, 6, 2) of the anchors scoring at
        least `threshold`, in picture pixels, before NMS."""
        scale, ox, oy = context
        size = self.input_size
        logits = outputs[self.spec.output["classifiers"]].reshape(-1)
        # The sigmoid only of the logits that can reach the threshold: most of the 2,304
        # anchors are far below it.
        near = np.flatnonzero(logits >= _lowest_logit(threshold))
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[near], -80.0, 80.0)))
        passed = scores >= threshold
        keep, scores = near[passed], scores[passed]
        raw = outputs[self.spec.output["regressors"]].reshape(-1, self.VALUES)[keep]
        anchors = self._anchors[keep] * size       # anchor centres in input pixels
        centres = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centres - half, centres + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        # letterbox pixels back to picture pixels
        offset = np.array([ox, oy], np.float32)
        return (boxes - np.tile(offset, 2)) / scale, scores, (points - offset) / scale

    def _postprocess(self, outputs: dict[str, np.ndarray], context) -> list[FaceBox]:
        return self._merged(*self._decode(outputs, context, self.tunables.min_score))

    def _merged(self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray
                ) -> list[FaceBox]:
        """The faces of decoded candidates, overlapping ones merged (weighted NMS)."""
        if len(scores) == 0:
            return []
        boxes, merged, points = transforms.weighted_nms(boxes, scores, self.tunables.nms_iou,
                                                        points)
        return [FaceBox(tuple(float(v) for v in b), float(s), [(float(x), float(y)) for x, y in p])
                for b, s, p in zip(boxes, merged, points)]

    def tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The tile windows (x1, y1, x2, y2) for an image of this size; [] when none."""
        t = self.tunables
        short = min(width, height)
        if short < t.tile_min_short_side or t.tile_grid < 2:
            return []
        n = t.tile_grid
        side = max(1, math.ceil(short / (n - (n - 1) * t.tile_overlap)))

        def starts(length: int) -> list[int]:
            if length <= side:
                return [0]
            count = math.ceil((length - side) / (side * (1 - t.tile_overlap)) - 1e-6) + 1
            return [round(i * (length - side) / (count - 1)) for i in range(count)]

        return [(x, y, min(width, x + side), min(height, y + side))
                for y in starts(height) for x in starts(width)]

    def tiles_at(self, hints: np.ndarray, width: int, height: int
                 ) -> list[tuple[int, int, int, int]]:
        """The tile windows that overlap a hint box (N, 4): the tiles that can show
        what the full pass saw too small; a tile far from every hint would only look for
        faces that left no trace at all. Every tile when tile_hint_score is 0."""
        windows = self.tiles(width, height)
        if self.tunables.tile_hint_score <= 0:
            return windows
        if not len(hints):
            return []
        x1, y1, x2, y2 = hints.T
        return [w for w in windows
                if bool(np.any((x1 < w[2]) & (x2 > w[0]) & (y1 < w[3]) & (y2 > w[1])))]

    def detect(self, image: np.ndarray, tile: bool = True, full_pass=None,
               picture=None) -> list[FaceBox]:
        """Faces of an RGB uint8 image, highest score first, in the image's pixels.

        With `tile`, an image whose full pass hints at small faces is also searched
        tile by tile (see FaceTunables) and the detections merged by NMS. `full_pass`:
        full_pass_input(image), when the caller keeps it; `picture`: a function giving
        the image as a PIL image, when the caller shares one.
        """
        self.load()
        canvas, context = full_pass if full_pass is not None else self.full_pass_input(image)
        if not tile:
            return self._run_pass(canvas, context)
        found, hints = self._run_pass(canvas, context, hints=True)
        h, w = image.shape[:2]
        windows = self.tiles_at(hints, w, h)
        if not windows:
            return found
        picture = picture() if picture is not None else Image.fromarray(image)
        canvases = _made_ahead(lambda window: self._canvas(picture, window), windows)
        for (x1, y1, x2, y2), canvas in zip(windows, canvases):
            margin = self.tunables.tile_edge_margin * (x2 - x1)
            for face in self._run_pass(*canvas):
                bx1, by1, bx2, by2 = face.box
                cut = (face.score < self.tunables.tile_min_score
                       or (x1 > 0 and bx1 < x1 + margin) or (y1 > 0 and by1 < y1 + margin)
                       or (x2 < w and bx2 > x2 - margin) or (y2 < h and by2 > y2 - margin))
                if not cut:
                    found.append(face)
        if len(found) < 2:
            return found
        keep = transforms.nms(np.array([f.box for f in found]), np.array([f.score for f in found]),
                              self.tunables.nms_iou)
        return [found[i] for i in keep]


# ---------------------------------------------------------------- identity, age, gender


class FaceAnalyzer(Model):
    """Savchenko's HSE multi-output network: identity features, age and gender in one call."""

    role: ClassVar[str] = "face_analyzer"
    FEATURES = 1024
    AGES = 100

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir=None, tunables: FaceTunables = DEFAULT_TUNABLES):
        super().__init__(model_id, threads, models_dir)
        self.tunables = tunables
        self._ages = np.arange(self.AGES, dtype=np.float32)

    @property
    def input_size(self) -> int:
        return int(self.spec.input["shape"][1])

    def _check_contract(self, session: Session) -> None:
        super()._check_contract(session)
        if self.spec.input.get("color") != "BGR" or len(self.spec.input.get("mean", ())) != 3:
            raise ModelMismatch(f"{self.spec.file}: the manifest must declare BGR input and a "
                                f"3-channel mean for {self.spec.id}")
        _check_outputs(self.spec, session, self.spec.output,
                       {"features": self.FEATURES, "age": self.AGES, "gender": 1})

    def align(self, image: np.ndarray, face: FaceBox, picture: Image.Image | None = None
              ) -> np.ndarray:
        """The face's square crop (crop_scale x its box), rotated so the eyes are level,
        as an RGB uint8 array of the network's input size. `picture`: the image as a PIL
        image, when the caller has made it (one per frame for all its faces)."""
        size = self.input_size
        x1, y1, x2, y2 = face.box
        side = self.tunables.crop_scale * max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        angle = face.roll
        # Pillow's affine resampling does not low-pass: shrink the neighbourhood with an
        # antialiased resize first when the crop is much larger than the output.
        factor = side / size
        if factor > 1.5:
            reach = side / 2 * (abs(math.cos(angle)) + abs(math.sin(angle))) + 2
            box = (round(cx - reach), round(cy - reach), round(cx + reach), round(cy + reach))
            patch = (picture if picture is not None else Image.fromarray(image)).crop(box)
            n = max(1, round((box[2] - box[0]) / factor))
            patch = np.asarray(patch.resize((n, n), Image.BILINEAR))
            r = n / (box[2] - box[0])
            return transforms.rotated_square_crop(patch, (cx - box[0]) * r, (cy - box[1]) * r,
                                                  side * r, angle, size)
        return transforms.rotated_square_crop(picture if picture is not None else image,
                                              cx, cy, side, angle, size)

    def _preprocess(self, crop: np.ndarray):
        size = self.input_size
        if crop.shape[:2] != (size, size):
            crop = transforms.resize(crop, size, size)
        bgr = transforms.rgb_to_bgr(crop)
        return [transforms.normalise_mean_std(bgr, self._mean)[None]], None

    def _postprocess(self, outputs: dict[str, np.ndarray], context) -> FaceAttributes:
        out = self.spec.output
        features = outputs[out["features"]].reshape(-1).astype(np.float32)
        features /= max(float(np.linalg.norm(features)), 1e-12)
        ages = outputs[out["age"]].reshape(-1).astype(np.float64)
        age = float((ages * self._ages).sum() / max(ages.sum(), 1e-12))
        male = float(outputs[out["gender"]].reshape(-1)[0])
        return FaceAttributes(features, age, male)

    @property
    def _mean(self) -> np.ndarray:
        return np.asarray(self.spec.input["mean"], np.float32)

    def analyze(self, image: np.ndarray, face: FaceBox, picture: Image.Image | None = None
                ) -> FaceAttributes:
        """Identity features, age and gender of one detected face of `image` (`picture`:
        the same image as a PIL image, when the caller has one)."""
        return self.predict(self.align(image, face, picture))


# ---------------------------------------------------------------- the stage


@dataclass
class _Face:
    frame: int                       # position in the frames list
    box: FaceBox                     # analysis pixels
    original_box: list[float]
    identity: bool
    attrs: FaceAttributes | None = None
    track: int | None = None


class FacesStage:
    """The "faces" scan stage: detect faces on every frame, analyse the ones big enough
    for identity, and track them across the sampled frames of a video (`FacesPayload`,
    boxes and keypoints in original oriented media pixels; age, gender and features only
    for faces big enough for identity; tracks only for videos).
    """

    name = "faces"
    requires: tuple[str, ...] = ()

    def __init__(self, detector_id: str | None = None, analyzer_id: str | None = None,
                 threads: int | None = None, models_dir=None,
                 tunables: FaceTunables = DEFAULT_TUNABLES, detector: FaceDetector | None = None,
                 analyzer: FaceAnalyzer | None = None, long_side: int = 1280):
        self.tunables = tunables
        self.detector = detector or FaceDetector(detector_id, threads, models_dir, tunables)
        self.analyzer = analyzer or FaceAnalyzer(analyzer_id, threads, models_dir, tunables)
        # 1280: with 2x2-ish tiles a face of ~30 px is found and faces of 36 px get
        # identity; 960 and 1600 found the same faces on the test set (bench/faces_quality.py).
        self.long_side = long_side

    @property
    def version(self) -> str:
        return (f"{self.detector.version}+{self.analyzer.version}"
                f"+faces-r{CODE_REVISION}-{self.tunables.digest()}")

    def models(self):
        return [self.detector.spec, self.analyzer.spec]

    def check(self) -> None:
        self.detector.check()
        self.analyzer.check()

    def load(self) -> None:
        self.detector.load()
        self.analyzer.load()

    def unload(self) -> None:
        """Let go of the model sessions (their memory) until the next load()."""
        self.detector.unload()
        self.analyzer.unload()

    def _input_key(self) -> tuple:
        return "faces", self.detector.input_size

    def _full_pass(self, frame: Frame):
        return frame.cached_from_picture(self._input_key(), self.detector.full_pass_input)

    def prepare(self, frames: list[Frame]) -> None:
        """The full detector pass's input of every frame analysed (in a decode thread)."""
        for frame in frames:
            if frame.same_as is None:
                self._full_pass(frame)

    def _found(self, frame: Frame) -> list[tuple]:
        """(box, original box, identity, attributes) of each face of a frame at the
        stage's size; kept on the frame."""
        def find(image: np.ndarray) -> list[tuple]:
            picture = frame.picture      # one PIL copy of the frame for its tiles and crops
            found = []
            for box in self.detector.detect(image, full_pass=self._full_pass(frame),
                                            picture=picture):
                original = [v / frame.scale for v in box.box]
                side = min(original[2] - original[0], original[3] - original[1])
                identity = side >= self.tunables.min_identity_side_original
                found.append((box, original, identity))
            wanted = [box for box, _, identity in found if identity]
            whole = picture() if wanted else None
            crops = _made_ahead(lambda box: self.analyzer.align(image, box, whole), wanted)
            return [(box, original, identity,
                     self.analyzer.predict(next(crops)) if identity else None)
                    for box, original, identity in found]
        return frame.cached(("faces", "found"), find,
                            consumes=(self._input_key(), PICTURE))

    def analyse(self, frame: Frame) -> None:
        """Faces and their attributes on one frame of a video, ahead of `run` (kept on
        the frame)."""
        if not frame.reduced:
            self._found(frame)

    def run(self, frames: list[Frame], upstream: dict[str, Any]) -> FacesPayload:
        t = self.tunables
        faces: list[_Face] = []
        used: list[Frame] = []               # the frame analysed at each position
        position: dict[int, int] = {}        # frame index -> position
        for pos, frame in enumerate(frames):
            if frame.same_as in position:    # a repeat of an earlier sampled frame
                first = position[frame.same_as]
                faces += [_Face(pos, f.box, f.original_box, f.identity, f.attrs)
                          for f in faces if f.frame == first]
                used.append(used[first])
                position[frame.index] = pos
                continue
            position[frame.index] = pos
            # A preview (HEIC) is enough to see that there is no face; faces, or a hint
            # of one, are looked at in the full picture, as if it had been decoded first.
            if frame.reduced and not self.detector.glance(frame.image, self._full_pass(frame)):
                used.append(frame)
                continue
            frame = frame.at_least(self.long_side)
            used.append(frame)
            faces += [_Face(pos, *found) for found in self._found(frame)]
        is_video = len(frames) > 1 or any(f.timestamp is not None for f in frames)
        tracks = _track(faces, len(frames), t) if is_video else []
        return _payload([Frame(f.index, f.timestamp, u.image, u.scale) for f, u in zip(frames, used)],
                        faces, tracks, is_video)


def _track(faces: list[_Face], n_frames: int, t: FaceTunables) -> list[list[_Face]]:
    """Greedy frame-to-frame association; sets face.track and returns the tracks."""
    by_frame: list[list[_Face]] = [[] for _ in range(n_frames)]
    for face in faces:
        by_frame[face.frame].append(face)
    tracks: list[list[_Face]] = []
    previous: list[_Face] = []
    for current in by_frame:
        pairs = []
        for i, a in enumerate(previous):
            for j, b in enumerate(current):
                overlap = float(transforms.iou(np.array(a.box.box), np.array([b.box.box]))[0])
                if a.attrs is not None and b.attrs is not None:
                    cosine = float(a.attrs.features @ b.attrs.features)
                    if cosine >= t.track_min_cosine:
                        pairs.append((cosine + overlap, i, j))
                elif overlap >= t.track_min_iou_no_features:
                    pairs.append((overlap, i, j))
        used_a, used_b = set(), set()
        for _, i, j in sorted(pairs, reverse=True):
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            current[j].track = previous[i].track
            tracks[current[j].track].append(current[j])
        for face in current:
            if face.track is None:
                face.track = len(tracks)
                tracks.append([face])
        previous = current
    return tracks


def _payload(frames: list[Frame], faces: list[_Face], tracks: list[list[_Face]],
             is_video: bool) -> FacesPayload:
    out_frames: list[list[Face]] = [[] for _ in frames]
    features = []
    for face in faces:
        scale = frames[face.frame].scale
        attrs = face.attrs
        row = None
        if attrs is not None:
            row = len(features)
            features.append(attrs.features)
        out_frames[face.frame].append(Face(
            box=tuple(float(v) for v in face.original_box), score=face.box.score,
            keypoints=[(x / scale, y / scale) for x, y in face.box.keypoints],
            age=None if attrs is None else attrs.age,
            male_prob=None if attrs is None else attrs.male_prob,
            identity=face.identity, feature_row=row, track=face.track))
    out_tracks, track_features = [], []
    for tid, members in enumerate(tracks):
        with_features = [m.attrs.features for m in members if m.attrs is not None]
        row = None
        if with_features:
            mean = np.mean(with_features, axis=0)
            row = len(track_features)
            track_features.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        out_tracks.append(Track(tid, [frames[m.frame].index for m in members], len(members), row))
    dim = FaceAnalyzer.FEATURES
    return FacesPayload(
        [FacesFrame(f.index, f.timestamp, found) for f, found in zip(frames, out_frames)],
        out_tracks, np.array(features, np.float32).reshape(-1, dim),
        np.array(track_features, np.float32).reshape(-1, dim) if is_video else None, is_video)
