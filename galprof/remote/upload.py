"""What `galprof serve` accepts as an image: exactly what the client sends.

The client re-encodes every upload as a baseline JPEG of at most `MAX_SIDE` pixels on
the long side, without EXIF (remote/client.py). The server checks that from the JPEG
markers themselves, before Pillow sees the bytes: any other format (PNG, GIF, TIFF,
EPS, which Pillow would hand to Ghostscript...) is refused with 415, and a size or an
aspect ratio outside the limits with 413, before a single pixel is decoded. Only then
does Pillow decode it, restricted to its JPEG plugin.

Rejections carry a fixed reason for the client; what went wrong in detail goes to the
server's log (`UploadRejected.detail`), never into the answer.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from galprof.remote import MAX_ASPECT, MAX_IMAGE_BYTES, MAX_SIDE

# Sequential (baseline and extended) Huffman-coded frames: what libjpeg writes by
# default and what Pillow's encoder produces for the client. Progressive (C2) and
# arithmetic or lossless frames are legal JPEG but never sent by the client, and a
# progressive file with thousands of scans is a known way to make a decoder spin.
ACCEPTED_FRAMES = {0xC0: "baseline", 0xC1: "extended sequential"}
# Every other start-of-frame marker: a JPEG, but not one we decode.
OTHER_FRAMES = {0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Marker segments before the first scan: the client's JPEG has 8 (APP0, 2 DQT, SOF,
# 4 DHT); Pillow's parser walks each one in Python, so a file of a million tiny
# comment segments would cost it seconds.
MAX_SEGMENTS = 64
SOS, EOI, SOI = 0xDA, 0xD9, 0xD8


class UploadRejected(Exception):
    """An upload the server will not analyse.

    `status` is the HTTP status, `reason` the fixed text the client gets, `detail`
    what only the server's log sees.
    """

    def __init__(self, status: int, reason: str, detail: str = ""):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail or reason


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    components: int
    frame: str             # "baseline" or "extended sequential"

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _not_accepted(what: str) -> UploadRejected:
    return UploadRejected(415, "only baseline JPEG images are accepted", what)


def read_header(data: bytes, max_side: int = MAX_SIDE, max_aspect: float = MAX_ASPECT,
                max_bytes: int = MAX_IMAGE_BYTES) -> JpegHeader:
    """The frame header of a JPEG the server accepts, read from its markers (no decoding).

    UploadRejected: 400 empty or malformed, 415 not a baseline JPEG of 1 or 3
    components, 413 over `max_bytes`, a long side over `max_side` or an aspect ratio
    over `max_aspect`.
    """
    if not data:
        raise UploadRejected(400, "empty image: send one JPEG")
    if len(data) > max_bytes:
        raise UploadRejected(413, f"image over {max_bytes} bytes", f"{len(data)} bytes")
    if data[:3] != b"\xff\xd8\xff":
        raise _not_accepted(f"no JPEG start marker (starts {data[:8]!r})")
    pos, segments, header = 2, 0, None
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise UploadRejected(400, "malformed JPEG", f"no marker at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:     # fill bytes before a marker
            pos += 1
        if pos + 3 > len(data):
            raise UploadRejected(400, "malformed JPEG", "truncated marker")
        marker = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 3], "big")
        segments += 1
        if marker in (0x00, 0x01, SOI, EOI) or 0xD0 <= marker <= 0xD7 or length < 2:
            raise UploadRejected(400, "malformed JPEG", f"marker {marker:02X} at byte {pos}")
        if segments > MAX_SEGMENTS:
            raise UploadRejected(400, "malformed JPEG", f"over {MAX_SEGMENTS} marker segments")
        body = data[pos + 3:pos + 1 + length]
        if len(body) != length - 2:
            raise UploadRejected(400, "malformed JPEG", f"segment {marker:02X} truncated")
        if marker in OTHER_FRAMES:
            raise _not_accepted(f"JPEG frame type {marker:02X} (progressive, arithmetic or "
                                "lossless)")
        if marker in ACCEPTED_FRAMES:
            if header is not None:
                raise UploadRejected(400, "malformed JPEG", "two frame headers")
            if len(body) < 6:
                raise UploadRejected(400, "malformed JPEG", "short frame header")
            precision, components = body[0], body[5]
            height = int.from_bytes(body[1:3], "big")
            width = int.from_bytes(body[3:5], "big")
            if precision != 8 or components not in (1, 3):
                raise _not_accepted(f"{precision}-bit JPEG with {components} components")
            header = JpegHeader(width, height, components, ACCEPTED_FRAMES[marker])
        if marker == SOS:
            break
        pos += 1 + length
    if header is None:
        raise UploadRejected(400, "malformed JPEG", "scan before any frame header")
    w, h = header.width, header.height
    if w == 0 or h == 0:      # a height defined later by a DNL marker: never from the client
        raise UploadRejected(400, "malformed JPEG", f"frame of {w}x{h} pixels")
    if max(w, h) > max_side:
        raise UploadRejected(413, f"image over {max_side} pixels on its long side",
                             f"{w}x{h} pixels")
    if max(w, h) > max_aspect * min(w, h):
        raise UploadRejected(413, f"image aspect ratio over {max_aspect:g}:1", f"{w}x{h} pixels")
    return header


def decode_upload(data: bytes, max_side: int = MAX_SIDE, max_aspect: float = MAX_ASPECT,
                  max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """An uploaded JPEG as an oriented RGB uint8 array, or UploadRejected.

    The header is checked first (read_header); Pillow then opens the bytes with its
    JPEG plugin only and must agree on format and size before it decodes anything.
    """
    from PIL import Image, ImageOps

    header = read_header(data, max_side, max_aspect, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=["JPEG"])
            # MPO (several pictures in one file) opens through the JPEG plugin too.
            if img.format != "JPEG" or img.size != (header.width, header.height):
                raise _not_accepted(f"Pillow sees {img.format} {img.size}, the markers "
                                    f"say {header.width}x{header.height}")
            # No draft(): the limits above keep every upload at or under the client's
            # 1024 px, so a scaled decode would only lose pixels the tiles want.
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                img = img.convert("RGB")
    except UploadRejected:
        raise
    except Exception as e:  # Pillow raises many types on hostile input
        raise UploadRejected(400, "cannot decode the JPEG", f"{type(e).__name__}: {e}") from None
    return np.asarray(img)
