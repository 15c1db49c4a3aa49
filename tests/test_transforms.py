"""Unit tests of the pure image and box helpers (galprof.vision.transforms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from galprof.vision import transforms as T


@pytest.fixture(scope="module")
def chelsea(testmedia) -> np.ndarray:
    return np.asarray(Image.open(testmedia / "scenes" / "skimage_chelsea.png").convert("RGB"))


def test_letterbox_topleft_keeps_ratio_and_pads(chelsea):
    h, w = chelsea.shape[:2]                      # 300 x 451: landscape
    canvas, ratio = T.letterbox(chelsea, 416, 416, pad_value=114)
    assert canvas.shape == (416, 416, 3) and canvas.dtype == np.uint8
    assert ratio == pytest.approx(416 / w)
    used = round(h * ratio)
    assert (canvas[used:] == 114).all()           # padding only below the picture
    assert not (canvas[:used] == 114).all()


def test_resize_shorter_and_center_crop(chelsea):
    small = T.resize_shorter(chelsea, 224)
    assert min(small.shape[:2]) == 224
    assert small.shape[1] == round(451 * 224 / 300)
    crop = T.center_crop(small, 224, 224)
    assert crop.shape == (224, 224, 3)
    x0 = (small.shape[1] - 224) // 2
    assert np.array_equal(crop, small[:, x0:x0 + 224])
    with pytest.raises(ValueError, match="cannot crop"):
        T.center_crop(small, 500, 224)


def test_a_downscaled_picture_resizes_from_its_copy_only_where_it_is_large_enough(chelsea):
    picture = Image.fromarray(chelsea)                  # 451 x 300
    shrunk = T.Downscaled(picture, 200)
    assert shrunk.copy_size == (200, 133) and shrunk.size == picture.size

    def pixels(image):
        return np.asarray(image)

    copy = shrunk.resize((200, 133))                    # the copy is the direct resize
    assert np.array_equal(pixels(copy), pixels(picture.resize((200, 133), Image.BILINEAR)))
    assert shrunk.resize((200, 133)) is copy            # made once
    smaller = pixels(shrunk.resize((120, 80)))          # from the copy
    assert np.array_equal(smaller, pixels(copy.resize((120, 80), Image.BILINEAR)))
    assert not np.array_equal(smaller, pixels(picture.resize((120, 80), Image.BILINEAR)))
    assert np.array_equal(T.resize(shrunk, 120, 80), smaller)
    # from the picture: a size the copy cannot give, a window of it, another filter
    for size, kwargs in [((300, 100), {}), ((120, 80), {"box": (10, 10, 300, 200)}),
                         ((120, 80), {"resample": Image.BICUBIC})]:
        assert np.array_equal(pixels(shrunk.resize(size, **kwargs)),
                              pixels(picture.resize(size, **{"resample": Image.BILINEAR,
                                                             **kwargs}))), (size, kwargs)
    # a picture no larger than the copy's side is resized as it is
    small = T.Downscaled(picture, 600)
    assert np.array_equal(pixels(small.resize((120, 80))),
                          pixels(picture.resize((120, 80), Image.BILINEAR)))
    assert small._copy is None
    assert T.picture_of(shrunk) is picture and T.size_of(shrunk) == (451, 300)


def test_rgb_bgr_swap_is_its_own_inverse(chelsea):
    bgr = T.rgb_to_bgr(chelsea)
    assert np.array_equal(bgr[..., 0], chelsea[..., 2])
    assert np.array_equal(T.bgr_to_rgb(bgr), chelsea)


def test_normalisations():
    x = np.array([[[0, 127, 255]]], np.uint8)
    assert T.normalise_minus_one_to_one(x).ravel() == pytest.approx([-1.0, -0.00392, 1.0], abs=1e-4)
    out = T.normalise_mean_std(x, mean=[0, 100, 200], std=[1, 2, 5])
    assert out.dtype == np.float32 and out.ravel() == pytest.approx([0, 13.5, 11])


def test_quantise_round_trip_and_saturation():
    scale, zero = 0.012566, 131                   # EfficientNet-Lite0's input
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    q = T.quantise(x, scale, zero)
    assert q.dtype == np.uint8
    assert np.abs(T.dequantise(q, scale, zero) - x).max() <= scale / 2 + 1e-6
    assert T.quantise(np.array([-10.0, 10.0]), scale, zero).tolist() == [0, 255]
    assert T.quantise(np.array([0.0]), 0.5, -128, np.int8).tolist() == [-128]
    assert T.dequantise(np.array([3]), 0.0, 0).tolist() == [3.0]   # scale 0: not quantised


def test_iou_known_values():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    assert T.iou(boxes[0], boxes).tolist() == pytest.approx([1.0, 50 / 150, 0.0, 1.0])
    assert T.iou([0, 0, 0, 0], boxes[:1]).tolist() == [0.0]       # empty box, no division by 0


def test_nms_keeps_best_of_each_overlapping_group():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 9, 10]], float)
    scores = np.array([0.8, 0.9, 0.5, 0.7])
    assert T.nms(boxes, scores, 0.5).tolist() == [1, 2]
    # Per class: the overlapping box of another class survives.
    classes = np.array([0, 0, 0, 1])
    assert T.nms(boxes, scores, 0.5, classes).tolist() == [1, 3, 2]
    assert T.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_weighted_nms_averages_clusters_with_points():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [100, 100, 110, 110]], float)
    scores = np.array([0.75, 0.25, 0.6])
    points = np.array([[[0, 0]], [[4, 4]], [[100, 100]]], float)      # (N, 1 keypoint, 2)
    out_boxes, out_scores, out_points = T.weighted_nms(boxes, scores, 0.3, points)
    assert out_scores.tolist() == pytest.approx([0.75, 0.6])
    assert out_boxes[0].tolist() == pytest.approx([0.5, 0, 10.5, 10])   # 0.75 * 0 + 0.25 * 2
    assert out_points.shape == (2, 1, 2)
    assert out_points[0, 0].tolist() == pytest.approx([1, 1])
    assert out_boxes[1].tolist() == pytest.approx([100, 100, 110, 110])
    b, s, p = T.weighted_nms(boxes, scores, 0.3)
    assert p is None and len(b) == 2


def test_clip_boxes():
    out = T.clip_boxes(np.array([[-5, -1, 50, 20]], float), 40, 30)
    assert out.tolist() == [[0, 0, 40, 20]]


def test_rotated_square_crop_without_rotation_is_a_plain_crop(chelsea):
    crop = T.rotated_square_crop(chelsea, 200, 150, 100, 0.0, 100)
    assert np.abs(crop.astype(int) - chelsea[100:200, 150:250]).max() <= 1


def test_rotated_square_crop_quarter_turn(chelsea):
    crop = T.rotated_square_crop(chelsea, 200, 150, 100, math.pi / 2, 100)
    assert np.abs(crop.astype(int) - np.rot90(chelsea[100:200, 150:250])).max() <= 1


def test_rotated_square_crop_undoes_a_rotation(chelsea):
    """Rotate the photo by 20 degrees, then crop with the matching angle: the original returns."""
    angle = math.radians(20)
    h, w = chelsea.shape[:2]
    # PIL rotates counter-clockwise on screen: the photo's x axis now points up-right,
    # i.e. at -20 degrees in image coordinates (y down).
    rotated = np.asarray(Image.fromarray(chelsea).rotate(20, resample=Image.BILINEAR,
                                                         center=(w / 2, h / 2)))
    crop = T.rotated_square_crop(rotated, w / 2, h / 2, 120, -angle, 120)
    ref = chelsea[h // 2 - 60:h // 2 + 60, w // 2 - 60:w // 2 + 60].astype(int)
    assert np.abs(crop.astype(int) - ref).mean() < 8      # measured 4.8 (two resamplings)
    wrong = T.rotated_square_crop(rotated, w / 2, h / 2, 120, angle, 120)
    assert np.abs(wrong.astype(int) - ref).mean() > 20    # measured 37.6


def test_rotated_square_crop_outside_is_black(chelsea):
    crop = T.rotated_square_crop(chelsea, 0, 0, 100, 0.0, 50)
    assert crop.shape == (50, 50, 3)
    assert (crop[:20, :20] == 0).all() and crop[30:, 30:].any()
