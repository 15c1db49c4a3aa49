"""Install and verify the manifest's files (model weights and label lists).

A file comes from a local folder, from a base URL (`BASE/<file name>`), or, when no
source is given, from its own `url` in the manifest. Every copy is written to a
temporary file beside its destination, checked against the manifest's size and
sha256, and only then renamed into place, so an interrupted or tampered transfer
never replaces a file and never leaves a half-written one under the real name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from galprof import __version__
from galprof.errors import ModelMismatch, ModelMissing, SetupError
from galprof.paths import models_dir
from galprof.vision import manifest
from galprof.vision.manifest import FileSpec, sha256_of

# Network settings: raw.githubusercontent.com answers well within the timeout; a
# retry covers a dropped connection, not a server that keeps failing.
TIMEOUT_S = 30
RETRIES = 2
RETRY_PAUSE_S = 1.0
CHUNK = 1 << 16

# Result statuses. `refused` and `failed` are errors (exit 1 in the CLI).
INSTALLED, PRESENT, SKIPPED, REFUSED, FAILED = "installed", "present", "skipped", "refused", "failed"
ERROR_STATUSES = (REFUSED, FAILED)

Progress = Callable[[str, int, int], None]   # (file name, bytes so far, bytes expected)


@dataclass(frozen=True)
class InstallResult:
    file: str
    status: str          # installed | present | skipped | refused | failed
    path: Path
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status not in ERROR_STATUSES


@dataclass(frozen=True)
class VerifyResult:
    file: str
    status: str          # ok | missing | mismatch
    path: Path
    optional: bool
    expected: str
    actual: str = ""     # the sha256 found (mismatch only)
    message: str = ""


class _NotAtSource(Exception):
    """The source does not have this file (no such path, HTTP 404, no manifest url)."""


class _Refused(Exception):
    """The bytes arrived but are not the manifest's (size or sha256)."""


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def is_optional(spec: FileSpec) -> bool:
    return bool(getattr(spec, "optional", False))


def select(ids: Iterable[str] | None = None, include_optional: bool = True) -> list[FileSpec]:
    """The manifest files to act on, in manifest order.

    `ids` are model ids (a model brings its label file along) or manifest file
    names; unknown ones raise UnknownModel. Without ids: every file, or only the
    required models and their label files when include_optional is False.
    """
    all_files = manifest.files()
    if ids:
        wanted: list[str] = []
        for item in ids:
            if item in all_files and item not in manifest.models():
                wanted.append(item)
                continue
            spec = manifest.get(item)
            wanted.append(spec.file)
            if spec.labels and not spec.labels.startswith("zip:"):
                wanted.append(spec.labels)
        return [spec for name, spec in all_files.items() if name in set(wanted)]
    if include_optional:
        return list(all_files.values())
    needed = set()
    for spec in manifest.models().values():
        if not spec.optional:
            needed.add(spec.file)
            if spec.labels and not spec.labels.startswith("zip:"):
                needed.add(spec.labels)
    return [spec for name, spec in all_files.items() if name in needed]


def _has_right_bytes(path: Path, spec: FileSpec) -> bool:
    return path.is_file() and path.stat().st_size == spec.size and sha256_of(path) == spec.sha256


def _copy_verified(stream: BinaryIO, spec: FileSpec, dest: Path, progress: Progress | None) -> None:
    """Stream into a temp file beside dest, check size and sha256, then rename into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.file}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest, done = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                done += len(chunk)
                if done > spec.size:
                    raise _Refused(f"{spec.file}: the source has more than the manifest's "
                                   f"{spec.size} bytes; not installed")
                digest.update(chunk)
                out.write(chunk)
                if progress:
                    progress(spec.file, done, spec.size)
            out.flush()
            os.fsync(out.fileno())
        if done != spec.size:
            raise _Refused(f"{spec.file}: got {done} bytes, the manifest says {spec.size}; "
                           f"not installed")
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise _Refused(f"{spec.file}: sha256 mismatch (expected {spec.sha256}, "
                           f"got {actual}); not installed")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _from_folder(folder: Path, spec: FileSpec, dest: Path, progress: Progress | None) -> None:
    src = folder / spec.file
    if not src.is_file():
        raise _NotAtSource(f"{spec.file}: not found in {folder}")
    with open(src, "rb") as stream:
        _copy_verified(stream, spec, dest, progress)


def _from_url(url: str, spec: FileSpec, dest: Path, progress: Progress | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"galprof/{__version__}"})
    for attempt in range(RETRIES + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                _copy_verified(response, spec, dest, progress)
            return
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                raise _NotAtSource(f"{spec.file}: not found at {url} (HTTP {e.code})") from None
            if e.code < 500 or attempt == RETRIES:
                raise OSError(f"{spec.file}: {url} answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout,
                ConnectionError) as e:
            if attempt == RETRIES:
                reason = getattr(e, "reason", None) or e
                raise OSError(f"{spec.file}: cannot download {url}: {reason}") from None
        time.sleep(RETRY_PAUSE_S * (attempt + 1))


def file_url(base: str, spec: FileSpec) -> str:
    return base.rstrip("/") + "/" + urllib.parse.quote(spec.file)


def install(source: str | Path | None = None, dest: Path | None = None,
            ids: Iterable[str] | None = None, include_optional: bool = True,
            progress: Progress | None = None) -> list[InstallResult]:
    """Install the selected manifest files into dest (default: the models directory).

    source: a folder, or an http(s) base URL where `BASE/<file name>` is fetched; None
    means each file's own manifest `url`. Files already right are left alone
    ("present"). A file whose bytes do not match the manifest is "refused" and the
    file in place (if any) is untouched. A required file the source lacks is
    "failed"; an optional one is "skipped". Never raises for one file's problem.
    """
    dest = Path(dest) if dest else models_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(f"cannot create the models directory {dest}: {e.strerror}") from None
    if not os.access(dest, os.W_OK):
        raise SetupError(f"the models directory {dest} is not writable")
    folder = None
    if source is not None and not is_url(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise SetupError(f"{folder}: not a folder or an http(s) URL to install models from")

    results = []
    for spec in select(ids, include_optional):
        if spec.package:
            results.append(_in_package(spec))
            continue
        target = dest / spec.file
        if _has_right_bytes(target, spec):
            results.append(InstallResult(spec.file, PRESENT, target))
            continue
        try:
            if folder is not None:
                _from_folder(folder, spec, target, progress)
            elif source is not None:
                _from_url(file_url(str(source), spec), spec, target, progress)
            elif spec.url:
                _from_url(spec.url, spec, target, progress)
            else:
                raise _NotAtSource(f"{spec.file}: the manifest has no download URL for it; "
                                   f"install it with: galprof models install --from DIR_OR_URL")
        except _NotAtSource as e:
            status = SKIPPED if is_optional(spec) else FAILED
            results.append(InstallResult(spec.file, status, target, str(e)))
        except _Refused as e:
            results.append(InstallResult(spec.file, REFUSED, target, str(e)))
        except OSError as e:
            message = str(e) if str(e).startswith(spec.file) else f"{spec.file}: {e}"
            results.append(InstallResult(spec.file, FAILED, target, message))
        else:
            results.append(InstallResult(spec.file, INSTALLED, target))
    return results


def _in_package(spec: FileSpec) -> InstallResult:
    """A file shipped inside a Python package is never copied: pip installs it."""
    try:
        return InstallResult(spec.file, PRESENT, manifest.locate(spec))
    except ModelMissing as e:
        return InstallResult(spec.file, SKIPPED if is_optional(spec) else FAILED,
                             manifest.path_of(spec), str(e))
    except ModelMismatch as e:
        return InstallResult(spec.file, REFUSED, manifest.path_of(spec), str(e))


def verify(dest: Path | None = None, ids: Iterable[str] | None = None) -> list[VerifyResult]:
    """Check every selected manifest file in dest by sha256: ok, missing or mismatch."""
    dest = Path(dest) if dest else models_dir()
    results = []
    for spec in select(ids):
        path = manifest.path_of(spec, dest)
        optional = is_optional(spec)
        if not path.is_file():
            results.append(VerifyResult(spec.file, "missing", path, optional, spec.sha256,
                                        message=f"{path}: not installed"))
            continue
        actual = sha256_of(path)
        if actual != spec.sha256:
            results.append(VerifyResult(
                spec.file, "mismatch", path, optional, spec.sha256, actual,
                f"{path}: sha256 mismatch (expected {spec.sha256}, got {actual}); "
                f"reinstall it with: galprof models install --from DIR_OR_URL"))
            continue
        results.append(VerifyResult(spec.file, "ok", path, optional, spec.sha256, actual))
    return results
