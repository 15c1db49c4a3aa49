"""Offload: send public photos and video frames to `galprof serve`, keep what comes back.

Runs after a scan (the device stages, faces included, have run on every item). It
re-applies the privacy pass, then for each public item whose objects/scenes results
are still the device's: re-checks privacy from the store right before the upload,
re-reads the pixels, downscales them, re-encodes them as JPEG without EXIF (no GPS,
no camera, no time), sends them, and replaces the device results with the remote
tier's. Every upload is written to the `uploads` audit table.

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

from galprof import privacy
from galprof.errors import MediaError, SetupError
from galprof import remote
from galprof.remote import API_PREFIX, ITEM_HEADER, MAX_BATCH_IMAGES
from galprof.store.db import Store, content_hash, now

# Long side of what is sent: enough for the server's tiles to find small objects
# (bench/remote_gain.py), a quarter of a 12 MP photo's pixels, ~0.2-0.4 MB as JPEG.
UPLOAD_LONG_SIDE = 1024
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


def read_token(token_file: Path | None) -> str:
    """The client's bearer token: from `token_file`, else $GALPROF_REMOTE_TOKEN."""
    return remote.read_token(token_file, "GALPROF_REMOTE_TOKEN")


def encode_jpeg(image, quality: int = JPEG_QUALITY) -> bytes:
    """RGB pixels as a bare JPEG: no EXIF, no ICC profile, no comment."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _candidates(store: Store, roots: list[Path] | None) -> list:
    rows = store.conn.execute(
        "SELECT m.* FROM media m WHERE m.private = 0 AND m.status != 'failed' "
        "AND m.kind IN ('photo', 'video') AND m.content_hash IS NOT NULL AND "
        "(SELECT count(*) FROM results r WHERE r.content_hash = m.content_hash AND "
        " r.stage IN ('objects', 'scenes') AND r.tier = 'remote') < 2 ORDER BY m.path"
    ).fetchall()
    if roots:
        wanted = set(store.media_under([Path(os.path.abspath(r)) for r in roots]))
        rows = [r for r in rows if r["path"] in wanted]
    return rows


def _faces_frames(store: Store, digest: str) -> list[int]:
    payload = privacy._faces_payload(store, digest)
    if not payload:
        return []
    return [f.get("index", i) for i, f in enumerate(payload.get("frames", []))]


def offload(store: Store, url: str, token: str, roots: list[Path] | None = None, *,
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
    owns_lock = store._lock_file is None
    if owns_lock:
        store.acquire_writer()
    try:
        counts = privacy.apply_privacy(store, thresholds)
        summary.public, summary.private = counts["public"], counts["private"]
        rows = _candidates(store, roots)
        summary.candidates = len(rows)
        if not rows:
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
    finally:
        summary.seconds = round(time.monotonic() - started, 3)
        if owns_lock:
            store.release_writer()
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

    def settle(block: bool) -> None:
        done, _ = wait(in_flight, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            in_flight.discard(future)
            _record(store, client, future.result(), summary, on_item)
            if summary.stopped:
                stop.set()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for row in rows:
            if stop.is_set():
                break
            while len(in_flight) >= max(1, concurrency):
                settle(block=True)
            if stop.is_set():
                break
            # Defence in depth: decide again from the store, right before the upload.
            fresh = store.conn.execute("SELECT * FROM media WHERE id = ?",
                                       (row["id"],)).fetchone()
            if (fresh is None or fresh["private"] != 0
                    or fresh["content_hash"] != row["content_hash"]
                    or privacy.decide_for(store, fresh, thresholds).private):
                summary.skipped_private += 1
                if on_item:
                    on_item(row["path"], "private")
                continue
            job = _Job(row["id"], row["path"], row["kind"], row["content_hash"],
                       _faces_frames(store, row["content_hash"]))
            in_flight.add(pool.submit(_upload, client, job, long_side, frame_step, max_frames,
                                      retries, backoff, stop))
        while in_flight:
            settle(block=True)


def _upload(client, job: _Job, long_side: int, frame_step: int, max_frames: int,
            retries: int, backoff: float, stop: threading.Event) -> _Outcome:
    """Worker thread: read, re-encode and send one item. Never raises."""
    from galprof.gallery import frames as frames_mod

    out = _Outcome(job)
    path = Path(job.path)
    try:
        if content_hash(path) != job.content_hash:
            out.skipped = "changed since the scan"
            return out
        decoded = frames_mod.decode(path, job.kind, long_side, frame_step, max_frames)
    except (OSError, MediaError) as e:
        out.skipped = f"cannot read ({getattr(e, 'reason', None) or e})"
        return out
    checked = set(job.frames)
    frames = [f for f in decoded.frames if f.index in checked]
    if not frames:
        out.skipped = "no frame that the faces stage checked"
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
    _send(client, request, out, retries, backoff, stop)
    return out


def _send(client, request: dict, out: _Outcome, retries: int, backoff: float,
          stop: threading.Event) -> None:
    import httpx

    for attempt in range(retries + 1):
        if stop.is_set():
            out.skipped = "offload stopped"
            return
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


def _to_original(payload: dict, scales: dict[int, float]) -> dict:
    """Boxes from uploaded-image pixels to original media pixels (as the device stages)."""
    default = min(scales.values()) if scales else 1.0
    for frame in payload.get("frames", []):
        s = scales.get(frame.get("index"), default)
        for d in frame.get("detections", []):
            d["box"] = [round(v / s, 1) for v in d["box"]]
    for o in payload.get("objects", []):
        if o.get("box"):
            o["box"] = [round(v / default, 1) for v in o["box"]]
    return payload


def _record(store: Store, client, out: _Outcome, summary: OffloadSummary, on_item) -> None:
    job = out.job
    if not out.attempts:
        if out.skipped != "offload stopped":
            summary.skipped_changed += 1
        if on_item:
            on_item(job.path, "not sent: " + (out.skipped or "?"))
        return
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO uploads (at, path, content_hash, bytes, images, sha256, server,"
                     " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (now(), job.path, job.content_hash, out.bytes, out.images,
                      ",".join(out.sha256), str(client.base_url), out.status))
        summary.images += out.images
        summary.bytes += out.bytes
        if out.result is not None:
            _store_remote(store, job, out)
            summary.upgraded += 1
        elif out.stop is None:
            summary.rejected += 1
            summary.problems.append({"path": job.path,
                                     "reason": f"server refused the upload ({out.status})"})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if out.stop and not summary.stopped:
        summary.stopped = out.stop
    if on_item:
        on_item(job.path, "remote" if out.result is not None else out.status)


def _store_remote(store: Store, job: _Job, out: _Outcome) -> None:
    result = out.result
    device = store.results(job.content_hash, with_arrays=True)
    versions = result.get("versions", {})
    for stage in STAGES:
        payload = result.get(stage)
        if payload is None:
            continue
        payload = dict(payload, tier="remote")
        if stage == "objects":
            payload = _to_original(payload, out.scales)
        # Photo features (scenes arrays) stay the device model's, so that every item's
        # features come from one model and remain comparable.
        arrays = device.get(stage, {}).get("arrays")
        if arrays:
            payload["arrays"] = arrays
        store.put_result(job.content_hash, stage, versions.get(stage, f"remote/{stage}"),
                         payload, tier="remote")
