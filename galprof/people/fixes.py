"""The user's fixes to the people (name, merge, split, recluster), and the face purge.

Each holds the store's writer lock (waiting up to WRITER_WAIT_S for a running scan to
finish) and brings the people and privacy passes up to date before it returns, so the
profile, `people list` and the privacy decisions reflect the fix at once.
"""

from __future__ import annotations

import os

from galprof.errors import GalprofError

# How long a fix waits for another galprof process (a scan) to release the database.
WRITER_WAIT_S = 30.0


def _person(store, person_id: int) -> dict:
    person = store.people.person(person_id)
    if person is None:
        raise GalprofError(f"no person with id {person_id} (see `galprof people list`)")
    return person


def _refresh(store) -> None:
    from galprof.pipeline.passes import run_passes
    from galprof.pipeline.settings import Settings
    run_passes(store, Settings(), names=("people", "privacy"))


def rename(store, person_id: int, name: str) -> None:
    with store.writer(WRITER_WAIT_S, "galprof people name"):
        _person(store, person_id)
        with store.transaction():
            store.people.rename(person_id, name)
        _refresh(store)


def merge(store, keep: int, other: int) -> None:
    """The faces of OTHER become KEEP's, fixed by hand."""
    from galprof.people.gallery import update_centroids

    if keep == other:
        raise GalprofError("merge needs two different people")
    with store.writer(WRITER_WAIT_S, "galprof people merge"):
        _person(store, keep)
        _person(store, other)
        with store.transaction():
            store.people.merge(keep, other)
            update_centroids(store)
        _refresh(store)


def split(store, person_id: int, media_paths: list) -> tuple[int, int]:
    """Move this person's faces in the given media to a new person; (faces moved, new id)."""
    from galprof.people.gallery import update_centroids

    with store.writer(WRITER_WAIT_S, "galprof people split"):
        _person(store, person_id)
        with store.transaction():
            new_id = store.people.new_person(manual=True)
            moved = sum(store.people.move_faces(person_id, os.path.abspath(p), new_id)
                        for p in media_paths)
            if not moved:
                raise GalprofError(f"person {person_id} has no face in the given media")
            update_centroids(store)
        _refresh(store)
    return moved, new_id


def recluster(store) -> dict:
    """Cluster all faces again from scratch, keeping names and manual fixes."""
    from galprof.people.gallery import update_people

    with store.writer(WRITER_WAIT_S, "galprof people recluster"):
        stats = update_people(store, full=True)
        with store.transaction():
            store.passes.invalidate("people", "privacy")
        _refresh(store)
    return stats


def purge(store) -> int:
    """Delete every face-derived datum (see galprof.purge); returns the face rows deleted."""
    from galprof.purge import purge as purge_data
    return purge_data(store, faces=True, text=False)["faces"]
