"""Profile quality on synthetic camera rolls (issue 14): hit@3 and the false top-3 rate.

    PYTHONPATH=$PWD python3 bench/profile_quality.py [--rolls pets,parent] [--json]
        [--explain] [--keep DIR] [--rolls-file FILE] [--media DIR] [--threads N]

Each roll of `profile_rolls.toml` (labelled test photos, 30-36 % portraits, variants, bursts,
children crops and composites of `faces/children/hse_family.jpg`) is written to a folder and
measured through the CLI only, one database per roll:

    python3 -m galprof scan ROLL --db DB --quiet --json
    python3 -m galprof profile --db DB --json

The profile's top-3 high-level groups are the first three of its `categories` list (its own
ranking), "Locations" left out (not an interest group, see the rolls file). A roll is a hit@3
when all its dominant interests are in that top-3; a top-3 group is false when fewer than 10 %
of the roll's items truly show it (the per-photo truth is in the rolls file).

`--explain` runs `galprof show PATH --db DB --json` for the top-3 groups, the dominant ones and
any group with 3 or more wrong photos: the photos the profile puts there that do not truly show
it ("wrong", `*` marks the labels that feed the group), and for a dominant group the photos it
misses, with the evidence that could tell subject from context: detections with box area (`a`,
share of the frame) and distance from the centre (`c`, 0 centre .. 1 corner), classifier top-5
and the top-1 margin, faces with size and estimated age, capture time. `--keep DIR` writes the
rolls and databases there (replacing earlier ones) and leaves them for `galprof show`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _shared() -> Path:
    """GALPROF_SHARED, else ../shared beside the checkout (or beside a worktree's parent)."""
    if os.environ.get("GALPROF_SHARED"):
        return Path(os.environ["GALPROF_SHARED"])
    near = [REPO.parent / "shared", REPO.parents[1] / "shared"]
    return next((p for p in near if p.is_dir()), near[0])


SHARED = _shared()
DEFAULT_ROLLS = HERE / "profile_rolls.toml"
CHILD_SOURCE = "faces/children/hse_family.jpg"
# Profile groups that are not interests: "Locations" lists cities from GPS (see the rolls file).
NOT_INTERESTS = frozenset({"Locations"})
TOP_K = 3
# Generated files: one capture day per roll item, burst shots this many seconds apart.
FIRST_DAY = datetime(2024, 3, 1, 12, 0, 0)
BURST_STEP_S = 2
JPEG_QUALITY = 92
COMPOSITE_HEIGHT = 0.6      # a pasted child crop is this share of the background's height
COMPOSITE_MAX_SIDE = 1280   # backgrounds are brought down to this before pasting
# --explain: besides the top-3 and the dominant groups, groups with this many wrong photos.
EXPLAIN_MIN_WRONG = 3


class RollError(ValueError):
    """The rolls file is inconsistent or a roll cannot be built; the message names the roll."""


@dataclass(frozen=True)
class Item:
    """One file of a roll: how to make it and what it truly shows."""

    name: str                   # file name inside the roll folder
    src: str | None             # testmedia path of the photo it comes from
    child: str | None           # [children] crop name, for children items
    edit: str = ""              # edit ops (see the rolls file)
    on: str | None = None       # background photo of a composite
    at: float = 0.5             # horizontal centre of the pasted crop
    burst: tuple[int, int] | None = None   # (shot j, of n) within a burst
    day: int = 0                # capture day offset of a generated file
    truth: frozenset[str] = frozenset()
    portrait: bool = False

    @property
    def generated(self) -> bool:
        return self.child is not None or bool(self.edit) or self.burst is not None


@dataclass
class Roll:
    name: str
    dominant: list[str]
    why: str
    items: list[Item] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            for group in item.truth:
                out[group] = out.get(group, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def portraits(self) -> int:
        return sum(item.portrait for item in self.items)


@dataclass(frozen=True)
class Rules:
    groups: tuple[str, ...]
    items: tuple[int, int]
    portrait_share: tuple[float, float]
    false_share: float
    dominant_share: float
    groups_at_false_share: int
    children: dict


# ---------------------------------------------------------------------------------------------
# The rolls file

def load_rolls(path: Path = DEFAULT_ROLLS, media: Path = SHARED / "testmedia",
               only: list[str] | None = None) -> tuple[Rules, list[Roll]]:
    """Read and check the rolls file; expand every roll into its items with their truth."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    r = data.get("rules", {})
    rules = Rules(groups=tuple(data["groups"]), items=tuple(r.get("items", (37, 45))),
                  portrait_share=tuple(r.get("portrait_share", (0.30, 0.36))),
                  false_share=float(r.get("false_share", 0.10)),
                  dominant_share=float(r.get("dominant_share", 0.20)),
                  groups_at_false_share=int(r.get("groups_at_false_share", 3)),
                  children=data.get("children", {}))
    photos = data.get("photos", {})
    for rel, photo in photos.items():
        _check_groups(rules, photo.get("groups", []), f"{path.name}: photo {rel}")
        if not photo.get("why"):
            raise RollError(f"{path.name}: photo {rel} has no 'why'")
    for name, child in rules.children.items():
        _check_groups(rules, child.get("groups", []), f"{path.name}: child {name}")
        if len(child.get("box", ())) != 4:
            raise RollError(f"{path.name}: child {name} needs box = [left, top, right, bottom]")
    rolls = []
    names = [raw["name"] for raw in data.get("rolls", [])]
    for wanted in only or []:
        if wanted not in names:
            raise RollError(f"{path.name}: no roll named {wanted!r} (rolls: {', '.join(names)})")
    for raw in data.get("rolls", []):
        if only and raw["name"] not in only:
            continue
        roll = _expand(raw, photos, rules, media, path.name)
        check_roll(roll, rules)
        rolls.append(roll)
    return rules, rolls


def _check_groups(rules: Rules, groups, where: str) -> None:
    unknown = [g for g in groups if g not in rules.groups]
    if unknown:
        raise RollError(f"{where}: unknown group(s) {', '.join(unknown)}")


def _expand(raw: dict, photos: dict, rules: Rules, media: Path, fname: str) -> Roll:
    roll = Roll(name=raw["name"], dominant=list(raw["dominant"]), why=raw.get("why", ""))
    _check_groups(rules, roll.dominant, f"{fname}: roll {roll.name} dominant")
    seen_specs = set()
    for day, spec in enumerate(raw["items"]):
        where = f"{fname}: roll {roll.name} item {day + 1}"
        key = json.dumps(spec, sort_keys=True)
        if key in seen_specs:
            raise RollError(f"{where}: repeats an earlier item exactly ({key}); it would be the same file")
        seen_specs.add(key)
        truth, portrait, stem, suffix = _spec_truth(spec, photos, rules, media, where)
        n = int(spec.get("burst", 0))
        shots = [(j, n) for j in range(n)] if n else [None]
        for shot in shots:
            pos = len(roll.items) + 1
            generated = "child" in spec or "edit" in spec or shot is not None
            tag = ("_on_" + Path(spec["on"]).stem) if spec.get("on") else ""
            tag += f"_b{shot[0] + 1}" if shot else ("_v" if spec.get("edit") else "")
            name = f"{pos:02d}_{stem}{tag}{'.jpg' if generated else suffix}"
            roll.items.append(Item(name=name, src=spec.get("src"), child=spec.get("child"),
                                   edit=spec.get("edit", ""), on=spec.get("on"),
                                   at=float(spec.get("at", 0.5)), burst=shot, day=day,
                                   truth=truth, portrait=portrait))
    return roll


def _spec_truth(spec: dict, photos: dict, rules: Rules, media: Path, where: str):
    if "child" in spec:
        child = rules.children.get(spec["child"])
        if child is None:
            raise RollError(f"{where}: no [children.{spec['child']}]")
        truth = set(child["groups"])
        if spec.get("on"):
            if spec["on"] not in photos:
                raise RollError(f"{where}: background {spec['on']} has no [photos] entry")
            truth |= set(photos[spec["on"]]["groups"])
            _exists(media / spec["on"], where)
        _exists(media / CHILD_SOURCE, where)
        portrait, stem, suffix = False, f"child_{spec['child']}", ".jpg"
    elif "src" in spec:
        photo = photos.get(spec["src"])
        if photo is None:
            raise RollError(f"{where}: {spec['src']} has no [photos] entry (its truth)")
        _exists(media / spec["src"], where)
        truth = set(photo["groups"])
        portrait, stem, suffix = bool(photo.get("portrait")), Path(spec["src"]).stem, Path(spec["src"]).suffix
    else:
        raise RollError(f"{where}: an item needs src or child")
    if "groups" in spec:
        _check_groups(rules, spec["groups"], where)
        truth = set(spec["groups"])
    if spec.get("edit"):
        parse_edit(spec["edit"], where)
    return frozenset(truth), portrait, stem, suffix


def _exists(path: Path, where: str) -> None:
    if not path.is_file():
        raise RollError(f"{where}: {path} not found (set GALPROF_SHARED or --media)")


def check_roll(roll: Roll, rules: Rules) -> None:
    """A roll must look like a gallery and admit a perfect answer; raise RollError if not."""
    n = len(roll.items)
    lo, hi = rules.items
    if not lo <= n <= hi:
        raise RollError(f"roll {roll.name}: {n} items, want {lo}-{hi}")
    share = roll.portraits() / n
    if not rules.portrait_share[0] - 1e-9 <= share <= rules.portrait_share[1] + 1e-9:
        raise RollError(f"roll {roll.name}: portraits are {share:.0%} of the items, "
                        f"want {rules.portrait_share[0]:.0%}-{rules.portrait_share[1]:.0%}")
    counts = roll.counts()
    for group in roll.dominant:
        if counts.get(group, 0) < rules.dominant_share * n - 1e-9:
            raise RollError(f"roll {roll.name}: dominant {group} is shown by only "
                            f"{counts.get(group, 0)}/{n} items")
    reaching = [g for g, c in counts.items() if not is_false_share(c, n, rules.false_share)]
    if len(reaching) < min(rules.groups_at_false_share, TOP_K):
        raise RollError(f"roll {roll.name}: only {len(reaching)} groups reach {rules.false_share:.0%} "
                        f"({', '.join(reaching)}): every top-3 would hold a false group")


def is_false_share(count: int, n: int, false_share: float) -> bool:
    return count < false_share * n - 1e-9


# ---------------------------------------------------------------------------------------------
# Writing a roll

def parse_edit(ops: str, where: str = "edit") -> list[tuple[str, tuple[float, ...]]]:
    """'flip crop=0.8@0.4,0.6 rot=3' -> [("flip", ()), ("crop", (0.8, 0.4, 0.6)), ("rot", (3.0,))]."""
    out = []
    for token in ops.split():
        op, _, arg = token.partition("=")
        try:
            if op in ("flip", "warm", "cool") and not arg:
                out.append((op, ()))
            elif op == "crop":
                keep, _, centre = arg.partition("@")
                cx, cy = (float(v) for v in centre.split(",")) if centre else (0.5, 0.5)
                if not 0.1 <= float(keep) <= 1 or not (0 <= cx <= 1 and 0 <= cy <= 1):
                    raise ValueError
                out.append(("crop", (float(keep), cx, cy)))
            elif op in ("rot", "tone", "sat") and arg:
                out.append((op, (float(arg),)))
            else:
                raise ValueError
        except ValueError:
            raise RollError(f"{where}: bad edit op {token!r} (flip, warm, cool, crop=F[@CX,CY], "
                            f"rot=DEG, tone=B, sat=S)") from None
    return out


def apply_edit(image, ops: str):
    from PIL import Image, ImageEnhance, ImageOps

    for op, args in parse_edit(ops):
        if op == "flip":
            image = ImageOps.mirror(image)
        elif op == "crop":
            image = _crop(image, *args)
        elif op == "rot":
            w, h = image.size
            a = math.radians(abs(args[0]))
            # The largest centred crop of the same shape that the rotation leaves without corners.
            keep = 1 / (math.cos(a) + math.sin(a) * max(w, h) / min(w, h))
            image = _crop(image.rotate(args[0], resample=Image.BICUBIC), keep, 0.5, 0.5)
        elif op == "tone":
            image = ImageEnhance.Brightness(image).enhance(args[0])
        elif op == "sat":
            image = ImageEnhance.Color(image).enhance(args[0])
        elif op in ("warm", "cool"):
            r, g, b = image.split()
            k = 1.08 if op == "warm" else 0.92
            image = Image.merge("RGB", (r.point(lambda v: min(255, int(v * k))), g,
                                        b.point(lambda v: min(255, int(v / k)))))
    return image


def _crop(image, keep: float, cx: float, cy: float):
    w, h = image.size
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    left = min(max(0, round(cx * w - cw / 2)), w - cw)
    top = min(max(0, round(cy * h - ch / 2)), h - ch)
    return image.crop((left, top, left + cw, top + ch))


def _open_rgb(path: Path):
    from PIL import Image, ImageOps

    try:
        import pillow_heif
        pillow_heif.register_heif_opener()
    except ImportError:       # HEIC sources then fail with PIL's own message
        pass
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def _composite(child, background_path: Path, at: float):
    from PIL import Image, ImageFilter

    bg = _open_rgb(background_path)
    bg.thumbnail((COMPOSITE_MAX_SIDE, COMPOSITE_MAX_SIDE))
    bw, bh = bg.size
    scale = min(COMPOSITE_HEIGHT * bh / child.height, 0.9 * bw / child.width)
    child = child.resize((max(1, round(child.width * scale)), max(1, round(child.height * scale))),
                         Image.LANCZOS)
    cw, ch = child.size
    left = min(max(0, round(at * bw - cw / 2)), bw - cw)
    top = bh - ch - round(0.03 * bh)
    # Feathered edges, so the paste reads as one picture rather than a framed inset.
    inset = max(2, round(0.04 * min(cw, ch)))
    mask = Image.new("L", (cw, ch), 0)
    mask.paste(255, (inset, inset, cw - inset, ch - inset))
    mask = mask.filter(ImageFilter.GaussianBlur(inset))
    bg.paste(child, (left, top), mask)
    return bg


def _exif_bytes(taken: datetime) -> bytes:
    import piexif

    stamp = taken.strftime("%Y:%m:%d %H:%M:%S").encode()
    return piexif.dump({"0th": {piexif.ImageIFD.Make: b"galprof-bench",
                                piexif.ImageIFD.Model: b"profile roll",
                                piexif.ImageIFD.DateTime: stamp},
                        "Exif": {piexif.ExifIFD.DateTimeOriginal: stamp,
                                 piexif.ExifIFD.DateTimeDigitized: stamp}})


def capture_time(item: Item) -> datetime:
    """Capture time written into a generated file: one day per item, burst shots 2 s apart."""
    shot = item.burst[0] if item.burst else 0
    return FIRST_DAY + timedelta(days=item.day, seconds=BURST_STEP_S * shot)


def build_roll(roll: Roll, rules: Rules, media: Path, dest: Path) -> list[Path]:
    """Write the roll's files into dest; every file is distinct (RollError otherwise)."""
    dest.mkdir(parents=True, exist_ok=True)
    family = None
    paths, hashes = [], {}
    for item in roll.items:
        out = dest / item.name
        if not item.generated:
            shutil.copyfile(media / item.src, out)
        else:
            if item.child is not None:
                if family is None:
                    family = _open_rgb(media / CHILD_SOURCE)
                image = family.crop(tuple(rules.children[item.child]["box"]))
            else:
                image = _open_rgb(media / item.src)
            if item.edit:
                image = apply_edit(image, item.edit)
            if item.on:
                image = _composite(image, media / item.on, item.at)
            if item.burst:
                j, n = item.burst
                # Near-identical shots: a 1 % drift of the framing and of the exposure per shot.
                image = apply_edit(image, f"crop=0.97@{0.5 + (j - (n - 1) / 2) * 0.01:.3f},0.5 "
                                          f"tone={1 + 0.01 * (j - (n - 1) / 2):.3f}")
            image.save(out, "JPEG", quality=JPEG_QUALITY, exif=_exif_bytes(capture_time(item)))
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        if digest in hashes:
            raise RollError(f"roll {roll.name}: {item.name} has the same content as {hashes[digest]}")
        hashes[digest] = item.name
        paths.append(out)
    return paths


# ---------------------------------------------------------------------------------------------
# Scoring

def score(categories: list[dict], counts: dict[str, int], n: int, dominant: list[str],
          false_share: float = 0.10, k: int = TOP_K) -> dict:
    """hit@k and the false top-k groups of one profile, by the profile's own `categories` order."""
    ranked = [c for c in categories if c.get("group") not in NOT_INTERESTS]
    top = ranked[:k]
    top_groups = [c["group"] for c in top]

    def share(group: str) -> float:
        return round(counts.get(group, 0) / n, 4) if n else 0.0

    tie = (len(ranked) > k and len(top) == k and "media" in top[-1]
           and ranked[k].get("media") == top[-1].get("media"))
    return {
        "top3": [{"group": c["group"], "media": c.get("media"), "share": c.get("share"),
                  "true_share": share(c["group"])} for c in top],
        "hit_at_3": all(d in top_groups for d in dominant),
        "false_top3": [{"group": c["group"], "media": c.get("media"), "true_share": share(c["group"])}
                       for c in top if is_false_share(counts.get(c["group"], 0), n, false_share)],
        "dominant_rank": {d: (next((i + 1 for i, c in enumerate(ranked) if c["group"] == d), None))
                          for d in dominant},
        "tie_at_3": [c["group"] for c in ranked[k - 1:] if c.get("media") == top[-1].get("media")]
        if tie else [],
    }


def summarize(results: list[dict]) -> dict:
    n = len(results)
    hits = sum(r["hit_at_3"] for r in results)
    false = sum(bool(r["false_top3"]) for r in results)
    return {"rolls": n, "hit_at_3": hits, "false_top3_rolls": false,
            "hit_rate": round(hits / n, 4) if n else None,
            "false_top3_rate": round(false / n, 4) if n else None}


# ---------------------------------------------------------------------------------------------
# Driving galprof (CLI only)

def galprof_env(home: Path) -> dict[str, str]:
    """This checkout's galprof first on the path, the shared models, a throw-away data dir."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("GALPROF_MODELS", str(SHARED / "models"))
    env["GALPROF_HOME"] = str(home)
    env.pop("GALPROF_DB", None)
    return env


def galprof(args: list[str], env: dict[str, str], ok=(0,)) -> str:
    proc = subprocess.run([sys.executable, "-m", "galprof", *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode not in ok:
        tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"galprof {args[0]} exited {proc.returncode}: {tail}")
    return proc.stdout


def measure_roll(roll: Roll, rules: Rules, media: Path, work: Path, threads: int | None = None,
                 explain: bool = False) -> dict:
    folder, db = work / roll.name, work / f"{roll.name}.db"
    env = galprof_env(work / "home")
    # Each measurement starts from nothing: a kept folder or database of an earlier run goes.
    shutil.rmtree(folder, ignore_errors=True)
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    t0 = time.monotonic()
    build_roll(roll, rules, media, folder)
    built = time.monotonic() - t0
    scan_args = ["scan", str(folder), "--db", str(db), "--quiet", "--json"]
    if threads:
        scan_args += ["--threads", str(threads)]
    t0 = time.monotonic()
    summary = json.loads(galprof(scan_args, env, ok=(0, 3)))   # 3: finished, some files failed
    scanned = time.monotonic() - t0
    profile = json.loads(galprof(["profile", "--db", str(db), "--json"], env))
    counts, n = roll.counts(), len(roll.items)
    result = {
        "roll": roll.name, "why": roll.why, "items": n, "portraits": roll.portraits(),
        "dominant": roll.dominant,
        "true_shares": {g: round(c / n, 4) for g, c in counts.items()},
        "analysed": profile.get("gallery", {}).get("photos"),
        "failed": summary.get("failed", 0),
        "failures": summary.get("failures", []),
        **score(profile.get("categories", []), counts, n, roll.dominant, rules.false_share),
        "profile_groups": [{"group": c["group"], "media": c.get("media")}
                           for c in profile.get("categories", []) if c.get("group") not in NOT_INTERESTS],
        "seconds": {"build": round(built, 2), "scan": round(scanned, 2)},
        "db": str(db), "folder": str(folder),
    }
    if explain:
        result["explain"] = explain_roll(roll, profile, db, env)
    return result


# ---------------------------------------------------------------------------------------------
# --explain: what puts photos in a group they do not show, and what a dominant group misses

def explain_roll(roll: Roll, profile: dict, db: Path, env: dict[str, str]) -> dict:
    """Per explained group: the photos the profile puts there that do not truly show it
    ("wrong"), and for a dominant group the photos that show it but are not there ("missed"),
    each with the payload evidence from `galprof show`."""
    by_name = {item.name: item for item in roll.items}
    folder = db.with_suffix("")     # the roll folder sits beside its database
    feeds = label_feeds()
    ranked = [c for c in profile.get("categories", []) if c.get("group") not in NOT_INTERESTS]
    top = {c["group"] for c in ranked[:TOP_K]}
    shown_cache: dict[str, dict] = {}

    def show(path: str) -> dict:
        if path not in shown_cache:
            shown_cache[path] = json.loads(galprof(["show", path, "--db", str(db), "--json"], env))
        return shown_cache[path]

    members = {c["group"]: sorted({p for sub in c.get("subcategories", []) for p in sub.get("paths", [])})
               for c in ranked}
    out = {}
    for group in list(dict.fromkeys([c["group"] for c in ranked] + roll.dominant)):
        paths = members.get(group, [])
        wrong = [p for p in paths if group not in getattr(by_name.get(Path(p).name), "truth", ())]
        if group not in top and group not in roll.dominant and len(wrong) < EXPLAIN_MIN_WRONG:
            continue
        missed = []
        if group in roll.dominant:
            listed = {Path(p).name for p in paths}
            missed = [str(folder / it.name) for it in roll.items
                      if group in it.truth and it.name not in listed]

        def facts(path: str) -> dict:
            item = by_name.get(Path(path).name)
            return evidence(show(path), group, feeds, sorted(item.truth) if item else None)

        out[group] = {"top3": group in top, "profile_media": len(paths),
                      "true_media": roll.counts().get(group, 0),
                      "wrong": [facts(p) for p in wrong], "missed": [facts(p) for p in missed]}
    return out


def label_feeds() -> dict[tuple[str, object], set[str]]:
    """(source, label or ImageNet index) -> high-level groups, read from the taxonomy data files.
    Best effort (the files' format may change): an empty map just drops the attribution."""
    try:
        tdir = REPO / "galprof" / "taxonomy"
        with open(tdir / "taxonomy.toml", "rb") as f:
            tax = tomllib.load(f)
        with open(tdir / "scenes.toml", "rb") as f:
            scenes = tomllib.load(f)
        fine = tax["fine"]
        feeds: dict[tuple[str, object], set[str]] = {}
        for source in ("coco", "imagenet"):
            entries = tax[source]
            for key, entry in entries.items():
                target = entry
                if entry.get("see"):
                    see = entry["see"]
                    target = tax["coco"].get(see[5:], {}) if see.startswith("coco:") else entries.get(see, {})
                groups = {fine[c] for c in target.get("categories", []) if c in fine}
                if source == "imagenet":
                    scene = scenes.get("imagenet", {}).get(key)
                    if scene and scene in scenes.get("groups", {}):
                        groups.add(scenes["groups"][scene]["group"])
                    feeds[(source, entry.get("index"))] = groups
                else:
                    feeds[(source, key)] = groups
        return feeds
    except (OSError, KeyError, TypeError, AttributeError, tomllib.TOMLDecodeError):
        return {}


def evidence(shown: dict, group: str, feeds: dict, truth: list[str] | None) -> dict:
    """The payload facts that could tell subject from context, for one photo and one group."""
    media = shown.get("media", {})
    w, h = media.get("width") or 1, media.get("height") or 1
    results = shown.get("results", {})

    def geometry(box):
        x0, y0, x1, y1 = box
        area = max(0.0, (x1 - x0) * (y1 - y0)) / (w * h)
        # 0 at the centre of the picture, 1 in a corner.
        dist = math.hypot((x0 + x1) / 2 / w - 0.5, (y0 + y1) / 2 / h - 0.5) / math.hypot(0.5, 0.5)
        return round(area, 3), round(dist, 2)

    objects = []
    for frame in results.get("objects", {}).get("payload", {}).get("frames", [])[:1]:
        for det in frame.get("detections", []):
            area, dist = geometry(det["box"])
            objects.append({"label": det["label"], "score": round(det["score"], 2), "area": area,
                            "centre_dist": dist, "feeds": group in feeds.get(("coco", det["label"]), ())})
    scenes = results.get("scenes", {}).get("payload", {}).get("scenes", [])[:5]
    top = [{"rank": i + 1, "label": s["label"], "score": round(s["score"], 3),
            "feeds": group in feeds.get(("imagenet", s.get("index")), ())} for i, s in enumerate(scenes)]
    faces = []
    for frame in results.get("faces", {}).get("payload", {}).get("frames", [])[:1]:
        for face in frame.get("faces", []):
            area, dist = geometry(face["box"])
            age = face.get("age")       # none for a face too small for the analyser
            faces.append({"area": area, "centre_dist": dist,
                          "age": round(age, 1) if age is not None else None})
    return {
        "path": media.get("path"), "truth": truth, "taken_at": media.get("taken_at"),
        "categories": [c for c in shown.get("categories", []) if c.get("group") == group],
        "objects": objects, "scenes": top,
        "scene_margin": round(scenes[0]["score"] - scenes[1]["score"], 3) if len(scenes) > 1 else None,
        "faces": faces,
    }


# ---------------------------------------------------------------------------------------------
# Output

def render(results: list[dict], summary: dict) -> str:
    lines = [f"{'roll':<9} {'items':>5} {'portr':>5}  {'dominant':<28} {'top-3 (profile media)':<52} "
             f"{'hit@3':<5}  false top-3 (true share)"]
    for r in results:
        top = ", ".join(f"{t['group']} {t['media']}" for t in r["top3"])
        false = ", ".join(f"{f['group']} ({f['true_share']:.0%})" for f in r["false_top3"]) or "-"
        tie = f"  [tie at 3: {', '.join(r['tie_at_3'])}]" if r["tie_at_3"] else ""
        lines.append(f"{r['roll']:<9} {r['items']:>5} {r['portraits'] / r['items']:>5.0%}  "
                     f"{', '.join(r['dominant']):<28} {top:<52} {'yes' if r['hit_at_3'] else 'NO':<5}  "
                     f"{false}{tie}")
    lines.append("")
    for r in results:
        ranks = ", ".join(f"{g} #{k}" for g, k in r["dominant_rank"].items())
        truth = ", ".join(f"{g} {s:.1%}" for g, s in r["true_shares"].items())
        fails = f"; {r['failed']} files failed" if r["failed"] else ""
        lines.append(f"{r['roll']}: dominant {ranks}; true shares {truth}; "
                     f"scan {r['seconds']['scan']} s{fails}")
    lines.append("")
    lines.append(f"hit@3: {summary['hit_at_3']}/{summary['rolls']} rolls; "
                 f"false top-3: {summary['false_top3_rolls']}/{summary['rolls']} rolls")
    for r in results:
        for group, ex in r.get("explain", {}).items():
            lines.append(f"\n{r['roll']}: {group}{' (top-3)' if ex['top3'] else ''}: profile "
                         f"{ex['profile_media']} photos, truly {ex['true_media']}; "
                         f"{len(ex['wrong'])} wrong, {len(ex['missed'])} missed")
            for kind in ("wrong", "missed"):
                for p in ex[kind]:
                    lines.append(f"  {kind}: " + render_evidence(p))
    return "\n".join(lines)


def render_evidence(p: dict) -> str:
    cats = ", ".join(f"{c['category']} {c['confidence']:.2f}" for c in p["categories"])
    objs = ", ".join(f"{'*' if o['feeds'] else ''}{o['label']} {o['score']:.2f} a{o['area']:.2f} "
                     f"c{o['centre_dist']:.1f}" for o in p["objects"])
    scenes = ", ".join(f"{'*' if s['feeds'] else ''}{s['label']} {s['score']:.2f}" for s in p["scenes"])
    faces = ", ".join(f"a{f['area']:.3f} age {'-' if f['age'] is None else round(f['age'])}"
                      for f in p["faces"])
    truth = "/".join(p["truth"]) if p["truth"] else "-"
    return (f"{Path(p['path']).name} [truth {truth}] <- {cats}\n"
            f"      objects: {objs or '-'}\n      scenes: {scenes or '-'} (margin {p['scene_margin']})\n"
            f"      faces: {faces or '-'}; taken {p['taken_at']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rolls", help="comma-separated roll names (default: all)")
    parser.add_argument("--rolls-file", type=Path, default=DEFAULT_ROLLS)
    parser.add_argument("--media", type=Path, default=SHARED / "testmedia")
    parser.add_argument("--threads", type=int, default=None, help="passed to galprof scan")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--explain", action="store_true",
                        help="show the payload evidence of the wrong and missed photos of the "
                             "top-3, the dominant groups and groups with 3+ wrong photos")
    parser.add_argument("--keep", type=Path, help="write rolls and databases here and keep them")
    args = parser.parse_args(argv)
    only = [r for r in (args.rolls or "").split(",") if r]
    try:
        rules, rolls = load_rolls(args.rolls_file, args.media, only)
    except RollError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    tmp = None
    if args.keep:
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="galprof-rolls-")
        work = Path(tmp.name)
    try:
        results = [measure_roll(roll, rules, args.media, work, args.threads, args.explain) for roll in rolls]
    except (RollError, RuntimeError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    finally:
        if tmp:
            tmp.cleanup()
    if tmp:     # the folders and databases are gone: do not name them
        for r in results:
            del r["db"], r["folder"]
    summary = summarize(results)
    if args.json:
        print(json.dumps({"summary": summary, "rolls": results}, indent=2))
    else:
        print(render(results, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
