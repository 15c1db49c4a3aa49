"""The gallery passes: functions of the store alone (no pixels, no models), in order.

    selfies → people (faces → clusters → owner, relations, demography) → privacy → places
    → descriptor

Each pass declares its inputs as a fingerprint: the store rows it reads and the settings
it applies, hashed. A pass runs when its fingerprint differs from the one recorded with
its last results; it reads, computes, writes and records the new fingerprint in one
transaction. So a pass runs exactly when its inputs changed, a run killed anywhere (even
between ingest and the passes) is completed by the next one, and an unchanged re-scan
only pays for computing the fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable

# Bump a pass's revision when its code would give different results from the same inputs.
REVISIONS = {"selfies": 1, "people": 1, "privacy": 1, "places": 1, "descriptor": 1}


@dataclass(frozen=True)
class GalleryPass:
    name: str
    inputs: Callable          # (store, settings) -> JSON-able rows and settings
    compute: Callable         # (store, settings) -> output dict (written in the transaction)
    writes: bool = True       # False: its output is all it makes (it can be computed on read)


def _selfie_inputs(store, settings):
    return store.media.selfie_inputs()


def _selfies(store, settings) -> dict:
    return {"selfies": store.media.mark_selfies()}


def _people_inputs(store, settings):
    from galprof.people import gallery
    rows = store.people.fingerprint_rows()
    return {"faces": store.results.fingerprint_rows(("faces",)),
            **{k: rows[k] for k in ("media", "manual_faces", "manual_people", "names")},
            "params": gallery.params_digest()}


def _people(store, settings) -> dict:
    from galprof.people import gallery
    stats = gallery.update_people(store)
    return {**stats, "facts": gallery.facts_document(store)}


def _privacy_inputs(store, settings):
    from galprof import documents, privacy
    people = store.people.fingerprint_rows()
    return {"media": store.privacy.decision_inputs(),
            "results": store.results.fingerprint_rows(privacy.INPUT_STAGES),
            "assigned": people["assigned"], "names": people["names"],
            "marks": store.privacy.fingerprint_rows(),
            "thresholds": privacy.thresholds_of(settings).digest(),
            "documents": documents.rules_digest()}     # the screenshot and kind rules


def _privacy(store, settings) -> dict:
    from galprof import privacy
    return privacy.apply_privacy(store, privacy.thresholds_of(settings))


def _places_inputs(store, settings):
    from galprof import places
    return {"gps": [(m["id"], m["gps_lat"], m["gps_lon"]) for m in store.media.with_gps()],
            "gazetteer": places.data_version()}


def _places(store, settings) -> dict:
    from galprof import places
    media = store.media.with_gps()
    found = places.locate([(m["gps_lat"], m["gps_lon"]) for m in media])
    rows = [(m["id"], p.city, p.admin1, p.country, p.country_code, p.lat, p.lon, p.distance_km)
            for m, p in zip(media, found) if p is not None]
    store.passes.replace_places(rows)
    return {"located": len(rows), "with_gps": len(media)}


def _descriptor_inputs(store, settings):
    from galprof.aggregate import infer
    return {"features": store.results.fingerprint_rows(("scenes",)),
            "aggregator": infer.aggregator_identity()}


def _descriptor(store, settings) -> dict:
    from galprof.aggregate import infer
    return infer.gallery_descriptor(store.results.feature_blobs("scenes", "features"))


PASSES = (
    GalleryPass("selfies", _selfie_inputs, _selfies),
    GalleryPass("people", _people_inputs, _people),
    GalleryPass("privacy", _privacy_inputs, _privacy),
    GalleryPass("places", _places_inputs, _places),
    GalleryPass("descriptor", _descriptor_inputs, _descriptor, writes=False),
)
NAMES = tuple(p.name for p in PASSES)


def _plain(value):
    """Rows and containers as JSON-able values (a sqlite3.Row is a tuple here)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, sqlite3.Row)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def fingerprint(p: GalleryPass, store, settings) -> str:
    text = json.dumps([REVISIONS[p.name], _plain(p.inputs(store, settings))],
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_passes(store, settings, names: tuple[str, ...] = NAMES, force: bool = False) -> dict:
    """Bring the named passes up to date (all by default, always in dependency order).
    Returns, per pass, {"ran": bool, "seconds": s, **what it found}."""
    report = {}
    for p in PASSES:
        if p.name not in names:
            continue
        started = time.monotonic()
        with store.transaction():
            fp = fingerprint(p, store, settings)
            old, output = store.passes.state(p.name)
            ran = force or fp != old
            if ran:
                output = p.compute(store, settings)
                # after the pass: the people pass's own sync may touch what it reads
                store.passes.record(p.name, fingerprint(p, store, settings), output)
        summary = {k: v for k, v in (output or {}).items()
                   if isinstance(v, (int, float, str, bool)) and k != "note"}
        report[p.name] = {"ran": ran, "seconds": round(time.monotonic() - started, 3), **summary}
    return report


def current_output(store, name: str, settings=None) -> dict | None:
    """A pass's recorded output, or, for a pass that writes nothing but its output (the
    descriptor, after a new aggregator was installed), its output computed now when the
    record is stale. Never writes: read commands on a read-only database can call it."""
    from galprof.pipeline.settings import Settings

    p = next(p for p in PASSES if p.name == name)
    settings = settings or Settings()
    fp, output = store.passes.state(name)
    if p.writes or fp == fingerprint(p, store, settings):
        return output
    return p.compute(store, settings)


def stale(store, settings) -> list[str]:
    """The passes whose recorded results no longer match their inputs."""
    return [p.name for p in PASSES
            if fingerprint(p, store, settings) != store.passes.state(p.name)[0]]
