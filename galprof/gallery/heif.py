"""A HEIC's primary picture at analysis size from its bytes, its tiles decoded by FFmpeg.

A phone's HEIC is a grid of 512 px HEVC tiles. libheif (pillow-heif) decodes them with
libde265 into full-size colour planes and converts those to an RGB copy of the whole
picture (a 12 MP photo: 18 + 37 MB alive together, 200-300 ms here). Here libavcodec
decodes the tiles, two at a time, into one full-size set of Y, Cb and Cr planes (18 MB),
and swscale scales and converts them to RGB in one pass: the test HEICs reach analysis
size in half the time, their pixels within a level or two of libheif's.

Only the plain case is taken: an 'hvc1' grid or single 'hvc1' item, 4:2:0, 8 or 10 bits,
no essential property this module does not know, a rotation (irot) but no mirroring
(imir) or clean aperture (clap). `Unsupported` says why any other file is left to
libheif. Every length and count read from the file is checked against the bytes there
are: a malformed box is Unsupported, never an out-of-range read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# A grid of more tiles than this is no phone photo (a 200 MP one has ~800 of 512 px).
MAX_TILES = 2048
# A tile of more pixels than its picture and than this (1024 x 1024) is a crafted file: a
# decoder holds a tile's frames, so their size is bounded like the picture's.
MAX_TILE_PIXELS = 1 << 20


class Unsupported(Exception):
    """This file's primary picture is not one this module decodes (the reason says why);
    libheif gets it."""


@dataclass
class _Item:
    id: int
    type: str = ""
    extents: list[tuple[int, int]] = field(default_factory=list)   # (offset, length) in the file
    construction: int = 0                                           # 0: file, 1: idat
    properties: list[tuple[int, bool]] = field(default_factory=list)  # (1-based index, essential)


@dataclass
class Layout:
    """What the primary picture is made of: its tiles' HEVC data, in rows, and how to
    assemble them."""

    hvcc: bytes                       # the tiles' decoder configuration (hvcC)
    tiles: list[bytes]                # each tile's HEVC data, row by row
    columns: int
    rows: int
    tile_size: tuple[int, int]        # width, height of one tile
    size: tuple[int, int]             # width, height of the picture (the grid's output)
    rotation: int = 0                 # irot: anticlockwise quarter turns
    colour: tuple[int, bool] | None = None    # nclx matrix coefficients, full range
    depth: int = 8                    # bits a sample


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of each box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise Unsupported("truncated box header")
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise Unsupported(f"box {kind!r} runs past its parent")
        yield kind.decode("latin-1"), pos + header, pos + size
        pos += size


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int):
        self.data, self.pos, self.end = data, pos, end

    def uint(self, size: int) -> int:
        if size == 0:
            return 0
        if self.pos + size > self.end:
            raise Unsupported("a field runs past its box")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return value


def _items(data: bytes, meta: tuple[int, int]):
    """The items by id (type, location, properties), the primary item's id, the property
    boxes (type, start, end) in their order, the idat payload's span and the derived
    images' references (dimg: item -> the items it is made of)."""
    start, end = meta
    types: dict[int, str] = {}
    locations: dict[int, tuple[int, list]] = {}
    associations: dict[int, list] = {}
    primary = None
    properties: list[tuple[str, int, int]] = []
    idat = (0, 0)
    refs: dict[int, list[int]] = {}
    for kind, s, e in _boxes(data, start + 4, end):         # meta is a full box
        r = _Reader(data, s, e)
        if kind == "pitm":
            version = r.uint(4) >> 24
            primary = r.uint(2 if version == 0 else 4)
        elif kind == "iinf":
            version = r.uint(4) >> 24
            r.uint(2 if version == 0 else 4)
            for k, s2, e2 in _boxes(data, r.pos, e):
                r2 = _Reader(data, s2, e2)
                v = r2.uint(4) >> 24
                if k == "infe" and v >= 2:        # item types came with version 2
                    item_id = r2.uint(2 if v == 2 else 4)
                    r2.uint(2)                    # protection index
                    types[item_id] = data[r2.pos:r2.pos + 4].decode("latin-1")
        elif kind == "iloc":
            version = r.uint(4) >> 24
            sizes = r.uint(2)
            offset_size, length_size = sizes >> 12, (sizes >> 8) & 15
            base_size = (sizes >> 4) & 15
            index_size = sizes & 15 if version in (1, 2) else 0
            for _ in range(r.uint(2 if version < 2 else 4)):
                item_id = r.uint(2 if version < 2 else 4)
                construction = r.uint(2) & 15 if version in (1, 2) else 0
                r.uint(2)                         # data reference index
                base = r.uint(base_size)
                extents = []
                for _ in range(r.uint(2)):
                    r.uint(index_size)
                    extents.append((base + r.uint(offset_size), r.uint(length_size)))
                locations[item_id] = (extents, construction)
        elif kind == "iprp":
            for k, s2, e2 in _boxes(data, s, e):
                r2 = _Reader(data, s2, e2)
                if k == "ipco":
                    properties = list(_boxes(data, s2, e2))
                elif k == "ipma":
                    word = r2.uint(4)
                    version, wide = word >> 24, word & 1
                    for _ in range(r2.uint(4)):
                        item_id = r2.uint(2 if version < 1 else 4)
                        bits = 15 if wide else 7
                        for _ in range(r2.uint(1)):
                            value = r2.uint(2 if wide else 1)
                            associations.setdefault(item_id, []).append(
                                (value & ((1 << bits) - 1), bool(value >> bits)))
        elif kind == "iref":
            version = r.uint(4) >> 24
            for k, s2, e2 in _boxes(data, r.pos, e):
                r2 = _Reader(data, s2, e2)
                if k == "dimg":
                    source = r2.uint(2 if version == 0 else 4)
                    refs[source] = [r2.uint(2 if version == 0 else 4) for _ in range(r2.uint(2))]
        elif kind == "idat":
            idat = (s, e)
    items = {i: _Item(i, t, *locations.get(i, ([], 0)), associations.get(i, []))
             for i, t in types.items()}
    if primary not in items:
        raise Unsupported("no primary item")
    return items, primary, properties, idat, refs


def _payload(data: bytes, item: _Item, idat: tuple[int, int]) -> bytes:
    base, end = (idat[0], idat[1]) if item.construction == 1 else (0, len(data))
    if item.construction not in (0, 1) or not item.extents:
        raise Unsupported(f"item {item.id} has data this reader does not locate")
    parts = []
    for offset, length in item.extents:
        s = base + offset
        if length == 0 or s + length > end:
            raise Unsupported(f"item {item.id}'s data lies outside the file")
        parts.append(data[s:s + length])
    return b"".join(parts)


def layout(data: bytes) -> Layout:
    """The primary picture's tiles and assembly, or Unsupported."""
    top = list(_boxes(data, 0, len(data)))
    meta = next(((s, e) for k, s, e in top if k == "meta"), None)
    if meta is None:
        raise Unsupported("no meta box")
    items, primary, properties, idat, refs = _items(data, meta)
    item = items[primary]

    def props(it: _Item) -> dict[str, tuple[int, int]]:
        found = {}
        for index, essential in it.properties:
            if index == 0:
                continue                          # "no property"
            if index > len(properties):
                raise Unsupported(f"item {it.id} names property {index}, which is not there")
            kind, s, e = properties[index - 1]
            if essential and kind not in _KNOWN:
                raise Unsupported(f"essential property {kind!r}")
            found.setdefault(kind, (s, e))
        return found

    own = props(item)
    if "clap" in own:
        raise Unsupported("a clean aperture (crop)")
    rotation = 0
    if "irot" in own:
        s, e = own["irot"]
        if e <= s:
            raise Unsupported("an empty irot")
        rotation = data[s] & 3
    if "imir" in own:
        raise Unsupported("a mirrored picture (imir)")
    if item.type == "grid":
        grid = _payload(data, item, idat)
        if len(grid) < 8:
            raise Unsupported("a short grid description")
        flags = grid[1]
        rows, columns = grid[2] + 1, grid[3] + 1
        wide = 4 if flags & 1 else 2
        if len(grid) < 4 + 2 * wide:
            raise Unsupported("a short grid description")
        width = int.from_bytes(grid[4:4 + wide], "big")
        height = int.from_bytes(grid[4 + wide:4 + 2 * wide], "big")
        tile_ids = refs.get(primary, [])
        if len(tile_ids) != rows * columns or not tile_ids or len(tile_ids) > MAX_TILES:
            raise Unsupported("a grid whose tiles do not match its rows and columns")
        tiles = [items.get(t) for t in tile_ids]
    elif item.type == "hvc1":
        tiles, rows, columns, width, height = [item], 1, 1, None, None
    else:
        raise Unsupported(f"a primary item of type {item.type!r}")
    hvcc = tile_size = None
    for tile in tiles:
        if tile is None or tile.type != "hvc1":
            raise Unsupported("a tile that is not HEVC")
        p = props(tile)
        if "hvcC" not in p or "ispe" not in p:
            raise Unsupported("a tile without its decoder configuration or size")
        s, e = p["hvcC"]
        config = data[s:e]
        r = _Reader(data, *p["ispe"])
        r.uint(4)
        size = (r.uint(4), r.uint(4))
        if hvcc is None:
            hvcc, tile_size = config, size
        elif config != hvcc or size != tile_size:
            raise Unsupported("tiles of different configurations")
    if len(hvcc) < 23:
        raise Unsupported("a short hvcC")
    chroma = hvcc[16] & 3
    depth = (hvcc[17] & 7) + 8
    if chroma != 1 or depth not in (8, 10):
        raise Unsupported(f"{depth}-bit chroma format {chroma} (only 4:2:0, 8 or 10 bits)")
    if width is None:
        width, height = tile_size
    if not (0 < width <= columns * tile_size[0] and 0 < height <= rows * tile_size[1]):
        raise Unsupported("a grid larger than its tiles")
    if tile_size[0] * tile_size[1] > max(width * height, MAX_TILE_PIXELS):
        raise Unsupported("tiles larger than the picture")
    return Layout(hvcc, [_payload(data, t, idat) for t in tiles], columns, rows, tile_size,
                  (width, height), rotation, _nclx(data, own.get("colr")), depth)


def _nclx(data: bytes, colr: tuple[int, int] | None) -> tuple[int, bool] | None:
    """(matrix coefficients, full range) of an nclx colour box; None for an ICC profile
    or no box (the HEVC stream's own colour description then applies)."""
    if colr is None or colr[1] - colr[0] < 11 or data[colr[0]:colr[0] + 4] != b"nclx":
        return None
    s = colr[0]
    return struct.unpack_from(">H", data, s + 8)[0], bool(data[s + 10] & 0x80)


# Properties this reader handles, or that do not change the primary picture's pixels
# (colour information, pixel depths, layer selection of single-layer files).
_KNOWN = {"hvcC", "ispe", "irot", "imir", "colr", "pixi", "clli", "mdcv", "lsel", "rloc"}


# swscale's names of the nclx matrices it converts (ISO/IEC 23091-2 code points); an
# unspecified matrix is BT.601's, as libheif takes it.
_MATRICES = {1: "ITU709", 2: "ITU601", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M",
             9: "BT2020", 10: "BT2020"}


# swscale's filter: its bilinear one widens with the reduction, as Pillow's BILINEAR does.
_INTERPOLATION = "BILINEAR"


def fitted_picture(data: bytes, fit: Callable[[tuple[int, int]], tuple[int, int]]):
    """The primary picture, oriented, scaled to `fit(its oriented width, height)` and
    converted to RGB: a PIL image. Unsupported when this module does not decode the file;
    a tile that does not decode is ValueError."""
    import av
    from PIL import Image

    shape = layout(data)
    columns = shape.columns
    tw, th = shape.tile_size
    width, height = shape.size
    if tw % 2 or th % 2:
        raise Unsupported("tiles of an odd size")
    turned = shape.rotation % 2 == 1
    out_w, out_h = fit((height, width) if turned else (width, height))[::-1 if turned else 1]
    # The whole picture's Y, Cb and Cr planes, written tile by tile: the only full-size
    # buffer (18 MB for 12 MP; libheif holds these planes and an RGB copy, 55 MB).
    pixel_format, dtype = ("yuv420p", np.uint8) if shape.depth == 8 else ("yuv420p10le", np.uint16)
    picture = av.VideoFrame(width, height, pixel_format)
    planes = [_plane(picture, index, dtype) for index in range(3)]
    codec = av.CodecContext.create("hevc", "r")
    codec.extradata = shape.hvcc
    # A stream's own larger size is refused. FFmpeg checks its buffers' size with the
    # width rounded up to its stride alignment (64) and the coded height (up to a 64-row
    # block): an exact bound refused every one-tile picture whose width is not a
    # multiple of 64 (they went to libheif).
    codec.options = {"max_pixels": str(-(-tw // 64) * 64 * -(-th // 64) * 64)}
    # Every tile is a picture of its own: two frame threads decode two at once (65 ms
    # against 102 with slice threads for a 48-tile 12 MP photo here). A picture of one
    # tile (libheif's encoder writes them) has no second picture for a frame thread, but
    # wavefronts that slice threads decode in parallel: 213 ms against 410 for 12 MP.
    codec.thread_type = "FRAME" if len(shape.tiles) > 1 else "SLICE"
    codec.thread_count = 2
    colour = shape.colour
    expand = None
    done = 0

    def place(frames) -> None:
        nonlocal done, colour, expand
        for frame in frames:
            if done >= len(shape.tiles):
                raise ValueError("more pictures than tiles")
            kind = frame.format.name.replace("yuvj", "yuv")      # the range is told apart
            if (frame.width, frame.height, kind) != (tw, th, pixel_format):
                raise ValueError(f"tile {done} is {frame.width}x{frame.height} "
                                 f"{frame.format.name}, not {tw}x{th} {pixel_format}")
            if colour is None:          # no nclx box: the stream's own description
                colour = (int(frame.colorspace),
                          int(frame.color_range) == 2 or kind != frame.format.name)
            if expand is None:
                expand = [] if colour[1] else _range_expansion(shape.depth)
            y0, x0 = (done // columns) * th, (done % columns) * tw
            h, w = min(th, height - y0), min(tw, width - x0)
            done += 1
            if h <= 0 or w <= 0:
                continue                # a tile past the grid's output: nothing shown
            for index, target in enumerate(planes):
                scale = 1 if index == 0 else 2
                # (an odd picture's last chroma row or column covers one luma row)
                ph, pw = -(-h // scale), -(-w // scale)
                pixels = _plane(frame, index, dtype)[:ph, :pw]
                target[y0 // scale:y0 // scale + ph, x0 // scale:x0 // scale + pw] = \
                    expand[min(index, 1)][pixels] if expand else pixels

    try:
        for tile in shape.tiles:
            place(codec.decode(av.Packet(tile)))
        place(codec.decode(None))
    except av.FFmpegError as e:
        raise ValueError(f"HEVC tile does not decode ({e})") from None
    finally:
        codec.flush_buffers()       # stop its frame threads here, not whenever it is freed
        del codec
    if done != len(shape.tiles):
        raise ValueError(f"{len(shape.tiles) - done} of {len(shape.tiles)} tiles did not decode")
    planes.clear()                      # the views hold the picture's buffer
    if colour[0] not in _MATRICES:
        raise Unsupported(f"colour matrix {colour[0]}")
    rgb = picture.reformat(width=out_w, height=out_h, format="rgb24",
                           src_colorspace=_MATRICES[colour[0]], src_color_range="JPEG",
                           interpolation=_INTERPOLATION)
    del picture
    image = Image.fromarray(rgb.to_ndarray())
    if shape.rotation:
        image = image.transpose((None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                 Image.Transpose.ROTATE_270)[shape.rotation])
    return image


def _range_expansion(depth: int) -> list[np.ndarray]:
    """Lookup tables taking limited-range luma and chroma samples to full range: swscale's
    own limited-range conversion is 1-2 levels short (Y 235 gives 253, not 255)."""
    top = (1 << depth) - 1
    unit = 1 << (depth - 8)
    samples = np.arange(top + 1, dtype=np.float64)
    luma = (samples - 16 * unit) * top / (219 * unit)
    chroma = (samples - 128 * unit) * top / (224 * unit) + (top + 1) / 2
    dtype = np.uint8 if depth == 8 else np.uint16
    return [np.clip(np.rint(t), 0, top).astype(dtype) for t in (luma, chroma)]


def _plane(frame, index: int, dtype) -> np.ndarray:
    """One colour plane of a frame, its rows without their padding (a view)."""
    plane = frame.planes[index]
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype().itemsize)
    return rows[:, :plane.width]
