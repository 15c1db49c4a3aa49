"""Pixels: fast, oriented, bounded decoding of photos and sampled video frames.

A JPEG is decoded in draft mode (DCT scaling) at the smallest scale that still
covers the size the models need, so a 12 MP photo is never fully decoded for
analysis. EXIF orientation and video rotation are applied; everything comes out
RGB. Oversized images are refused before their pixels are touched.
"""

from __future__ import annotations

import ctypes
import io
import math
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from galprof.errors import MediaError
from galprof.gallery.metadata import (Metadata, exif_from_bytes, original_orientation,
                                     video_metadata)
from galprof.stages import Frame
from galprof.gallery.hashing import hash_bytes, hash_stream

try:
    import pillow_heif
    pillow_heif.register_heif_opener()
except ImportError:  # HEIC support is optional on exotic platforms
    pillow_heif = None

# The guard against decompression bombs: refuse images above this many pixels.
MAX_PIXELS = 250_000_000
# Memory one full-size decode may take (--max-decode-mb): a 48 MP phone HEIC needs ~200 MB;
# a small PNG can declare a 250 MP canvas (1 GB decoded, 2 GB with a conversion), which
# would get a phone's or a Pi's process killed and lose the batch. JPEGs decode reduced.
MAX_DECODE_BYTES = 512 * 1024 * 1024
Image.MAX_IMAGE_PIXELS = None      # our own check below gives a per-file error instead
# Formats without reduced-size decoding (HEIC, PNG, WebP, video) are decoded at full size,
# which for a 12 MP HEIC costs ~110 MB: one such decode at a time keeps a scan's peak
# memory bounded whatever the number of decode threads (JPEGs, drafted, run freely).
_FULL_SIZE_DECODES = threading.BoundedSemaphore(1)
# A truncated photo is still analysed when at least this share of its rows decoded.
MIN_DECODED_SHARE = 0.5
# A photo is read into memory whole (so that what is hashed is what is decoded); a file
# this big is no phone photo.
MAX_PHOTO_BYTES = 512 * 1024 * 1024


@dataclass
class Decoded:
    """What one read of a media file gives: its metadata and its frames."""

    meta: Metadata
    frames: list[Frame]
    warnings: list[str]


def _decode_bytes(img: Image.Image) -> int:
    """Memory a full decode of `img` takes: Pillow keeps 4 bytes a pixel for colour modes
    (1 for L/P), and a conversion to RGB holds a second copy."""
    bands = 1 if img.mode in ("1", "L", "P") else 4
    copies = 1 if img.mode == "RGB" else 2
    return img.width * img.height * bands * copies


def _open_image(data: bytes, name) -> Image.Image:
    if not data:
        raise MediaError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise MediaError(name, f"image too large ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise MediaError(name, f"not a readable image ({_short(e)})") from None
    if img.width * img.height > MAX_PIXELS:
        raise MediaError(name, f"image too large ({img.width}x{img.height} pixels, "
                               f"limit {MAX_PIXELS // 1_000_000} MP)")
    if img.width <= 0 or img.height <= 0:
        raise MediaError(name, "image has no pixels (width or height is 0)")
    return img


def _short(e: BaseException) -> str:
    """A library's message as one short line (some span several, or end in newlines)."""
    strerror = getattr(e, "strerror", None)
    if getattr(e, "errno", None) and isinstance(strerror, str) and strerror:
        # FFmpeg's (and the OS's) errors read "[Errno 1094995529] Invalid data found when
        # processing input: 'avcodec_receive_frame()'": the message alone says it
        return (strerror[:1].lower() + strerror[1:])[:200]
    text = " ".join(str(e).split())
    if text.startswith("cannot identify image file"):
        return "unrecognised or corrupt image data"
    return text[:200] or type(e).__name__


def _draft(img: Image.Image, long_side: int) -> None:
    """Ask the JPEG decoder for the smallest DCT scale whose long side still covers `long_side`."""
    if img.format not in ("JPEG", "MPO") or not long_side:   # MPO: iPhone JPEGs with a depth map
        return
    w, h = img.size
    f = long_side / max(w, h)
    if f < 1:
        img.draft("RGB", (max(1, math.ceil(w * f)), max(1, math.ceil(h * f))))


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _fit(img: Image.Image, long_side: int) -> Image.Image:
    if long_side and max(img.size) > long_side:
        f = long_side / max(img.size)
        size = (max(1, round(img.width * f)), max(1, round(img.height * f)))
        img = img.resize(size, Image.BILINEAR, reducing_gap=2.0)
    return img


def _decoded_share(img: Image.Image) -> float:
    """Share of rows that decoded: libjpeg fills what is missing with flat rows at the bottom."""
    arr = np.asarray(img.convert("L"))
    flat = np.all(arr == arr[:, :1], axis=1)
    missing = len(flat) - (np.flatnonzero(~flat)[-1] + 1) if (~flat).any() else len(flat)
    return 1 - missing / len(flat)


def _load(data: bytes, long_side: int, name, max_bytes: int = MAX_DECODE_BYTES
          ) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image (draft-scaled) and the stored size before scaling."""
    img = _open_image(data, name)
    size = img.size
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)               # animated GIF/WebP: the first frame
    _draft(img, long_side)
    need = _decode_bytes(img)
    if need > max_bytes:
        raise MediaError(name, f"image too large to decode within the memory limit "
                               f"({img.width}x{img.height} pixels need about {need >> 20} MB; "
                               f"limit {max_bytes >> 20} MB, see --max-decode-mb)")
    if img.format in ("JPEG", "MPO"):
        img.load()
    else:
        with _FULL_SIZE_DECODES:
            img.load()
            # shrink before letting the next full-size decode start (orientation is applied
            # later and commutes with scaling; keep `info`, which holds the EXIF)
            if long_side and max(img.size) > long_side:
                info = img.info
                img = _fit(_rgb(img), long_side)
                img.info = info
        _release_freed_memory()
    return img, size


def _release_freed_memory() -> None:
    """Give freed heap back to the system: glibc keeps it per thread otherwise, and a few
    full-size decodes in two threads would hold ~100 MB each for the rest of the scan."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _LIBC.malloc_trim
except (OSError, AttributeError):   # not glibc (macOS, musl): nothing to do
    _LIBC = None


def _photo_bytes(source: bytes | os.PathLike | str) -> tuple[bytes, object]:
    """(bytes, name for messages) of a photo given as bytes or as a path (convenience)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    with open(source, "rb") as f:
        return _read_all(f, source), source


def _read_all(f: BinaryIO, name) -> bytes:
    data = f.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise MediaError(name, f"file too large for a photo (over {MAX_PHOTO_BYTES >> 20} MB)")
    return data


def decode_photo(source: bytes | os.PathLike | str, long_side: int, name=None,
                 max_bytes: int = MAX_DECODE_BYTES) -> Decoded:
    """Metadata and one oriented RGB frame whose long side is at most `long_side`.

    `source` is the file's bytes (a path is read first, for callers that have only one).
    A truncated JPEG is decoded again with an end-of-image marker appended, which makes
    libjpeg fill the missing rows; it is analysed, with a warning, when at least
    MIN_DECODED_SHARE of it came through.
    """
    data, default_name = _photo_bytes(source)
    name = name if name is not None else default_name
    notes: list[str] = []
    try:
        img, (w, h) = _load(data, long_side, name, max_bytes)
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        if isinstance(e, MediaError):
            raise
        if "truncated" not in str(e):
            raise MediaError(name, f"cannot decode pixels ({_short(e)})") from None
        try:
            img, (w, h) = _load(data + b"\xff\xd9", long_side, name, max_bytes)
        except (OSError, ValueError, SyntaxError, EOFError):
            raise MediaError(name, f"truncated file that does not decode ({_short(e)})") from None
        share = _decoded_share(img)
        if share < MIN_DECODED_SHARE:
            raise MediaError(name, f"truncated file: only {share:.0%} of the image decodes")
        notes.append(f"truncated file: analysed the {share:.0%} of the image that decodes")
    meta, tag = _photo_meta(img, w, h)
    if tag and tag != 1:
        img = ImageOps.exif_transpose(img)
    img = _fit(_rgb(img), long_side)
    frame = Frame(index=0, timestamp=None, image=np.asarray(img), scale=img.width / meta.width)
    return Decoded(meta, [frame], meta.warnings + notes)


def _photo_meta(img: Image.Image, w: int, h: int) -> tuple[Metadata, int | None]:
    """(metadata with the displayed size, the EXIF orientation tag the pixels still need).

    `meta.orientation` reports the file's own value: pillow-heif applies a HEIC's
    orientation while decoding and rewrites the tag to 1, keeping the original aside."""
    meta = Metadata()
    exif_from_bytes(img.info.get("exif"), meta)
    tag = meta.orientation
    meta.width, meta.height = (h, w) if tag in (5, 6, 7, 8) else (w, h)
    meta.orientation = original_orientation(img) or tag
    return meta, tag


def _rotate(array: np.ndarray, rotation: int) -> np.ndarray:
    k = (rotation // 90) % 4          # counter-clockwise quarter turns, as PyAV reports
    return np.rot90(array, k) if k else array


def decode_video(source: BinaryIO | os.PathLike | str, long_side: int, frame_step: int,
                 max_frames: int, name=None) -> Decoded:
    """Metadata and every `frame_step`-th frame, widened so that at most `max_frames` cover
    the whole video; the container's rotation applied. `source` is an open binary file
    (what the pipeline hashed) or a path."""
    import av

    name = name if name is not None else source
    try:
        container = av.open(source if not isinstance(source, (str, os.PathLike)) else str(source),
                            metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(name, f"not a readable video ({_short(e)})") from None
    with container, _FULL_SIZE_DECODES:
        if not container.streams.video:
            raise MediaError(name, "no video stream")
        meta = video_metadata(container)
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise MediaError(name, "video codec not supported (no decoder for it in this "
                                   "FFmpeg build)")
        stream.thread_type = "AUTO"
        total = stream.frames or (int(meta.duration * meta.fps) if meta.duration and meta.fps else 0)
        step = max(frame_step, math.ceil(total / max_frames) if total else frame_step)
        frames: list[Frame] = []
        warnings_: list[str] = []
        rotation = 0
        try:
            for i, vf in enumerate(container.decode(stream)):
                if i == 0:
                    rotation = int(getattr(vf, "rotation", 0) or 0)
                if i % step:
                    continue
                w, h = vf.width, vf.height
                f = min(1.0, long_side / max(w, h)) if long_side else 1.0
                rgb = vf.to_ndarray(width=max(2, round(w * f)), height=max(2, round(h * f)),
                                    format="rgb24")
                ts = float(vf.time) if vf.time is not None else None
                frames.append(Frame(index=i, timestamp=ts, image=_rotate(rgb, rotation), scale=f))
                if len(frames) >= max_frames:
                    break
        except (av.FFmpegError, OSError, ValueError) as e:
            if not frames:
                raise MediaError(name, f"cannot decode video ({_short(e)})") from None
            warnings_.append(f"video decoding stopped early ({_short(e)})")
        if not frames:
            raise MediaError(name, "video has no decodable frames")
        meta.rotation = rotation
        if rotation % 180:
            meta.width, meta.height = meta.height, meta.width
    return Decoded(meta, frames, warnings_)


def _video_meta(source, name) -> Metadata:
    import av
    try:
        with av.open(source, metadata_errors="ignore") as container:
            return video_metadata(container)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(name, f"not a readable video ({_short(e)})") from None


def read_media(path: os.PathLike | str, kind: str, long_side: int, frame_step: int = 5,
               max_frames: int = 40, pixels=True,
               max_bytes: int = MAX_DECODE_BYTES) -> tuple[str, Decoded]:
    """Read one media file once: (content hash of exactly the bytes read, what they decode to).

    The file is opened once; a photo's bytes are hashed and decoded from memory, a
    video's are hashed and decoded through the same open file, and a file that changed
    while being read is refused. `pixels` may be False (only the metadata is read, for a
    file whose stage results are cached) or a function of the content hash saying
    whether the pixels are needed. Devices, FIFOs and sockets are never read."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise MediaError(path, e.strerror or str(e)) from None
    with f:
        before = os.fstat(f.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise MediaError(path, "not a regular file")
        if kind == "video":
            digest = hash_stream(f, before.st_size)
            f.seek(0)
            pixels = pixels(digest) if callable(pixels) else pixels
            decoded = (decode_video(f, long_side, frame_step, max_frames, name=path) if pixels
                       else Decoded(_video_meta(f, path), [], []))
            after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise MediaError(path, "the file changed while it was being read; "
                                       "the next scan reads it again")
            return digest, decoded
        data = _read_all(f, path)
    digest = hash_bytes(data)
    if pixels(digest) if callable(pixels) else pixels:
        return digest, decode_photo(data, long_side, name=path, max_bytes=max_bytes)
    img = _open_image(data, path)
    meta = _photo_meta(img, *img.size)[0]
    return digest, Decoded(meta, [], meta.warnings)


def decode(path: os.PathLike | str, kind: str, long_side: int, frame_step: int = 5,
           max_frames: int = 40) -> Decoded:
    """The decoded frames of a file (read_media without the hash)."""
    return read_media(path, kind, long_side, frame_step, max_frames)[1]


def read_metadata(source: bytes | os.PathLike | str, kind: str) -> Metadata:
    """Metadata only (no pixels decoded)."""
    if kind == "video":
        return _video_meta(io.BytesIO(source) if isinstance(source, bytes) else str(source), source)
    data, name = _photo_bytes(source)
    img = _open_image(data, name)
    return _photo_meta(img, *img.size)[0]


def thumbnail(path: os.PathLike | str, long_side: int = 256) -> Image.Image:
    """A small oriented RGB picture of a photo, or of a video's first frame (for reports)."""
    from galprof.gallery.walk import sniff

    with open(path, "rb") as f:
        kind = (sniff(f.read(64)) or ("photo", None))[0]
    decoded = decode(path, kind, long_side, frame_step=1, max_frames=1)
    return Image.fromarray(decoded.frames[0].image)
