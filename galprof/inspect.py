"""What `galprof show` tells about one media item, as plain data."""

from __future__ import annotations


def _payload_json(result) -> dict | None:
    if result.payload is None:
        return None
    to_json = getattr(result.payload, "to_json", None)
    return to_json() if to_json else result.payload


def _document_section(row, text) -> dict:
    """What kind of picture it is (a document, a screenshot, a photo) and what the text
    stage saw; what was read is shown redacted, as stored."""
    from galprof import documents

    payload = text.payload if text is not None else None
    verdict = documents.classify(payload, row, row["format"], row["path"])
    lines = [f"kind: {verdict.kind.replace('_', ' ')}"
             + (f" ({verdict.reason})" if verdict.reason else "")]
    if verdict.evidence:
        lines.append("evidence: " + ", ".join(verdict.evidence))
    if payload is None:
        lines.append("text stage: not run" + (f" ({text.error})" if text is not None else ""))
    elif not payload.ran:
        lines.append(f"text detector: not run ({payload.skipped})")
    else:
        lay = payload.layout
        lines.append(f"text detector: {lay.lines} line(s) covering {lay.coverage:.1%}"
                     + (f", {lay.columns} column(s)" if lay.columns else "")
                     + (f"; let through by {payload.cue}" if payload.cue else ""))
        if payload.read:
            lines.append(f"read {payload.read} line(s): " + (", ".join(
                f"{h.rule} {h.text}".strip() for h in payload.hits) or "nothing that decides"))
    return {"title": "picture kind", "lines": lines}


def describe_media(store, path: str) -> dict | None:
    row = store.media.by_path(path)
    if row is None:
        return None
    results = store.results.all(row["content_hash"])
    info = {"media": row, "frames": store.media.frames(row["id"]),
            "results": {stage: {"version": r.version, "tier": r.tier, "error": r.error,
                                "payload": _payload_json(r)} for stage, r in results.items()},
            "errors": store.media.errors_for(path), "sections": []}
    failed = [f"{stage}: {r.error}" for stage, r in results.items() if r.error]
    if failed:
        info["sections"].append({"title": "stage failures", "lines": failed})
    objects = results.get("objects")
    if objects and objects.payload is not None:
        summary = objects.payload.summary()
        if summary:
            info["sections"].append({"title": "objects", "lines": [
                f"{o.label:<16} {o.score:.2f}  box {[round(v) for v in o.box or []]}"
                for o in summary]})
    scenes = results.get("scenes")
    if scenes and scenes.payload is not None and scenes.payload.scenes:
        info["sections"].append({"title": "scenes", "lines": [
            f"{s.label:<24} {s.score:.2f}" for s in scenes.payload.scenes[:5]]})
    faces = results.get("faces")
    if faces and faces.payload is not None:
        persons = store.people.persons_of(row["id"])
        lines = []
        for frame, _, face, key in faces.payload.faces():
            who = persons.get(key)
            attrs = (f"age {face.age:.0f}, male {face.male_prob:.2f}"
                     if face.age is not None else "too small for identity")
            lines.append(f"frame {frame.index}: box {[round(v) for v in face.box]} "
                         f"score {face.score:.2f}, {attrs}"
                         + (f", person {who}" if who is not None else ""))
        info["sections"].append({"title": f"faces ({faces.payload.count})", "lines": lines})
    if row["kind"] == "photo":
        info["sections"].append(_document_section(row, results.get("text")))
    from galprof import privacy
    info["privacy"] = privacy.describe(store, row)
    info["sections"].append({"title": "privacy", "lines": [
        ("private" if info["privacy"]["private"] else "public") + ": "
        + "; ".join(info["privacy"]["reasons"])]
        + [f"uploaded {u['at']} to {u['server']} ({u['bytes']} bytes, {u['status']})"
           for u in info["privacy"]["uploads"]]})

    from galprof import interests, taxonomy
    from galprof.profile import owner_face_keys

    people = (store.passes.output("people") or {}).get("facts") or {}
    payloads = {stage: r.payload for stage, r in results.items() if r.payload is not None}
    item, cats = interests.contributions(payloads, taxonomy.load(), row,
                                         owner_face_keys(store, people).get(row["id"]))
    if item is not None:
        hits = {h.name: h for h in item.categories}
        info["categories"] = [
            {"category": c, "group": g, "confidence": round(v, 4),
             "evidence": list(hits[c].evidence) if c in hits else [],
             "notes": list(hits[c].notes) if c in hits else []}
            for c, g, v in sorted(cats, key=lambda x: -x[2])]
        info["not_counted"] = [{"category": c, "evidence": e, "why": why}
                               for c, e, why in item.dropped]
        lines = []
        for c in info["categories"]:
            lines.append(f"{c['group']} / {c['category']}  {c['confidence']:.2f}"
                         + (f"  ({', '.join(c['evidence'])})" if c["evidence"] else ""))
            lines += [f"    down-weighted: {note}" for note in c["notes"]]
        lines += [f"not counted: {d['category']} ({d['evidence']}): {d['why']}"
                  for d in info["not_counted"]]
        info["sections"].append({"title": "contribution to the interests", "lines": lines})
    return info

