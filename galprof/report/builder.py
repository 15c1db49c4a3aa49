"""The self-contained HTML report: one file, script, style and small thumbnails inline.

The page never touches the network (no CDN, no web fonts; a Content-Security-Policy forbids it).
Each media file is embedded at most once however many categories it is in, and every list is
capped (`thumbs_per_category`) with a "+N more" count, so the page stays small on big galleries.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from PIL import Image

from galprof.errors import GalprofError

HERE = Path(__file__).parent
THUMB_PX = 160            # long side of an embedded preview: crisp at 124 css px, ~5 KB
THUMB_QUALITY = 70        # JPEG quality: artefacts invisible at that size
FACE_PX = 112             # face crops are shown as 96 css px circles
FACE_SOURCE_PX = 800      # decode the photo this big before cutting a face out of it
FACE_MARGIN = 0.25        # context around the face box, as a share of the box size
MAX_PLACES = 25           # places listed (the rest are rarely visited)
MAX_PEOPLE = 60           # people cards

Thumbnailer = Callable[[Path, int], Image.Image]


@dataclass
class ReportStats:
    path: Path
    bytes: int
    thumbnails: int
    faces: int
    seconds: float
    failed: list[str] = field(default_factory=list)   # "path: reason" for previews not made


def _default_thumbnailer() -> Thumbnailer:
    from galprof.gallery.frames import thumbnail
    return thumbnail


def _jpeg_b64(img: Image.Image, long_side: int) -> str:
    img = img.convert("RGB")
    img.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _long_side(path: Path) -> int | None:
    """The long side in pixels of a photo or of a video's frames (rotation does not change it)."""
    try:
        with Image.open(path) as img:
            return max(img.size)
    except Exception:
        pass
    try:
        import av
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return max(s.width, s.height)
    except Exception:
        return None


def _face_crop(face: dict, thumbnail: Thumbnailer) -> str:
    """Cut the face `box` [x1, y1, x2, y2] out of its photo. The box is in pixels of the
    displayed (oriented) photo or video frame; `size` [w, h] may say which size it refers to;
    a box with every value <= 1 is taken as relative."""
    path = Path(face["path"])
    x1, y1, x2, y2 = (float(v) for v in face["box"])
    img = thumbnail(path, FACE_SOURCE_PX)
    if max(x1, y1, x2, y2) <= 1.0:
        ref_w, ref_h = 1.0, 1.0
    elif face.get("size"):
        ref_w, ref_h = (float(v) for v in face["size"])
    else:
        # the decoded picture is already oriented: scale it back up to the file's long side
        long_side = _long_side(path)
        if not long_side:
            raise ValueError("cannot tell the size the face box refers to")
        scale = long_side / max(img.width, img.height)
        ref_w, ref_h = img.width * scale, img.height * scale
    sx, sy = img.width / ref_w, img.height / ref_h
    cx, cy = (x1 + x2) / 2 * sx, (y1 + y2) / 2 * sy
    side = max((x2 - x1) * sx, (y2 - y1) * sy) * (1 + 2 * FACE_MARGIN)
    box = (int(max(0, cx - side / 2)), int(max(0, cy - side / 2)),
           int(min(img.width, cx + side / 2)), int(min(img.height, cy + side / 2)))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise ValueError(f"face box {face['box']} is outside the picture")
    return _jpeg_b64(img.crop(box), FACE_PX)


def _bin_bounds(label: str) -> tuple[float, float] | None:
    m = re.match(r"^\s*(\d+)\s*(?:-\s*(\d+)|\+)\s*$", str(label))
    if not m:
        return None
    return float(m.group(1)), float(m.group(2)) if m.group(2) else float("inf")


def _person_bin(person: dict, bins: list[str], year: int) -> tuple[int | None, str | None]:
    age = None
    if person.get("birth_year"):
        age = max(0, year - int(person["birth_year"]))
    if person.get("age_bin"):
        return age, person["age_bin"]
    if age is None:
        return None, None
    for label in bins:
        bounds = _bin_bounds(label)
        if bounds and bounds[0] <= age < bounds[1]:
            return age, label
    return age, None


class _Collector:
    """Assigns each media path one slot in the page's media table (deduplicated)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.index: dict[str, int] = {}
        self.rows: list[list] = []
        self.kinds: dict[str, str] = {}

    def take(self, paths, kinds: dict | None = None) -> tuple[list[int], int]:
        paths = [str(p) for p in (paths or [])]
        out = []
        for p in paths[: self.cap]:
            if p not in self.index:
                self.index[p] = len(self.rows)
                kind = (kinds or {}).get(p) or self.kinds.get(p) or _kind_from_name(p)
                self.rows.append([Path(p).name, -1, kind, p])
            out.append(self.index[p])
        return out, len(paths)


DOCUMENT_LABELS = {"id_document": "ID documents", "bank_card": "bank cards",
                   "receipt": "receipts", "document": "other documents",
                   "chat_screenshot": "chat screenshots", "screenshot": "screenshots"}

_VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".3gp", ".mkv", ".webm", ".avi"}


def _kind_from_name(path: str) -> str:
    return "video" if Path(path).suffix.lower() in _VIDEO_SUFFIXES else "photo"


def page_data(profile: dict, thumbs_per_category: int) -> tuple[dict, _Collector]:
    """The compact document the page's script renders (media as indexes, not paths)."""
    media = _Collector(max(0, int(thumbs_per_category)))
    gallery = profile.get("gallery") or {}
    generated = profile.get("generated_at") or ""
    try:
        year = datetime.fromisoformat(str(generated).replace("Z", "+00:00")).year
    except ValueError:
        year = datetime.now().year

    # Documents and screenshots are listed, never previewed (here or in any other list).
    documents = profile.get("documents") or []
    media.kinds.update({d["path"]: "document" for d in documents})
    by_kind: dict[str, list[str]] = {}
    for d in documents:
        by_kind.setdefault(d["kind"], []).append(d["path"])
    document_rows = []
    for kind, paths in sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        items, total = media.take(paths)
        document_rows.append({"label": DOCUMENT_LABELS.get(kind, kind), "media": len(paths),
                              "items": items, "total": total})

    groups = []
    for g in sorted(profile.get("categories") or [], key=lambda g: -int(g.get("media", 0))):
        subs = []
        for s in sorted(g.get("subcategories") or [], key=lambda s: -int(s.get("media", 0))):
            items, total = media.take(s.get("paths"))
            subs.append({"name": s["category"], "media": int(s.get("media", total)),
                         "items": items, "total": max(total, int(s.get("media", 0)))})
        groups.append({"name": g["group"], "media": int(g.get("media", 0)),
                       "share": g.get("share"), "subs": subs})

    places = []
    for loc in (profile.get("locations") or [])[:MAX_PLACES]:
        label = (f"{loc['city']}, {loc['country']}" if loc.get("city")
                 else f"{loc.get('country') or loc.get('country_code')} (outside towns)")
        items, total = media.take(loc.get("paths"))
        places.append({"label": label, "admin1": loc.get("admin1"), "media": int(loc["media"]),
                       "first": loc.get("first"), "last": loc.get("last"), "items": items,
                       "total": max(total, int(loc["media"]))})

    demo = profile.get("demography") or {}
    bin_labels = [str(b) for b in demo.get("bins") or []]
    male, female = demo.get("male") or [], demo.get("female") or []
    bins = [{"label": b, "male": int(male[i]) if i < len(male) else 0,
             "female": int(female[i]) if i < len(female) else 0}
            for i, b in enumerate(bin_labels)]

    owner = profile.get("owner") or {}
    owner_id = owner.get("person_id")
    relations = {r.get("person_id"): r.get("relation") for r in profile.get("relations") or []}
    people = []
    faces: dict[int, dict] = {}
    ranked = sorted(profile.get("people") or [],
                    key=lambda p: -(int(p.get("photos") or 0) + int(p.get("videos") or 0)))
    for p in ranked[:MAX_PEOPLE]:
        is_owner = p.get("id") == owner_id or p.get("role") == "owner"
        role = "owner" if is_owner else (p.get("role") or relations.get(p.get("id")))
        label = p.get("name") or (("You" + (" (guess)" if owner.get("guess") else ""))
                                  if is_owner else None) or \
            (role.capitalize() if role else f"Person {p.get('id')}")
        age, bin_label = _person_bin(p, bin_labels, year)
        items, total = media.take(p.get("paths"))
        n = int(p.get("photos") or 0) + int(p.get("videos") or 0)
        if p.get("face") and p["face"].get("path") and p["face"].get("box"):
            faces[len(people)] = p["face"]
        people.append({"id": p.get("id"), "label": label, "role": role, "owner": is_owner,
                       "gender": p.get("gender"), "age": age, "bin": bin_label,
                       "photos": int(p.get("photos") or 0), "videos": int(p.get("videos") or 0),
                       "first": p.get("first"), "last": p.get("last"), "face": -1,
                       "items": items, "total": max(total, n)})

    facts = {k: gallery.get(k) for k in ("photos", "videos", "frames", "failed", "documents",
                                         "screenshots")}
    facts["generated_at"] = generated
    data = {"facts": facts, "media": media.rows, "groups": groups, "places": places,
            "bins": bins, "people": people, "documents": document_rows}
    data["_faces"] = faces
    return data, media


# Inside <script>, "<!--", "<script" and "</" change how the HTML parser reads on, and
# U+2028/2029 end a line in older JavaScript; as JSON escapes they are the same text to
# JSON.parse. (JSON has no "<", ">" or "&" outside its strings.)
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                   "\u2029": "\\u2029"}


def _text(value):
    """Every string valid UTF-8 (a file name's undecodable bytes shown as \\xNN)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    return value


def _script_json(obj) -> str:
    text = json.dumps(_text(obj), ensure_ascii=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_ESCAPES[m.group()], text)


FACES = ("owner", "all", "none")


def build_report(profile: dict, out: Path, thumbs_per_category: int = 24,
                 thumbnail: Thumbnailer | None = None, thumb_px: int = THUMB_PX,
                 workers: int | None = None, faces: str = "owner") -> ReportStats:
    """Write the report for `profile` (schema_version 1) to `out`, readable by its owner
    only; previews that cannot be made are listed in the result's `failed` and shown as
    "no preview", never fatal. `faces`: whose face crops the page embeds ("owner": only
    the owner's; "all"; "none")."""
    if faces not in FACES:
        raise ValueError(f"faces must be one of {', '.join(FACES)}, not {faces!r}")
    start = time.perf_counter()
    if int(profile.get("schema_version", 1)) != 1:
        raise GalprofError(f"profile schema_version {profile.get('schema_version')} is not "
                           f"supported by this galprof (expected 1)")
    thumbnail = thumbnail or _default_thumbnailer()
    data, media = page_data(profile, thumbs_per_category)
    crops_of = data.pop("_faces")
    if faces != "all":
        owner = faces == "owner" and (profile.get("owner") or {}).get("person_id")
        crops_of = {i: f for i, f in crops_of.items() if owner is not None and owner is not False
                    and data["people"][i]["id"] == owner}
    workers = workers or min(4, os.cpu_count() or 1)
    thumbs: list[str] = []
    failed: list[str] = []

    def preview(row: list) -> str | None:
        path = row[3]
        if row[2] == "document":
            return None
        try:
            return _jpeg_b64(thumbnail(Path(path), thumb_px), thumb_px)
        except Exception as e:  # one bad file never spoils the report
            failed.append(f"{path}: {type(e).__name__}: {e}")
            return None

    def face(f: dict) -> str | None:
        try:
            return _face_crop(f, thumbnail)
        except Exception as e:
            failed.append(f"{f.get('path')}: face crop: {type(e).__name__}: {e}")
            return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        previews = list(pool.map(preview, media.rows))
        crops = dict(zip(crops_of, pool.map(face, crops_of.values())))
    for row, b64 in zip(media.rows, previews):
        if b64 is not None:
            row[1] = len(thumbs)
            thumbs.append(b64)
    n_faces = 0
    for person_index, b64 in crops.items():
        if b64 is not None:
            data["people"][person_index]["face"] = len(thumbs)
            thumbs.append(b64)
            n_faces += 1

    parts = {
        "/*__CSS__*/": (HERE / "report.css").read_text(encoding="utf-8"),
        "/*__JS__*/": (HERE / "report.js").read_text(encoding="utf-8"),
        "__DATA__": _script_json(data),
        "__THUMBS__": _script_json(thumbs),
    }
    template = (HERE / "template.html").read_text(encoding="utf-8")
    # one pass, so text inside the data can never be taken for a placeholder
    html = re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], template)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # photos, faces, paths
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(html)
    tmp.replace(out)
    return ReportStats(path=out, bytes=out.stat().st_size, thumbnails=len(thumbs) - n_faces,
                       faces=n_faces, seconds=round(time.perf_counter() - start, 3),
                       failed=failed)
