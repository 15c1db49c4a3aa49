"""The diff of a walk against the store: what must be read, what moved, what is gone.

An unchanged file (same size and mtime, every stage cached at its current version) is
not opened at all, which keeps a nightly re-scan nearly free. A new file is hashed here
only when it might be a moved one (a vanished row of the same size): the ingest hashes
the bytes it decodes anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from galprof.gallery.walk import Found
from galprof.pipeline.settings import Settings, Summary
from galprof.stages import Stage
from galprof.gallery.hashing import hash_file


@dataclass
class Work:
    """One media item to read."""

    found: Found
    media_id: int | None          # the row to update (None: a new item)
    content_hash: str | None      # when known already (a moved file; a cached re-read)
    todo: list[Stage]             # stages whose results are missing or stale (by known hash)


@dataclass
class Changes:
    work: list[Work] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class Cache:
    """Which stage versions the store holds per content hash. Remote-tier results
    (`galprof scan --remote`) stand in for the device stages' own: a re-scan keeps them."""

    def __init__(self, store, settings: Settings):
        self.settings = settings
        self.versions = store.results.versions()
        self.remote = set(store.results.remote())

    def todo(self, digest: str | None, kind: str | None) -> list[Stage]:
        have = self.versions.get(digest, {})
        return [s for s in self.settings.stages
                if have.get(s.name) != self.settings.version_of(s, kind)
                and (digest, s.name) not in self.remote]

    def alias(self, old: str, new: str) -> None:
        self.versions[new] = dict(self.versions.get(old, {}))
        self.remote |= {(new, stage) for d, stage in self.remote if d == old}

    def add(self, digest: str, stage: str, version: str) -> None:
        self.versions.setdefault(digest, {})[stage] = version


def diff(store, found: list[Found], settings: Settings, summary: Summary,
         problem) -> Changes:
    """Compare the walk with the store; moves are applied here (a moved file keeps its
    row and results), everything else is left to the ingest."""
    roots = [os.fspath(r) for r in summary.roots]
    known = store.media.under(roots)
    cache = Cache(store, settings)

    seen = {os.fspath(f.path) for f in found}
    missing = {p: row for p, row in known.items() if p not in seen}
    by_size: dict[int, list[dict]] = {}
    for row in missing.values():
        by_size.setdefault(row["size"], []).append(row)

    changes = Changes()
    for f in found:
        path = os.fspath(f.path)
        row = known.get(path)
        if row is not None and row["size"] == f.size and row["mtime_ns"] == f.mtime_ns:
            if row["hash_scheme"] == 1 and row["content_hash"]:
                # hashed by 0.1.0 (chunks of big files): hash every byte once, the results
                # following, so that uploads and decisions cover the whole file
                try:
                    digest = hash_file(f.path)
                except OSError as e:
                    problem(path, "read", "error", e.strerror or str(e))
                    continue
                store.media.rehash(row["id"], row["content_hash"], digest)
                cache.alias(row["content_hash"], digest)
                row = {**row, "content_hash": digest}
            todo = cache.todo(row["content_hash"], row["kind"])
            if row["status"] == "failed" or not todo:
                summary.unchanged += 1
                continue
            changes.work.append(Work(f, row["id"], row["content_hash"], todo))
            continue
        if row is None and f.size in by_size:
            try:
                digest = hash_file(f.path)
            except OSError as e:
                problem(path, "read", "error", e.strerror or str(e))
                continue
            moved_from = next((r for r in by_size[f.size] if r["content_hash"] == digest
                               and r["path"] in missing), None)
            if moved_from is not None:
                # Same bytes at a new path: keep the row (and its results), update the path.
                del missing[moved_from["path"]]
                with store.transaction():
                    store.media.move(moved_from["id"], path, os.fspath(f.root), f.mtime_ns)
                summary.moved += 1
                todo = cache.todo(digest, moved_from["kind"])
                if todo and moved_from["status"] != "failed":
                    changes.work.append(Work(f, moved_from["id"], digest, todo))
                continue
        if row is None:
            summary.new += 1
        else:
            summary.changed += 1
        changes.work.append(Work(f, row["id"] if row else None, None, list(settings.stages)))
    changes.removed = sorted(missing)
    return changes
