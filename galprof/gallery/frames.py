"""Pixels: fast, oriented, bounded decoding of photos and sampled video frames.

A JPEG is decoded in draft mode (DCT scaling) at the smallest scale that still
covers the size the models need, so a 12 MP photo is never fully decoded for
analysis. EXIF orientation and video rotation are applied; everything comes out
RGB. Oversized images are refused before their pixels are touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image

from galprof import tunables
from galprof.errors import MediaError
from galprof.gallery import heif
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
# which for a 12 MP HEIC costs ~20 MB (~60 MB where libheif decodes it): one such
# decode at a time keeps a scan's peak memory bounded whatever the number of decode
# threads (JPEGs, drafted, run freely).
_FULL_SIZE_DECODES = threading.BoundedSemaphore(1)
# A video at most this large (720p) decodes beside a full-size decode: its decoder's
# pictures (the references and one a frame thread, ~1.4 MB each) are a few MB, not the
# 50-200 MB of a 1080p or 4K one. On the roll of 200 (clips of 270p-720p), the inference
# thread's waits for decodes 4.1 s -> 2.3 s, the same peak memory.
SMALL_VIDEO_PIXELS = 1280 * 720
# A truncated photo is still analysed when at least this share of its rows decoded.
MIN_DECODED_SHARE = 0.5
# A photo is read into memory whole (so that what is hashed is what is decoded); a file
# this big is no phone photo.
MAX_PHOTO_BYTES = 512 * 1024 * 1024


@tunables.defaults("decode")
class DecodeTunables:
    """What the decoder may give the stages instead of the full picture; values and
    reasons in galprof/tunables.toml [decode]."""

    heic_preview_min_side: int
    still_max_block_diff: float
    keyframes_when_they_keep: float


DECODE = DecodeTunables()
# A still-shot test compares frames as STILL_GRID x STILL_GRID blocks (each 1/64 of a frame
# at 8): a person walking far away still changes a block by tens of grey levels.
STILL_GRID = 8


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


def _fitted_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    f = long_side / max(size)
    return max(1, round(size[0] * f)), max(1, round(size[1] * f))


# Pillow's resize first reduces a picture by the integer factor that leaves it at least
# this many times the target size (then resamples): fast, and the pixels the models see.
_REDUCING_GAP = 2.0
# Rows of a full-size HEIC shrunk at a time (~2 MB of a 12 MP picture at 4 bytes a pixel).
_HEIF_STRIP_ROWS = 128


def _fit(img: Image.Image, long_side: int) -> Image.Image:
    if long_side and max(img.size) > long_side:
        img = img.resize(_fitted_size(img.size, long_side), Image.BILINEAR,
                         reducing_gap=_REDUCING_GAP)
    return img


def _heic_fitted(data: bytes, size: tuple[int, int], long_side: int) -> Image.Image | None:
    """A HEIC's full picture (`size`: as libheif reads it) at `long_side`: its tiles
    decoded by libavcodec and scaled in one swscale pass (heif.py: half the time of
    libheif's on the test HEICs, one full-size buffer of 1.5 bytes a pixel instead of
    4.5), or libheif's decode when that module does not take the file, sees another
    picture size or a tile does not decode there."""
    def fit(oriented: tuple[int, int]) -> tuple[int, int]:
        if oriented != size:
            raise heif.Unsupported(f"a {oriented} picture where libheif reads {size}")
        return _fitted_size(size, long_side)
    try:
        return heif.fitted_picture(data, fit)
    except (heif.Unsupported, ValueError):
        return _libheif_fitted(data, long_side)


def _libheif_fitted(data: bytes, long_side: int) -> Image.Image | None:
    """A HEIC's full picture at `long_side`, shrunk from libheif's buffer a strip of rows at
    a time: the pixels Pillow's load and resize (with its reducing_gap) give, without
    Pillow's copy of the whole picture at 4 bytes a pixel (a 12 MP decode peaks at ~60 MB
    instead of 85). Each strip gets the resize's first step, a horizontal pass (or, for a
    picture at least 2 x _REDUCING_GAP times the size, Pillow's box reduction), which
    depends on its own rows only; the rest runs on the small result (the test HEICs'
    decodes to analysis size take 7-8 % less time than with a full-size copy of each
    colour plane shrunk in turn). None when the decoded picture is not 8-bit RGB(A)."""
    decoded = pillow_heif.open_heif(data)
    if decoded.mode not in ("RGB", "RGBA"):
        return None
    pixels = np.asarray(decoded)       # libheif's buffer, not a copy
    height, width = pixels.shape[:2]
    size = _fitted_size((width, height), long_side)
    fx = int(width / size[0] / _REDUCING_GAP) or 1
    fy = int(height / size[1] / _REDUCING_GAP) or 1
    reduced = fx > 1 or fy > 1
    rows = fy * max(1, _HEIF_STRIP_ROWS // fy)       # whole blocks of the reduction
    # a reduction's partial last blocks are pixels too: its size is rounded up
    first = Image.new("RGB", (-(-width // fx), -(-height // fy)) if reduced else (size[0], height))
    for top in range(0, height, rows):
        strip = Image.frombuffer("RGB", (width, min(rows, height - top)), pixels[top:top + rows],
                                 "raw", "RGB" if decoded.mode == "RGB" else "RGBX", 0, 1)
        if reduced:
            first.paste(strip.reduce((fx, fy)), (0, top // fy))
        else:
            first.paste(strip.resize((size[0], strip.height), Image.BILINEAR), (0, top))
    box = (0, 0, width / fx, height / fy) if reduced else (0, 0, size[0], height)
    return first.resize(size, Image.BILINEAR, box=box)


def _decoded_share(img: Image.Image) -> float:
    """Share of rows that decoded: libjpeg fills what is missing with flat rows at the bottom."""
    arr = np.asarray(img.convert("L"))
    flat = np.all(arr == arr[:, :1], axis=1)
    missing = len(flat) - (np.flatnonzero(~flat)[-1] + 1) if (~flat).any() else len(flat)
    return 1 - missing / len(flat)


def _load(data: bytes, long_side: int, name, max_bytes: int = MAX_DECODE_BYTES,
          preview: bool = False) -> tuple[Image.Image, tuple[int, int], bool]:
    """The decoded image (draft-scaled, or a HEIC's embedded preview when `preview` and the
    file has one large enough), the stored size before scaling, and whether it is the
    preview."""
    img = _open_image(data, name)
    size = img.size
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)               # animated GIF/WebP: the first frame
    _draft(img, long_side)
    if preview and img.format == "HEIF" and _heic_preview(img, long_side):
        img.load()                # a few ms: no full-size decode, no semaphore
        return img, size, True
    _map_large_buffers()
    need = _decode_bytes(img)
    if need > max_bytes:
        raise MediaError(name, f"image too large to decode within the memory limit "
                               f"({img.width}x{img.height} pixels need about {need >> 20} MB; "
                               f"limit {max_bytes >> 20} MB, see --max-decode-mb)")
    if img.format in ("JPEG", "MPO"):
        img.load()
    else:
        with _FULL_SIZE_DECODES:
            # shrink before letting the next full-size decode start (orientation is applied
            # later and commutes with scaling; keep `info`, which holds the EXIF)
            if long_side and max(img.size) > long_side:
                info = img.info
                fitted = (_heic_fitted(data, img.size, long_side) if img.format == "HEIF"
                          else None)
                img = fitted if fitted is not None else _fit(_rgb(img), long_side)
                img.info = info
            else:
                img.load()
        release_freed_memory()
    return img, size, False


def _heic_preview(img: Image.Image, long_side: int) -> bool:
    """Point the HEIC loader at the file's embedded preview (pillow-heif's draft) when it
    has one whose short side covers HEIC_PREVIEW_MIN_SIDE and that is smaller than the
    analysis size; a 12 MP HEIC then costs ~5 ms instead of a 200-500 ms full decode."""
    w, h = img.size
    need = DECODE.heic_preview_min_side
    if min(w, h) <= need or (long_side and max(w, h) <= long_side):
        return False
    try:
        return img.draft(img.mode, (need, 1) if w <= h else (1, need)) is not None
    except (OSError, ValueError, SyntaxError, RuntimeError):
        return False       # an unreadable preview: decode the picture itself


def release_freed_memory() -> None:
    """Give freed heap back to the system: glibc keeps it per thread otherwise, and a few
    full-size decodes in two threads would hold ~100 MB each for the rest of the scan."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _map_large_buffers() -> None:
    """Have glibc give every buffer of MMAP_THRESHOLD or more its own mapping, returned
    to the system when freed. By default glibc raises that threshold to the size of the
    largest buffer freed so far (up to 32 MB), after which the next full-size decodes
    (36-150 MB of pixels and planes) come from the heaps of the decode threads and
    libheif's own threads, which keep them: measured on the test HEICs, peak memory of
    the decodes 318 MB against 168 MB, and 200 MB against 47 MB still held after them."""
    global _HEAP_BOUND
    if _LIBC is not None and not _HEAP_BOUND:
        _HEAP_BOUND = True
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _LIBC.malloc_trim
    _LIBC.mallopt
except (OSError, AttributeError):   # not glibc (macOS, musl): nothing to do
    _LIBC = None
_M_MMAP_THRESHOLD = -3          # glibc's mallopt parameter number
MMAP_THRESHOLD = 1 << 20        # a 1 MB buffer costs 256 page faults more: noise next to a decode
_HEAP_BOUND = False


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
                 max_bytes: int = MAX_DECODE_BYTES, preview: bool = False) -> Decoded:
    """Metadata and one oriented RGB frame whose long side is at most `long_side`.

    `source` is the file's bytes (a path is read first, for callers that have only one).
    A truncated JPEG is decoded again with an end-of-image marker appended, which makes
    libjpeg fill the missing rows; it is analysed, with a warning, when at least
    MIN_DECODED_SHARE of it came through. With `preview`, a HEIC whose embedded preview
    is large enough (DecodeTunables.heic_preview_min_side) comes from it: the frame is
    `reduced` and decodes the full picture at `long_side` from the same bytes when a stage
    asks (Frame.at_least).
    """
    data, default_name = _photo_bytes(source)
    name = name if name is not None else default_name
    notes: list[str] = []
    try:
        img, (w, h), from_preview = _load(data, long_side, name, max_bytes, preview)
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        if isinstance(e, MediaError):
            raise
        if "truncated" not in str(e):
            raise MediaError(name, f"cannot decode pixels ({_short(e)})") from None
        try:
            img, (w, h), from_preview = _load(data + b"\xff\xd9", long_side, name, max_bytes)
        except (OSError, ValueError, SyntaxError, EOFError):
            raise MediaError(name, f"truncated file that does not decode ({_short(e)})") from None
        share = _decoded_share(img)
        if share < MIN_DECODED_SHARE:
            raise MediaError(name, f"truncated file: only {share:.0%} of the image decodes")
        notes.append(f"truncated file: analysed the {share:.0%} of the image that decodes")
    meta, tag = _photo_meta(img, w, h)
    # Shrunk first, then turned: turning a drafted 12 MP JPEG (2016 x 1512) took 8-10 ms
    # and rewrote its EXIF, the fitted picture 2.6 ms. The pixels move by a rounding
    # level at most (Pillow's two resize passes swap places).
    img = _fit(_rgb(img), long_side)
    if tag in _TRANSPOSES:
        img = img.transpose(_TRANSPOSES[tag])
    enlarge = None
    if from_preview:
        def enlarge():
            full = decode_photo(data, long_side, name, max_bytes).frames[0]
            return full.image, full.scale
    frame = Frame(index=0, timestamp=None, image=np.asarray(img), scale=img.width / meta.width,
                  enlarge=enlarge)
    frame.keep_picture(img)           # the same pixels: the stages resize from it
    return Decoded(meta, [frame], meta.warnings + notes)


# EXIF orientation -> the turn or flip that shows the picture upright.
_TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}


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
                 max_frames: int, name=None, repeats: bool = False,
                 on_frame: Callable[[Frame], None] | None = None) -> Decoded:
    """Metadata and every `frame_step`-th frame, widened so that at most `max_frames` cover
    the whole video; the container's rotation applied. `source` is an open binary file
    (what the pipeline hashed) or a path.

    Only what the sampled frames need is decoded (see _SamplePlan): groups of pictures
    without a sampled frame are not fed to the decoder, nor the packets after a group's
    last sampled frame, and frames no other frame refers to are skipped unless sampled;
    the sampled frames move to their nearest keyframes when most stay apart
    (DecodeTunables.keyframes_when_they_keep). The frames are the same, pixel for pixel,
    as decoding every frame would give at their indices. With
    `repeats`, a sampled frame nearly identical to the last one kept (a static shot; see
    DecodeTunables.still_max_block_diff) is given that frame's image and `same_as`.
    """
    import av

    name = name if name is not None else source
    _map_large_buffers()
    try:
        container = av.open(source if not isinstance(source, (str, os.PathLike)) else str(source),
                            metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(name, f"not a readable video ({_short(e)})") from None
    with container:
        if not container.streams.video:
            raise MediaError(name, "no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise MediaError(name, "video codec not supported (no decoder for it in this "
                                   "FFmpeg build)")
        # (a size the container does not tell is decoded as a large one)
        small = 0 < stream.codec_context.width * stream.codec_context.height <= SMALL_VIDEO_PIXELS
        with contextlib.nullcontext() if small else _FULL_SIZE_DECODES:
            decoded = _decode_stream(container, stream, name, long_side, frame_step,
                                     max_frames, repeats, on_frame)
    release_freed_memory()
    return decoded


def _decode_stream(container, stream, name, long_side: int, frame_step: int, max_frames: int,
                   repeats: bool, on_frame: Callable[[Frame], None] | None) -> Decoded:
    """decode_video's work on the first video stream of its open container."""
    import av

    meta = video_metadata(container)
    # Phone HEVC is written with wavefronts, which FFmpeg decodes row-parallel within a
    # frame: 1.6x faster here than frame threads, whose pipeline refills after each
    # group of pictures skipped (a 60 s 4K clip: 6.2 s against 9.8 s). H.264 from
    # phones has one slice a frame and needs frame threads.
    stream.thread_type = "SLICE" if stream.codec_context.name == "hevc" else "AUTO"
    total = stream.frames or (int(meta.duration * meta.fps) if meta.duration and meta.fps else 0)
    step = max(frame_step, math.ceil(total / max_frames) if total else frame_step)
    sampler = _Sampler(long_side, repeats, on_frame)
    try:
        plan = _SamplePlan.of(container, stream, step, max_frames)
    except (av.FFmpegError, OSError, ValueError):
        plan = None
    try:
        if plan is not None:
            _decode_planned(container, stream, plan, sampler)
            if not plan.complete(sampler):
                plan = None              # the decoder disagreed with the timestamps
        if plan is None:
            sampler.reset()
            container.seek(0, stream=stream)
            _decode_every_frame(container, stream, step, max_frames, sampler)
    except (av.FFmpegError, OSError, ValueError) as e:
        if not sampler.frames:
            raise MediaError(name, f"cannot decode video ({_short(e)})") from None
        sampler.warnings.append(f"video decoding stopped early ({_short(e)})")
    if not sampler.frames:
        raise MediaError(name, "video has no decodable frames")
    meta.rotation = sampler.rotation
    if sampler.rotation % 180:
        meta.width, meta.height = meta.height, meta.width
    return Decoded(meta, sampler.frames, sampler.warnings)


class _Sampler:
    """Turns the sampled decoded frames into Frames: scaled to the analysis size while
    converting to RGB, rotated upright, repeats of a still shot marked (with `repeats`)."""

    def __init__(self, long_side: int, repeats: bool,
                 on_frame: Callable[[Frame], None] | None = None):
        self.long_side, self.repeats, self.on_frame = long_side, repeats, on_frame
        self.reset()

    def reset(self) -> None:
        self.frames: list[Frame] = []
        self.warnings: list[str] = []
        self.rotation = 0
        self._kept: tuple[Frame, np.ndarray] | None = None   # last frame analysed, signature

    def add(self, index: int, vf, time_base=None) -> None:
        """Keep decoded frame `vf` as the frame of this index; `time_base`: the stream's,
        for frames a drained decoder gives without one."""
        if not self.frames:
            self.rotation = int(getattr(vf, "rotation", 0) or 0)
        w, h = vf.width, vf.height
        f = min(1.0, self.long_side / max(w, h)) if self.long_side else 1.0
        rgb = vf.to_ndarray(width=max(2, round(w * f)), height=max(2, round(h * f)),
                            format="rgb24")
        if time_base is not None and vf.pts is not None:
            ts = float(vf.pts * time_base)
        else:
            ts = float(vf.time) if vf.time is not None else None
        # One PIL copy of the frame for its signature and, handed on at once (on_frame),
        # for the stages' inputs (Frame.picture), which let it go when they are made.
        shared = self.on_frame is not None and not self.rotation
        picture = Image.fromarray(rgb) if self.repeats or shared else None
        if self.repeats:
            signature = _still_signature(picture)
            if self._kept is not None and _same_still(self._kept[1], signature):
                kept = self._kept[0]
                self.frames.append(Frame(index, ts, kept.image, kept.scale, same_as=kept.index))
                return
        frame = Frame(index=index, timestamp=ts, image=_rotate(rgb, self.rotation), scale=f)
        self.frames.append(frame)
        if self.repeats:
            self._kept = (frame, signature)
        if self.on_frame is not None:
            if shared:
                frame.keep_picture(picture)
            self.on_frame(frame)


def _still_signature(picture: Image.Image) -> np.ndarray:
    """A frame's grey levels averaged over STILL_GRID x STILL_GRID blocks of 8 x 8 cells."""
    n = STILL_GRID * 8
    return np.asarray(picture.convert("L").resize((n, n), Image.BOX), np.float32)


def _same_still(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two signatures differ by at most still_max_block_diff grey levels (mean
    absolute difference) in every block: a static shot, not something moving in a part."""
    diff = np.abs(a - b).reshape(STILL_GRID, 8, STILL_GRID, 8).mean(axis=(1, 3))
    return float(diff.max()) <= DECODE.still_max_block_diff


class _SamplePlan:
    """Which packets of a video stream to feed to the decoder for the sampled frames.

    One demux pass (packets only, no decoding) gives each packet's presentation time; a
    frame's index is its rank in presentation order, as decoding every frame counts them.
    The sampled frames are the ranks 0, step, 2 step, ... (at most max_frames). A group
    of pictures (a keyframe and the packets up to the next) is fed from its keyframe to
    its last sampled packet; a group without one is not fed; a sampled frame shown before
    its group's keyframe (an open GOP's leading picture) also feeds the group before.
    """

    def __init__(self, pts: list[int], feed: list[bool], wanted: dict[int, int]):
        self.pts, self.feed, self.wanted = pts, feed, wanted   # wanted: pts -> index

    @classmethod
    def of(cls, container, stream, step: int, max_frames: int) -> "_SamplePlan | None":
        pts: list[int] = []
        keys: list[int] = []                 # decode positions of keyframes
        shown: list[int] = []                # pts of the packets that become frames
        for packet in container.demux(stream):
            if packet.size == 0:
                continue                     # the demuxer's end-of-stream packet
            if packet.pts is None:
                return None                  # no timestamps (raw streams): decode all
            if packet.is_keyframe:
                keys.append(len(pts))
            pts.append(packet.pts)
            if not packet.is_discard:        # before an edit list's start: decoded, not shown
                shown.append(packet.pts)
        order = sorted(shown)
        if not order or len(set(pts)) != len(pts) or not keys:
            return None
        ranks = [i * step for i in range(max_frames) if i * step < len(order)]
        ranks = _nearest_keyframes(ranks, order, [pts[k] for k in keys])
        wanted = {order[r]: r for r in ranks}
        starts = ([0] if keys[0] else []) + keys       # group starts, in decode order
        group = np.searchsorted(np.asarray(starts), np.arange(len(pts)), side="right") - 1
        last = {}                            # group -> last decode position to feed
        for pos, p in enumerate(pts):
            if p in wanted:
                g = int(group[pos])
                last[g] = max(last.get(g, pos), pos)
                if g > 0 and p < pts[starts[g]]:      # leading picture: needs the group before
                    last[g - 1] = starts[g] - 1
        feed = [int(group[pos]) in last and pos <= last[int(group[pos])] for pos in range(len(pts))]
        container.seek(0, stream=stream)
        return cls(pts, feed, wanted)

    def complete(self, sampler: _Sampler) -> bool:
        return len(sampler.frames) == len(self.wanted)


def _nearest_keyframes(ranks: list[int], order: list[int], key_pts: list[int]) -> list[int]:
    """The sampled ranks moved to their nearest keyframes, samples meeting at one keyframe
    made one, when more than DecodeTunables.keyframes_when_they_keep of them stay apart
    and the video starts with a keyframe: a keyframe decodes alone, so each sampled frame
    costs one frame's decoding. Otherwise the ranks as they are."""
    rank = {p: i for i, p in enumerate(order)}
    keys = sorted({rank[p] for p in key_pts if p in rank})
    if not keys or keys[0] != 0 or not ranks:
        return ranks
    at = np.asarray(keys)
    moved: list[int] = []
    for r in ranks:
        j = int(np.searchsorted(at, r))
        nearest = min((int(at[x]) for x in (j - 1, j) if 0 <= x < len(at)),
                      key=lambda k: (abs(k - r), k))
        if not moved or nearest != moved[-1]:
            moved.append(nearest)
    return moved if len(moved) > DECODE.keyframes_when_they_keep * len(ranks) else ranks


def _decode_planned(container, stream, plan: _SamplePlan, sampler: _Sampler) -> None:
    """Decode the packets the plan feeds; a group whose fed frames refer to others is
    drained at its end."""
    ctx = stream.codec_context
    found: dict[int, object] = {}
    pos, undrained, dependent = 0, False, False

    def take(frames) -> None:
        for vf in frames:
            if vf.pts in plan.wanted and vf.pts not in found:
                found[vf.pts] = None
                sampler.add(plan.wanted[vf.pts], vf, stream.time_base)

    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if pos >= len(plan.pts):
            break
        if plan.feed[pos]:
            # frames nothing refers to are skipped, unless they are sampled
            ctx.skip_frame = "DEFAULT" if packet.pts in plan.wanted else "NONREF"
            take(ctx.decode(packet))
            undrained, dependent = True, dependent or not packet.is_keyframe
        elif dependent:
            # the group's last sampled packet was fed, and frames that refer to others:
            # drain before the packets skipped. A group fed only its keyframe refers to
            # nothing, so the decoder goes on without a drain (its frame threads stay busy).
            take(ctx.decode(None))
            ctx.flush_buffers()
            undrained = dependent = False
        pos += 1
        if len(found) == len(plan.wanted) and not undrained:
            break
    if undrained:
        take(ctx.decode(None))
    ctx.skip_frame = "DEFAULT"
    # frames come out in presentation order within a group, and groups in order
    sampler.frames.sort(key=lambda fr: fr.index)


def _decode_every_frame(container, stream, step: int, max_frames: int, sampler: _Sampler) -> None:
    """Decode all frames in order, keeping every step-th (files without timestamps)."""
    for i, vf in enumerate(container.decode(stream)):
        if i % step:
            continue
        sampler.add(i, vf)
        if len(sampler.frames) >= max_frames:
            break


def _video_meta(source, name) -> Metadata:
    import av
    try:
        with av.open(source, metadata_errors="ignore") as container:
            return video_metadata(container)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(name, f"not a readable video ({_short(e)})") from None


def read_media(path: os.PathLike | str, kind: str, long_side: int, frame_step: int = 5,
               max_frames: int = 40, pixels=True,
               max_bytes: int = MAX_DECODE_BYTES, for_stages: bool = False,
               on_frame: Callable[[Frame], None] | None = None) -> tuple[str, Decoded]:
    """Read one media file once: (content hash of exactly the bytes read, what they decode to).

    The file is opened once; a photo's bytes are hashed and decoded from memory, a
    video's are hashed and decoded through the same open file, and a file that changed
    while being read is refused. `pixels` may be False (only the metadata is read, for a
    file whose stage results are cached) or a function of the content hash saying
    whether the pixels are needed. Devices, FIFOs and sockets are never read.

    `for_stages`: the frames go to the stages, which know the two shortcuts of Frame: a
    HEIC may come from its embedded preview (`reduced`, the full picture decoded on
    demand from the same bytes), and a video frame repeating the last one analysed of a
    still shot carries `same_as`. Without it every frame is the picture at `long_side`
    (what the remote tier uploads and reports show). `on_frame`: a video's frames as
    they are decoded (decode_video)."""
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
            decoded = (decode_video(f, long_side, frame_step, max_frames, name=path,
                                    repeats=for_stages, on_frame=on_frame) if pixels
                       else Decoded(_video_meta(f, path), [], []))
            after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise MediaError(path, "the file changed while it was being read; "
                                       "the next scan reads it again")
            return digest, decoded
        data = _read_all(f, path)
    digest = hash_bytes(data)
    if pixels(digest) if callable(pixels) else pixels:
        return digest, decode_photo(data, long_side, name=path, max_bytes=max_bytes,
                                    preview=for_stages)
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
