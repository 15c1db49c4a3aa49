"""Ingest: read each changed file once, run the stages it lacks, keep it all in the store.

Decoding runs in worker threads ahead of inference so that both overlap; the stages run
on this thread, stage by stage in dependency order, after their per-frame analyses of the
items decoded ahead, which a helper thread and this one run two at a time
(pipeline/analysis.py). A HEIC read from its preview whose
stage wants the full picture goes back to the decode threads for it and its remaining
stages run when it is back: full decodes never hold up inference. A stage whose models
need much memory and few items (the text detector) defers them (ModelsDeferred) on items
that run other stages: those items are read again in a late pass, once every item is
through the other stages and their models are let go, and recorded then, so that the
peak holds only one of the two. Items are finished in
the order their decodes end, first come first: one ready behind a decode still running
(a video, a full picture) goes before it. Results are committed
in small batches (every COMMIT_EVERY_ITEMS items or COMMIT_EVERY_SECONDS), so a run
killed at any moment resumes where it stopped.

Failures: a file that cannot be read, or a stage that fails on it, is an error for that
file (one line naming it and the reason; recorded, so it is reported once). A stage that
fails on the first FAILURE_STREAK files it runs on is broken (a bad model file, a runtime
that does not work here): the run stops with StageFailed naming the model and what to do,
keeping every item finished so far, and the rows of the items it left waiting for the late
pass (with their other results; the next scan runs the late stage on them).

Progress: on_progress(done, total, phase), phase SCANNING and then, while the late pass
runs, "late pass: " and its stages' names.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from galprof.errors import MediaError, StageFailed
from galprof.gallery import frames as frames_mod
from galprof.pipeline.analysis import Analyses
from galprof.pipeline.changes import Cache, Work
from galprof.pipeline.settings import Settings, Summary
from galprof.stages import (PICTURE, Frame, FullPictureNeeded, ModelsDeferred, Stage,
                            analysing_threads)
from galprof.store.db import now
from galprof.vision import runtime

# Commit at least this often, so a killed run loses little work.
COMMIT_EVERY_ITEMS = 16
COMMIT_EVERY_SECONDS = 2.0
# Long side of decoded frames when no stage asks for more (enough for metadata-only runs).
DEFAULT_LONG_SIDE = 512
# Items decoded ahead of inference: decode times vary (a HEIC without a preview or a video
# takes 10-20 photos' time), so a few in hand keep inference from waiting; a photo's frame
# and inputs at analysis size are ~5 MB. On the roll of 200, 4 ahead against 8: the same
# media/s (4.0-4.5 against 4.0-4.5), peak memory 316-328 MB against 358-360.
DECODE_AHEAD = 4
# Items decoded ahead in the late pass: one overlaps most decodes with the text detector's
# calls (~200-300 ms). Two were 3 % faster on the roll of 200 for 10 MB more at the peak,
# which the late pass is there to lower.
LATE_DECODE_AHEAD = 1
# How often the inference thread, waiting for decodes, looks for analyses to run (a video's
# frames are offered as they are decoded).
ANALYSIS_POLL_SECONDS = 0.02
# A stage failing on this many files in a row, from its first file on, is broken.
FAILURE_STREAK = 5
# on_progress's phase until the late pass
SCANNING = "scanning"


class _Batch:
    """A transaction committed and renewed every few items or seconds."""

    def __init__(self, store):
        self.store = store
        self._tx = None

    def __enter__(self):
        self._begin()
        return self

    def _begin(self):
        self._tx = self.store.transaction()
        self._tx.__enter__()
        self.items, self.started = 0, time.monotonic()

    def tick(self) -> None:
        self.items += 1
        if self.items >= COMMIT_EVERY_ITEMS or time.monotonic() - self.started > COMMIT_EVERY_SECONDS:
            self._tx.__exit__(None, None, None)
            self.store.let_waiting_in()    # a `private mark` meanwhile
            self._begin()

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, StageFailed):
            # a broken stage, not a broken batch: what the items got is theirs to keep
            self._tx.__exit__(None, None, None)
            return False
        return self._tx.__exit__(exc_type, exc, tb)


class _Streaks:
    """Per stage: failures in a row since its first file, until its first success."""

    def __init__(self):
        self.failed: dict[str, list[str]] = {}   # stage -> content hashes of the streak
        self.working: set[str] = set()

    def success(self, stage: str) -> None:
        self.working.add(stage)
        self.failed.pop(stage, None)

    def failure(self, stage: str, digest: str) -> bool:
        """True when the stage is now known to be broken."""
        if stage in self.working:
            return False
        self.failed.setdefault(stage, []).append(digest)
        return len(self.failed[stage]) >= FAILURE_STREAK


def long_side(stages: list[Stage]) -> int:
    return max([s.long_side for s in stages] or [DEFAULT_LONG_SIDE])


def ingest(store, work: list[Work], settings: Settings, summary: Summary, problem,
           on_progress=None) -> None:
    stages = settings.stages
    side = long_side(stages)
    cache = Cache(store, settings)
    streaks = _Streaks()
    analyses = Analyses(analysing_threads(settings.analyses_at_once) - 1, summary.stage_seconds)

    def read(w: Work, first: "_Item | None" = None):
        """Worker thread: hash and decode one file (pixels only when a stage needs them),
        make the stages' inputs and offer the frames' analyses; a video's frames as they
        are decoded. `first`: the item as the main pass left it, for the late pass (its
        stages to run, if the bytes are still the ones it hashed)."""
        started = time.perf_counter()
        if w.found.kind is None:
            raise MediaError(w.found.path, "not a recognised photo or video (unknown file "
                                           "content)" if w.found.size else "empty file (0 bytes)")
        todo: list[Stage] = []
        offered: list[Frame] = []

        def needs_pixels(digest: str) -> bool:
            if first is not None and digest != first.digest:
                return False           # changed since the main pass read it
            # With no stages the pixels are still decoded: that is how a scan without
            # models checks that every file can be read.
            todo[:] = cache.todo(digest, w.found.kind)
            return not stages or bool(todo)

        def arrived(frame: Frame) -> None:
            _prepare(todo, [frame])
            analyses.offer([frame], todo)
            offered.append(frame)
        try:
            digest, decoded = frames_mod.read_media(w.found.path, w.found.kind, side,
                                                    settings.frame_step, settings.max_frames,
                                                    pixels=needs_pixels,
                                                    max_bytes=settings.max_decode_mb << 20,
                                                    for_stages=True,
                                                    on_frame=arrived if w.found.kind == "video"
                                                    else None)
        except BaseException:
            analyses.discard(offered)
            raise
        if offered:
            # a video decoded again from its start (its timestamps misled the plan) offered
            # its first frames twice
            kept = set(map(id, decoded.frames))
            analyses.discard([f for f in offered if id(f) not in kept])
        elif decoded.frames:
            # a photo (a video's frames were offered as they decoded)
            _prepare(todo, decoded.frames, keep_picture=True)
            analyses.offer(decoded.frames, todo)
        if first is not None:
            # The same frames as in the main pass, and the full picture a preview stands
            # for now, in this thread: what the late stage (reading a document) asks for.
            for frame in decoded.frames:
                if frame.enlarge is not None:
                    _decode_full_picture(frame)
        item = _Item(digest, decoded, time.perf_counter() - started)
        if first is not None:
            item.resume(first)
        return item

    if work:
        _load_first_tflite_stage([s for s in stages if any(s in w.todo for w in work)],
                                 analyses)
    if on_progress:
        on_progress(0, len(work), SCANNING)
    workers = max(1, settings.decode_workers)
    deferred: dict[int, tuple[Work, _Item]] = {}   # waiting for the late pass, by id(work)
    try:
        _run(store, work, settings, summary, problem, on_progress, read, cache, streaks,
             analyses, workers, deferred)
    except StageFailed as e:
        # Broken, not bad files: forget the streak's failures, so that the next run (after
        # the fix) tries those files again; the items the late pass did not reach keep
        # their rows with the results they have.
        with store.transaction():
            store.results.forget_errors(e.content_hashes, e.stage_name)
            for w, item in deferred.values():
                _save_row(store, w, item.record, item.digest, item.failures, item.frame_rows)
        raise
    finally:
        analyses.close()
        summary.stage_busy_seconds = round(analyses.busy.seconds, 4)
        # The models' memory (~85 MB for the default three stages) is not needed by the
        # gallery passes, which load their own data (the places pass ~100 MB).
        for stage in stages:
            analyses.unload(stage)
            if _can_defer(stage):
                stage.defer_models = False


def _load_first_tflite_stage(stages: list[Stage], analyses: Analyses) -> None:
    """Load, before the threads start, the first of these stages (those the work needs)
    whose model runs on TFLite: the process's first TFLite model points fd 2 at
    /dev/null for a moment (vision/runtime.py), which would also swallow a line printed
    meanwhile by this thread (a bad file's error). A failure is the stage's to report
    when it runs."""
    for stage in stages:
        specs = getattr(stage, "models", list)()
        if any(runtime.runs_on_tflite(spec.file) for spec in specs):
            try:
                analyses.load(stage)
            except Exception:
                pass
            return


@dataclass
class _Item:
    """A media item between its read and its record. `todo`: the stages still to run, set
    when the first runs; an item waiting for a full picture (FullPictureNeeded) keeps it,
    with the failures so far, and goes back to the decode threads."""
    digest: str
    decoded: frames_mod.Decoded | None   # None: let go until the late pass reads it again
    seconds: float                       # decoding, in a decode thread
    todo: list[Stage] | None = None
    failures: list[str] = field(default_factory=list)
    waits_for: Frame | None = None
    defers: bool = False                 # its deferrable stages defer (_defers)
    changed: bool = False                # read again by the late pass: not the same bytes
    frame_rows: list[tuple] | None = None   # the main pass's, kept through the late one
    record: frames_mod.Decoded | None = None   # its metadata, while it waits for the late pass

    def defer_to_late_pass(self, stage: Stage) -> None:
        """The stage deferred its models: keep what the late pass needs, not the pixels."""
        self.todo.insert(0, stage)
        self.frame_rows = _frame_rows(self.decoded.frames)
        self.record = frames_mod.Decoded(self.decoded.meta, [], self.decoded.warnings)
        self.decoded = None

    @property
    def late(self) -> bool:
        """It waits for the late pass (its pixels let go)."""
        return self.decoded is None

    def resume(self, first: "_Item") -> None:
        """Late pass, read again: carry on where the main pass stopped."""
        self.changed = self.digest != first.digest
        self.todo, self.failures, self.frame_rows = first.todo, first.failures, first.frame_rows

    def decode_full_picture(self) -> "_Item":
        """Decode thread: the full picture the waiting stage asked for."""
        started = time.perf_counter()
        _decode_full_picture(self.waits_for)
        self.seconds, self.waits_for = time.perf_counter() - started, None
        return self


def _decode_full_picture(frame: Frame) -> None:
    """Decode thread: a frame's full picture; a failure is kept on the frame and becomes
    the asking stage's when it runs."""
    try:
        frame.decode_larger()
    except Exception:
        pass


def _prepare(stages: list[Stage], frames, keep_picture: bool = False) -> None:
    """Let each stage make its model inputs here, in the decode thread, ahead of its run
    (Stage.prepare: pure pixel work, cached on the frames), frame by frame, all from one
    PIL picture of the frame, let go then (a video's 40 frames would hold ~150 MB of
    them) unless `keep_picture`: a photo's is the decoder's own, which the faces stage
    crops its faces and tiles from and lets go (made again, it is a copy of the frame).
    A failure is the stage's to report when it runs."""
    prepares = [p for p in (getattr(stage, "prepare", None) for stage in stages) if p]
    for frame in frames:
        for prepare in prepares:
            try:
                prepare([frame])
            except Exception:
                pass
        if not keep_picture:
            frame.forget(PICTURE)


def _run(store, work, settings, summary, problem, on_progress, read, cache, streaks, analyses,
         workers, deferred) -> None:
    total = len(work)
    phase = SCANNING
    with _Batch(store) as batch, ThreadPoolExecutor(max_workers=workers) as pool:
        queue: deque = deque()
        waiting = deque((w, None) for w in work)     # (work, the main pass's item)
        late: list[tuple[Work, _Item]] = []
        ahead = DECODE_AHEAD
        threads: dict[Stage, int | None] = {}    # the late stages' own, while changed
        late_started = None

        def refill(video_busy: bool) -> None:
            # Keep a few decodes in flight so that inference never waits for the disk, but
            # the frames of one video alive at a time (40 sampled frames at analysis size
            # are ~100 MB): a video waits to be read until the one before is finished.
            while waiting and len(queue) < ahead:
                if waiting[0][0].found.kind == "video" and (
                        video_busy or any(q.found.kind == "video" for q, _ in queue)):
                    return
                w, first = waiting.popleft()
                queue.append((w, pool.submit(read, w, first)))

        def finish(entry) -> bool:
            """Finish one item whose decode is done; False when it went back to the
            decode threads for its full picture or waits for the late pass."""
            w, future = entry
            refill(w.found.kind == "video")
            waiting_item = _finish(store, w, future, settings, summary, problem, cache,
                                   streaks, analyses)
            if waiting_item is None:
                deferred.pop(id(w), None)
                return True
            if waiting_item.late:
                late.append((w, waiting_item))
                deferred[id(w)] = (w, waiting_item)
                batch.tick()                  # its results so far
            else:
                # A full HEIC decode (~150 ms) in a decode thread, while this thread
                # analyses the items read ahead; the item is finished when it is back.
                queue.append((w, pool.submit(waiting_item.decode_full_picture)))
            return False

        def start_late_pass() -> None:
            """Every item is through the main pass: let go of the models loaded (the late
            stages load theirs again, deferring nothing) and read the deferred items."""
            for stage in settings.stages:
                analyses.unload(stage)
            frames_mod.release_freed_memory()      # what they held (30-55 MB)
            # one model call at a time now: it gets the cores two analyses shared
            for stage in {s for _, item in late for s in item.todo
                          if _can_defer(s) and s.threads}:
                threads[stage] = stage.threads
                stage.threads *= analysing_threads(settings.analyses_at_once)
            nonlocal ahead, late_started, phase
            ahead, late_started = LATE_DECODE_AHEAD, time.perf_counter()
            summary.late_items += len(late)
            phase = "late pass: " + ", ".join(sorted({item.todo[0].name for _, item in late}))
            if on_progress:
                on_progress(done, total, phase)
            waiting.extend(late)
            late.clear()
            refill(False)

        refill(False)
        done = 0
        try:
            while queue or late:
                if not queue:
                    start_late_pass()
                # The first item whose decode is done, in line order: while the first
                # still decodes (a video, a full HEIC picture), one behind it that is
                # ready goes first, so that inference does not wait for one long decode.
                index = next((i for i, (_, f) in enumerate(queue) if f.done()), None)
                if index is None:
                    # none: analyse the frames decoded ahead (a video's as they arrive)
                    if not analyses.take_one():
                        wait([f for _, f in queue], timeout=ANALYSIS_POLL_SECONDS,
                             return_when=FIRST_COMPLETED)
                    continue
                entry = queue[index]
                del queue[index]
                finished = finish(entry)
                entry = None                 # its frames go before the next read starts
                if not finished:
                    continue
                refill(False)
                done += 1
                if on_progress:
                    on_progress(done, total, phase)
                batch.tick()
        finally:
            for _, future in queue:
                future.cancel()
            for stage, n in threads.items():
                stage.threads = n
            if late_started is not None:
                summary.late_seconds = round(time.perf_counter() - late_started, 3)


def _base_row(w: Work) -> dict:
    f = w.found
    return {"path": os.fspath(f.path), "root": os.fspath(f.root), "size": f.size,
            "mtime_ns": f.mtime_ns, "kind": f.kind, "format": f.format,
            "motion_path": os.fspath(f.motion_path) if f.motion_path else None,
            "scanned_at": now()}


_META_FIELDS = ("width", "height", "taken_at", "make", "model", "lens_model", "focal_length",
                "focal_length_35mm", "orientation", "gps_lat", "gps_lon", "gps_alt",
                "duration", "fps", "rotation", "front_camera")


def _finish(store, w: Work, future, settings: Settings, summary: Summary, problem,
            cache: Cache, streaks: _Streaks, analyses: Analyses) -> "_Item | None":
    """Run the item's stages and record it; or, when a stage needs a full picture not yet
    decoded, return the item (its results so far stored) for the decode threads."""
    path = os.fspath(w.found.path)
    try:
        item = future.result()
        summary.decode_seconds += item.seconds
    except MediaError as e:
        _read_failed(store, w, e.reason, problem)
        return None
    except Exception as e:  # a decoder bug must not stop the run; report it like bad input
        _read_failed(store, w, f"cannot decode this file (the decoder failed: "
                               f"{type(e).__name__}: {_one_line(e)})", problem)
        return None
    if item.changed:
        problem(path, "read", "warning", "the file changed while it was being scanned; "
                                         "the next scan reads it again")
        return None
    digest, decoded, failures = item.digest, item.decoded, item.failures
    notes = list(decoded.warnings)
    if decoded.frames:
        have = store.results.all(digest)
        upstream = {name: r.payload for name, r in have.items() if r.error is None}
        if item.todo is None:
            item.todo = cache.todo(digest, w.found.kind)
            item.defers = _defers(item.todo)
        for frame in decoded.frames:
            frame.defer_enlarge = True
        while item.todo:
            stage = item.todo.pop(0)
            if _can_defer(stage):
                stage.defer_models = item.defers
            analyses.load(stage)
            version = settings.version_of(stage, w.found.kind)
            missing = [d for d in stage.requires if upstream.get(d) is None]
            if missing:
                reason = f"stage {stage.name} skipped: {', '.join(missing)} failed"
                store.results.put_error(digest, stage.name, version, reason)
                failures.append(reason)
                continue
            try:
                payload = analyses.run(stage, decoded.frames,
                                       {d: upstream[d] for d in stage.requires})
            except FullPictureNeeded as e:
                item.todo.insert(0, stage)
                item.waits_for = e.frame
                return item
            except ModelsDeferred:
                analyses.discard(decoded.frames)
                item.defer_to_late_pass(stage)
                return item
            except Exception as e:
                reason = f"stage {stage.name} failed: {type(e).__name__}: {_one_line(e)}"
                store.results.put_error(digest, stage.name, version, reason)
                failures.append(reason)
                if streaks.failure(stage.name, digest):
                    raise StageFailed(stage, streaks.failed[stage.name], reason) from None
                continue
            streaks.success(stage.name)
            store.results.put(digest, stage.name, version, payload)
            cache.add(digest, stage.name, version)
            upstream[stage.name] = payload
        summary.analysed += 1
        summary.frames += len(decoded.frames)
        analyses.discard(decoded.frames)
    for note in notes:
        problem(path, "read", "warning", note)
    for reason in failures:
        problem(path, reason.split()[1], "error", reason)
    _save_row(store, w, decoded, digest, failures,
              item.frame_rows or _frame_rows(decoded.frames))
    return None


def _save_row(store, w: Work, decoded: frames_mod.Decoded, digest: str, failures: list[str],
              frame_rows: list[tuple] | None) -> None:
    """The item's media row (its metadata, warnings and failures) and its frames'."""
    meta, notes = decoded.meta.to_dict(), decoded.warnings
    row = {**_base_row(w), **{k: meta.get(k) for k in _META_FIELDS}, "content_hash": digest,
           "hash_scheme": 2, "status": "warning" if notes else "ok",
           "error": "; ".join(failures + notes) or None}
    media_id = store.media.save(w.media_id, row)
    if frame_rows:
        store.media.replace_frames(media_id, frame_rows)


def _frame_rows(frames: list[Frame]) -> list[tuple]:
    return [(fr.index, fr.timestamp, fr.image.shape[1], fr.image.shape[0]) for fr in frames]


def _can_defer(stage: Stage) -> bool:
    """Whether the stage can defer its models to the late pass (Stage.defer_models)."""
    return hasattr(stage, "defer_models")


def _defers(todo: list[Stage]) -> bool:
    """Whether an item's stages that can defer their models to the late pass do: when it
    runs any other stage (whose models and frames the late pass lets go first), not when
    it only lacks theirs."""
    return not all(map(_can_defer, todo))


def _read_failed(store, w: Work, reason: str, problem) -> None:
    problem(os.fspath(w.found.path), "read", "error", reason)
    store.media.save(w.media_id, {**_base_row(w), "content_hash": w.content_hash,
                                  "hash_scheme": 2, "status": "failed", "error": reason})


def _one_line(e: BaseException) -> str:
    """A library's message on one line (some end with newlines or hold several)."""
    text = " ".join(str(e).split())
    return text[:300] or type(e).__name__
