"""Pure image and box helpers shared by the model classes (numpy + Pillow only).

Conventions: images are uint8 arrays of shape (H, W, 3) (RGB unless a name says
BGR); boxes are float arrays of shape (N, 4) holding x1, y1, x2, y2 in pixels,
in continuous coordinates (pixel i covers [i, i + 1)).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# ---------------------------------------------------------------- resizing


def size_of(image) -> tuple[int, int]:
    """(width, height) of an array, a PIL image or a Downscaled one."""
    return (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size


class Downscaled:
    """A PIL picture and one copy of it downscaled to a fixed long side, made on first use,
    for a frame resized to several models' inputs: a bilinear resize of the whole picture
    to a size no larger than the copy starts from the copy. A 1280 px frame costs ~3.9 ms
    to resize to the scenes' 299 x 224 and ~2 ms to the face detector's 192 x 144, from a
    416 px copy 0.75 and 0.55 ms; a copy the size of a model's input (the objects' letterbox)
    is that input, unchanged. Quacks like the picture for `size`, `width`, `height` and
    `resize`."""

    def __init__(self, picture: Image.Image, long_side: int):
        self.picture = picture
        w, h = picture.size
        r = long_side / max(w, h)
        self.copy_size = (max(1, round(w * r)), max(1, round(h * r)))
        self._shrinks = long_side < max(w, h)       # else the picture itself is resized
        self._copy: Image.Image | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.picture.size

    @property
    def width(self) -> int:
        return self.picture.width

    @property
    def height(self) -> int:
        return self.picture.height

    def resize(self, size: tuple[int, int], resample: int = Image.BILINEAR,
               box: tuple | None = None, reducing_gap: float | None = None) -> Image.Image:
        """picture.resize(...), from the copy when it applies."""
        whole = box is None or tuple(box) == (0, 0, *self.picture.size)
        if (whole and resample == Image.BILINEAR and self._shrinks
                and size[0] <= self.copy_size[0] and size[1] <= self.copy_size[1]):
            if self._copy is None:
                self._copy = self.picture.resize(self.copy_size, Image.BILINEAR)
            if size == self.copy_size:
                return self._copy
            return self._copy.resize(size, Image.BILINEAR, reducing_gap=reducing_gap)
        return self.picture.resize(size, resample, box=box, reducing_gap=reducing_gap)


def picture_of(image: np.ndarray | Image.Image | Downscaled) -> Image.Image:
    """The image as a PIL image (itself when it is one)."""
    if isinstance(image, Downscaled):
        return image.picture
    return image if isinstance(image, Image.Image) else Image.fromarray(image)


def resizable(image: np.ndarray | Image.Image | Downscaled) -> Image.Image | Downscaled:
    """The image as something to resize from: a Downscaled as it is, else its PIL picture."""
    return image if isinstance(image, Downscaled) else picture_of(image)


def resize(image: np.ndarray | Image.Image | Downscaled, width: int, height: int,
           resample: int = Image.BILINEAR) -> np.ndarray:
    """The image (an array, or the same pixels as a PIL image: Frame.picture, which saves
    the copy Pillow makes of an array, or a Downscaled one: Frame.downscaled) resized to
    exactly width x height (aspect ratio not kept)."""
    if size_of(image) == (width, height):
        return np.asarray(picture_of(image) if isinstance(image, Downscaled) else image)
    return np.asarray(resizable(image).resize((width, height), resample))


def resize_shorter(image: np.ndarray | Image.Image, side: int,
                   resample: int = Image.BILINEAR) -> np.ndarray:
    """The image resized so that its shorter side is `side`, keeping the aspect ratio."""
    w, h = size_of(image)
    r = side / min(h, w)
    return resize(image, max(1, round(w * r)), max(1, round(h * r)), resample)


def center_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The central width x height region; the image must be at least that large."""
    h, w = image.shape[:2]
    if width > w or height > h:
        raise ValueError(f"cannot crop {width}x{height} from a {w}x{h} image")
    x0, y0 = (w - width) // 2, (h - height) // 2
    return image[y0:y0 + height, x0:x0 + width]


def letterbox(image: np.ndarray, width: int, height: int,
              pad_value: int = 114) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio and paste at the top-left of a padded canvas.

    Returns (canvas, ratio); a point of the canvas maps back to the image as p / ratio.
    """
    h, w = image.shape[:2]
    ratio = min(width / w, height / h)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    canvas = np.full((height, width, image.shape[2]), pad_value, dtype=image.dtype)
    canvas[:nh, :nw] = resize(image, nw, nh)
    return canvas, ratio


def rotated_square_crop(image: np.ndarray | Image.Image, cx: float, cy: float, side: float,
                        angle_rad: float, out_size: int) -> np.ndarray:
    """A square of `side` pixels centred on (cx, cy), its axes rotated by `angle_rad`,
    resampled to out_size x out_size.

    The crop's x axis points along (cos a, sin a) in the image (y down), so passing
    the roll angle atan2(right_eye - left_eye) gives a crop with level eyes. Parts
    outside the image are black. `image` may be given as a PIL image already.
    """
    s = side / out_size
    cos, sin = math.cos(angle_rad) * s, math.sin(angle_rad) * s
    half = out_size / 2
    # PIL's affine maps each output point (u, v) to the input point (a u + b v + c, d u + e v + f).
    coeffs = (cos, -sin, cx - cos * half + sin * half,
              sin, cos, cy - sin * half - cos * half)
    source = picture_of(image)
    out = source.transform((out_size, out_size), Image.AFFINE, coeffs,
                           resample=Image.BILINEAR, fillcolor=0)
    return np.asarray(out)


# ---------------------------------------------------------------- colour and values


def rgb_to_bgr(image: np.ndarray) -> np.ndarray:
    """Swap the first and third channels (the same operation converts BGR to RGB)."""
    return image[..., ::-1]


bgr_to_rgb = rgb_to_bgr


def normalise_minus_one_to_one(image: np.ndarray) -> np.ndarray:
    """uint8 0..255 to float32 -1..1 (in place on one float copy: the same values as
    image.astype(float32) / 127.5 - 1)."""
    out = image.astype(np.float32)
    out /= 127.5
    out -= 1.0
    return out


def normalise_mean_std(image: np.ndarray, mean, std=1.0,
                       out: np.ndarray | None = None) -> np.ndarray:
    """(image - mean) / std per channel, as float32 (into `out` when given, a float32
    array of the image's shape). A channel at a time: numpy's broadcasting over a last
    axis of 3 is slow (a 224 px face crop given as its BGR view 0.43 ms, a channel at a
    time 0.13; YOLOX's swapped letterbox 0.45 and 0.17; the same values)."""
    channels = image.shape[-1]
    mean = np.broadcast_to(np.asarray(mean, np.float32), (channels,))
    std = np.broadcast_to(np.asarray(std, np.float32), (channels,))
    if out is None:
        out = np.empty(image.shape, np.float32)
    for c in range(channels):
        if mean[c]:
            np.subtract(image[..., c], mean[c], out=out[..., c], dtype=np.float32)
        else:                # a plain converting copy is twice as fast as subtracting 0
            out[..., c] = image[..., c]
        if std[c] != 1.0:
            out[..., c] /= std[c]
    return out


def quantise(values: np.ndarray, scale: float, zero_point: int,
             dtype=np.uint8) -> np.ndarray:
    """Real values to integers of `dtype`: round(v / scale) + zero_point, saturated."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(values, np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantise(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integers back to float32; a scale of 0 means "not quantised" and returns values as float."""
    if not scale:
        return np.asarray(values, np.float32)
    return (np.asarray(values, np.float32) - zero_point) * np.float32(scale)


# ---------------------------------------------------------------- boxes


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Boxes (N, 4) clipped to [0, width] x [0, height]."""
    out = np.asarray(boxes, np.float32).copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def box_area(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32)
    return (boxes[..., 2] - boxes[..., 0]).clip(0) * (boxes[..., 3] - boxes[..., 1]).clip(0)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with each of boxes (N, 4): shape (N,)."""
    box = np.asarray(box, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    union = box_area(box) + box_area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        classes: np.ndarray | None = None) -> np.ndarray:
    """Greedy non-maximum suppression. Returns kept indices, highest score first.

    With `classes` (N,), boxes only suppress boxes of the same class.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if classes is not None:
        classes = np.asarray(classes).reshape(-1)
        keep = [idx for c in np.unique(classes)
                for idx in np.flatnonzero(classes == c)[nms(boxes[classes == c],
                                                            scores[classes == c],
                                                            iou_threshold)]]
        keep = np.asarray(keep, dtype=np.int64)
        return keep[np.argsort(-scores[keep], kind="stable")]
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
                 points: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Weighted NMS (as BlazeFace uses): each cluster of overlapping boxes becomes one
    box, the score-weighted mean of its members.

    boxes (N, 4); scores (N,); points (N, ...) (e.g. keypoints (N, 6, 2)) are averaged
    with the same weights. A cluster is the best remaining box and every remaining box
    whose IoU with it exceeds `iou_threshold`; its score is the best member's score.
    Returns (boxes (M, 4), scores (M,), points (M, ...) or None), highest score first.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    pts = None if points is None else np.asarray(points, np.float32)
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_scores, out_points = [], [], []
    while order.size:
        overlaps = iou(boxes[order[0]], boxes[order]) > iou_threshold
        overlaps[0] = True
        members = order[overlaps]
        w = scores[members] / max(float(scores[members].sum()), 1e-12)
        out_boxes.append((boxes[members] * w[:, None]).sum(axis=0))
        out_scores.append(scores[order[0]])
        if pts is not None:
            out_points.append(np.tensordot(w, pts[members], axes=1))
        order = order[~overlaps]
    out_pts = None if pts is None else np.asarray(out_points, np.float32).reshape(
        (-1,) + pts.shape[1:])
    return (np.asarray(out_boxes, np.float32).reshape(-1, 4),
            np.asarray(out_scores, np.float32), out_pts)
