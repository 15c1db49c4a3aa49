"""A scan: walk the roots, read what changed, run the stages, keep it all in the store.

Re-scans are cheap: an unchanged file (same size and mtime, all stages cached at
their current versions) is not opened; a moved file is recognised by its content
hash and keeps its results; a file that vanished drops out. Results are committed
in small batches, so a scan killed at any moment resumes where it stopped.
Decoding runs in worker threads ahead of inference so that both overlap.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from galprof.errors import MediaError, SetupError
from galprof.gallery import frames as frames_mod
from galprof.gallery.walk import Found, walk
from galprof.stages import Stage, order_stages
from galprof.store.db import Store, content_hash, now

# Commit at least this often, so a killed scan loses little work.
COMMIT_EVERY_ITEMS = 16
COMMIT_EVERY_SECONDS = 2.0
# Long side of decoded frames when no stage asks for more (enough for metadata-only runs).
DEFAULT_LONG_SIDE = 512


@dataclass
class ScanOptions:
    frame_step: int = 5           # every N-th video frame
    max_frames: int = 40          # at most this many frames per video
    decode_workers: int = 2       # threads decoding ahead of inference
    stages: list[Stage] = field(default_factory=list)


@dataclass
class ScanSummary:
    roots: list[str] = field(default_factory=list)
    photos: int = 0               # media present under the roots after the scan
    videos: int = 0
    frames: int = 0               # frames analysed by this scan
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    analysed: int = 0             # items whose stages ran in this scan
    warnings: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)    # {"path", "reason"}
    seconds: float = 0.0
    # Where the time went: decoding (summed over the decode threads, which overlap
    # inference) and each stage's model calls; `galprof benchmark` reports them.
    decode_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Work:
    found: Found
    content_hash: str
    media_id: int | None          # existing row to update
    todo: list[Stage]             # stages whose cached results are missing or stale


def _missing_stages(stages: list[Stage], cached: dict[str, str]) -> list[Stage]:
    return [s for s in stages if cached.get(s.name) != s.version]


def _check_roots(roots: list[Path]) -> list[Path]:
    out = []
    for root in roots:
        if not root.exists():
            raise SetupError(f"no such file or folder: {root}")
        out.append(Path(os.path.abspath(root)))
    return out


def scan(store: Store, roots: list[Path], options: ScanOptions | None = None,
         on_progress: Callable[[int, int], None] | None = None,
         on_problem: Callable[[str, str, str], None] | None = None) -> ScanSummary:
    """Scan `roots` into `store`. `on_progress(done, total)` follows the files that need
    reading; `on_problem(path, level, reason)` gets every failure ("error") and warning."""
    options = options or ScanOptions()
    roots = _check_roots(roots)
    stages = order_stages(list(options.stages))
    for stage in stages:
        stage.load()
    started = time.monotonic()
    summary = ScanSummary(roots=[str(r) for r in roots])
    store.acquire_writer()
    conn = store.conn
    scan_id = conn.execute("INSERT INTO scans (started_at, roots) VALUES (?, ?)",
                           (now(), json.dumps(summary.roots))).lastrowid

    def problem(path: str, stage: str, level: str, reason: str) -> None:
        if level == "error":
            summary.failed += 1
            summary.failures.append({"path": path, "reason": reason})
        else:
            summary.warnings += 1
        store.log_error(path, stage, f"{level}: {reason}")
        if on_problem:
            on_problem(path, level, reason)

    try:
        found = walk(roots)
        for path, reason in found.problems:
            problem(path, "walk", "error", reason)
        known = store.media_under(roots)
        versions = store.result_versions()
        # Remote-tier results (galprof.remote.client.offload) stand in for the device
        # stages' own: a re-scan keeps them instead of redoing them on the device.
        current = {s.name: s.version for s in stages}
        for h, name in conn.execute("SELECT content_hash, stage FROM results "
                                    "WHERE tier = 'remote'"):
            if name in current:
                versions.setdefault(h, {})[name] = current[name]
        seen = {str(f.path) for f in found.items}
        missing = {p: row for p, row in known.items() if p not in seen}
        by_hash = {row["content_hash"]: row for row in missing.values() if row["content_hash"]}

        work: list[_Work] = []
        for f in found.items:
            path = str(f.path)
            row = known.get(path)
            if row is not None and row["size"] == f.size and row["mtime_ns"] == f.mtime_ns:
                todo = _missing_stages(stages, versions.get(row["content_hash"], {}))
                if row["status"] != "pending" and (not todo or row["status"] == "failed"):
                    summary.unchanged += 1
                    continue
                work.append(_Work(f, row["content_hash"], row["id"], todo))
                continue
            try:
                digest = content_hash(f.path, f.size)
            except OSError as e:
                problem(path, "read", "error", e.strerror or str(e))
                continue
            moved_from = by_hash.pop(digest, None) if row is None else None
            if moved_from is not None:
                # Same bytes at a new path: keep the row (and its results), update the path.
                del missing[moved_from["path"]]
                conn.execute("UPDATE media SET path = ?, root = ?, mtime_ns = ? WHERE id = ?",
                             (path, str(f.root), f.mtime_ns, moved_from["id"]))
                summary.moved += 1
                todo = _missing_stages(stages, versions.get(digest, {}))
                if not todo and moved_from["status"] != "pending":
                    continue
                work.append(_Work(f, digest, moved_from["id"], todo))
                continue
            if row is None:
                summary.new += 1
            else:
                summary.changed += 1
            work.append(_Work(f, digest, row["id"] if row else None,
                              _missing_stages(stages, versions.get(digest, {}))))

        if missing:
            conn.executemany("DELETE FROM media WHERE path = ?", [(p,) for p in missing])
            summary.removed = len(missing)

        _analyse(store, work, stages, options, summary, problem, on_progress)
        _mark_selfies(store)
    finally:
        kinds = Counter(r["kind"] for r in store.media_under(roots).values()
                        if r["status"] != "failed")
        summary.photos, summary.videos = kinds["photo"], kinds["video"]
        summary.seconds = round(time.monotonic() - started, 3)
        summary.decode_seconds = round(summary.decode_seconds, 3)
        conn.execute("UPDATE scans SET finished_at = ?, summary = ? WHERE id = ?",
                     (now(), json.dumps(summary.to_dict()), scan_id))
        store.release_writer()
    return summary


def _long_side(stages: list[Stage]) -> int:
    return max([s.long_side for s in stages] or [DEFAULT_LONG_SIDE])


def _timed_read(w: _Work, long_side: int, options: ScanOptions):
    started = time.perf_counter()
    return _read(w, long_side, options), time.perf_counter() - started


def _read(w: _Work, long_side: int, options: ScanOptions):
    """Worker thread: metadata, and frames unless every stage result is cached already.

    With no stages at all the pixels are still decoded: that is how a scan without
    models checks that every file can be read."""
    kind = w.found.kind
    if kind is None:
        raise MediaError(w.found.path, "not a recognised photo or video (unknown file content)"
                         if w.found.size else "empty file (0 bytes)")
    if not w.todo and options.stages:
        return frames_mod.Decoded(frames_mod.read_metadata(w.found.path, kind), [], [])
    return frames_mod.decode(w.found.path, kind, long_side, options.frame_step,
                             options.max_frames)


def _analyse(store: Store, work: list[_Work], stages: list[Stage], options: ScanOptions,
             summary: ScanSummary, problem, on_progress) -> None:
    conn = store.conn
    long_side = _long_side(stages)
    total = len(work)
    if on_progress:
        on_progress(0, total)
    last_commit = time.monotonic()
    pending = 0
    conn.execute("BEGIN")
    with ThreadPoolExecutor(max_workers=max(1, options.decode_workers)) as pool:
        queue: deque = deque()
        items = iter(work)
        # Keep a few decodes in flight so that inference never waits for the disk.
        for w in items:
            queue.append((w, pool.submit(_timed_read, w, long_side, options)))
            if len(queue) >= 2 * options.decode_workers:
                break
        done = 0
        while queue:
            w, future = queue.popleft()
            nxt = next(items, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(_timed_read, nxt, long_side, options)))
            _finish(store, w, future, stages, summary, problem)
            done += 1
            pending += 1
            if on_progress:
                on_progress(done, total)
            if pending >= COMMIT_EVERY_ITEMS or time.monotonic() - last_commit > COMMIT_EVERY_SECONDS:
                conn.execute("COMMIT")
                conn.execute("BEGIN")
                pending, last_commit = 0, time.monotonic()
    conn.execute("COMMIT")


_MEDIA_FIELDS = ("width", "height", "taken_at", "make", "model", "lens_model", "focal_length",
                 "focal_length_35mm", "orientation", "gps_lat", "gps_lon", "gps_alt",
                 "duration", "fps", "rotation", "front_camera")


def _finish(store: Store, w: _Work, future, stages: list[Stage], summary: ScanSummary,
            problem) -> None:
    f = w.found
    path = str(f.path)
    base = {"path": path, "root": str(f.root), "size": f.size, "mtime_ns": f.mtime_ns,
            "content_hash": w.content_hash, "kind": f.kind, "format": f.format,
            "motion_path": str(f.motion_path) if f.motion_path else None, "scanned_at": now()}
    try:
        decoded, seconds = future.result()
        summary.decode_seconds += seconds
    except MediaError as e:
        problem(path, "read", "error", e.reason)
        _save_media(store, w, {**base, "status": "failed", "error": e.reason})
        return
    except Exception as e:  # a decoder bug must not stop the scan; report it like bad input
        reason = f"unexpected {type(e).__name__}: {e}"
        problem(path, "read", "error", reason)
        _save_media(store, w, {**base, "status": "failed", "error": reason})
        return
    notes = list(decoded.warnings)
    payloads: dict[str, dict] = {}
    if decoded.frames:
        payloads = {name: r["payload"] for name, r in store.results(w.content_hash).items()}
        for stage in stages:
            if stage not in w.todo:
                continue
            started = time.perf_counter()
            try:
                payload = stage.run(decoded.frames, {d: payloads.get(d) for d in stage.requires})
            except Exception as e:
                notes.append(f"stage {stage.name} failed: {type(e).__name__}: {e}")
                continue
            finally:
                summary.stage_seconds[stage.name] = round(
                    summary.stage_seconds.get(stage.name, 0.0) + time.perf_counter() - started, 4)
            store.put_result(w.content_hash, stage.name, stage.version, payload)
            payloads[stage.name] = payload
        summary.analysed += 1
        summary.frames += len(decoded.frames)
    for note in notes:
        problem(path, "read", "warning", note)
    meta = decoded.meta.to_dict()
    row = {**base, **{k: meta.get(k) for k in _MEDIA_FIELDS},
           "status": "warning" if notes else "ok", "error": "; ".join(notes) or None}
    media_id = _save_media(store, w, row)
    if decoded.frames:
        store.conn.execute("DELETE FROM frames WHERE media_id = ?", (media_id,))
        store.conn.executemany(
            "INSERT INTO frames (media_id, idx, timestamp, width, height) VALUES (?, ?, ?, ?, ?)",
            [(media_id, fr.index, fr.timestamp, fr.image.shape[1], fr.image.shape[0])
             for fr in decoded.frames])


def _save_media(store: Store, w: _Work, row: dict) -> int:
    cols = list(row)
    if w.media_id is not None:
        store.conn.execute(f"UPDATE media SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?",
                           [row[c] for c in cols] + [w.media_id])
        return w.media_id
    cur = store.conn.execute(
        f"INSERT INTO media ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT(path) DO UPDATE SET {', '.join(c + ' = excluded.' + c for c in cols)} "
        "RETURNING id", [row[c] for c in cols])
    w.media_id = cur.fetchone()[0]
    return w.media_id


def _mark_selfies(store: Store) -> None:
    """Selfie evidence over the whole gallery.

    A front-camera lens model is a selfie. For photos whose lens model says nothing
    (older phones), the seed paper's rule: the shortest focal length seen for a
    camera model that shows several focal lengths in the gallery. Photos that name
    a back lens are not subject to the rule: the iPhone's ultra-wide back lens is
    shorter than its front one.
    """
    conn = store.conn
    conn.execute("BEGIN")
    conn.execute("UPDATE media SET selfie = front_camera, selfie_reason = "
                 "CASE WHEN front_camera THEN 'front-camera lens model' END")
    conn.execute("""
        WITH unnamed AS (
            SELECT id, make, model, focal_length FROM media
            WHERE kind = 'photo' AND status != 'failed' AND model IS NOT NULL
              AND focal_length > 0 AND (lens_model IS NULL OR lens_model = '')),
        per_model AS (
            SELECT make, model, min(focal_length) AS shortest FROM unnamed
            GROUP BY make, model HAVING count(DISTINCT focal_length) > 1)
        UPDATE media SET selfie = 1, selfie_reason = 'shortest focal length of its camera model'
        WHERE id IN (SELECT u.id FROM unnamed u JOIN per_model p
                     ON u.make IS p.make AND u.model = p.model AND u.focal_length = p.shortest)
        """)
    conn.execute("COMMIT")
