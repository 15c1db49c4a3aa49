"""Object detection with YOLOX-Nano (COCO, 80 classes) and the "objects" scan stage.

Pre/post-processing follows the contract verified in shared/models/MANIFEST.md:
letterbox at the top-left on a 114 canvas, BGR float 0-255, one output row per
anchor [dx, dy, dw, dh, objectness, 80 class scores] (already sigmoided), decoded
on the grids of the manifest's strides. The TFLite conversion decodes inside its
graph (rows hold cx, cy, w, h in input pixels; the manifest's `decoded` flag says so),
but its session ends before that, at the raw maps per stride (the manifest's `maps`):
the decode is done here on the few rows that can reach a threshold, and the letterbox
is only as large as the picture, rounded up to 32 (graph.py: any input size).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from galprof.errors import ModelMismatch
from galprof.payloads import Detection, ObjectsPayload
from galprof.stages import Frame
from galprof.vision import transforms
from galprof.vision.base import Model
from galprof.vision.runtime import Session

# The detector keeps every box scoring at least this: MANIFEST.md found 0.3 right for
# YOLOX. Stricter per-class thresholds (the taxonomy's) are applied when the profile is
# built, so they can change without a re-scan; none may be below this floor.
DEFAULT_THRESHOLD = 0.3
# Same-class boxes overlapping more than this are one object (the YOLOX reference value).
NMS_IOU = 0.45
# exp(dw) overflows float32 on padded anchors: clip the log-size first (e^10 strides is plenty).
MAX_LOG_SIZE = 10.0
# A tile detection this close to an inner tile edge (fraction of the tile) is likely cut
# in half: drop it. YOLOX ends a cut object's box a few pixels short of the edge.
TILE_EDGE_MARGIN = 0.02
# A tile detection lying this much (fraction of its area) inside a larger same-label
# box is a piece of that object seen by one tile, not another object.
TILE_CONTAINED = 0.8
# Bump when this module's output for the same pixels and model changes (cache key).
CODE_REVISION = 3


class ObjectDetector(Model):
    """YOLOX-Nano, TFLite (NHWC) or ONNX (NCHW); `predict(rgb)` -> list[Detection].

    thresholds: label -> minimum score (labels not in it use `default_threshold`).
    """

    role = "objects"

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir: Path | None = None, thresholds: Mapping[str, float] | None = None,
                 default_threshold: float = DEFAULT_THRESHOLD, iou_threshold: float = NMS_IOU):
        super().__init__(model_id, threads, models_dir)
        self.thresholds = dict(thresholds or {})
        self.default_threshold = default_threshold
        self.iou_threshold = iou_threshold
        shape = self.spec.input.get("shape") or [1, 416, 416, 3]
        self.channels_first = shape[1] == 3
        self.height, self.width = shape[2:4] if self.channels_first else shape[1:3]
        self.pad_value = int(self.spec.input.get("pad_value", 114))
        self.bgr = self.spec.input.get("color", "BGR") == "BGR"
        self.strides = list(self.spec.output.get("strides", [8, 16, 32]))
        # Some conversions carry the grid decode inside the graph (the manifest says which);
        # a TFLite session may end before it, at the raw maps per stride (load).
        self.decoded = bool(self.spec.output.get("decoded", False))
        self.maps = list(self.spec.output.get("maps", []))
        self.on_maps = False
        self._grids: dict[tuple[int, int], list[np.ndarray]] = {}
        self._label_thresholds: np.ndarray | None = None
        self._inputs = threading.local()

    def _session_options(self) -> dict:
        # The maps, and a letterbox only as large as the picture (rounded up to the
        # largest stride): a 16:9 frame runs on 416 x 256 instead of 416 x 416.
        return {"outputs": self.maps, "any_size": True} if self.maps else {}

    def _grid(self, height: int, width: int) -> list[np.ndarray]:
        """Per stride, the anchor cell (gx, gy) of each row of its map, row-major."""
        key = (height, width)
        if key not in self._grids:
            cells = []
            for s in self.strides:
                gy, gx = np.mgrid[0:height // s, 0:width // s]
                cells.append(np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32))
            self._grids[key] = cells
        return self._grids[key]

    def _check_contract(self, session: Session) -> None:
        want_in = self.spec.input.get("shape")
        got_in = list(session.inputs[0].shape)
        if want_in and got_in != list(want_in):
            raise ModelMismatch(f"{self.spec.file}: input shape {got_in}, manifest says {want_in}")
        values = 5 + len(self.labels)
        rows = sum(len(c) for c in self._grid(self.height, self.width))
        if self.maps and [o.name for o in session.outputs] == self.maps:
            for out, stride in zip(session.outputs, self.strides):
                want = [1, self.height // stride, self.width // stride, values]
                if list(out.shape) != want:
                    raise ModelMismatch(f"{self.spec.file}: map {out.name} has shape "
                                        f"{list(out.shape)}, stride {stride} gives {want}")
            got_out = [1, rows, values]
        else:
            got_out = list(session.outputs[0].shape)
        want_out = self.spec.output.get("shape")
        if want_out and got_out != list(want_out):
            raise ModelMismatch(f"{self.spec.file}: output shape {got_out}, "
                                f"manifest says {want_out}")
        if got_out[1] != rows:
            raise ModelMismatch(f"{self.spec.file}: {got_out[1]} anchors, but strides "
                                f"{self.strides} on {self.width}x{self.height} give {rows}")
        if got_out[-1] != values:
            raise ModelMismatch(f"{self.spec.file}: rows of {got_out[-1]} values, expected "
                                f"5 + {len(self.labels)} labels")

    def load(self) -> "ObjectDetector":
        super().load()
        self.on_maps = bool(self.maps) and [o.name for o in self.session.outputs] == self.maps
        if self._label_thresholds is None:
            self._label_thresholds = np.array(
                [self.thresholds.get(name, self.default_threshold) for name in self.labels],
                np.float32)
        return self

    def letterboxed(self, image: np.ndarray | Image.Image) -> tuple[np.ndarray, float]:
        """The image (or its PIL picture) resized to fit the network's input (the
        letterbox's picture, before padding) and the ratio; pure, so a decode thread may
        make it ahead (Frame.cached)."""
        w, h = transforms.size_of(image)
        ratio = min(self.width / w, self.height / h)
        nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
        return transforms.resize(image, nw, nh), ratio

    def _input_size(self, height: int, width: int) -> tuple[int, int]:
        """The network input for a letterboxed picture of this size: the declared square,
        or, when the session takes any size, the picture's rounded up to the largest
        stride."""
        if not (self.on_maps and self.session.any_size):
            return self.height, self.width
        s = max(self.strides)
        return -(-height // s) * s, -(-width // s) * s

    def _preprocess(self, image: np.ndarray, prepared: tuple[np.ndarray, float] | None = None
                    ) -> tuple[list[np.ndarray], Any]:
        """The letterbox (top-left, pad_value around it) as float32 in the model's colour
        order and layout, written straight into the input array (no uint8 canvas, no
        second colour-swapped copy)."""
        self.load()                  # the input's size depends on what the session takes
        small, ratio = prepared if prepared is not None else self.letterboxed(image)
        nh, nw = small.shape[:2]
        size = self._input_size(nh, nw)
        x = self._input_array(*size)
        x[0, nh:], x[0, :nh, nw:] = self.pad_value, self.pad_value
        transforms.normalise_mean_std(transforms.rgb_to_bgr(small) if self.bgr else small, 0.0,
                                      out=x[0, :nh, :nw])
        if self.channels_first:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return [x], (ratio, image.shape[1], image.shape[0], size)

    def unload(self) -> None:
        """Let go of the session and of the threads' input buffers (2 MB each)."""
        super().unload()
        self._inputs = threading.local()

    def _input_array(self, height: int, width: int) -> np.ndarray:
        """This thread's input array of this size, the front of one buffer made once: a
        new 2 MB array a call is a fresh mapping, page faults and an unmap each time
        (frames.MMAP_THRESHOLD)."""
        buffer = getattr(self._inputs, "buffer", None)
        if buffer is None:
            buffer = self._inputs.buffer = np.empty(self.height * self.width * 3, np.float32)
        return buffer[:height * width * 3].reshape(1, height, width, 3)

    def detect(self, image: np.ndarray, prepared: tuple[np.ndarray, float] | None = None
               ) -> list[Detection]:
        """predict(image), given the letterboxed picture when the caller has it."""
        self.load()
        feeds, context = self._preprocess(image, prepared)
        # read in place: _postprocess keeps nothing of the output array
        return self._postprocess(self.session.run(feeds, copy=False), context)

    def _candidates(self, outputs: dict[str, np.ndarray], size: tuple[int, int],
                    lowest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The output rows whose objectness reaches `lowest`, with their anchor cells and
        strides. A row's best class score is objectness x its best class probability
        (<= 1): the others (most of the 3549 at the first test) need no more work."""
        parts = []
        if self.on_maps:
            maps = [outputs[o.name].reshape(-1, outputs[o.name].shape[-1])
                    for o in self.session.outputs]
        else:
            rows = outputs[self.session.outputs[0].name][0]
            maps = np.split(rows, np.cumsum([len(c) for c in self._grid(*size)])[:-1])
        for rows, cells, stride in zip(maps, self._grid(*size), self.strides):
            keep = np.flatnonzero(rows[:, 4] >= lowest)
            parts.append((rows[keep], cells[keep], np.full(len(keep), stride, np.float32)))
        return tuple(np.concatenate(p) for p in zip(*parts))

    def _postprocess(self, outputs: dict[str, np.ndarray], context: Any) -> list[Detection]:
        ratio, width, height, size = context
        lowest = self._label_thresholds.min()
        rows, cells, strides = self._candidates(outputs, size, lowest)
        best = rows[:, 5:].max(axis=1) * rows[:, 4]
        keep = best >= lowest
        if not keep.any():
            return []
        rows, cells, strides = rows[keep], cells[keep], strides[keep]
        cls_scores = rows[:, 5:] * rows[:, 4:5]
        cls = cls_scores.argmax(axis=1)
        score = cls_scores[np.arange(len(cls)), cls]
        keep = score >= self._label_thresholds[cls]
        if not keep.any():
            return []
        rows, cls, score, cells, strides = rows[keep], cls[keep], score[keep], cells[keep], strides[keep]
        if self.decoded and not self.on_maps:
            centre, box_size = rows[:, :2], rows[:, 2:4]
        else:
            centre = (rows[:, :2] + cells) * strides[:, None]
            box_size = np.exp(np.clip(rows[:, 2:4], -MAX_LOG_SIZE, MAX_LOG_SIZE)) * strides[:, None]
        boxes = np.concatenate([centre - box_size / 2, centre + box_size / 2], axis=1) / ratio
        boxes = transforms.clip_boxes(boxes, width, height)
        order = transforms.nms(boxes, score, self.iou_threshold, classes=cls)
        return [Detection(self.labels[cls[i]], float(score[i]), tuple(float(v) for v in boxes[i]))
                for i in order]

    def predict_tiles(self, image: np.ndarray, tile: int = 832,
                      overlap: float = 0.25) -> list[Detection]:
        """Detections over the full image and over overlapping `tile`-pixel crops, merged.

        Small objects in a large photo vanish at 416 px; crops see them at higher
        resolution. A tile detection touching an inner tile edge is dropped (it is
        probably cut; a neighbouring tile or the full view holds it whole), then
        same-class duplicates are merged by NMS.
        """
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), not {overlap}")
        h, w = image.shape[:2]
        found = list(self.predict(image))
        from_tiles: list[Detection] = []
        margin = max(2.0, TILE_EDGE_MARGIN * tile)
        if max(h, w) > tile:
            step = max(1, int(tile * (1 - overlap)))
            for y0 in _tile_starts(h, tile, step):
                for x0 in _tile_starts(w, tile, step):
                    crop = image[y0:y0 + tile, x0:x0 + tile]
                    ch, cw = crop.shape[:2]
                    for d in self.predict(crop):
                        x1, y1, x2, y2 = d.box
                        cut = ((x0 > 0 and x1 < margin) or (y0 > 0 and y1 < margin)
                               or (x0 + cw < w and x2 > cw - margin)
                               or (y0 + ch < h and y2 > ch - margin))
                        if not cut:
                            from_tiles.append(Detection(d.label, d.score,
                                                        (x1 + x0, y1 + y0, x2 + x0, y2 + y0)))
        found += [d for d in from_tiles if not _inside_larger(d, found + from_tiles)]
        if not found:
            return []
        boxes = np.array([d.box for d in found], np.float32)
        scores = np.array([d.score for d in found], np.float32)
        labels = np.array([d.label for d in found])
        return [found[i] for i in transforms.nms(boxes, scores, self.iou_threshold, labels)]


def _inside_larger(d: Detection, others: list[Detection]) -> bool:
    """Whether most of d's box lies inside a larger box of the same label."""
    area = float(transforms.box_area(np.array(d.box)))
    for o in others:
        if o.label != d.label or o is d:
            continue
        x1, y1 = max(d.box[0], o.box[0]), max(d.box[1], o.box[1])
        x2, y2 = min(d.box[2], o.box[2]), min(d.box[3], o.box[3])
        inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        if inter >= TILE_CONTAINED * area and float(transforms.box_area(np.array(o.box))) > area:
            return True
    return False


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Offsets of tiles covering [0, length), the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


class ObjectsStage:
    """The "objects" scan stage: the detections of every frame (`ObjectsPayload`), boxes
    in original (oriented) media pixels, every box scoring at least DEFAULT_THRESHOLD.
    `ObjectsPayload.summary()` gives the per-label summary with the video rule."""

    name = "objects"
    requires: tuple[str, ...] = ()
    long_side = 416   # the detector letterboxes to 416 anyway: larger frames only cost decoding

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir: Path | None = None, detector: ObjectDetector | None = None):
        self.detector = detector or ObjectDetector(model_id, threads, models_dir)

    @property
    def version(self) -> str:
        d = self.detector
        settings = json.dumps([sorted(d.thresholds.items()), d.default_threshold, d.iou_threshold])
        digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
        return f"{d.version}+objects-r{CODE_REVISION}-{digest}"

    def models(self):
        return [self.detector.spec]

    def check(self) -> None:
        self.detector.check()

    def load(self) -> None:
        self.detector.load()

    def unload(self) -> None:
        """Let go of the model sessions (their memory) until the next load()."""
        self.detector.unload()

    def _input_key(self) -> tuple:
        return "objects", self.detector.width, self.detector.height

    def _letterboxed(self, frame: Frame) -> tuple[np.ndarray, float]:
        return frame.cached_from_picture(self._input_key(), self.detector.letterboxed)

    def prepare(self, frames: list[Frame]) -> None:
        """The letterboxed picture of every frame analysed (in a decode thread)."""
        for frame in frames:
            if frame.same_as is None:
                self._letterboxed(frame)

    def _found(self, frame: Frame) -> list[Detection]:
        # kept on the frame: a stage waiting for the full picture runs again (FullPictureNeeded)
        return frame.cached(("objects", "found"),
                            lambda image: self.detector.detect(image, self._letterboxed(frame)),
                            consumes=(self._input_key(),))

    def analyse(self, frame: Frame) -> None:
        """The detector on one frame of a video, ahead of `run` (kept on the frame)."""
        if not frame.reduced:
            self._found(frame)

    def _detect(self, frame: Frame) -> list[Detection]:
        detector = self.detector
        found = self._found(frame)
        if found and frame.reduced and max(frame.image.shape[:2]) < max(detector.width,
                                                                         detector.height):
            # A preview smaller than the detector's input (an iPhone's 320 px) shows
            # something: its scores and boxes, and small objects, come from the full picture.
            frame = frame.at_least(self.long_side)
            found = detector.detect(frame.image, self._letterboxed(frame))
        return [d.scaled(1.0 / frame.scale) for d in found]

    def run(self, frames: list[Frame], upstream: dict[str, Any]) -> ObjectsPayload:
        found: dict[int, list[Detection]] = {}
        out = []
        for frame in frames:
            if frame.same_as in found:       # a repeat of an earlier sampled frame
                detections = found[frame.same_as]
            else:
                detections = self._detect(frame)
            found[frame.index] = detections
            out.append((frame.index, detections))
        return ObjectsPayload(out)
