"""Discovery: which files under the given roots are photos and videos.

Phone-gallery rules: hidden folders and files (`.thumbnails`, `.trashed-*`,
`.pending-*`) are skipped, so are folders holding a `.nomedia` file; symlinked
folders are followed once (loops are cut by device/inode); an iPhone Live Photo
(a still and a `.mov` with the same stem in one folder) is one photo with its
motion part attached; a camera's `.THM` (the JPEG thumbnail Canon, GoPro and
others write next to each video) is never a photo: it is attached to its video
as `thumbnail_path`, and skipped when the video is gone. Kinds are recognised by
content, not by extension.

Only regular files are read: a FIFO, a device or a socket (or a symlink to one)
with a media extension is reported as "not a regular file (a FIFO)" and never
opened, as opening a FIFO blocks; a broken symlink is reported as such. Names
that are not valid UTF-8 come through as os.walk gives them (surrogate-escaped
str, lossless: `os.fsencode(path)` gives the bytes back).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

PHOTO_EXTS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif",
              ".hif", ".avif"}
VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".3gp", ".3g2", ".mkv", ".avi", ".webm", ".mts", ".qt"}
MEDIA_EXTS = PHOTO_EXTS | VIDEO_EXTS
THUMBNAIL_EXTS = {".thm"}          # a video camera's thumbnail of the video with the same stem

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1", b"avif", b"avis"}


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, format) from a file's first bytes, or None when it is not a known media type."""
    if head[:3] == b"\xff\xd8\xff":
        return "photo", "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "photo", "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "photo", "GIF"
    if head[:2] == b"BM" and len(head) >= 14:
        return "photo", "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "photo", "WEBP"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video", "WEBM" if b"webm" in head[:64] else "MKV"
    if head[4:8] == b"ftyp":
        major = head[8:12]
        if major in _HEIF_BRANDS:
            return "photo", "AVIF" if major in (b"avif", b"avis") else "HEIF"
        return "video", "MOV" if major == b"qt  " else "MP4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "video", "MOV"     # old QuickTime files start with an atom other than ftyp
    return None


@dataclass
class Found:
    """One media item found by the walk (a Live Photo is one item)."""

    path: Path
    root: Path
    size: int
    mtime_ns: int
    kind: str | None              # "photo" / "video", or None when the content is unknown
    format: str | None
    motion_path: Path | None = None      # a Live Photo's video part
    thumbnail_path: Path | None = None   # a video's camera thumbnail (.THM) sidecar


@dataclass
class WalkResult:
    items: list[Found] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)


def _skip_dir(name: str) -> bool:
    return name.startswith(".")


def walk(roots: list[Path]) -> WalkResult:
    """Find the media under `roots` (folders or single files), sorted by path."""
    result = WalkResult()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[Path] = set()
    for root in roots:
        root = Path(os.path.abspath(root))
        if not root.is_dir():
            _add_files(root.parent, [root.name], root.parent, result, seen_files, pair=False,
                       named=True)
            continue
        for dirpath, dirnames, filenames in os.walk(
                root, followlinks=True,
                onerror=lambda e: result.problems.append((e.filename, _reason(e)))):
            try:
                st = os.stat(dirpath)
            except OSError as e:
                result.problems.append((dirpath, _reason(e)))
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs or ".nomedia" in filenames:
                dirnames[:] = []      # a symlink loop, or a folder the user hid from galleries
                continue
            seen_dirs.add(key)
            dirnames[:] = sorted(d for d in dirnames if not _skip_dir(d))
            _add_files(Path(dirpath), filenames, root, result, seen_files, pair=True)
    result.items.sort(key=lambda f: str(f.path))
    return result


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


_NOT_REGULAR = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISDIR, "a folder")]


def _not_regular(mode: int) -> str | None:
    """'not a regular file (a FIFO)' and the like; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "an unknown kind of file")
    return f"not a regular file ({kind})"


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _stat_problem(path: Path, e: OSError) -> str:
    if os.path.islink(path):
        if e.errno == errno.ELOOP:
            return "broken symbolic link (it points to itself in a loop)"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return "broken symbolic link (its target does not exist)"
    return _reason(e)


def _read_head(path: Path) -> tuple[os.stat_result, bytes | str]:
    """The file's stat and first bytes, or the reason it is not read: a file that is not
    regular is never opened, and the open itself cannot block (O_NONBLOCK) should the
    file be swapped for a FIFO after the stat."""
    st = os.stat(path)
    problem = _not_regular(st.st_mode)
    if problem:
        return st, problem
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
                 | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        problem = _not_regular(st.st_mode)
        return (st, problem) if problem else (st, os.read(fd, 64))
    finally:
        os.close(fd)


def _add_files(folder: Path, names: list[str], root: Path, result: WalkResult,
               seen: set[Path], pair: bool, named: bool = False) -> None:
    """`named`: the user named this file, so whatever is wrong with it is reported even
    without a media extension."""
    found: list[Found] = []
    thumbnails: dict[str, Path] = {}
    for name in sorted(names):
        if name.startswith("."):
            continue                  # hidden, .trashed-*, .pending-*, .nomedia
        path = folder / name
        ext = path.suffix.lower()
        if ext in THUMBNAIL_EXTS:                     # never a photo of its own
            if _is_regular(path):
                thumbnails[path.stem.lower()] = path
            continue
        real = Path(os.path.realpath(path))
        if real in seen:
            continue
        report = named or ext in MEDIA_EXTS
        try:
            st, head = _read_head(path)
        except OSError as e:
            if report:
                result.problems.append((str(path), _stat_problem(path, e)))
            continue
        if isinstance(head, str):
            if report:
                result.problems.append((str(path), head))
            continue
        kind_format = sniff(head)
        if kind_format is None and ext not in MEDIA_EXTS:
            continue                  # not media: documents, sidecars, databases
        seen.add(real)
        kind, fmt = kind_format or (None, None)
        found.append(Found(path, root, st.st_size, st.st_mtime_ns, kind, fmt))
    if pair:
        found = _pair_live_photos(found)
    for f in found:
        if f.kind == "video":
            f.thumbnail_path = thumbnails.get(f.path.stem.lower())
    result.items.extend(found)


def _pair_live_photos(found: list[Found]) -> list[Found]:
    stills = {f.path.stem.lower(): f for f in found
              if f.kind == "photo" and f.format in ("HEIF", "JPEG")}
    out = []
    for f in found:
        still = stills.get(f.path.stem.lower())
        if f.kind == "video" and f.path.suffix.lower() == ".mov" and still is not None:
            still.motion_path = f.path
            continue
        out.append(f)
    return out
