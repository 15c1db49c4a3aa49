"""Documents and screenshots: what kind of picture it is, from its text, metadata and pixels.

Pure rules, no models: the text stage (galprof/vision/text.py) gives the detected line
boxes and the few lines it read; this module measures their layout, matches what was read
(machine-readable zones, card numbers, prices and totals, keywords), tells a screenshot
from a photo, and says whether the kind makes the photo private. Thresholds, patterns
and keywords are data, in documents.toml beside this file, each with its reason.

Kinds: id_document, bank_card, receipt, document, chat_screenshot, screenshot,
incidental_text, none (see documents.toml).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

RULES_PATH = Path(__file__).with_name("documents.toml")

KINDS = ("id_document", "bank_card", "receipt", "document", "chat_screenshot", "screenshot",
         "incidental_text", "none")
# What the text of a screenshot can make it instead (a screenshot of a passport is an
# id_document); any screen of text looks like a document page, so that one cannot.
_OVER_SCREENSHOT = ("id_document", "bank_card", "receipt")


@lru_cache(maxsize=1)
def rules() -> dict:
    with open(RULES_PATH, "rb") as f:
        data = tomllib.load(f)
    unknown = set(data["privacy"]["private_kinds"]) - set(KINDS)
    if unknown:
        raise ValueError(f"{RULES_PATH.name}: unknown kinds in private_kinds: {sorted(unknown)}")
    return data


@lru_cache(maxsize=1)
def rules_digest() -> str:
    """A short hash of documents.toml: part of the text stage's version (cache key)."""
    return hashlib.sha256(RULES_PATH.read_bytes()).hexdigest()[:8]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Verdict:
    kind: str
    reason: str                              # one line: "text: passport machine-readable zone"
    evidence: tuple[str, ...] = ()           # the facts behind it, for `show`


@dataclass
class ScreenCues:
    """What the pixels say about a screen capture (see documents.toml [screenshot])."""

    flat_share: float = 0.0      # 16x16 blocks of one flat colour
    palette_share: float = 0.0   # pixels in the 8 most common colours
    status_bar: bool = False     # a uniform top band with small marks

    def to_json(self) -> dict:
        return {"flat_share": round(self.flat_share, 3),
                "palette_share": round(self.palette_share, 3), "status_bar": self.status_bar}

    @classmethod
    def from_json(cls, d: dict | None) -> "ScreenCues | None":
        if not d:
            return None
        return cls(float(d["flat_share"]), float(d["palette_share"]), bool(d["status_bar"]))

    def screen_like(self) -> bool:
        r = rules()["screenshot"]
        return self.flat_share >= r["flat_share"] and self.palette_share >= r["palette_share"]


@dataclass
class Layout:
    """Where the text is. Sizes are shares of the picture (area) or of its short side."""

    lines: int = 0               # text boxes found
    coverage: float = 0.0        # share of the picture inside text boxes
    block: float = 0.0           # share of the picture inside the rectangle around all text
    text_height: float = 0.0     # median box height / short side of the picture
    height_spread: float = 0.0   # (p75 - p25) / median of the box heights
    angle: float = 0.0           # dominant line angle, degrees
    angle_spread: float = 0.0    # median deviation from it, degrees
    aligned_share: float = 0.0   # lines on a shared left edge (a column of >= 3)
    columns: int = 0             # such shared left edges
    right_aligned_share: float = 0.0
    left_rows: int = 0           # rows holding only lines on the left side
    right_rows: int = 0          # rows holding only lines on the right side

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "Layout":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def document_like(self) -> bool:
        r = rules()["document"]
        return (self.lines >= r["min_lines"] and self.aligned_share >= r["min_aligned_share"]
                and self.height_spread <= r["max_height_spread"]
                and self.angle_spread <= r["max_angle_spread"]
                and self.text_height <= r["max_text_height"]
                and self.coverage >= r["min_coverage"])


@dataclass(frozen=True)
class Hit:
    """One fact read from the text. `text` is redacted to what shows the fact."""

    rule: str                    # mrz | mrz_passport | card_number | price | keyword:LIST
    text: str

    def to_json(self) -> dict:
        return {"rule": self.rule, "text": self.text}

    @classmethod
    def from_json(cls, d: dict) -> "Hit":
        return cls(d["rule"], d["text"])


# ---------------------------------------------------------------- pre-filter


def prefilter(objects, scenes, faces, width: int, height: int,
              cues: ScreenCues | None = None, is_video: bool = False) -> tuple[bool, str]:
    """Whether the text detector should run on this item, and why (or why not).

    objects/scenes/faces: the typed payloads of those stages (galprof.payloads; None when
    missing); width and height: the picture's original (oriented) size; cues: screen_cues
    of its pixels.
    """
    r = rules()["prefilter"]
    if is_video and not r["videos"]:
        return False, "video"
    area = max(1, width * height)
    for _, _, face, _ in (faces.faces() if faces is not None else ()):
        x1, y1, x2, y2 = face.box
        if (x2 - x1) * (y2 - y1) / area >= r["large_face_share"]:
            return False, "large face"
    if cues is not None and cues.screen_like():
        return True, "screen-like pixels"
    if screen_size(width, height):
        return True, f"screen size {width}x{height}"
    wanted = set(r["scene_labels"])
    found = [s for s in (scenes.scenes if scenes is not None else ()) if s.label in wanted]
    if sum(s.score for s in found) >= r["scene_min_prob"]:
        best = max(found, key=lambda s: s.score)
        return True, f"scene: {best.label} {best.score:.2f}"
    for o in (objects.summary() if objects is not None else ()):
        if o.label in r["object_labels"] and o.score >= r["object_min_score"]:
            return True, f"object: {o.label} {o.score:.2f}"
    return False, "no text cue"


# ---------------------------------------------------------------- screenshots


def screen_size(width: int | None, height: int | None) -> bool:
    """One of the screen sizes, to a pixel or two (a size recovered from a downscaled
    analysis frame is off by rounding)."""
    if not width or not height:
        return False
    w, h = sorted((int(width), int(height)))
    return any(abs(w - a) <= 2 and abs(h - b) <= 2 for a, b in rules()["screenshot"]["sizes"])


def _status_bar(pixels: np.ndarray, r: dict) -> bool:
    h = pixels.shape[0]
    band = pixels[: max(2, int(h * r["bar_band"]))].reshape(-1, 3).astype(np.int16)
    if len(band) < 16:
        return False
    median = np.median(band, axis=0)
    same = (np.abs(band - median).max(axis=1) <= 6).mean()
    return bool(same >= r["bar_uniform"] and 1.0 - same >= r["bar_marks"])


def screen_cues(pixels: np.ndarray) -> ScreenCues:
    """Screen evidence from an RGB uint8 image (any size; ~10 ms at 1280 px)."""
    r = rules()["screenshot"]
    h, w = pixels.shape[:2]
    if h < 16 or w < 16:
        return ScreenCues()
    # Flat blocks on the green channel at half resolution (8x8 there = 16x16 here):
    # sensor noise and JPEG of a camera photo leave hardly any block of one value.
    g = pixels[::2, ::2, 1].astype(np.int16)
    bh, bw = g.shape[0] // 8, g.shape[1] // 8
    flat = 0.0
    if bh and bw:
        blocks = g[:bh * 8, :bw * 8].reshape(bh, 8, bw, 8)
        spread = blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))
        flat = float((spread <= 3).mean())
    sub = (pixels[::4, ::4].reshape(-1, 3) >> 3).astype(np.int32)
    codes = (sub[:, 0] << 10) | (sub[:, 1] << 5) | sub[:, 2]
    counts = np.bincount(codes, minlength=1 << 15)
    palette = float(np.sort(counts)[-8:].sum() / max(1, len(codes)))
    return ScreenCues(flat, palette, _status_bar(pixels, r))


def _camera_exif(meta: dict) -> bool:
    return bool(meta.get("make") or meta.get("model") or meta.get("focal_length"))


def screenshot(meta: dict, fmt: str | None, path: str | None,
               pixels: np.ndarray | None = None,
               cues: ScreenCues | None = None) -> tuple[bool, list[str]]:
    """Whether a picture is a screenshot, and the evidence (usable without the text stage).

    meta: the media row / Metadata.to_dict() (make, model, focal_length, width, height);
    fmt: the file format ("PNG", "JPEG", ...); path: its path (folder and name count);
    pixels: RGB uint8 at any size, or cues already computed from them.
    """
    r = rules()["screenshot"]
    if _camera_exif(meta):
        return False, ["camera EXIF"]
    points, evidence = 0, []
    where = (path or "").replace("\\", "/").lower()
    if any(re.search(p, where) for p in r["name_patterns"]):
        points += r["name_points"]
        evidence.append("screenshot file name or folder")
    width, height = meta.get("width"), meta.get("height")
    if screen_size(width, height):
        points += r["size_points"]
        evidence.append(f"screen size {width}x{height}")
    elif width and height and max(width, height) / min(width, height) >= r["min_phone_aspect"]:
        points += r["aspect_points"]
        evidence.append("phone screen aspect")
    if (fmt or "").upper() in r["formats"]:
        points += r["format_points"]
        evidence.append((fmt or "").upper())
    if cues is None and pixels is not None:
        cues = screen_cues(pixels)
    if cues is not None:
        if cues.flat_share >= r["flat_share"]:
            points += r["flat_points"]
            evidence.append(f"flat regions {cues.flat_share:.0%}")
        if cues.palette_share >= r["palette_share"]:
            points += r["palette_points"]
            evidence.append("few colours")
        if cues.status_bar:
            points += r["bar_points"]
            evidence.append("status bar")
    return points >= r["min_points"], evidence


# ---------------------------------------------------------------- layout


def _quads(boxes: Sequence[Any]) -> np.ndarray:
    """(N, 4, 2) corners from TextBox-like objects (with .quad) or their JSON dicts."""
    out = [b["quad"] if isinstance(b, dict) else b.quad for b in boxes]
    return np.asarray(out, np.float64).reshape(-1, 4, 2)


def _clusters(values: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Indices of values grouped where consecutive sorted values differ by <= tolerance."""
    order = np.argsort(values)
    groups, current = [], [order[0]]
    for a, b in zip(order[:-1], order[1:]):
        if values[b] - values[a] <= tolerance:
            current.append(b)
        else:
            groups.append(np.array(current))
            current = [b]
    groups.append(np.array(current))
    return groups


def _coverage(quads: np.ndarray, width: int, height: int) -> float:
    from PIL import Image, ImageDraw

    f = min(1.0, 256 / max(width, height))
    mask = Image.new("L", (max(1, round(width * f)), max(1, round(height * f))), 0)
    draw = ImageDraw.Draw(mask)
    for q in quads:
        draw.polygon([(float(x) * f, float(y) * f) for x, y in q], fill=1)
    return float(np.asarray(mask).mean())


def layout(boxes: Sequence[Any], width: int, height: int) -> Layout:
    """Layout measures of text boxes (TextBox or its JSON) on a width x height picture."""
    r = rules()["layout"]
    quads = _quads(boxes)
    n = len(quads)
    if n == 0:
        return Layout()
    long_vec = quads[:, 1] - quads[:, 0]
    lengths = np.hypot(long_vec[:, 0], long_vec[:, 1])
    heights = np.hypot(*(quads[:, 3] - quads[:, 0]).T)
    angles = np.degrees(np.arctan2(long_vec[:, 1], long_vec[:, 0]))
    is_line = lengths >= r["line_aspect"] * np.maximum(heights, 1e-6)
    angle = float(np.median(angles[is_line])) if is_line.any() else 0.0
    spread = float(np.median(np.abs(angles[is_line] - angle))) if is_line.any() else 0.0
    # Positions in the text's own frame: u along the lines, v across them.
    a = np.radians(angle)
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    pu, pv = quads @ u, quads @ v
    left, right = pu.min(axis=1), pu.max(axis=1)
    top, bottom = pv.min(axis=1), pv.max(axis=1)
    median_h = float(np.median(heights))
    tolerance = max(r["align_tolerance"] * median_h, 2.0)

    def aligned(edges):
        groups = [g for g in _clusters(edges, tolerance) if len(g) >= r["column_min_lines"]]
        return sum(len(g) for g in groups) / n, len(groups)

    aligned_share, columns = aligned(left)
    right_share, _ = aligned(right)
    p25, p75 = np.percentile(heights, [25, 75])
    short = max(1, min(width, height))
    block = (right.max() - left.min()) * (bottom.max() - top.min()) / max(1, width * height)
    # Rows (lines overlapping across v) holding only left-side or only right-side lines.
    centre_u = float(np.array([width / 2, height / 2]) @ u)
    half = (abs(width * u[0]) + abs(height * u[1])) / 2
    side = np.where((right < centre_u + 0.5 * half) & (left < centre_u), -1,
                    np.where((left > centre_u - 0.5 * half) & (right > centre_u), 1, 0))
    left_rows = right_rows = 0
    mid_v = (top + bottom) / 2
    for row in _clusters(mid_v, 0.5 * median_h):
        sides = set(side[row].tolist())
        left_rows += sides == {-1}
        right_rows += sides == {1}
    return Layout(lines=n, coverage=_coverage(quads, width, height), block=float(min(1.0, block)),
                  text_height=median_h / short,
                  height_spread=float((p75 - p25) / max(median_h, 1e-6)),
                  angle=angle, angle_spread=spread, aligned_share=float(aligned_share),
                  columns=int(columns), right_aligned_share=float(right_share),
                  left_rows=int(left_rows), right_rows=int(right_rows))


# ---------------------------------------------------------------- what to read


def lines_to_read(boxes: Sequence[Any], lay: Layout, cues: ScreenCues | None = None) -> list[int]:
    """Indices of the boxes worth recognising, most telling first (at most [read] max_lines).

    Machine-readable-zone candidates (very long thin lines, from the bottom up), the
    top lines (titles), the largest lines (card numbers, the words of a sign) and
    right-aligned short boxes (prices). Nothing for a plain screen: a screenshot is
    private whatever it says.
    """
    r = rules()["read"]
    quads = _quads(boxes)
    if not len(quads) or (r["skip_screens"] and cues is not None and cues.screen_like()):
        return []
    lengths = np.hypot(*(quads[:, 1] - quads[:, 0]).T)
    heights = np.maximum(np.hypot(*(quads[:, 3] - quads[:, 0]).T), 1e-6)
    aspect = lengths / heights
    centre_y = quads[:, :, 1].mean(axis=1)
    right_x = quads[:, :, 0].max(axis=1)
    chosen: list[int] = []

    def take(indices, limit):
        added = 0
        for i in indices:
            if len(chosen) >= r["max_lines"] or added >= limit:
                return
            if int(i) not in chosen:
                chosen.append(int(i))
                added += 1

    mrz = [i for i in np.argsort(-centre_y) if aspect[i] >= r["mrz_min_aspect"]]
    take(mrz, r["mrz_max_lines"])
    take([i for i in np.argsort(centre_y) if aspect[i] >= r["title_min_aspect"]],
         r["top_lines"])
    take([i for i in np.argsort(-heights) if aspect[i] >= r["title_min_aspect"]],
         r["largest_lines"])
    if lay.right_aligned_share > 0:
        tol = max(rules()["layout"]["align_tolerance"] * float(np.median(heights)), 2.0)
        edge = float(np.median(right_x[right_x >= np.percentile(right_x, 75)]))
        prices = [i for i in np.argsort(centre_y)
                  if abs(right_x[i] - edge) <= tol and aspect[i] <= r["price_max_aspect"]]
        take(prices[::max(1, len(prices) // max(1, r["price_lines"]))], r["price_lines"])
    return chosen


# ---------------------------------------------------------------- what was read

_PRICE = re.compile(r"(?<![\d.,])\d{1,5}[.,]\d{2}(?![\d.,]?\d)")


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text.upper())


def _mrz_form(text: str) -> str:
    """The line as MRZ characters (the recogniser sometimes reads '<' as '«', '‹' or 'く')."""
    return _squeeze(text).replace("«", "<<").replace("‹", "<").replace("く", "<")


# Digits the recogniser reads for letters in the issuing state (UT0 for UTO).
_AS_LETTER = str.maketrans("01258", "OIZSB")


def _mrz_start(line: str) -> bool:
    """A document code and an issuing state open the line (digits read as letters there)."""
    return bool(re.match(rules()["mrz"]["start"], line[:5].translate(_AS_LETTER)))


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


def _keyword_hits(text: str) -> list[Hit]:
    squeezed = _squeeze(text)
    out = []
    for name, words in rules()["keywords"].items():
        out += [Hit(f"keyword:{name}", w) for w in words if w in squeezed]
    for name, entry in rules()["interests"].items():
        out += [Hit(f"interest:{name}", w) for w in entry["keywords"] if w in squeezed]
    return out


def match(texts: Iterable[str]) -> list[Hit]:
    """The facts in recognised lines: MRZ lines, card numbers, prices, keywords.

    Hits keep only what shows the fact: an MRZ line's document code and issuing state
    (nothing of its other lines), a card number's last four digits, a price, the keyword."""
    r = rules()
    hits: list[Hit] = []
    mrz_lines = []
    for text in texts:
        if not text:
            continue
        m = _mrz_form(text)
        rm = r["mrz"]
        shortest = rm["min_length_with_start"] if _mrz_start(m) else rm["min_length"]
        if (shortest <= len(m) <= rm["max_length"] and re.fullmatch(r"[A-Z0-9<]+", m)
                and m.count("<") >= rm["min_fillers"]):
            mrz_lines.append(m)
        digits = re.sub(r"[\s\-]", "", text)
        # a card number stands alone on its line (not inside an MRZ or a reference)
        mostly_digits = sum(c.isdigit() for c in digits) >= 0.8 * max(1, len(digits))
        for run in re.findall(r"\d+", digits) if mostly_digits else []:
            if r["card"]["min_digits"] <= len(run) <= r["card"]["max_digits"] and luhn_ok(run):
                hits.append(Hit("card_number", "•" * (len(run) - 4) + run[-4:]))
        hits += [Hit("price", p) for p in _PRICE.findall(text)]
        hits += _keyword_hits(text)
    starts = [m for m in mrz_lines if _mrz_start(m)]
    if starts or len(mrz_lines) >= r["mrz"]["min_lines_without_start"]:
        for m in mrz_lines:
            rule = "mrz_passport" if m.startswith("P") and m in starts else "mrz"
            # only a document code and issuing state are kept, never numbers or dates
            hits.append(Hit(rule, m[:5] + "…" if m in starts else "…"))
    return hits


# ---------------------------------------------------------------- kinds


def _has(hits: Sequence[Hit], rule: str) -> list[Hit]:
    return [h for h in hits if h.rule == rule]


def text_kind(lay: Layout, hits: Sequence[Hit]) -> tuple[str, str]:
    """The kind the text alone shows, with its one-line reason."""
    r = rules()
    if _has(hits, "mrz_passport"):
        return "id_document", "text: passport machine-readable zone"
    if _has(hits, "mrz"):
        return "id_document", "text: identity document machine-readable zone"
    ids = _has(hits, "keyword:id_document")
    if ids:
        return "id_document", f"text: identity document ({ids[0].text.lower()})"
    if _has(hits, "card_number"):
        return "bank_card", "text: bank card number"
    prices, totals = _has(hits, "price"), _has(hits, "keyword:total")
    if len(prices) >= r["receipt"]["min_prices"] and totals:
        return "receipt", "text: receipt (prices and a total)"
    if _has(hits, "keyword:boarding_pass"):
        return "document", "text: boarding pass"
    if _has(hits, "keyword:menu") and not totals:
        return "incidental_text", "text: menu"
    if _has(hits, "keyword:ticket") and lay.lines >= rules()["document"]["min_lines"]:
        return "document", "text: ticket"
    if lay.document_like():
        columns = f"{lay.columns} column{'s' if lay.columns != 1 else ''}"
        return "document", f"text: document ({lay.lines} lines, {columns})"
    if lay.lines:
        return "incidental_text", \
            f"text: incidental ({lay.lines} line{'s' if lay.lines != 1 else ''})"
    return "none", ""


def _chat(lay: Layout) -> bool:
    r = rules()["chat"]
    return lay.left_rows >= r["min_left_rows"] and lay.right_rows >= r["min_right_rows"]


def classify(payload: Any, meta: dict, fmt: str | None = None,
             path: str | None = None, pixels: np.ndarray | None = None) -> Verdict:
    """The kind of one photo from its text payload (TextPayload or its JSON, or None when
    the text stage did not run) and its media row (meta: make, model, focal_length,
    width, height), format and path. Pixels are only needed without a payload."""
    if isinstance(payload, dict):
        from galprof.vision.text import TextPayload
        payload = TextPayload.from_json(payload)
    cues = payload.screen if payload is not None else None
    is_screen, evidence = screenshot(meta, fmt, path, pixels=pixels if cues is None else None,
                                     cues=cues)
    text = ("none", "") if payload is None or not payload.ran else (payload.kind, payload.reason)
    if is_screen:
        lay = payload.layout if payload is not None and payload.ran else Layout()
        kind, reason = ("chat_screenshot", "screenshot: chat") if _chat(lay) \
            else ("screenshot", "screenshot")
        if text[0] in _OVER_SCREENSHOT:
            kind, reason = text
        return Verdict(kind, reason, tuple(evidence))
    rules_fired = dict.fromkeys(h.rule for h in (payload.hits if payload else ()))
    return Verdict(text[0], text[1], tuple(rules_fired))


def text_privacy(kind: str, reason: str = "") -> tuple[bool, str]:
    """Whether a photo of this kind is private by default, and the reason to record.

    Documents, cards, ID pages, receipts and screenshots are private; incidental text
    (a street sign, a T-shirt, a menu on a table) and no text leave the photo public."""
    if kind not in KINDS:
        raise ValueError(f"unknown document kind {kind!r} (known: {', '.join(KINDS)})")
    if kind in rules()["privacy"]["private_kinds"]:
        return True, reason or ("screenshot" if "screenshot" in kind else f"text: {kind}")
    return False, ""


def interest_items(hits: Sequence[Hit]) -> list[tuple[str, str, float]]:
    """Optional interest contributions of what was read: (fine category, group, weight).

    A boarding pass says travel, a concert ticket performing arts, a menu restaurants
    ([interests] in documents.toml, matched by `match` as "interest:NAME" hits). Each
    entry counts once a photo; the categories are the taxonomy's fine categories."""
    from galprof import taxonomy

    tax = taxonomy.load()
    if not rules()["text_interests"]:
        return []
    seen = {h.rule.split(":", 1)[1] for h in hits if h.rule.startswith("interest:")}
    out = []
    for name, entry in rules()["interests"].items():
        if name in seen:
            for category in entry["categories"]:
                out.append((category, tax.group_of(category), float(entry["weight"])))
    return out
