"""The user-interest profile: a JSON document built from the store alone.

`build_profile` never runs a model: it reads media rows and cached stage results,
maps labels to interests through the taxonomy (so a taxonomy change needs no
re-scan) and adds what the gallery passes recorded (people, places, descriptor).
`profile.schema.json` beside this file describes every key; adding a key is fine,
changing one bumps SCHEMA_VERSION.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
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


def item_categories(results: dict, taxonomy) -> list[tuple[str, str, float]]:
    """(fine category, group, confidence) of one media item, from its stage results
    (stage -> payload). Objects count above the taxonomy's per-class thresholds, applied
    here, so a taxonomy change needs no re-scan.

    A group reached only through the indoor/outdoor decision (a couch means Indoors)
    gets the scene group, or "indoor"/"outdoor", as its subcategory."""
    objects_payload, scenes_payload = results.get("objects"), results.get("scenes")
    objects = [(o.label, o.score) for o in
               (objects_payload.summary(taxonomy.coco_threshold) if objects_payload else [])]
    scenes = [(s.label, s.score, s.index) for s in (scenes_payload.scenes if scenes_payload else [])]
    if not objects and not scenes:
        return []
    item = taxonomy.categorize(objects, scenes)
    out = [(hit.name, hit.group, hit.confidence) for hit in item.categories]
    covered = {group for _, group, _ in out}
    for group, confidence in item.groups.items():
        if group not in covered:
            name = item.scene if item.scene_group == group and item.scene else (item.where or group.lower())
            out.append((name, group, confidence))
    return out


def _categories(store, media: list) -> tuple[list[dict], list[dict]]:
    from galprof import taxonomy as taxonomy_mod

    tax = taxonomy_mod.load()
    per_category: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    analysed = 0
    for m in media:
        if not m["content_hash"]:
            continue
        results = {stage: r.payload for stage, r in store.results.all(m["content_hash"]).items()
                   if r.payload is not None and stage in ("objects", "scenes")}
        if not results:
            continue
        analysed += 1
        for category, group, confidence in item_categories(results, tax):
            per_category[(category, group)].append((m["path"], confidence))
    groups: dict[str, dict] = {}
    for (category, group), hits in per_category.items():
        g = groups.setdefault(group, {"paths": set(), "subcategories": []})
        g["paths"].update(p for p, _ in hits)
        g["subcategories"].append({"category": category, "media": len(hits),
                                   "paths": sorted(p for p, _ in hits)})
    categories = [{
        "group": group, "media": len(groups[group]["paths"]),
        "share": round(len(groups[group]["paths"]) / analysed, 4),
        "subcategories": sorted(groups[group]["subcategories"], key=lambda s: (-s["media"], s["category"])),
    } for group in tax.groups if group in groups]
    categories.sort(key=lambda g: -g["media"])
    # The paper's counters, normalised: the summed confidence of a category over the
    # analysed media, divided by their number (a video counts once).
    interests = [{"category": c, "group": g,
                  "score": round(sum(conf for _, conf in hits) / analysed, 4),
                  "media": len(hits)} for (c, g), hits in per_category.items()]
    interests.sort(key=lambda i: (-i["score"], i["category"]))
    return categories, interests


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
    categories, interests = _categories(store, media)
    locations = _locations(store)
    group = _locations_group(locations, len(media))
    if group:
        categories.append(group)
    people = (store.passes.output("people") or {}).get("facts") or EMPTY_PEOPLE
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gallery": _gallery(store, media),
        "timeline": _timeline(media),
        "cameras": _cameras(media),
        "categories": categories,
        "interests": interests,
        "locations": locations,
        **{k: people.get(k, EMPTY_PEOPLE[k]) for k in EMPTY_PEOPLE},
        "descriptor": current_output(store, "descriptor") or {},
    }


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
