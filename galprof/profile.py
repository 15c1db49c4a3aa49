"""The user-interest profile: a JSON document built from the store alone.

`build_profile` never runs a model: it reads media rows and cached stage results,
maps labels to interests through the taxonomy (so a taxonomy change needs no
re-scan) and adds what the gallery passes recorded (people, places, descriptor).
`profile.schema.json` beside this file describes every key; adding a key is fine,
changing one bumps SCHEMA_VERSION.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("profile.schema.json")


def _gallery(store, media: list) -> dict:
    counts = store.media.counts()
    roots = sorted({m["root"] for m in media} | set(store.media.roots()))
    return {"roots": roots, "photos": counts["photos"], "videos": counts["videos"],
            "frames": counts["frames"], "failed": counts["failed"],
            "private": store.privacy.counts()["private"]}


def _month(taken_at: str | None) -> str | None:
    return taken_at[:7] if taken_at and len(taken_at) >= 7 else None


def _timeline(media: list) -> list[dict]:
    months = Counter(_month(m["taken_at"]) or "unknown" for m in media)
    return [{"month": k, "media": v} for k, v in sorted(months.items())]


def _cameras(media: list) -> list[dict]:
    cams = Counter((m["make"], m["model"]) for m in media if m["make"] or m["model"])
    return [{"make": make, "model": model, "media": n}
            for (make, model), n in sorted(cams.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def owner_face_keys(store, people: dict) -> dict[int, set]:
    """media id -> the keys of the owner's faces in it (their childhood photos are theirs).
    Only an owner known from selfies counts: a guessed owner (the person seen on the most
    days) is, in a parent's gallery, often the child."""
    owner = people.get("owner") or {}
    if owner.get("person_id") is None or owner.get("guess"):
        return {}
    owner = owner["person_id"]
    return {media_id: {key for key, person in keys.items() if person == owner}
            for media_id, keys in store.people.persons_by_media().items()}


DOCUMENT_KINDS = ("id_document", "bank_card", "receipt", "document")
SCREENSHOT_KINDS = ("chat_screenshot", "screenshot")


def _categories(store, media: list, people: dict):
    """(categories, interests, analysed items, events, documents): the interests of the
    analysed items, and the documents and screenshots among the photos (kind and reason,
    never what was read)."""
    from galprof import documents as documents_mod, interests, taxonomy as taxonomy_mod

    tax = taxonomy_mod.load()
    owner_faces = owner_face_keys(store, people)
    items, documents = [], []
    for m in media:
        if not m["content_hash"]:
            continue
        results = {stage: r.payload for stage, r in store.results.all(m["content_hash"], arrays=True).items()
                   if r.payload is not None and stage in ("objects", "scenes", "faces", "text")}
        if m["kind"] == "photo":
            verdict = documents_mod.classify(results.get("text"), m, m["format"], m["path"])
            if verdict.kind in DOCUMENT_KINDS + SCREENSHOT_KINDS:
                documents.append({"path": m["path"], "kind": verdict.kind,
                                  "reason": verdict.reason})
        if "objects" not in results and "scenes" not in results:
            continue
        _, found = interests.contributions(results, tax, m, owner_faces.get(m["id"]))
        scenes = results.get("scenes")
        items.append(interests.Item(m["path"], m["taken_at"],
                                    scenes.features if scenes is not None else None, found))
    categories, ranked, n_events = interests.count(items, tax.groups, tax.subject.burst_seconds,
                                                   tax.subject.burst_cosine)
    return categories, ranked, len(items), n_events, documents


def _locations(store) -> list[dict]:
    from galprof import places

    located = store.passes.places()
    items = [{"path": r["path"], "taken_at": r["taken_at"], "kind": r["kind"]} for r in located]
    found = [places.Place(r["city"], r["admin1"], r["country"], r["country_code"], r["lat"],
                          r["lon"], r["distance_km"]) for r in located]
    return places.summarise(items, places=found) if items else []


def _locations_group(locations: list[dict], analysed: int) -> dict | None:
    """The paper's "Locations" high-level group: its subcategories are the cities."""
    if not locations:
        return None
    subs = [{"category": ", ".join(x for x in (loc.get("city"), loc.get("country")) if x),
             "media": loc["media"], "paths": loc["paths"]} for loc in locations]
    media = len({p for loc in locations for p in loc["paths"]})
    return {"group": "Locations", "media": media,
            "share": round(min(1.0, media / analysed), 4) if analysed else 0.0,
            "subcategories": subs}


EMPTY_PEOPLE = {"people": [], "owner": None, "relations": [],
                "demography": {"bins": [], "male": [], "female": []}}


def build_profile(store) -> dict:
    """The profile document, from the store: the media and their cached stage results,
    and what the gallery passes recorded (people, places, descriptor)."""
    from galprof.pipeline.passes import current_output

    media = store.media.present()
    people = (store.passes.output("people") or {}).get("facts") or EMPTY_PEOPLE
    categories, interests, analysed, events, documents = _categories(store, media, people)
    locations = _locations(store)
    group = _locations_group(locations, len(media))
    if group:
        categories.append(group)
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gallery": {**_gallery(store, media), "analysed": analysed, "events": events,
                    "documents": sum(d["kind"] in DOCUMENT_KINDS for d in documents),
                    "screenshots": sum(d["kind"] in SCREENSHOT_KINDS for d in documents)},
        "timeline": _timeline(media),
        "cameras": _cameras(media),
        "categories": categories,
        "interests": interests,
        "locations": locations,
        "documents": documents,
        **{k: people.get(k, EMPTY_PEOPLE[k]) for k in EMPTY_PEOPLE},
        "descriptor": current_output(store, "descriptor") or {},
    }


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
