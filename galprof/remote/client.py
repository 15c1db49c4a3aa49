"""Offload: send public photos and video frames to `galprof serve`, keep what comes back.

Runs at the end of a pipeline run, after the privacy pass (the device stages, faces
included, have run on every item). For each public item whose objects/scenes results
are still the device's: decides privacy again from the store right before the upload,
reads the file once, and sends only pixels decoded from bytes whose content hash is the
one that fresh decision was made for (so a file replaced or rewritten since the scan is
never sent on a stale "public"); the pixels are downscaled and re-encoded as JPEG
without EXIF (no GPS, no camera, no time). Every upload is logged in the `uploads` audit
table as "sending" before its bytes leave, then completed.

The scan never depends on the server: when it is down, slow or refuses the token, the
device results stay, one warning says so, and the offload returns normally.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from galprof import privacy, remote
from galprof.errors import MediaError, SetupError
from galprof.payloads import ObjectsPayload, ScenesPayload
from galprof.remote import API_PREFIX, ITEM_HEADER, MAX_ASPECT, MAX_BATCH_IMAGES, MAX_SIDE

# Long side of what is sent: enough for the server's tiles to find small objects
# (bench/remote_gain.py), a quarter of a 12 MP photo's pixels, ~0.2-0.4 MB as JPEG.
UPLOAD_LONG_SIDE = MAX_SIDE
# JPEG quality of the re-encoded upload: no visible loss for detection.
JPEG_QUALITY = 90
# Uploads in flight at once: a phone's uplink is the bottleneck, not the server.
CONCURRENCY = 2
# Seconds for one request (the server's tiled pass takes ~0.5 s a photo on 2 cores; a
# video batch of 40 frames ~20 s); connecting gets less, since a live server answers fast.
TIMEOUT = 60.0
CONNECT_TIMEOUT = 5.0
# Tries after the first for network errors and 5xx answers, with exponential backoff.
RETRIES = 2
BACKOFF = 0.5
STAGES = ("objects", "scenes")


@dataclass
class OffloadSummary:
    server: str
    public: int = 0            # public items after the privacy pass
    private: int = 0
    candidates: int = 0        # public items with objects/scenes results not yet remote
    upgraded: int = 0          # items whose objects/scenes now come from the remote tier
    images: int = 0            # photos and video frames sent
    bytes: int = 0
    skipped_private: int = 0   # private at the re-check right before upload
    skipped_changed: int = 0   # changed or gone since the scan, or nothing to send
    rejected: int = 0          # the server refused the item (4xx other than 401)
    kept_on_device: int = 0    # candidates that keep their device results
    stopped: str | None = None # why offloading stopped early (server down, 401), if it did
    seconds: float = 0.0
    problems: list[dict] = field(default_factory=list)   # {"path", "reason"}

    def to_dict(self) -> dict:
        return asdict(self)


class _Stop(Exception):
    """The server cannot be used any more (down, or the token is refused)."""


@dataclass
class _Job:
    media_id: int
    path: str
    kind: str
    content_hash: str
    frames: list[int]          # frame indexes the faces stage checked (all public)


@dataclass
class _Outcome:
    job: _Job
    result: dict | None = None
    scales: dict[int, float] = field(default_factory=dict)
    images: int = 0
    bytes: int = 0
    sha256: list[str] = field(default_factory=list)
    status: str = "ok"
    attempts: int = 0              # requests made (each one sent the images)
    upload_id: int | None = None   # the audit row, written before the first request
    skipped: str | None = None     # why nothing (more) was sent
    stop: str | None = None        # why the whole offload must stop


def check_url(url: str, allow_http: bool = False) -> str:
    """The server's base URL; plain http only to this machine unless `allow_http`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SetupError(f"--remote {url}: expected an http(s)://HOST[:PORT] URL")
    if parts.scheme == "http" and not allow_http and not _loopback(parts.hostname):
        raise SetupError(f"--remote {url}: photos would travel unencrypted; use https:// "
                         "(see docs/remote.md for TLS)")
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None, on_warning=None) -> str:
    """The client's bearer token: from `token_file`, else $GALPROF_REMOTE_TOKEN;
    `on_warning(text)` hears of a token file that others can read."""
    return remote.read_token(token_file, "GALPROF_REMOTE_TOKEN", on_warning=on_warning)


def encode_jpeg(image, quality: int = JPEG_QUALITY) -> bytes:
    """RGB pixels as a bare JPEG: no EXIF, no ICC profile, no comment."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _candidates(store, roots: list[Path] | None) -> list[dict]:
    rows = store.privacy.upload_candidates(STAGES)
    if roots:
        wanted = set(store.media.under([os.path.abspath(r) for r in roots]))
        rows = [r for r in rows if r["path"] in wanted]
    return rows


def _faces_frames(store, digest: str) -> list[int]:
    faces = store.results.payload(digest, "faces", arrays=False)
    return [f.index for f in faces.frames] if faces is not None else []


def offload(store, url: str, token: str, roots: list[Path] | None = None, *,
            long_side: int = UPLOAD_LONG_SIDE, concurrency: int = CONCURRENCY,
            timeout: float = TIMEOUT, retries: int = RETRIES, backoff: float = BACKOFF,
            frame_step: int = 5, max_frames: int = 40,
            thresholds: privacy.PrivacyThresholds = privacy.DEFAULT_THRESHOLDS,
            allow_http: bool = False, verify: bool | str | Path = True,
            on_warning: Callable[[str], None] | None = None,
            on_item: Callable[[str, str], None] | None = None) -> OffloadSummary:
    """Upgrade the objects/scenes results of public items under `roots` (all when None)
    to the remote tier at `url`. Never raises for server trouble: see `stopped`.

    frame_step/max_frames must be the scan's, so that a video's frames are the ones the
    faces stage checked (only those are ever sent). `on_item(path, status)` follows
    each item; `on_warning(text)` gets at most one line per offload.
    """
    import httpx

    url = check_url(url, allow_http)
    started = time.monotonic()
    summary = OffloadSummary(server=url)
    thresholds = thresholds or privacy.DEFAULT_THRESHOLDS
    with store.writer():
        # never trust a stale decision: bring people and privacy up to date (cheap when
        # they are, as after a pipeline run)
        from galprof.pipeline.passes import run_passes
        from galprof.pipeline.settings import Settings
        run_passes(store, Settings(privacy=thresholds), names=("selfies", "people", "privacy"))
        counts = store.privacy.counts()
        summary.public, summary.private = counts["public"], counts["private"] + counts["undecided"]
        rows = _candidates(store, roots)
        summary.candidates = len(rows)
        if not rows:
            summary.seconds = round(time.monotonic() - started, 3)
            return summary
        if isinstance(verify, (str, Path)):       # a CA bundle, e.g. a self-signed cert
            import ssl
            verify = ssl.create_default_context(cafile=str(verify))
        client = httpx.Client(
            base_url=url, verify=verify, headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)))
        with client:
            try:
                _get_health(client, retries, backoff)
            except _Stop as e:
                summary.stopped = str(e)
            else:
                _run(store, client, rows, summary, long_side, concurrency, retries, backoff,
                     frame_step, max_frames, thresholds, on_item)
        summary.kept_on_device = summary.candidates - summary.upgraded
        if summary.stopped and on_warning:
            on_warning(f"remote tier {url}: {summary.stopped}; {summary.kept_on_device} "
                       "item(s) keep their on-device results")
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _get_health(client, retries: int, backoff: float) -> None:
    import httpx

    for attempt in range(retries + 1):
        try:
            r = client.get("/health")
            if r.status_code == 200:
                return
            reason = f"health check answered {r.status_code}"
        except httpx.HTTPError as e:
            reason = f"server unreachable ({type(e).__name__})"
            if "CERTIFICATE_VERIFY_FAILED" in str(e):
                reason = "the server's TLS certificate is not trusted (give its CA to verify)"
                break
        if attempt < retries:
            _sleep(backoff, attempt)
    raise _Stop(reason)


def _sleep(backoff: float, attempt: int) -> None:
    time.sleep(backoff * (2 ** attempt) * (0.75 + 0.5 * random.random()))


def _run(store, client, rows, summary, long_side, concurrency, retries, backoff,
         frame_step, max_frames, thresholds, on_item) -> None:
    stop = threading.Event()
    in_flight: set[Future] = set()
    db = threading.Lock()         # one connection: the workers log 'sending' through it

    def settle(block: bool) -> None:
        done, _ = wait(in_flight, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            in_flight.discard(future)
            with db:
                _record(store, future.result(), summary, on_item)
            if summary.stopped:
                stop.set()

    def log_sending(out: _Outcome) -> None:
        with db:
            out.upload_id = store.privacy.start_upload(
                out.job.path, out.job.content_hash, out.bytes, out.images, out.sha256,
                str(client.base_url))

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for row in rows:
            if stop.is_set():
                break
            while len(in_flight) >= max(1, concurrency):
                settle(block=True)
            if stop.is_set():
                break
            # Decide again from the store, right before the upload (a mark, a new person).
            with db:
                fresh = store.media.by_id(row["id"])
                private = (fresh is None or fresh["private"] != 0
                           or fresh["content_hash"] != row["content_hash"]
                           or privacy.decide_for(store, fresh, thresholds).private)
                frames = [] if private else _faces_frames(store, row["content_hash"])
            if private:
                summary.skipped_private += 1
                if on_item:
                    on_item(row["path"], "private")
                continue
            job = _Job(row["id"], row["path"], row["kind"], row["content_hash"], frames)
            in_flight.add(pool.submit(_upload, client, job, long_side, frame_step, max_frames,
                                      retries, backoff, stop, log_sending))
        while in_flight:
            settle(block=True)


def _upload(client, job: _Job, long_side: int, frame_step: int, max_frames: int,
            retries: int, backoff: float, stop: threading.Event, log_sending) -> _Outcome:
    """Worker thread: read once, check the bytes are the decided ones, re-encode, send.
    Never raises."""
    from galprof.gallery import frames as frames_mod

    out = _Outcome(job)
    try:
        digest, decoded = frames_mod.read_media(
            job.path, job.kind, long_side, frame_step, max_frames,
            pixels=lambda d: d == job.content_hash)
    except (OSError, MediaError) as e:
        out.skipped = f"cannot read ({getattr(e, 'reason', None) or e})"
        return out
    if digest != job.content_hash:
        out.skipped = "changed since the scan"
        return out
    checked = set(job.frames)
    frames = [f for f in decoded.frames if f.index in checked]
    if not frames:
        out.skipped = "no frame that the faces stage checked"
        return out
    h, w = frames[0].image.shape[:2]
    if max(h, w) > MAX_ASPECT * min(h, w):
        out.skipped = f"wider than {MAX_ASPECT}:1, which the remote tier refuses"
        return out
    if len(frames) > MAX_BATCH_IMAGES:       # the server's cap: an evenly spaced subset
        step = len(frames) / MAX_BATCH_IMAGES
        frames = [frames[int(i * step)] for i in range(MAX_BATCH_IMAGES)]
    blobs = [encode_jpeg(f.image) for f in frames]
    out.scales = {f.index: f.scale for f in frames}
    out.images, out.bytes = len(blobs), sum(len(b) for b in blobs)
    out.sha256 = [hashlib.sha256(b).hexdigest() for b in blobs]
    headers = {ITEM_HEADER: job.content_hash}
    if job.kind == "photo":
        request = dict(url=f"{API_PREFIX}/analyze", content=blobs[0],
                       headers={**headers, "Content-Type": "image/jpeg"})
    else:
        request = dict(url=f"{API_PREFIX}/analyze/batch",
                       params={"item": "1", "indexes": ",".join(str(f.index) for f in frames)},
                       files=[("file", (f"{f.index}.jpg", b, "image/jpeg"))
                              for f, b in zip(frames, blobs)], headers=headers)
    _send(client, request, out, retries, backoff, stop, log_sending)
    return out


def _send(client, request: dict, out: _Outcome, retries: int, backoff: float,
          stop: threading.Event, log_sending) -> None:
    import httpx

    for attempt in range(retries + 1):
        if stop.is_set():
            out.skipped = "offload stopped"
            return
        if out.upload_id is None:
            log_sending(out)          # in the audit log before any byte leaves
        out.attempts += 1
        try:
            r = client.post(**request)
        except httpx.HTTPError as e:
            reason = f"server unreachable or too slow ({type(e).__name__})"
            out.status = f"error: {type(e).__name__}"
        else:
            if r.status_code == 200:
                try:
                    out.result = r.json()
                    out.status = "ok"
                    return
                except ValueError:
                    out.status, reason = "error: bad JSON", "server answered with bad JSON"
            elif r.status_code == 401:
                out.status, out.stop = "401", "the server refused the token (401)"
                return
            elif r.status_code < 500:
                out.status = str(r.status_code)
                return
            else:
                out.status, reason = str(r.status_code), f"server error {r.status_code}"
        if attempt < retries:
            _sleep(backoff, attempt)
    out.stop = reason


def _record(store, out: _Outcome, summary: OffloadSummary, on_item) -> None:
    job = out.job
    if out.upload_id is None:
        if out.skipped != "offload stopped":
            summary.skipped_changed += 1
        if on_item:
            on_item(job.path, "not sent: " + (out.skipped or "?"))
        return
    with store.transaction():
        store.privacy.finish_upload(out.upload_id, out.status)
        summary.images += out.images
        summary.bytes += out.bytes
        if out.result is not None:
            _store_remote(store, job, out)
            summary.upgraded += 1
        elif out.stop is None:
            summary.rejected += 1
            summary.problems.append({"path": job.path,
                                     "reason": f"server refused the upload ({out.status})"})
    if out.stop and not summary.stopped:
        summary.stopped = out.stop
    if on_item:
        on_item(job.path, "remote" if out.result is not None else out.status)


def _store_remote(store, job: _Job, out: _Outcome) -> None:
    """The server's objects and scenes replace the device's, boxes in original pixels."""
    result = out.result
    versions = result.get("versions", {})
    default = min(out.scales.values()) if out.scales else 1.0
    if result.get("objects") is not None:
        objects = ObjectsPayload.from_json(result["objects"])
        objects.frames = [(i, [d.scaled(1.0 / out.scales.get(i, default)) for d in dets])
                          for i, dets in objects.frames]
        objects.tier = "remote"
        store.results.put(job.content_hash, "objects", versions.get("objects", "remote/objects"),
                          objects, tier="remote")
    if result.get("scenes") is not None:
        scenes = ScenesPayload.from_json(result["scenes"])
        # Photo features stay the device model's, so that every item's features come
        # from one model and remain comparable.
        device = store.results.payload(job.content_hash, "scenes")
        scenes.features = device.features if device is not None else None
        scenes.tier = "remote"
        store.results.put(job.content_hash, "scenes", versions.get("scenes", "remote/scenes"),
                          scenes, tier="remote")
