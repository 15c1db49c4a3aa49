"""`galprof serve`: the accurate tier as a small authenticated web service.

Objects: YOLOX-Nano over the full image plus overlapping tiles, merged by NMS, which
finds the small objects that one 416 px look misses. Scenes: the mean of the
EfficientNet-Lite0 and MobileNetV2 probabilities over the 1000 ImageNet classes
(both label lists agree index by index; checked at load).

Endpoints (all under a bearer token except /health):
  GET  /health               -> {"status": "ok", "tier": "remote", "versions": {...}}
  POST /v1/analyze           one image, raw body (image/*) or multipart field "file"
  POST /v1/analyze/batch     several images as multipart fields "file" (in order);
                             `?item=1` treats them as the frames of one media item and
                             returns one result; `?indexes=0,5,10` names those frames.
A result is {"tier": "remote", "versions": {"objects", "scenes"}, "width", "height",
"objects": <objects stage payload>, "scenes": <scenes stage payload, no arrays>}, boxes
in pixels of the uploaded image.

Models are loaded once per worker process; TFLite interpreters are not thread-safe,
so inference runs in a worker thread under one lock (use --workers for throughput).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations
# (Request, query types) at runtime, and they are imported inside create_app.
import hashlib
import hmac
import io
import json
import os
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from galprof import remote
from galprof.errors import ModelMismatch, SetupError
from galprof.remote import API_PREFIX, ITEM_HEADER, MAX_BATCH_IMAGES, MAX_BODY_BYTES, MAX_PIXELS

# 512 px tiles of a 1024 px upload (6 tiles + the full view) see it at ~0.8x native
# resolution. On testmedia/scenes (bench/remote_gain.py) 416 px tiles added a few more
# objects but also more false ones (an umbrella on a cat, a clock on an astronaut);
# 640 px tiles found half as many small objects.
TILE = 512
# Neighbouring tiles share a quarter of their side, so an object cut by one is whole
# in the next (objects.predict_tiles drops the cut pieces).
TILE_OVERLAP = 0.25
# Bump when the server's output for the same pixels and models changes.
CODE_REVISION = 1
# Environment variables the worker processes read their settings from.
ENV_TOKEN = "GALPROF_SERVER_TOKEN"
ENV_REQUEST_LOG = "GALPROF_SERVER_REQUEST_LOG"
ENV_THREADS = "GALPROF_SERVER_THREADS"


class UploadRejected(Exception):
    """An upload the server will not analyse; `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_upload(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An uploaded image as an oriented RGB array, or UploadRejected (413, 415 or 400)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise UploadRejected(400, "empty body: send one image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UploadRejected(415, "not an image (unrecognised data)") from None
    except Exception as e:  # Pillow raises many types on hostile input
        raise UploadRejected(400, f"unreadable image ({type(e).__name__})") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise UploadRejected(400, "image has no pixels")
    if w * h > max_pixels:
        raise UploadRejected(413, f"image too large: {w}x{h} pixels, "
                                  f"limit {max_pixels // 1_000_000} MP")
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img).convert("RGB")
    except Exception as e:
        raise UploadRejected(400, f"cannot decode image ({type(e).__name__}: {e})") from None
    return np.asarray(img)


class AccurateTier:
    """The server's models: tiled YOLOX-Nano and the two-classifier scene ensemble."""

    def __init__(self, threads: int | None = None, models_dir: Path | None = None,
                 tile: int = TILE, overlap: float = TILE_OVERLAP):
        from galprof.vision.objects import ObjectDetector
        from galprof.vision.scenes import SceneClassifier

        self.tile, self.overlap = tile, overlap
        self.detector = ObjectDetector(threads=threads, models_dir=models_dir)
        self.classifiers = [SceneClassifier("efficientnet_lite0", threads, models_dir),
                            SceneClassifier("mobilenet_v2", threads, models_dir)]
        self._lock = threading.Lock()

    def load(self) -> "AccurateTier":
        self.detector.load()
        for c in self.classifiers:
            c.load()
        first = self.classifiers[0].labels
        for c in self.classifiers[1:]:
            if c.labels != first:
                raise ModelMismatch(f"scene ensemble: {c.spec.id} and {self.classifiers[0].spec.id}"
                                    " label lists differ; their probabilities cannot be averaged")
        return self

    @property
    def versions(self) -> dict[str, str]:
        from galprof.vision import objects, scenes

        return {
            "objects": f"remote/{self.detector.version}+tiles{self.tile}-{self.overlap}"
                       f"+objects-r{objects.CODE_REVISION}+server-r{CODE_REVISION}",
            "scenes": "remote/" + "+".join(c.version for c in self.classifiers)
                      + f"+mean+scenes-r{scenes.CODE_REVISION}+server-r{CODE_REVISION}",
        }

    def analyse(self, images: list[np.ndarray], indexes: list[int] | None = None) -> dict:
        """One result for `images` taken as the frames of one media item."""
        from galprof.vision.objects import summarise
        from galprof.vision.scenes import FRAME_TOP_K, ITEM_TOP_K

        indexes = indexes or list(range(len(images)))
        detections, probabilities = [], []
        with self._lock:
            for image in images:
                detections.append(self.detector.predict_tiles(image, self.tile, self.overlap))
                probabilities.append(np.mean([c.analyse(image).probabilities
                                              for c in self.classifiers], axis=0))
        top = self.classifiers[-1].top
        h, w = images[0].shape[:2]
        return {
            "tier": "remote", "versions": self.versions, "width": w, "height": h,
            "objects": {
                "frames": [{"index": i, "detections": [d.to_json() for d in found]}
                           for i, found in zip(indexes, detections)],
                "objects": summarise(detections),
            },
            "scenes": {
                "frames": [{"index": i, "top": [s.to_json() for s in top(p, FRAME_TOP_K)]}
                           for i, p in zip(indexes, probabilities)],
                "scenes": [s.to_json() for s in top(np.mean(probabilities, axis=0), ITEM_TOP_K)],
            },
        }


@dataclass
class ServerSettings:
    token: str
    request_log: Path | None = None
    max_body: int = MAX_BODY_BYTES
    max_pixels: int = MAX_PIXELS
    threads: int | None = None


def read_token(token_file: Path | None) -> str:
    """The server's bearer token from `token_file`, else from $GALPROF_SERVER_TOKEN."""
    return remote.read_token(token_file, ENV_TOKEN, min_length=16)


class _BodyLimit:
    """ASGI middleware: 413 for a declared or streamed body above `limit` bytes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _json_reply(send, 413, f"request body over {self.limit} bytes")
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        started = False

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooLarge:
            if not started:
                await _json_reply(send, 413, f"request body over {self.limit} bytes")


class _TooLarge(Exception):
    pass


async def _json_reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: ServerSettings, tier: AccurateTier | None = None):
    """The FastAPI application. Models load at startup (once per worker process)."""
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    tier = tier or AccurateTier(threads=settings.threads)
    expected = settings.token.encode()
    log_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(tier.load)
        yield

    app = FastAPI(title="galprof remote tier", version=str(CODE_REVISION), lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.add_middleware(_BodyLimit, limit=settings.max_body)

    def authorised(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    def log_received(request: Request, data: bytes, status: str) -> None:
        if settings.request_log is None:
            return
        entry = {"at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                 "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                 "item": request.headers.get(ITEM_HEADER), "status": status,
                 # An APP1 Exif segment near the start: metadata (GPS, time) arrived.
                 "exif": b"Exif\x00\x00" in data[:65536],
                 "pid": os.getpid()}
        with log_lock, open(settings.request_log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    async def uploads(request: Request) -> list[bytes]:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=MAX_BATCH_IMAGES, max_fields=16)
            except HTTPException:
                raise
            except _TooLarge:
                raise
            except Exception as e:
                raise HTTPException(400, f"malformed multipart body ({type(e).__name__})")
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            return [await f.read() for f in files]
        return [await request.body()]

    def decode_all(request: Request, blobs: list[bytes]) -> list[np.ndarray]:
        images = []
        for data in blobs:
            try:
                images.append(decode_upload(data, settings.max_pixels))
            except UploadRejected as e:
                log_received(request, data, f"rejected {e.status}")
                raise HTTPException(e.status, e.reason) from None
            log_received(request, data, "accepted")
        return images

    async def analyse(images: list[np.ndarray], indexes: list[int] | None = None) -> dict:
        try:
            return await run_in_threadpool(tier.analyse, images, indexes)
        except Exception as e:  # a model failure answers 500 and the server keeps serving
            raise HTTPException(500, f"analysis failed: {type(e).__name__}") from None

    @app.get("/health")
    async def health():
        return {"status": "ok", "tier": "remote", "versions": tier.versions}

    @app.post(f"{API_PREFIX}/analyze", dependencies=[Depends(authorised)])
    async def analyze_one(request: Request):
        blobs = await uploads(request)
        if len(blobs) != 1:
            raise HTTPException(400, f"send exactly one image (got {len(blobs)}); "
                                     f"use {API_PREFIX}/analyze/batch for several")
        images = await run_in_threadpool(decode_all, request, blobs)
        return await analyse(images)

    @app.post(f"{API_PREFIX}/analyze/batch", dependencies=[Depends(authorised)])
    async def analyze_batch(request: Request, item: bool = False, indexes: str = ""):
        blobs = await uploads(request)
        if not blobs or len(blobs) > MAX_BATCH_IMAGES:
            raise HTTPException(400, f"send 1 to {MAX_BATCH_IMAGES} images as multipart "
                                     f"fields (got {len(blobs)})")
        wanted = None
        if indexes:
            try:
                wanted = [int(v) for v in indexes.split(",")]
            except ValueError:
                raise HTTPException(400, "indexes must be comma-separated integers") from None
            if len(wanted) != len(blobs):
                raise HTTPException(400, f"{len(wanted)} indexes for {len(blobs)} images")
        images = await run_in_threadpool(decode_all, request, blobs)
        if item:
            return await analyse(images, wanted)
        return {"results": [await analyse([im]) for im in images]}

    @app.exception_handler(_TooLarge)
    async def too_large(request, exc):
        return JSONResponse({"detail": f"request body over {settings.max_body} bytes"}, 413)

    return app


def app_from_env():
    """uvicorn factory for worker processes: settings come from the environment."""
    log = os.environ.get(ENV_REQUEST_LOG)
    threads = os.environ.get(ENV_THREADS)
    return create_app(ServerSettings(token=read_token(None),
                                     request_log=Path(log) if log else None,
                                     threads=int(threads) if threads else None))


def serve(host: str, port: int, token: str, workers: int = 1, cert: Path | None = None,
          key: Path | None = None, request_log: Path | None = None,
          threads: int | None = None, log_level: str = "info") -> None:
    """Run the server until interrupted. Worker processes inherit the settings by env."""
    import uvicorn

    from galprof.vision import manifest

    if (cert is None) != (key is None):
        raise SetupError("TLS needs both --cert and --key")
    # Fail here, in one line, rather than in every worker's startup traceback.
    for spec in (manifest.default_for("objects"), manifest.get("efficientnet_lite0"),
                 manifest.get("mobilenet_v2")):
        manifest.locate(spec)
    os.environ[ENV_TOKEN] = token
    if request_log is not None:
        os.environ[ENV_REQUEST_LOG] = str(Path(request_log).resolve())
    if threads:
        os.environ[ENV_THREADS] = str(threads)
    uvicorn.run("galprof.remote.server:app_from_env", factory=True, host=host, port=port,
                workers=workers, ssl_certfile=str(cert) if cert else None,
                ssl_keyfile=str(key) if key else None, log_level=log_level,
                timeout_keep_alive=15, limit_concurrency=64, server_header=False)
