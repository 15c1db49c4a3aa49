"""The one run of galprof: `run(store, roots, settings) -> Summary`.

    walk ─► changes (walk vs store) ─► ingest (read once, hash, decode, per-item stages)
         ─► gallery passes (selfies, people, privacy, places, descriptor; each re-run
            exactly when its inputs changed) ─► offload (public items, when asked)

The CLI (`galprof scan`), `galprof benchmark` and the tests all call `run`. It holds the
store's writer lock from the first step to the last, so nothing else writes in between.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from galprof.errors import SetupError
from galprof.pipeline.passes import run_passes
from galprof.pipeline.settings import RemoteSettings, Settings, Summary  # noqa: F401
from galprof.stages import order_stages

# (done, total) of the files to read, and the phase: "scanning", then "late pass: text"
Progress = Callable[[int, int, str], None]
Problem = Callable[[str, str, str], None]      # (path, "error" | "warning", reason)


def _check_roots(roots: list[Path]) -> list[Path]:
    out = []
    for root in roots:
        if not os.path.lexists(root):
            raise SetupError(f"no such file or folder: {os.fsencode(root).decode('utf-8', 'replace')}")
        out.append(Path(os.path.abspath(root)))
    return out


def run(store, roots: list[Path], settings: Settings | None = None,
        on_progress: Progress | None = None, on_problem: Problem | None = None) -> Summary:
    """Scan `roots` into `store`, bring the gallery passes up to date, and offload public
    items when `settings.remote` says where. Problems with single files are reported
    through `on_problem` and counted; only setup errors raise (GalprofError)."""
    from galprof.gallery.walk import walk
    from galprof.pipeline.changes import diff
    from galprof.pipeline.ingest import ingest

    settings = settings or Settings()
    settings.stages = order_stages(list(settings.stages))
    for stage in settings.stages:
        check = getattr(stage, "check", None)
        if check is not None:
            check()                       # a missing model fails now, before any work
    roots = _check_roots(roots)
    started = time.monotonic()
    summary = Summary(roots=[os.fspath(r) for r in roots])
    failed_paths: set[str] = set()
    with store.writer():
        previous = store.media.last_scan()
        known_walk = {(p["path"], p["reason"]) for p in
                      (previous or {}).get("summary", {}).get("walk_problems", [])}

        def problem(path: str, stage: str, level: str, reason: str) -> None:
            with store.transaction():
                store.media.log_error(path, stage, f"{level}: {reason}")
            if level == "error":
                if path not in failed_paths:
                    failed_paths.add(path)
                    summary.failed += 1
                    summary.failures.append({"path": path, "reason": reason})
            else:
                summary.warnings += 1
            if on_problem:
                on_problem(path, level, reason)

        scan_id = store.media.start_scan(summary.roots)
        try:
            found = walk(roots)
            for path, reason in found.problems:
                path = os.fspath(path)
                summary.walk_problems.append({"path": path, "reason": reason})
                if (path, reason) not in known_walk:       # reported once, not every night
                    problem(path, "walk", "error", reason)
            changes = diff(store, found.items, settings, summary, problem)
            if changes.removed:
                with store.transaction():
                    store.media.delete_paths(changes.removed)
                summary.removed = len(changes.removed)
            ingest(store, changes.work, settings, summary, problem, on_progress)
            summary.passes = run_passes(store, settings)
            if settings.remote is not None:
                from galprof.remote.client import offload
                target = settings.remote
                remote = offload(store, target.url, target.token, roots=roots,
                                 frame_step=settings.frame_step, max_frames=settings.max_frames,
                                 thresholds=settings.privacy,
                                 verify=target.ca_file if target.ca_file else True,
                                 on_warning=lambda text: on_problem and on_problem(
                                     target.url, "warning", text))
                summary.remote = remote.to_dict()
        finally:
            present = store.media.under(summary.roots)
            kinds = [r["kind"] for r in present.values() if r["status"] != "failed"]
            summary.photos, summary.videos = kinds.count("photo"), kinds.count("video")
            summary.known_failures = len(store.media.known_failures(summary.walk_problems))
            summary.seconds = round(time.monotonic() - started, 3)
            summary.decode_seconds = round(summary.decode_seconds, 3)
            store.media.finish_scan(scan_id, summary.to_dict())
    return summary
