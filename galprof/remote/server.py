"""`galprof serve`: the accurate tier as a small authenticated web service.

Objects: YOLOX-Nano over the full image plus overlapping tiles, merged by NMS, which
finds the small objects that one 416 px look misses. Scenes: the mean of the
EfficientNet-Lite0 and MobileNetV2 probabilities over the 1000 ImageNet classes
(both label lists agree index by index; checked at load).

Endpoints (all under a bearer token except /health):
  GET  /health               -> {"status": "ok", "tier": "remote", "versions": {...}}
  POST /v1/analyze           one JPEG, raw body (image/jpeg) or multipart field "file"
  POST /v1/analyze/batch     up to MAX_BATCH_IMAGES JPEGs as multipart fields "file" (in
                             order); `?item=1` treats them as the frames of one media item
                             and returns one result; `?indexes=0,5,10` names those frames.
A result is {"tier": "remote", "versions": {"objects", "scenes"}, "width", "height",
"objects": <objects stage payload>, "scenes": <scenes stage payload, no arrays>}, boxes
in pixels of the uploaded image.

What one request may cost is bounded at every step, since anyone who reaches the port
can send one and any token holder can send many:
- connections: guard.GuardedH11Protocol (request-head deadline, caps on idle ones);
- before any body is read (_Gate): the token (else 401 and the connection closes), the
  declared size, then the body's size and time as it streams in;
- requests at work: at most MAX_ACTIVE_REQUESTS per worker, MAX_ACTIVE_PER_CLIENT of
  them from one client; the others wait (ADMISSION_WAIT) before their body is read;
- images: upload.read_header checks format, size and aspect from the JPEG markers
  before decoding (415/413), and a batch holds at most MAX_BATCH_IMAGES of them;
- inference: TFLite interpreters are not thread-safe, so one image at a time runs per
  worker, handed out by FairTurns round-robin over clients, one image per turn: a
  long batch cannot keep a photo waiting for more than one image per other client.
  Work stops between images when the client has gone, the request is past
  REQUEST_SECONDS, or the server is shutting down (SIGTERM answers within one image).

Errors answer a fixed reason; the detail (Pillow's message, a traceback) goes to the
server's log only. Models are loaded once per worker process (use --workers for
throughput).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations
# (Request, query types) at runtime, and they are imported inside create_app.
import asyncio
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from galprof import remote
from galprof.errors import ModelMismatch, SetupError
from galprof.remote import (API_PREFIX, ITEM_HEADER, MAX_ASPECT, MAX_BATCH_IMAGES,
                            MAX_BODY_BYTES, MAX_IMAGE_BYTES, MAX_SIDE)
from galprof.remote.guard import HEADER_TIMEOUT, SHUTTING_DOWN, TRUST_EXTENSION
from galprof.remote.upload import UploadRejected, decode_upload, read_header

__all__ = ["AccurateTier", "FairTurns", "ServerSettings", "UploadRejected", "Work",
           "WorkAbandoned", "create_app", "decode_upload", "read_token", "serve"]

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
# Requests at work (body read, images decoded or analysed) per worker process, and from
# one client among them; the rest wait before their body is read. Inference runs one
# image at a time anyway: these bound memory (each holds its body, <= 20 MB, and one
# decoded image, <= 3 MB) and let no client occupy every place.
MAX_ACTIVE_REQUESTS = 8
MAX_ACTIVE_PER_CLIENT = 4
# Seconds a request may wait for a place before it is answered 503.
ADMISSION_WAIT = 30.0
# Seconds from admission after which a request's work is abandoned (503): the client
# gives up after 60 s, so the server stops before working for no one.
REQUEST_SECONDS = 50.0
# Seconds for a request body to arrive once admitted (20 MB at ~3 Mbit/s).
BODY_SECONDS = 60.0
# Seconds uvicorn waits for requests in flight on shutdown before cancelling them; work
# stops between images on its own long before (guard.SHUTTING_DOWN).
GRACEFUL_SHUTDOWN = 5
# Environment variables the worker processes read their settings from.
ENV_TOKEN = "GALPROF_SERVER_TOKEN"
ENV_REQUEST_LOG = "GALPROF_SERVER_REQUEST_LOG"
ENV_THREADS = "GALPROF_SERVER_THREADS"

log = logging.getLogger("uvicorn.error.galprof")


class WorkAbandoned(Exception):
    """A request's work stopped between images: client gone, too late, or shutting down."""


@dataclass(eq=False)
class Work:
    """What one request's inference runs under: whose turn it is, and when to stop."""

    client: str = ""
    deadline: float = math.inf                 # time.monotonic() seconds
    cancelled: threading.Event = field(default_factory=threading.Event)
    since: float = field(default_factory=time.monotonic)   # a client's oldest goes first

    def check(self) -> None:
        if SHUTTING_DOWN.is_set():
            raise WorkAbandoned("the server is shutting down")
        if self.cancelled.is_set():
            raise WorkAbandoned("the client went away")
        if time.monotonic() > self.deadline:
            raise WorkAbandoned(f"not done in {REQUEST_SECONDS:g} s")


class FairTurns:
    """The models' lock, handed out one image at a time: round-robin over clients, and
    within one client to its oldest request.

    A client's next image queues behind one image of each other waiting client, so a
    batch of 16 frames shares the models with a photo instead of holding them for its
    whole length. One client's own requests finish one after the other instead of all
    late together (as they would if they shared its turns); a younger one waits even
    while the oldest decodes its next image (a few ms).
    """

    POLL = 0.2       # seconds between checks of a waiter's Work (client gone, deadline)

    def __init__(self):
        self._cond = threading.Condition()
        # client -> heap of (since, seq, Work) of its requests; dict order = round-robin order
        self._requests: dict[str, list] = {}
        self._ready: set[Work] = set()          # requests waiting for a turn now
        self._holder: Work | None = None
        self._seq = itertools.count()

    @contextmanager
    def request(self, work: Work) -> Iterator[None]:
        """Register `work` for its turns (nested calls for the same work do nothing)."""
        with self._cond:
            mine = self._requests.setdefault(work.client, [])
            if any(entry[2] is work for entry in mine):
                nested = True
            else:
                nested = False
                heapq.heappush(mine, (work.since, next(self._seq), work))
        try:
            yield
        finally:
            if not nested:
                with self._cond:
                    left = [entry for entry in self._requests.get(work.client, [])
                            if entry[2] is not work]
                    if left:
                        heapq.heapify(left)
                        self._requests[work.client] = left
                    else:
                        self._requests.pop(work.client, None)
                    self._hand_on()

    @contextmanager
    def turn(self, work: Work) -> Iterator[None]:
        """Hold the models for one image of `work` (registered with `request`)."""
        with self._cond:
            self._ready.add(work)
            try:
                self._hand_on()
                while self._holder is not work:
                    work.check()
                    self._cond.wait(self.POLL)
            except BaseException:
                self._ready.discard(work)
                if self._holder is work:
                    self._holder = None
                self._hand_on()
                raise
            self._ready.discard(work)
        try:
            yield
        finally:
            with self._cond:
                self._holder = None
                self._hand_on()

    def _hand_on(self) -> None:
        if self._holder is not None:
            return
        for client, mine in self._requests.items():
            oldest = mine[0][2]
            if oldest in self._ready:
                self._holder = oldest
                del self._requests[client]         # to the back of the round
                self._requests[client] = mine
                self._cond.notify_all()
                return


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
        self.turns = FairTurns()

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

    def analyse(self, images: Iterable[np.ndarray], indexes: list[int] | None = None,
                work: Work | None = None) -> dict:
        """One result for `images` taken as the frames of one media item.

        `images` may be a generator (decoding each upload when its turn comes, so a
        request holds one decoded image at a time). Each image takes one FairTurns turn
        under `work`; WorkAbandoned between images when `work` says stop.
        """
        from galprof.payloads import ObjectsPayload, ScenesPayload
        from galprof.vision.scenes import FRAME_TOP_K, ITEM_TOP_K

        work = work or Work()
        detections, probabilities, size = [], [], None
        with self.turns.request(work):
            for image in images:
                work.check()
                size = size or image.shape[:2]
                with self.turns.turn(work):
                    detections.append(self.detector.predict_tiles(image, self.tile,
                                                                  self.overlap))
                    probabilities.append(np.mean([c.analyse(image).probabilities
                                                  for c in self.classifiers], axis=0))
                del image
        if size is None:
            raise ValueError("no image to analyse")
        indexes = indexes or list(range(len(detections)))
        top = self.classifiers[-1].top
        h, w = size
        objects = ObjectsPayload(list(zip(indexes, detections)), tier="remote")
        scenes = ScenesPayload([(i, top(p, FRAME_TOP_K)) for i, p in zip(indexes, probabilities)],
                               top(np.mean(probabilities, axis=0), ITEM_TOP_K), tier="remote")
        return {"tier": "remote", "versions": self.versions, "width": w, "height": h,
                "objects": objects.to_json(), "scenes": scenes.to_json()}


@dataclass
class ServerSettings:
    token: str
    request_log: Path | None = None
    max_body: int = MAX_BODY_BYTES
    max_side: int = MAX_SIDE
    max_aspect: float = MAX_ASPECT
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_batch: int = MAX_BATCH_IMAGES
    threads: int | None = None


def read_token(token_file: Path | None, on_warning=None) -> str:
    """The server's bearer token from `token_file`, else from $GALPROF_SERVER_TOKEN.

    A file other users can write is refused; one they can read is reported to
    `on_warning` (one line).
    """
    return remote.read_token(token_file, ENV_TOKEN, min_length=16, refuse_writable=True,
                             on_warning=on_warning)


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


async def _json_reply(send, status: int, detail: str, headers=()) -> None:
    """An answer that also closes the connection (its unread body is never read)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class _Admission:
    """At most `total` requests at work, `per_client` of them from one client (one loop)."""

    def __init__(self, total: int, per_client: int):
        self.total, self.per_client = total, per_client
        self.active: Counter[str] = Counter()
        self._changed = asyncio.Event()

    async def enter(self, client: str, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while sum(self.active.values()) >= self.total or self.active[client] >= self.per_client:
            left = deadline - time.monotonic()
            if left <= 0 or SHUTTING_DOWN.is_set():
                return False
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(left, 1.0))
            except TimeoutError:
                pass
        self.active[client] += 1
        return True

    def leave(self, client: str) -> None:
        self.active[client] -= 1
        if self.active[client] <= 0:
            del self.active[client]
        self._changed.set()                  # wake the waiters, then arm a fresh event
        self._changed = asyncio.Event()


def client_key(scope) -> str:
    """Who sent a request, for fair shares: its address (a trusted proxy's X-Forwarded-For
    when uvicorn's proxy_headers applied it)."""
    client = scope.get("client")
    return client[0] if client else "?"


class _Gate:
    """Outermost ASGI layer: nothing of a request is read before its token is checked.

    Then the declared body size, a place among the requests at work (waiting for one
    before the body is read), and the body's size and time as it streams in. Every
    refusal here closes the connection.
    """

    OPEN = {("GET", "/health"), ("HEAD", "/health")}

    def __init__(self, app, token: str, max_body: int):
        self.app, self.max_body = app, max_body
        self.expected = token.encode()
        self.admission: _Admission | None = None    # made in the server's event loop

    def authorised(self, scope) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
        scheme, _, secret = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(secret.strip(), self.expected)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if (scope["method"], scope["path"]) in self.OPEN:
            return await self.app(scope, receive, send)
        if not self.authorised(scope):
            return await _json_reply(send, 401, "missing or wrong bearer token",
                                     [(b"www-authenticate", b"Bearer")])
        trust = scope.get("extensions", {}).get(TRUST_EXTENSION)
        if trust is not None:        # its kept-alive wait no longer counts with strangers'
            trust()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await _json_reply(send, 413, f"request body over {self.max_body} bytes")
        if self.admission is None:
            self.admission = _Admission(MAX_ACTIVE_REQUESTS, MAX_ACTIVE_PER_CLIENT)
        client = client_key(scope)
        if not await self.admission.enter(client, ADMISSION_WAIT):
            return await _json_reply(send, 503, "server busy; try again later",
                                     [(b"retry-after", b"5")])
        try:
            await self._admitted(scope, receive, send)
        finally:
            self.admission.leave(client)

    async def _admitted(self, scope, receive, send):
        seen, body_done = 0, False
        deadline = time.monotonic() + BODY_SECONDS
        started = False

        async def counted():
            nonlocal seen, body_done
            if body_done:                    # after the body: only a disconnect is to come
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _TooSlow() from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge()
                body_done = not message.get("more_body", False)
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        scope.setdefault("state", {})["galprof_admitted"] = time.monotonic()
        try:
            await self.app(scope, counted, tracked_send)
        except (_TooLarge, _TooSlow) as e:
            if not started:
                if isinstance(e, _TooLarge):
                    await _json_reply(send, 413, f"request body over {self.max_body} bytes")
                else:
                    await _json_reply(send, 408, f"request body not received in "
                                                 f"{BODY_SECONDS:g} s")


def _create_log(path: Path) -> None:
    """Create the request log private to the user (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.close(fd)


def create_app(settings: ServerSettings, tier: AccurateTier | None = None):
    """The ASGI application (FastAPI inside _Gate). Models load at startup (once per
    worker process)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    tier = tier or AccurateTier(threads=settings.threads)
    log_lock = threading.Lock()
    if settings.request_log is not None:
        _create_log(settings.request_log)

    @asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(tier.load)
        yield

    # No schema, no docs: the API is docs/remote.md, and nothing is served without the
    # token but /health.
    app = FastAPI(title="galprof remote tier", version=str(CODE_REVISION), lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    def log_received(request: Request, data: bytes, status: str) -> None:
        if settings.request_log is None:
            return
        entry = {"at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                 "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                 "item": request.headers.get(ITEM_HEADER), "status": status,
                 # An APP1 Exif segment near the start: metadata (GPS, time) arrived.
                 "exif": b"Exif\x00\x00" in data[:65536],
                 "pid": os.getpid()}
        with log_lock:
            fd = os.open(settings.request_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(json.dumps(entry) + "\n")

    async def uploads(request: Request) -> list[bytes]:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=settings.max_batch + 1, max_fields=16)
            except (HTTPException, _TooLarge, _TooSlow):
                raise
            except Exception as e:
                log.info("malformed multipart body: %s: %s", type(e).__name__, e)
                raise HTTPException(400, "malformed multipart body") from None
            try:
                files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                return [await f.read() for f in files]
            finally:
                await form.close()
        return [await request.body()]

    def checked(request: Request, blobs: list[bytes]) -> None:
        """Every image's JPEG header, before any is decoded; each image logged."""
        problems: list[UploadRejected | None] = []
        for i, data in enumerate(blobs):
            try:
                read_header(data, settings.max_side, settings.max_aspect,
                            settings.max_image_bytes)
                problems.append(None)
            except UploadRejected as e:
                log.info("image %d of %d refused (%d): %s", i + 1, len(blobs), e.status, e.detail)
                problems.append(e)
        first = next((p for p in problems if p is not None), None)
        for data, problem in zip(blobs, problems):
            log_received(request, data, "accepted" if first is None else
                         f"rejected {problem.status}" if problem else "not analysed")
        if first is not None:
            raise HTTPException(first.status, first.reason)

    def decoded(request: Request, blobs: list[bytes]) -> Iterator[np.ndarray]:
        for data in blobs:
            try:
                yield decode_upload(data, settings.max_side, settings.max_aspect,
                                    settings.max_image_bytes)
            except UploadRejected as e:
                log.info("image refused while decoding (%d): %s", e.status, e.detail)
                log_received(request, data, f"rejected {e.status}")
                raise

    def run(request: Request, blobs: list[bytes], item: bool, indexes, work: Work):
        with tier.turns.request(work):          # one place in the queue for the whole request
            if item:
                return tier.analyse(decoded(request, blobs), indexes, work)
            return [tier.analyse([image], None, work) for image in decoded(request, blobs)]

    async def analysed(request: Request, blobs: list[bytes], item: bool = True,
                       indexes: list[int] | None = None):
        await run_in_threadpool(checked, request, blobs)
        admitted = request.scope.get("state", {}).get("galprof_admitted", time.monotonic())
        work = Work(client_key(request.scope), admitted + REQUEST_SECONDS, since=admitted)
        watcher = asyncio.create_task(_watch_disconnect(request, work))
        try:
            return await run_in_threadpool(run, request, blobs, item, indexes, work)
        except UploadRejected as e:
            raise HTTPException(e.status, e.reason) from None
        except WorkAbandoned as e:
            log.info("request from %s abandoned: %s", work.client, e)
            raise HTTPException(503, "analysis not completed; try again later",
                                headers={"Retry-After": "5"}) from None
        except Exception:  # a model failure answers 500 and the server keeps serving
            log.exception("analysis failed")
            raise HTTPException(500, "analysis failed") from None
        finally:
            watcher.cancel()

    @app.get("/health")
    async def health():
        return {"status": "ok", "tier": "remote", "versions": tier.versions}

    @app.post(f"{API_PREFIX}/analyze")
    async def analyze_one(request: Request):
        blobs = await uploads(request)
        if len(blobs) != 1:
            raise HTTPException(400, f"send exactly one image (got {len(blobs)}); "
                                     f"use {API_PREFIX}/analyze/batch for several")
        return await analysed(request, blobs)

    @app.post(f"{API_PREFIX}/analyze/batch")
    async def analyze_batch(request: Request, item: bool = False, indexes: str = ""):
        wanted = None
        if indexes:
            try:
                wanted = [int(v) for v in indexes.split(",", settings.max_batch)]
            except ValueError:
                raise HTTPException(400, "indexes must be comma-separated integers") from None
        blobs = await uploads(request)
        if not blobs or len(blobs) > settings.max_batch:
            raise HTTPException(413 if blobs else 400,
                                f"send 1 to {settings.max_batch} images as multipart "
                                f"fields (got {len(blobs)})")
        if wanted is not None and len(wanted) != len(blobs):
            raise HTTPException(400, f"{len(wanted)} indexes for {len(blobs)} images")
        if item:
            return await analysed(request, blobs, True, wanted)
        return {"results": await analysed(request, blobs, False)}

    # The body turned out too large or too slow while an endpoint read it (_Gate).
    @app.exception_handler(_TooLarge)
    async def too_large(request, exc):
        return JSONResponse({"detail": f"request body over {settings.max_body} bytes"}, 413,
                            headers={"Connection": "close"})

    @app.exception_handler(_TooSlow)
    async def too_slow(request, exc):
        return JSONResponse({"detail": f"request body not received in {BODY_SECONDS:g} s"},
                            408, headers={"Connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request, exc):
        return JSONResponse({"detail": "bad query parameters"}, 400)

    return _Gate(app, settings.token, settings.max_body)


async def _watch_disconnect(request, work: Work) -> None:
    """Set `work.cancelled` when the client goes away (its body is read by now)."""
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                work.cancelled.set()
                return
    except asyncio.CancelledError:
        pass


def app_from_env():
    """uvicorn factory for worker processes: settings come from the environment."""
    log_path = os.environ.get(ENV_REQUEST_LOG)
    threads = os.environ.get(ENV_THREADS)
    return create_app(ServerSettings(token=read_token(None),
                                     request_log=Path(log_path) if log_path else None,
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
        request_log = Path(request_log).resolve()
        try:
            _create_log(request_log)
        except OSError as e:
            raise SetupError(f"cannot write the request log {request_log}: {e.strerror}") \
                from None
        os.environ[ENV_REQUEST_LOG] = str(request_log)
    if threads:
        os.environ[ENV_THREADS] = str(threads)
    # No limit_concurrency: uvicorn counts idle connections against it, so silent sockets
    # would turn real requests into 503s; guard.py and _Gate bound connections and work.
    uvicorn.run("galprof.remote.server:app_from_env", factory=True, host=host, port=port,
                workers=workers, ssl_certfile=str(cert) if cert else None,
                ssl_keyfile=str(key) if key else None, log_level=log_level,
                http="galprof.remote.guard:GuardedH11Protocol",
                timeout_keep_alive=int(HEADER_TIMEOUT),
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN, server_header=False)
