"""Per-person facts, the owner, relations to the owner and the "Demography" histogram data.

Pure functions over per-face arrays that a store can feed with one join (faces x media):
for each face its person id (from clustering or a manual fix; -1/None = unknown), its
media id, the model's male probability and age, the media's capture date, and whether the
media is a video and a selfie. Rules follow the seed (paper) on the age bins
{0, 7, 12, 17, 24, 34, 44, 54, 100}; every tunable is in `galprof.people.params`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from galprof.people.params import RELATIONS, RelationParams

GENDERS = ("male", "female", "unknown")


@dataclass(frozen=True)
class Person:
    person_id: Hashable
    faces: int
    photos: int                 # distinct photos (media that are not videos)
    videos: int                 # distinct videos
    male_prob: float            # mean over the person's faces (NaN when none had one)
    gender: str                 # male | female | unknown
    age: float | None           # median estimated age at photo time
    birth_year: int | None      # median of (photo year - estimated age) over dated faces
    first: dt.date | None
    last: dt.date | None
    days: int                   # distinct days with this person
    selfies: int                # distinct selfie media with this person

    @property
    def span_days(self) -> int:
        return (self.last - self.first).days if self.first and self.last else 0

    def age_in(self, year: int | None) -> float | None:
        """Age in `year` from the birth year, else the median age at photo time."""
        if year is not None and self.birth_year is not None:
            return float(year - self.birth_year)
        return self.age

    def as_dict(self) -> dict:
        d = asdict(self)
        d["first"] = self.first.isoformat() if self.first else None
        d["last"] = self.last.isoformat() if self.last else None
        d["span_days"] = self.span_days
        return d


@dataclass(frozen=True)
class Owner:
    person_id: Hashable
    guess: bool                 # True when chosen by distinct days (no selfies at all)
    selfies: int
    days: int


@dataclass(frozen=True)
class Relation:
    person_id: Hashable
    role: str                   # friend | partner | mother | father | parent | child | other
    bin_offset: int             # the person's age bin minus the owner's


@dataclass(frozen=True)
class Demography:
    bins: tuple[tuple[int, int], ...]   # [low, high) years
    male: tuple[int, ...]
    female: tuple[int, ...]
    unknown: tuple[int, ...]

    @property
    def labels(self) -> list[str]:
        return [f"{lo}-{hi - 1}" for lo, hi in self.bins]

    def as_dict(self) -> dict:
        return {"bins": self.labels, "male": list(self.male), "female": list(self.female),
                "unknown": list(self.unknown)}


def summarise_people(person_ids: Sequence[Hashable | None], media_ids: Sequence[Hashable],
                     male_prob: Sequence[float] | None = None, ages: Sequence[float] | None = None,
                     dates: Sequence[dt.date | dt.datetime | str | None] | None = None,
                     is_video: Sequence[bool] | None = None, selfie: Sequence[bool] | None = None,
                     params: RelationParams = RELATIONS) -> dict[Hashable, Person]:
    """One Person per id in `person_ids` (faces with None or a negative int id are skipped).

    All arguments are per face; media-level values (date, is_video, selfie) repeat on each
    face of that media. Gender: mean male probability >= params.male_threshold is male.
    """
    n = len(person_ids)
    if len(media_ids) != n:
        raise ValueError(f"media_ids has {len(media_ids)} values for {n} faces")
    male_prob = _floats(male_prob, n, "male_prob")
    ages = _floats(ages, n, "ages")
    days = [_day(d) for d in dates] if dates is not None else [None] * n
    video = _flags(is_video, n, "is_video")
    selfies = _flags(selfie, n, "selfie")
    if len(days) != n:
        raise ValueError(f"dates has {len(days)} values for {n} faces")
    members: dict[Hashable, list[int]] = {}
    for i, pid in enumerate(person_ids):
        if pid is None or (isinstance(pid, (int, np.integer)) and pid < 0):
            continue
        members.setdefault(pid.item() if isinstance(pid, np.generic) else pid, []).append(i)
    people = {}
    for pid, idx in members.items():
        probs = male_prob[idx][np.isfinite(male_prob[idx])]
        mp = float(probs.mean()) if len(probs) else float("nan")
        gender = "unknown" if not len(probs) else ("male" if mp >= params.male_threshold
                                                   else "female")
        face_ages = ages[idx]
        known = np.isfinite(face_ages)
        dated = [(days[i].year - ages[i]) for i in idx if days[i] and np.isfinite(ages[i])]
        when = [days[i] for i in idx if days[i]]
        people[pid] = Person(
            person_id=pid, faces=len(idx),
            photos=len({media_ids[i] for i in idx if not video[i]}),
            videos=len({media_ids[i] for i in idx if video[i]}),
            male_prob=mp, gender=gender,
            age=float(np.median(face_ages[known])) if known.any() else None,
            birth_year=round(float(np.median(dated))) if dated else None,
            first=min(when) if when else None, last=max(when) if when else None,
            days=len(set(when)), selfies=len({media_ids[i] for i in idx if selfies[i]}))
    return people


def find_owner(people: Mapping[Hashable, Person]) -> Owner | None:
    """The person with the most selfies; with no selfies anywhere, the person seen on the
    most distinct days, flagged as a guess.

    Ties: more days, then more photos and videos, then the smallest id (`id_order`:
    integers by value, other ids as text). So a tie goes the same way on every platform:
    `cluster.cluster_faces` numbers people by their first face in the caller's
    `order_keys` (the store's: earliest photo, then smallest media path), never by feature
    values, and the store creates its person rows in that label order, so the smallest
    new id is the person seen first (ids kept from earlier scans keep their number).
    """
    if not people:
        return None
    has_selfies = any(p.selfies for p in people.values())

    def rank(p: Person):
        first = p.selfies if has_selfies else p.days
        return (-first, -p.days, -(p.photos + p.videos), id_order(p.person_id))

    best = min(people.values(), key=rank)
    return Owner(best.person_id, guess=not has_selfies, selfies=best.selfies, days=best.days)


def id_order(person_id: Hashable) -> tuple:
    """Sort key of a person id for ties: integers by value (9 before 10), then other ids as
    text, so that mixed ids still compare."""
    if isinstance(person_id, (int, np.integer)) and not isinstance(person_id, bool):
        return (0, int(person_id), "")
    return (1, 0, str(person_id))


def qualifies(person: Person, params: RelationParams = RELATIONS) -> bool:
    """Close enough for a relation: seen in enough media over a long enough span."""
    return (person.photos + person.videos >= params.min_photos
            and person.span_days >= params.min_span_days)


def age_bin(age: float | None, bins: Sequence[int] = RELATIONS.age_bins) -> int | None:
    """Index i with bins[i] <= age < bins[i+1]; ages past the last edge go in the last bin."""
    if age is None or not np.isfinite(age):
        return None
    i = int(np.searchsorted(bins, age, side="right")) - 1
    return min(max(i, 0), len(bins) - 2)


def relations(people: Mapping[Hashable, Person], owner_id: Hashable,
              params: RelationParams = RELATIONS,
              reference_year: int | None = None) -> dict[Hashable, Relation]:
    """Relation to the owner of every qualifying person (others are left out).

    Ages are compared in `reference_year` (default: the latest year any person was seen)
    through birth years. Same age bin → friend; the opposite-gender friend with
    params.partner_lead times the photos of the next opposite-gender friend → partner;
    params.parent_child_bins or more bins older → mother/father (parent if gender is
    unknown); as many younger → child; anything else → other.
    """
    params = params.check()
    if owner_id not in people:
        raise ValueError(f"owner {owner_id!r} is not one of the people")
    owner = people[owner_id]
    year = reference_year or _latest_year(people)
    owner_bin = age_bin(owner.age_in(year), params.age_bins)
    out: dict[Hashable, Relation] = {}
    if owner_bin is None:
        return out
    for pid, person in people.items():
        if pid == owner_id or not qualifies(person, params):
            continue
        b = age_bin(person.age_in(year), params.age_bins)
        if b is None:
            continue
        offset = b - owner_bin
        if offset == 0:
            role = "friend"
        elif offset >= params.parent_child_bins:
            role = {"male": "father", "female": "mother"}.get(person.gender, "parent")
        elif offset <= -params.parent_child_bins:
            role = "child"
        else:
            role = "other"
        out[pid] = Relation(pid, role, offset)
    opposite = {"male": "female", "female": "male"}.get(owner.gender)
    candidates = sorted((r for r in out.values() if r.role == "friend"
                         and opposite and people[r.person_id].gender == opposite),
                        key=lambda r: (-_media(people[r.person_id]), id_order(r.person_id)))
    if candidates:
        lead = _media(people[candidates[0].person_id])
        runner_up = _media(people[candidates[1].person_id]) if len(candidates) > 1 else 0
        if lead >= params.partner_lead * runner_up and lead > runner_up:
            pid = candidates[0].person_id
            out[pid] = Relation(pid, "partner", 0)
    return out


def demography(people: Mapping[Hashable, Person], owner_id: Hashable | None = None,
               params: RelationParams = RELATIONS,
               reference_year: int | None = None) -> Demography:
    """Counts of the close (qualifying) people per age bin and gender, owner excluded."""
    bins = params.check().age_bins
    k = len(bins) - 1
    counts = {g: [0] * k for g in GENDERS}
    year = reference_year or _latest_year(people)
    for pid, person in people.items():
        if pid == owner_id or not qualifies(person, params):
            continue
        b = age_bin(person.age_in(year), bins)
        if b is not None:
            counts[person.gender][b] += 1
    return Demography(tuple(zip(bins[:-1], bins[1:])), tuple(counts["male"]),
                      tuple(counts["female"]), tuple(counts["unknown"]))


# --- internals ------------------------------------------------------------------------

def _media(p: Person) -> int:
    return p.photos + p.videos


def _latest_year(people: Mapping[Hashable, Person]) -> int | None:
    years = [p.last.year for p in people.values() if p.last]
    return max(years) if years else None


def _floats(values, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    out = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values for {n} faces")
    return out


def _flags(values, n: int, name: str) -> list[bool]:
    if values is None:
        return [False] * n
    out = [bool(v) for v in values]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values for {n} faces")
    return out


def _day(value) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else value.astype("datetime64[D]").item()
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        raise ValueError(f"date {value!r} is not ISO 8601") from None
