"""Text on the device: the PP-OCRv4 mobile detector and recogniser, and the "text" scan stage.

The ONNX files come with the PyPI package rapidocr-onnxruntime (the `text` extra); the
manifest finds them inside the installed package and checks their sha256. galprof uses
the files, not the package's API: the package's pipeline needs OpenCV, Shapely and
pyclipper (about 70 MB, and no OpenCV wheels for Termux), hard-codes its thresholds and
thread settings, and reads every line it finds. Here the pre/post-processing is numpy
and Pillow (the regions in galprof/vision/regions.py, as SciPy's ndimage finds them
without its import), the models run on galprof's runtime like every other model, and
recognition reads only the few lines a decision needs (galprof/documents.py chooses them).

Detector contract (manifest `ppocr_v4_det`, PaddleOCR's DB head): BGR, (x/255 - 0.5)/0.5,
NCHW, height and width multiples of 32; the output is a text probability per input pixel.
Post-processing follows DB: binarise at 0.3, dilate by one pixel, connected regions, keep
regions whose mean probability is at least 0.5, then grow each region's rectangle back by
area * 1.6 / perimeter (DB's "unclip"; the network marks a shrunk core of each line).
Regions become oriented rectangles from the principal axes of their pixels, which is what
OpenCV's minAreaRect gives for the bar-shaped regions of text lines.

Recogniser contract (`ppocr_v4_rec`, CTC): a line crop rectified to 48 px high, BGR,
(x/255 - 0.5)/0.5, padded on the right; per time step a softmax over blank, the 6623
characters of the graph's metadata, and a space.
"""

from __future__ import annotations

import dataclasses
import mmap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from galprof import documents
from galprof.errors import ModelMismatch
from galprof.stages import ModelsDeferred
from galprof.vision import manifest, regions, transforms
from galprof.vision.base import Model
from galprof.vision.runtime import Session, open_session

# The models the text classes use when given no id ("default" in the manifest means a
# required model; these are optional, installed with the text extra).
DETECTOR_ID = "ppocr_v4_det"
RECOGNIZER_ID = "ppocr_v4_rec"

# Regions of fewer pixels (on the detector's input) are specks, not text.
MIN_REGION_PIXELS = 6
# The package drops boxes whose short side is under min_size + 2 = 5 detector pixels.
MIN_BOX_SIDE = 5.0
# Regions per image considered at most: a photo of gravel can light up thousands.
MAX_REGIONS = 1000
# Recognition: line crops per network call, and the widest crop (in units of its height)
# read in one piece: an MRZ line of 44 characters is about 27 heights wide.
REC_BATCH = 6
REC_MAX_RATIO = 40.0


def available() -> bool:
    """Whether the text models are installed (the `text` extra), without importing or
    hashing anything: for turning the text stage on by default."""
    for model_id in (DETECTOR_ID, RECOGNIZER_ID):
        path = manifest.package_path(manifest.get(model_id))
        if path is None or not path.is_file():
            return False
    return True


@dataclass(frozen=True)
class TextBox:
    """One detected text line (or word): an oriented rectangle in image pixels.

    quad: corners top-left, top-right, bottom-right, bottom-left, "left" and "right" along
    the line's long axis (the reading direction of a horizontal line).
    """

    quad: tuple[tuple[float, float], ...]
    score: float

    @property
    def center(self) -> tuple[float, float]:
        q = np.asarray(self.quad)
        return float(q[:, 0].mean()), float(q[:, 1].mean())

    @property
    def width(self) -> float:
        """Length along the line."""
        q = np.asarray(self.quad)
        return float(np.hypot(*(q[1] - q[0])))

    @property
    def height(self) -> float:
        """Thickness across the line (about the height of its letters)."""
        q = np.asarray(self.quad)
        return float(np.hypot(*(q[3] - q[0])))

    @property
    def angle(self) -> float:
        """Degrees of the long axis from the image's x axis, in (-90, 90]."""
        q = np.asarray(self.quad)
        dx, dy = q[1] - q[0]
        return float(np.degrees(np.arctan2(dy, dx)))

    def bounds(self) -> tuple[float, float, float, float]:
        q = np.asarray(self.quad)
        return (float(q[:, 0].min()), float(q[:, 1].min()),
                float(q[:, 0].max()), float(q[:, 1].max()))

    def scaled(self, factor: float) -> "TextBox":
        return TextBox(tuple((x * factor, y * factor) for x, y in self.quad), self.score)

    def to_json(self) -> dict:
        return {"quad": [[round(float(x), 1), round(float(y), 1)] for x, y in self.quad],
                "score": round(float(self.score), 3)}

    @classmethod
    def from_json(cls, d: dict) -> "TextBox":
        return cls(tuple((float(x), float(y)) for x, y in d["quad"]), float(d["score"]))


def _shape_matches(got, want) -> bool:
    """Shapes agree where the manifest fixes a size (-1 there means any size)."""
    return len(got) == len(want) and all(w < 0 or g == w or g <= 1 for g, w in zip(got, want))


def _check_shapes(spec, session: Session) -> None:
    want_in, want_out = spec.input.get("shape"), spec.output.get("shape")
    got_in, got_out = list(session.inputs[0].shape), list(session.outputs[0].shape)
    if want_in and not _shape_matches(got_in, want_in):
        raise ModelMismatch(f"{spec.file}: input shape {got_in}, manifest says {want_in}")
    if want_out and not _shape_matches(got_out, want_out):
        raise ModelMismatch(f"{spec.file}: output shape {got_out}, manifest says {want_out}")


def _normalise_bgr(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> BGR float32 (3, H, W) in [-1, 1], written into `out` when
    given: a channel at a time in place (a 960 px detector input was four whole-image
    float passes, each into a new 14 MB array)."""
    if out is None:
        out = np.empty((3, *rgb.shape[:2]), np.float32)
    for c in range(3):
        plane = out[c]
        plane[...] = rgb[..., 2 - c]
        plane *= np.float32(2.0 / 255.0)
        plane -= np.float32(1.0)
    return out


# ---------------------------------------------------------------- detection


class TextDetector(Model):
    """PP-OCRv4 mobile DB detector; `predict(rgb)` -> list[TextBox] in the image's pixels.

    long_side: the image is resized so that its long side is at most this (and both sides
    are multiples of 32) before detection; text lines need about 8 px of height there.
    """

    role = "text_detector"

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir: Path | None = None, long_side: int = 960):
        super().__init__(model_id or DETECTOR_ID, threads, models_dir)
        self.long_side = int(long_side)
        self.multiple = int(self.spec.input.get("multiple", 32))
        self.binarise = float(self.spec.output.get("binarise", 0.3))
        self.box_score = float(self.spec.output.get("box_score", 0.5))
        self.unclip = float(self.spec.output.get("unclip", 1.6))

    @property
    def version(self) -> str:
        return f"{self.spec.version}-{self.long_side}"

    def _check_contract(self, session: Session) -> None:
        _check_shapes(self.spec, session)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The detector's (width, height) for an image: long side capped, multiples of 32."""
        f = min(1.0, self.long_side / max(width, height))
        m = self.multiple
        return (max(m, int(round(width * f / m)) * m), max(m, int(round(height * f / m)) * m))

    def _preprocess(self, image: np.ndarray) -> tuple[list[np.ndarray], Any]:
        h, w = image.shape[:2]
        iw, ih = self.input_size(w, h)
        return [_normalise_bgr(transforms.resize(image, iw, ih))[None]], (w / iw, h / ih)

    def _postprocess(self, outputs: dict[str, np.ndarray], context: Any) -> list[TextBox]:
        sx, sy = context
        prob = outputs[self.session.outputs[0].name][0, 0]
        boxes = boxes_from_probability(prob, self.binarise, self.box_score, self.unclip)
        return [TextBox(tuple((x * sx, y * sy) for x, y in b.quad), b.score) for b in boxes]


def boxes_from_probability(prob: np.ndarray, binarise: float, box_score: float,
                           unclip: float) -> list[TextBox]:
    """DB post-processing of a text probability map into oriented line boxes (map pixels)."""
    labels, n, bounds = regions.label(regions.dilate_2x2(prob > binarise))
    if n == 0:
        return []
    # per region, in the pixels' order (what scipy.ndimage.mean sums)
    flat = labels.reshape(-1)
    sizes = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    scores = np.bincount(flat, weights=prob.reshape(-1), minlength=n + 1)[1:] / sizes
    keep = np.nonzero((sizes >= MIN_REGION_PIXELS) & (scores >= box_score))[0]
    if len(keep) > MAX_REGIONS:
        keep = keep[np.argsort(-sizes[keep])[:MAX_REGIONS]]
    height, width = prob.shape
    out = []
    for k in keep:
        r0, r1, c0, c1 = bounds[k]
        ys, xs = np.nonzero(labels[r0:r1, c0:c1] == k + 1)
        points = np.stack([xs + c0 + 0.5, ys + r0 + 0.5], 1).astype(np.float64)
        rect = _oriented_rectangle(points)
        if rect is None:
            continue
        (cx, cy), (w, h), (ux, uy) = rect
        d = w * h * unclip / (2 * (w + h))       # DB unclip: offset = area * ratio / perimeter
        w, h = w + 2 * d, h + 2 * d
        if min(w, h) < MIN_BOX_SIDE:
            continue
        vx, vy = -uy, ux                           # across the line, pointing down
        quad = []
        for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            x = cx + a * ux * w / 2 + b * vx * h / 2
            y = cy + a * uy * w / 2 + b * vy * h / 2
            quad.append((float(np.clip(x, 0, width)), float(np.clip(y, 0, height))))
        out.append(TextBox(tuple(quad), float(scores[k])))
    return out


def _oriented_rectangle(points: np.ndarray):
    """((cx, cy), (long, short), unit long axis) of the smaller of the principal-axes and the
    axis-aligned rectangle around pixel centres (each pixel counts as a unit square)."""
    if len(points) < 3:
        return None
    centre = points.mean(axis=0)
    cov = np.cov((points - centre).T)
    evals, evecs = np.linalg.eigh(cov)
    candidates = [np.array([1.0, 0.0]), evecs[:, 1]]
    best = None
    for u in candidates:
        v = np.array([-u[1], u[0]])
        pu, pv = (points - centre) @ u, (points - centre) @ v
        w, h = pu.max() - pu.min() + 1.0, pv.max() - pv.min() + 1.0
        mid = centre + u * (pu.max() + pu.min()) / 2 + v * (pv.max() + pv.min()) / 2
        if best is None or w * h < best[0] - 1e-6:
            best = (w * h, mid, w, h, u)
    _, mid, w, h, u = best
    if h > w:                                       # make u the long axis
        w, h, u = h, w, np.array([-u[1], u[0]])
    if u[0] < 0 or (u[0] == 0 and u[1] < 0):        # point "right" (or down for vertical lines)
        u = -u
    return (float(mid[0]), float(mid[1])), (float(w), float(h)), (float(u[0]), float(u[1]))


# ---------------------------------------------------------------- recognition


@dataclass(frozen=True)
class ReadLine:
    text: str
    score: float      # mean probability of the characters read (0 when nothing was read)


def onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (ModelProto field 14), read without onnx itself."""

    def varint(buf, pos):
        value = shift = 0
        while True:
            if pos >= len(buf):
                raise ModelMismatch(f"{path.name}: truncated ONNX file")
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, pos

    def fields(buf, start, end):
        pos = start
        while pos < end:
            key, pos = varint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = varint(buf, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = varint(buf, pos)
                yield number, pos, pos + length
                pos += length
            else:
                raise ModelMismatch(f"{path.name}: not an ONNX file (protobuf wire type {wire})")

    out = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for number, start, end in fields(buf, 0, len(buf)):
            if number != 14:
                continue
            entry = {n: bytes(buf[s:e]).decode("utf-8") for n, s, e in fields(buf, start, end)}
            out[entry.get(1, "")] = entry.get(2, "")
    return out



class TextRecognizer(Model):
    """PP-OCRv4 mobile CTC recogniser; `read(rgb, boxes)` -> one ReadLine per box."""

    role = "text_recognizer"

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir: Path | None = None):
        super().__init__(model_id or RECOGNIZER_ID, threads, models_dir)
        self.height = int(self.spec.input.get("height", 48))
        self.blank = int(self.spec.output.get("blank", 0))
        self.characters: list[str] = []

    def check(self) -> None:
        manifest.locate(self.spec, self.models_dir)      # its labels are in the graph itself

    def load(self) -> "TextRecognizer":
        """Like Model.load, but the character list comes from the graph's own metadata."""
        with self._lock:
            if self.session is None:
                path = manifest.locate(self.spec, self.models_dir)
                kind, _, key = self.spec.labels.partition(":")
                if kind != "onnx-metadata":
                    raise ModelMismatch(f"{self.spec.id}: labels must be 'onnx-metadata:KEY'")
                text = onnx_metadata(path).get(key)
                if not text:
                    raise ModelMismatch(f"{self.spec.file}: no {key!r} in the ONNX metadata")
                session = open_session(path, self.threads,
                                       dynamic_shapes=manifest.dynamic_input(self.spec))
                _check_shapes(self.spec, session)
                # CTC blank first, the characters, then the space (PaddleOCR's use_space_char).
                characters = [""] + text.splitlines() + [" "]
                width = session.outputs[0].shape[-1]
                if width != len(characters):
                    raise ModelMismatch(f"{self.spec.file}: {width} outputs per step but "
                                        f"{len(characters) - 2} characters + blank + space")
                self.characters = characters
                self.session = session
        return self

    def crop(self, image: np.ndarray, box: TextBox) -> np.ndarray:
        """The box's pixels rectified to a horizontal strip `height` px high (RGB uint8)."""
        w, h = box.width, box.height      # the detector's boxes run along the long side
        out_w = int(round(self.height * min(REC_MAX_RATIO, max(1.0, w / max(h, 1.0)))))
        tl, tr, br, bl = box.quad
        data = (*tl, *bl, *br, *tr)
        strip = Image.fromarray(image).transform((out_w, self.height), Image.QUAD, data,
                                                 Image.BILINEAR)
        return np.asarray(strip)

    def read(self, image: np.ndarray, boxes: list[TextBox]) -> list[ReadLine]:
        """Read each box of an RGB uint8 image (boxes in that image's pixels)."""
        self.load()
        crops = [self.crop(image, b) for b in boxes]
        out: list[ReadLine | None] = [None] * len(crops)
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1])
        for start in range(0, len(order), REC_BATCH):
            batch = order[start:start + REC_BATCH]
            width = max(crops[i].shape[1] for i in batch)
            x = np.zeros((len(batch), 3, self.height, width), np.float32)
            for row, i in enumerate(batch):
                _normalise_bgr(crops[i], x[row, :, :, :crops[i].shape[1]])
            probs = self.session.run([x])[self.session.outputs[0].name]
            for row, i in enumerate(batch):
                out[i] = self._decode(probs[row])
        return out

    def predict(self, image: np.ndarray) -> ReadLine:
        """Read a whole RGB image as one line (a crop of a single text line)."""
        h, w = image.shape[:2]
        box = TextBox(((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))), 1.0)
        return self.read(image, [box])[0]

    def _decode(self, steps: np.ndarray) -> ReadLine:
        """Greedy CTC: best class per step, repeats collapsed, blanks dropped."""
        best = steps.argmax(axis=1)
        conf = steps[np.arange(len(best)), best]
        keep = best != self.blank
        keep[1:] &= best[1:] != best[:-1]
        chars = [self.characters[i] for i in best[keep]]
        return ReadLine("".join(chars), float(conf[keep].mean()) if keep.any() else 0.0)


# ---------------------------------------------------------------- the stage

# Bump when this module's output for the same pixels, models and rules changes (cache key).
CODE_REVISION = 1
# Boxes kept in the payload at most (a page of small print can hold hundreds).
MAX_STORED_BOXES = 300


@dataclass
class TextPayload:
    """The text stage's payload for one media item (JSON through to_json / from_json).

    ran: whether the detector ran; skipped: why not ("large face", "no text cue", "video").
    cue: what let it through the pre-filter. width/height: the analysed picture's
    original (oriented) size, to a pixel; boxes are in its pixels. read: how many lines
    were recognised; hits: the facts they showed, redacted (documents.Hit: an MRZ's
    document code and state, a card's last four digits, prices, keywords); kind/reason: what the
    text alone shows (documents.text_kind). screen: documents.ScreenCues of the pixels,
    computed whether or not the detector ran.
    """

    stage: ClassVar[str] = "text"
    ran: bool = False
    skipped: str = ""
    cue: str = ""
    width: int = 0
    height: int = 0
    boxes: list[TextBox] = field(default_factory=list)
    layout: documents.Layout = field(default_factory=documents.Layout)
    read: int = 0
    hits: list[documents.Hit] = field(default_factory=list)
    kind: str = "none"
    reason: str = ""
    screen: documents.ScreenCues | None = None

    def to_json(self) -> dict:
        return {
            "ran": self.ran, "skipped": self.skipped, "cue": self.cue,
            "width": self.width, "height": self.height,
            "boxes": [b.to_json() for b in self.boxes[:MAX_STORED_BOXES]],
            "layout": self.layout.to_json(), "read": self.read,
            "hits": [h.to_json() for h in self.hits],
            "kind": self.kind, "reason": self.reason,
            "screen": self.screen.to_json() if self.screen is not None else None,
        }

    def arrays(self) -> dict:
        return {}

    @classmethod
    def from_json(cls, d: dict, arrays: dict | None = None) -> "TextPayload":
        return cls(ran=bool(d["ran"]), skipped=d.get("skipped", ""), cue=d.get("cue", ""),
                   width=int(d.get("width", 0)), height=int(d.get("height", 0)),
                   boxes=[TextBox.from_json(b) for b in d.get("boxes") or []],
                   layout=documents.Layout.from_json(d.get("layout") or {}),
                   read=int(d.get("read", 0)),
                   hits=[documents.Hit.from_json(h) for h in d.get("hits") or []],
                   kind=d.get("kind", "none"), reason=d.get("reason", ""),
                   screen=documents.ScreenCues.from_json(d.get("screen")))

    def without_text(self) -> "TextPayload":
        """The payload with everything read removed (for a purge): the kind, the reason,
        the rules that fired and the layout stay, so a purged document stays private."""
        return dataclasses.replace(self, hits=[documents.Hit(h.rule, "") for h in self.hits])


@dataclass
class TextStats:
    """What a TextStage did in this process (for `galprof benchmark`; not cached)."""

    items: int = 0                   # items given to run()
    detected: int = 0                # items the detector ran on
    lines_read: int = 0
    detector_seconds: float = 0.0
    recognizer_seconds: float = 0.0

    @property
    def detected_share(self) -> float:
        return self.detected / self.items if self.items else 0.0

    def to_json(self) -> dict:
        return {"items": self.items, "detected": self.detected,
                "detected_share": round(self.detected_share, 4), "lines_read": self.lines_read,
                "detector_ms_per_item": round(1000 * self.detector_seconds
                                              / max(1, self.detected), 1),
                "recognizer_ms_per_line": round(1000 * self.recognizer_seconds
                                                / max(1, self.lines_read), 1)}


class TextStage:
    """The "text" scan stage: a pre-filter from the upstream stages, the detector where it
    can matter, recognition of the few lines that decide the kind (galprof/documents.py).

    Payload: TextPayload. prefilter=False runs the detector on every photo (for
    measuring the rules; the payload's cue then says "no pre-filter").
    """

    name = "text"
    requires: tuple[str, ...] = ("objects", "scenes", "faces")
    # The faces stage already asks for 1280 px frames: no extra decoding. The detector
    # works at documents.toml [detector] long_side; recognition crops the full frame.
    long_side = 1280
    # Set by the pipeline for an item that runs other stages too: the detector's working
    # memory (~140 MB at 960 px) waits for the scan's late pass (pipeline/ingest.py).
    defer_models = False

    def __init__(self, detector_id: str | None = None, recognizer_id: str | None = None,
                 threads: int | None = None, models_dir: Path | None = None,
                 detector: TextDetector | None = None,
                 recognizer: TextRecognizer | None = None, prefilter: bool = True):
        long_side = int(documents.rules()["detector"]["long_side"])
        self.detector = detector or TextDetector(detector_id, threads, models_dir, long_side)
        self.recognizer = recognizer or TextRecognizer(recognizer_id, threads, models_dir)
        self.prefilter = prefilter
        self.stats = TextStats()

    @property
    def version(self) -> str:
        return (f"{self.detector.version}+{self.recognizer.version}"
                f"+text-r{CODE_REVISION}-{documents.rules_digest()}"
                + ("" if self.prefilter else "-all"))

    def models(self):
        return [self.detector.spec, self.recognizer.spec]

    def check(self) -> None:
        self.detector.check()
        self.recognizer.check()

    def load(self) -> None:
        if not self.defer_models:
            self.detector.load()
            self.recognizer.load()

    def unload(self) -> None:
        """Let go of the model sessions (their memory) until the next load()."""
        self.detector.unload()
        self.recognizer.unload()

    @property
    def threads(self) -> int | None:
        """Threads of each model call (None: the runtime's default); a change applies
        from the next load()."""
        return self.detector.threads

    @threads.setter
    def threads(self, threads: int | None) -> None:
        self.detector.threads = self.recognizer.threads = threads

    def prepare(self, frames: list) -> None:
        """A photo's screen cues, in a decode thread: the pre-filter reads them for every
        photo (a video's, of its first frame, are made when it runs)."""
        for frame in frames:
            if frame.timestamp is None:
                self._cues(frame)

    @staticmethod
    def _cues(frame):
        return frame.cached("screen_cues", documents.screen_cues)   # once, if run again

    def run(self, frames: list, upstream: dict[str, Any]) -> TextPayload:
        if not frames:
            self.stats.items += 1
            return TextPayload(skipped="no frames")
        frame = frames[0]
        h, w = frame.image.shape[:2]
        width, height = round(w / frame.scale), round(h / frame.scale)
        cues = self._cues(frame)
        is_video = len(frames) > 1 or frame.timestamp is not None
        if self.prefilter:
            go, why = documents.prefilter(upstream.get("objects"), upstream.get("scenes"),
                                          upstream.get("faces"), width, height, cues, is_video)
        else:
            go, why = (False, "video") if is_video else (True, "no pre-filter")
        if go:
            if self.defer_models:
                raise ModelsDeferred()     # the item is counted when run again
            # a HEIC analysed from its preview: a document's lines need the full picture
            # (may raise FullPictureNeeded; the item is counted when run again)
            frame = frame.at_least(self.long_side)
        self.stats.items += 1
        if not go:
            return TextPayload(skipped=why, width=width, height=height, screen=cues)
        h, w = frame.image.shape[:2]
        started = time.perf_counter()
        boxes = self.detector.predict(frame.image)
        self.stats.detected += 1
        self.stats.detector_seconds += time.perf_counter() - started
        lay = documents.layout(boxes, w, h)
        chosen = documents.lines_to_read(boxes, lay, cues)
        started = time.perf_counter()
        texts = [line.text for line in self.recognizer.read(frame.image,
                                                            [boxes[i] for i in chosen])]
        self.stats.lines_read += len(chosen)
        self.stats.recognizer_seconds += time.perf_counter() - started
        hits = documents.match(texts)
        kind, reason = documents.text_kind(lay, hits)
        return TextPayload(ran=True, cue=why, width=width, height=height,
                           boxes=[b.scaled(1.0 / frame.scale) for b in boxes], layout=lay,
                           read=len(chosen), hits=hits, kind=kind, reason=reason, screen=cues)
