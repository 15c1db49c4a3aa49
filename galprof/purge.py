"""Deleting what galprof learnt about people and their papers, from the database file itself.

Face data (boxes, ages, genders, identity features, the faces stage's results, people that
only faces made) and recognised text (what the text stage read: redacted MRZ codes, card
digits, prices, keywords) are rewritten or deleted with SQLite's secure delete on, then
the write-ahead log is folded in and the file vacuumed, so the bytes are gone from the
files, not just unlinked. What decides privacy stays: a purged document keeps its kind
and reason (so it stays private), and every item is private by the face rules until the
next scan analyses its faces again.
"""

from __future__ import annotations

import time

from galprof.errors import SetupError

# How long a purge waits for another galprof process (a scan) to release the database...
WRITER_WAIT_S = 30.0
# ...and for readers (a report being written) to let go of the old pages.
READERS_WAIT_S = 30.0


def purge(store, faces: bool = True, text: bool = True) -> dict[str, int]:
    """Purge face data and/or recognised text; returns {"faces": face rows deleted,
    "texts": items whose recognised text was deleted}."""
    from galprof.pipeline.passes import run_passes
    from galprof.pipeline.settings import Settings

    with store.writer(WRITER_WAIT_S, "galprof purge"):
        store.secure_delete()
        counts = {"faces": 0, "texts": 0}
        with store.transaction():
            if faces:
                counts["faces"] = store.people.purge_faces()
                store.results.delete_stage("faces")
                store.passes.invalidate("people", "privacy")
            if text:
                counts["texts"] = _forget_text(store)
        run_passes(store, Settings(), names=("people", "privacy"))
        _scrub(store)
    return counts


def _forget_text(store) -> int:
    """Rewrite every text result without what was read; returns how many held some."""
    from galprof.vision.text import TextPayload

    forgotten = 0

    def forget(payload):
        nonlocal forgotten
        if not isinstance(payload, TextPayload):
            return payload
        forgotten += any(hit.text for hit in payload.hits)
        return payload.without_text()

    store.results.rewrite("text", forget)
    return forgotten


def _scrub(store) -> None:
    """Rewrite the file so that no freed page keeps old bytes, and truncate the WAL. A
    reader holding an old snapshot (another process) keeps those pages alive: wait for it."""
    deadline = time.monotonic() + READERS_WAIT_S
    while not store.checkpoint():
        if time.monotonic() > deadline:
            raise SetupError(f"{store.path}: another process is still reading the database, "
                             "so the purged data stays in its old pages until it stops; the "
                             "purge itself is done: run the purge again after it")
        time.sleep(0.5)
    store.vacuum()
    store.checkpoint()
