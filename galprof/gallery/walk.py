"""Discovery: which files under the given roots are photos and videos.

Phone-gallery rules: hidden folders and files (`.thumbnails`, `.trashed-*`,
`.pending-*`) are skipped, so are folders holding a `.nomedia` file; symlinked
folders are followed once (loops are cut by device/inode); an iPhone Live Photo
(a still and a `.mov` with the same stem in one folder) is one photo with its
motion part attached. Kinds are recognised by content, not by extension.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PHOTO_EXTS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif",
              ".hif", ".avif"}
VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".3gp", ".3g2", ".mkv", ".avi", ".webm", ".mts", ".qt"}
MEDIA_EXTS = PHOTO_EXTS | VIDEO_EXTS

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
    motion_path: Path | None = None


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
        if root.is_file():
            _add_files(root.parent, [root.name], root.parent, result, seen_files, pair=False)
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


def _add_files(folder: Path, names: list[str], root: Path, result: WalkResult,
               seen: set[Path], pair: bool) -> None:
    found: list[Found] = []
    for name in sorted(names):
        if name.startswith("."):
            continue                  # hidden, .trashed-*, .pending-*, .nomedia
        path = folder / name
        real = Path(os.path.realpath(path))
        if real in seen:
            continue
        ext = path.suffix.lower()
        try:
            st = os.stat(path)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                head = f.read(64)
        except OSError as e:
            if ext in MEDIA_EXTS:
                result.problems.append((str(path), _reason(e)))
            continue
        kind_format = sniff(head)
        if kind_format is None and ext not in MEDIA_EXTS:
            continue                  # not media: documents, sidecars, databases
        seen.add(real)
        kind, fmt = kind_format or (None, None)
        found.append(Found(path, root, st.st_size, st.st_mtime_ns, kind, fmt))
    if pair:
        found = _pair_live_photos(found)
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
