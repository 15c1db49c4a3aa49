"""Connected regions of a binary map, in numpy alone: the text detector's post-processing.

SciPy's ndimage did this before; importing it costs the scan ~18 MB that it keeps to its
end, and the text detector's first call (in the late pass, at the scan's memory peak) is
where it came in. The results are SciPy's to the bit: the same labels in the same order,
so the same boxes and scores.

A region is a set of pixels joined through their 4 neighbours. The map is read as runs
(a row's stretches of set pixels): two runs in neighbouring rows that share a column are
joined, and the runs' groups are found by union-find, vectorised: every pair of joined
runs points the larger of their roots at the smaller, then every run jumps to its root,
until no pair has two roots. The root of a region is its first run in raster order, so
numbering the roots in order numbers the regions by their first pixel, as scipy does.

Cost, with the dilation: 2.3 ms median, 4.4 at most, on the detector's maps of 42 test
documents and photos (SciPy 4.4 and 9.7); bounded by the pixels for any map, 20-90 ms on
the worst measured (a spiral, noise at the percolation density, one-pixel vertical
stripes: 350,000 runs; SciPy 2-7 ms).
"""

from __future__ import annotations

import numpy as np


def dilate_2x2(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by a 2 x 2 square (scipy.ndimage.binary_dilation with
    structure=np.ones((2, 2)): a pixel is set when it or its right, lower or lower-right
    neighbour is)."""
    out = mask.copy()
    out[:-1, :] |= mask[1:, :]
    out[:, :-1] |= mask[:, 1:]
    out[:-1, :-1] |= mask[1:, 1:]
    return out


def label(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """(labels, count, bounds) of the 4-connected regions of a 2-D boolean map: labels an
    int32 map of 0 (background) and 1..count, numbered in the raster order of each
    region's first pixel (scipy.ndimage.label's labels and numbering); bounds an
    (count, 4) int array of row start, row end, column start, column end (ends exclusive:
    scipy.ndimage.find_objects's slices)."""
    height, width = mask.shape
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, starts = np.nonzero(edges == 1)       # runs in raster order
    ends = np.nonzero(edges == -1)[1]           # exclusive; the i-th end is the i-th run's
    labels = np.zeros((height, width), np.int32)
    if len(rows) == 0:
        return labels, 0, np.zeros((0, 4), np.int64)
    root = _roots(rows, starts, ends, width)
    first_runs, region = np.unique(root, return_inverse=True)
    lengths = ends - starts
    total = int(lengths.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    labels.reshape(-1)[np.repeat(rows * width + starts, lengths) + offsets] = \
        np.repeat(region + 1, lengths)
    count = len(first_runs)
    bounds = np.empty((count, 4), np.int64)
    bounds[:, 0] = rows[first_runs]
    bounds[:, 1] = _reduce(np.maximum, region, rows + 1, count, 0)
    bounds[:, 2] = _reduce(np.minimum, region, starts, count, width)
    bounds[:, 3] = _reduce(np.maximum, region, ends, count, 0)
    return labels, count, bounds


def _roots(rows, starts, ends, width) -> np.ndarray:
    """Per run, the first run (in raster order) of its region."""
    n = len(rows)
    # run b touches the runs a of the row above with start_a < end_b and start_b < end_a:
    # a contiguous range among the runs sorted by (row, column)
    stride = width + 1
    start_keys, end_keys = rows * stride + starts, rows * stride + ends
    above = (rows - 1) * stride
    lo = np.searchsorted(end_keys, above + starts, side="right")
    hi = np.searchsorted(start_keys, above + ends, side="left")
    counts = np.maximum(hi - lo, 0)
    b = np.repeat(np.arange(n), counts)
    a = np.repeat(lo, counts) + np.arange(len(b)) - np.repeat(np.cumsum(counts) - counts, counts)
    parent = np.arange(n)
    while True:
        pa, pb = parent[a], parent[b]
        apart = pa != pb
        if not apart.any():
            return parent
        np.minimum.at(parent, np.maximum(pa, pb)[apart], np.minimum(pa, pb)[apart])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _reduce(ufunc, groups, values, count, initial) -> np.ndarray:
    out = np.full(count, initial, np.int64)
    ufunc.at(out, groups, values)
    return out
