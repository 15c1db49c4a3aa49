"""Gallery-level passes, run after a scan from the store alone (no pixels, no models):
faces → people (clusters, owner, relations), then the privacy decision per media item."""

from __future__ import annotations

from galprof.store.db import Store


def run_gallery_passes(store: Store) -> dict:
    """Bring people and privacy up to date; returns what each pass reports."""
    from galprof.people.gallery import update_people
    from galprof.privacy import apply_privacy

    return {"people": update_people(store), "privacy": apply_privacy(store)}
