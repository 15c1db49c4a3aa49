"""Which photos are private, and so never leave the device.

A media item is private when (any of):
  - the central part of a frame holds a face wider or taller than a fraction of the
    image (a portrait: the photo is *about* that person);
  - a frame holds a face of a close person (one the people pass found in many items,
    or one the user named);
  - a face big enough to be recognised belongs to nobody known yet, because the people
    pass has not clustered this item's faces (conservative: after the first scan every
    such photo stays private until clustering says otherwise);
  - its faces have not been analysed (no "faces" result: nothing is known, so private);
  - it is a document, a card, an ID or passport page, a receipt, or a screenshot
    (galprof/documents.py, from the text stage's payload and the file itself);
  - the user marked it (`galprof private mark`).
A video is public only if every sampled frame is public. Everything else is public. The
user's marks win both ways: `galprof private allow` makes an item public whatever the
rules say.

Per-item decisions come from the store (faces results, the faces/people tables, the
marks), so `apply_privacy` is a cheap gallery pass (galprof/pipeline/passes.py) that runs
whenever one of those inputs changed. All SQL is in `galprof.store.privacy`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from galprof import tunables
from galprof.errors import GalprofError
from galprof.gallery.hashing import hash_file
from galprof.payloads import FaceKey, FacesPayload

# Stage results the decisions read (part of the privacy pass's inputs).
INPUT_STAGES = ("faces", "text")


@tunables.defaults("privacy")
class PrivacyThresholds:
    """The privacy rules' thresholds (values and reasons: [privacy] in tunables.toml).
    Range-checked."""

    central_region: float
    face_fraction: float
    close_person_items: int
    min_face_score: float

    def __post_init__(self):
        checks = {
            "central_region": (0.05, 1.0), "face_fraction": (0.01, 1.0),
            "close_person_items": (1, 100_000), "min_face_score": (0.0, 1.0),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"privacy threshold {name} = {value} is out of range "
                                 f"[{low}, {high}]")

    def digest(self) -> str:
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:16]

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, float] | None) -> "PrivacyThresholds":
        """Defaults with `overrides` applied; unknown names and bad values raise ValueError."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown privacy threshold(s): {', '.join(sorted(unknown))}")
        return cls(**overrides)


DEFAULT_THRESHOLDS = PrivacyThresholds()


def thresholds_of(settings) -> PrivacyThresholds:
    return getattr(settings, "privacy", None) or DEFAULT_THRESHOLDS


@dataclass
class Decision:
    private: bool
    reasons: list[str]


@dataclass
class People:
    """What the people pass knows about one media item's faces."""

    clustered: bool = False                                     # faces materialised for it
    persons: dict[FaceKey, int | None] = field(default_factory=dict)   # face row -> person
    items: dict[int, int] = field(default_factory=dict)         # person -> media items seen in
    names: dict[int, str] = field(default_factory=dict)         # person -> name (named ones)


def decide(media: Mapping, faces: FacesPayload | None, marked, people: People | None,
           thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS, text=None) -> Decision:
    """The privacy decision for one media item (see the module docstring for the rules).

    media: a media row (kind, width, height: displayed original pixels; path, format,
    make, model, focal_length for telling screenshots); faces: the "faces" stage payload,
    boxes in original pixels (None: not run); marked: the user's mark, "private" (or
    True), "public", or None; text: the text stage's payload (None: not run or not
    installed: screenshots are still told from the file).
    """
    if marked == "public":
        return Decision(False, ["public: marked public by the user"])
    t = thresholds
    found: dict[str, list] = {}     # reason -> frame indexes, to keep video reasons short

    def add(reason: str, frame: int | None = None) -> None:
        found.setdefault(reason, [])
        if frame is not None and frame not in found[reason]:
            found[reason].append(frame)

    if marked:
        add("marked private by the user")
    if media.get("kind") == "photo":
        from galprof import documents
        verdict = documents.classify(text, dict(media), media.get("format"),
                                     media.get("path"))
        private, reason = documents.text_privacy(verdict.kind, verdict.reason)
        if private:
            add(reason)
    if faces is None:
        add("faces not analysed yet (private until the faces stage has run)")
    else:
        width, height = media["width"], media["height"]
        people = people or People()
        lo, hi = (1 - t.central_region) / 2, (1 + t.central_region) / 2
        for frame, _, face, key in faces.faces():
            index = frame.index
            if (face.score or 1.0) < t.min_face_score:
                continue
            x1, y1, x2, y2 = face.box
            if not width or not height:
                add("a face in an image of unknown size", index)
                continue
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            fw, fh = (x2 - x1) / width, (y2 - y1) / height
            if lo <= cx <= hi and lo <= cy <= hi and max(fw, fh) > t.face_fraction:
                add(f"a face over {t.face_fraction:.0%} of the image in its central "
                    f"{t.central_region:.0%}", index)
            if not face.identity:
                continue
            if not people.clustered or key not in people.persons:
                add("a recognisable face of a person not clustered yet (private until "
                    "the people pass has grouped the faces)", index)
                continue
            person = people.persons[key]
            if person is None:
                continue
            if person in people.names:
                add(f"a face of {people.names[person]} (a named person)", index)
            elif people.items.get(person, 0) >= t.close_person_items:
                add(f"a face of a close person (person {person}, in "
                    f"{people.items[person]} items)", index)
    if not found:
        what = "every sampled frame is" if media["kind"] == "video" else "it is"
        return Decision(False, [f"public: {what} free of large central faces, of close or "
                                "unclustered people and of documents, and not marked"])
    reasons = []
    for reason, frames in found.items():
        if media["kind"] == "video" and frames:
            shown = ", ".join(str(f) for f in frames[:5]) + (", ..." if len(frames) > 5 else "")
            reason += f" (frame{'s' if len(frames) > 1 else ''} {shown})"
        reasons.append(reason)
    return Decision(True, reasons)


# -------------------------------------------------------------- from the store


def decide_for(store, media: Mapping,
               thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS) -> Decision:
    """A fresh decision for one media row, read from the store now."""
    persons = store.people.persons_of(media["id"]) if media.get("id") is not None else {}
    people = People(bool(persons), persons, store.people.items_per_person(),
                    store.people.names(named_only=True))
    digest = media["content_hash"]
    return decide(media, store.results.payload(digest, "faces", arrays=False),
                  store.privacy.mark_of(media["path"], digest), people, thresholds,
                  text=store.results.payload(digest, "text"))


def apply_privacy(store, thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS) -> dict[str, int]:
    """Decide every readable media item and record `private` and `private_reason`.

    Returns {"private": n, "public": n}. Runs in one transaction, so a mark made while
    it runs is either seen or applied after it (a mark sets its item private itself)."""
    with store.transaction():
        items = store.people.items_per_person()
        names = store.people.names(named_only=True)
        private_paths, private_hashes = store.privacy.marks()
        public_paths, public_hashes = store.privacy.marks(public=True)
        persons = store.people.persons_by_media()
        counts = {"private": 0, "public": 0}
        decided = []
        for row, faces, text in store.privacy.decision_rows():
            media_id, path, digest = row["id"], row["path"], row["content_hash"]
            people = People(media_id in persons, persons.get(media_id, {}), items, names)
            mark = ("private" if path in private_paths or digest in private_hashes else
                    "public" if path in public_paths or digest in public_hashes else None)
            decision = decide(row, faces, mark, people, thresholds, text=text)
            decided.append((media_id, decision.private, "\n".join(decision.reasons)))
            counts["private" if decision.private else "public"] += 1
        store.privacy.save_decisions(decided)
    return counts


# -------------------------------------------------------------- marks and listings


def _targets(store, path: Path) -> list[tuple[str, str | None]]:
    """(path, content hash) for a file, or for every known item under a folder."""
    absolute = os.path.abspath(path)
    if os.path.isdir(absolute):
        rows = store.media.under([absolute])
        if not rows:
            raise GalprofError(f"{_shown(path)}: no scanned media under this folder; scan it first")
        return [(p, r["content_hash"]) for p, r in sorted(rows.items())]
    row = store.media.by_path(absolute)
    if row is not None and row["content_hash"]:
        return [(absolute, row["content_hash"])]
    if not os.path.isfile(absolute):
        raise GalprofError(f"{_shown(path)}: no such file")
    try:
        return [(absolute, hash_file(absolute))]
    except OSError as e:
        raise GalprofError(f"{_shown(path)}: cannot read ({e.strerror})") from None


def _shown(path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _redecide(store, path: str, digest: str | None,
              thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS) -> None:
    """Decide again every item a mark of (path, digest) covers, as the store is now (call
    in the mark's transaction: a scan may have added the item since it was looked up)."""
    rows = store.media.matching(path, digest)
    decided = []
    for row in rows:
        if row["status"] != "failed" and row["kind"]:
            d = decide_for(store, row, thresholds)
            decided.append((row["id"], d.private, "\n".join(d.reasons)))
    store.privacy.save_decisions(decided)


def mark(store, paths: list[Path], public: bool = False) -> list[str]:
    """Mark files (or every known item under a folder) private, or public; returns the
    paths marked.

    A file not scanned yet is marked by its path and content hash, so the first scan
    already decides it so. The decisions of the items it covers change in the same
    transaction."""
    done = []
    targets = [t for p in paths for t in _targets(store, p)]
    wanted = "public" if public else "private"
    with store.transaction():
        for path, digest in targets:
            if store.privacy.mark_of(path, digest) != wanted:
                store.privacy.add_mark(path, digest, public=public)
            _redecide(store, path, digest)
            done.append(path)
    return done


def unmark(store, paths: list[Path]) -> list[str]:
    """Remove the marks of files (by path or content hash); returns the paths unmarked."""
    done = []
    targets = [t for p in paths for t in _targets(store, p)]
    with store.transaction():
        for path, digest in targets:
            if store.privacy.remove_marks(path, digest):
                done.append(path)
            _redecide(store, path, digest)
    return done


def list_private(store) -> list[dict]:
    """Private items with their reasons, and marks of files not scanned (yet)."""
    marked_paths, marked_hashes = store.privacy.marks()
    out = [{"path": r["path"], "kind": r["kind"],
            "marked": r["path"] in marked_paths or r["content_hash"] in marked_hashes,
            "reasons": r["reasons"]} for r in store.privacy.private_items()]
    listed = {o["path"] for o in out}
    for path in store.privacy.unscanned_marks():
        if path not in listed:
            out.append({"path": path, "kind": None, "marked": True,
                        "reasons": ["marked private by the user (not scanned yet)"]})
    return out


def describe(store, media: Mapping) -> dict:
    """For `galprof show`: private or public and why, the tier of each result, and the
    uploads of this item. The decision is computed now, from the current store."""
    decision = decide_for(store, media)
    tiers = {stage: r.tier for stage, r in store.results.all(media["content_hash"]).items()}
    sent = [{k: u[k] for k in ("at", "server", "bytes", "images", "status")}
            for u in reversed(store.privacy.uploads(content_hash=media["content_hash"]))]
    return {"private": decision.private, "reasons": decision.reasons,
            "marked": store.privacy.mark_of(media["path"], media["content_hash"]),
            "tiers": tiers, "uploads": sent}
