"""galprof/vision/regions.py against SciPy's ndimage, which it replaces in the text
detector's post-processing: the same labels, numbering, bounds and dilation to the bit,
on random and shaped maps and on the detector's own maps of documents and photos; and
the text post-processing no longer imports SciPy (~18 MB kept to the scan's end)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from galprof.gallery import frames
from galprof.vision import regions, text

import text_samples


def _same_as_scipy(mask: np.ndarray) -> int:
    want, count = ndimage.label(mask)
    got, got_count, bounds = regions.label(mask)
    assert got_count == count and got.dtype == np.int32
    assert np.array_equal(got, want)
    slices = ndimage.find_objects(want)
    assert [tuple(b) for b in bounds] == [(r.start, r.stop, c.start, c.stop) for r, c in slices]
    dilated = ndimage.binary_dilation(mask, structure=np.ones((2, 2), bool))
    assert np.array_equal(regions.dilate_2x2(mask), dilated)
    return count


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (6, 6), (64, 80), (240, 320)])
def test_random_maps_label_as_scipy_does(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for density in (0.0, 0.1, 0.45, 0.6, 0.9, 1.0):
        _same_as_scipy(rng.random(shape) < density)


def test_regions_that_join_late_keep_their_first_pixel_order():
    """A spiral (one region, joined only at its end), a U whose arms meet below, and a
    comb whose teeth number before its spine: merges across many runs."""
    spiral = np.zeros((41, 41), bool)
    spiral[0, :] = spiral[:, -1] = spiral[-1, :] = spiral[2:, 0] = True
    spiral[2, :-2] = spiral[2:-2, -3] = True
    u_shape = np.zeros((20, 30), bool)
    u_shape[:15, 3] = u_shape[:15, 25] = u_shape[14, 3:26] = True
    u_shape[2, 10:15] = True                          # a separate bar between the arms
    comb = np.zeros((30, 40), bool)
    comb[:20, ::3] = True
    comb[20, :] = True
    for mask, regions_there in ((spiral, 1), (u_shape, 2), (comb, 1)):
        assert _same_as_scipy(mask) == regions_there
    blobs = ndimage.gaussian_filter(np.random.default_rng(3).random((736, 960)), 3)
    assert _same_as_scipy(blobs > np.quantile(blobs, 0.7)) > 500


def _scipy_boxes(prob, binarise, box_score, unclip):
    """The post-processing as it was with SciPy (the reference)."""
    mask = ndimage.binary_dilation(prob > binarise, structure=np.ones((2, 2), bool))
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(prob), labels, index)
    scores = ndimage.mean(prob, labels, index)
    keep = np.nonzero((sizes >= text.MIN_REGION_PIXELS) & (scores >= box_score))[0]
    if len(keep) > text.MAX_REGIONS:
        keep = keep[np.argsort(-sizes[keep])[:text.MAX_REGIONS]]
    slices = ndimage.find_objects(labels)
    height, width = prob.shape
    out = []
    for k in keep:
        sl = slices[k]
        ys, xs = np.nonzero(labels[sl] == k + 1)
        points = np.stack([xs + sl[1].start + 0.5, ys + sl[0].start + 0.5], 1).astype(np.float64)
        rect = text._oriented_rectangle(points)
        if rect is None:
            continue
        (cx, cy), (w, h), (ux, uy) = rect
        d = w * h * unclip / (2 * (w + h))
        w, h = w + 2 * d, h + 2 * d
        if min(w, h) < text.MIN_BOX_SIDE:
            continue
        corners = [(cx + a * ux * w / 2 - b * uy * h / 2, cy + a * uy * w / 2 + b * ux * h / 2)
                   for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        out.append(([(float(np.clip(x, 0, width)), float(np.clip(y, 0, height)))
                     for x, y in corners], float(scores[k])))
    return out


def test_the_detectors_maps_give_scipys_boxes(testmedia, shared_models, monkeypatch):
    pytest.importorskip("rapidocr_onnxruntime")
    monkeypatch.setenv("GALPROF_MODELS", str(shared_models))
    detector = text.TextDetector(long_side=960).load()
    pictures = [s.data for s in text_samples.generated_set(1)]
    pictures += [p.read_bytes() for p in sorted((testmedia / "scenes").glob("*.jpg"))[:12]]
    boxes = 0
    for data in pictures:
        image = frames.decode_photo(data, 1280).frames[0].image
        inputs, _ = detector._preprocess(image)
        prob = detector.session.run(inputs)[detector.session.outputs[0].name][0, 0]
        got = text.boxes_from_probability(prob, detector.binarise, detector.box_score,
                                          detector.unclip)
        want = _scipy_boxes(prob, detector.binarise, detector.box_score, detector.unclip)
        assert [(list(b.quad), b.score) for b in got] == want
        boxes += len(got)
    assert boxes > 100


def test_the_text_post_processing_does_not_import_scipy():
    code = ("import sys, numpy as np; from galprof.vision import text; "
            "prob = np.zeros((64, 96), np.float32); prob[20:30, 10:80] = 0.9; "
            "assert len(text.boxes_from_probability(prob, 0.3, 0.5, 1.6)) == 1; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
