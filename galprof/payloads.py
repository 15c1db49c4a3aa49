"""What each stage says about one media item: typed payloads and their JSON round trip.

A stage returns one of these; the store keeps `to_json()` as the result's JSON and
`arrays()` (numpy arrays such as face features) as a BLOB beside it, and gives back
the same class through `decode(stage, json, arrays)`. Every consumer (people, privacy,
profile, show, the remote tier) reads these classes, never the raw JSON, so the shape
of a result is written down once, here. Boxes are x1, y1, x2, y2 in pixels of the
original oriented media (what a person sees); frame `index` is 0 for a photo and the
decoded frame number for a video.

The JSON keeps the shapes of galprof 0.1.0, so results cached by it stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, ClassVar, NamedTuple

import numpy as np

from galprof import tunables

Box = tuple[float, float, float, float]


def _box(values) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _round(values, digits: int = 1) -> list[float]:
    return [round(float(v), digits) for v in values]


# ------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: Box

    def to_json(self) -> dict:
        return {"label": self.label, "score": round(float(self.score), 4), "box": _round(self.box)}

    @classmethod
    def from_json(cls, d: dict) -> "Detection":
        return cls(d["label"], float(d["score"]), _box(d["box"]))

    def scaled(self, factor: float) -> "Detection":
        """The same detection with its box multiplied by `factor`."""
        return Detection(self.label, self.score, _box(v * factor for v in self.box))


@dataclass(frozen=True)
class ObjectSummary:
    """One label over a media item: its best score and box, frames seen, most at once."""

    label: str
    score: float
    frames_seen: int
    count: int
    box: Box | None

    def to_json(self) -> dict:
        return {"label": self.label, "score": round(float(self.score), 4),
                "frames_seen": self.frames_seen, "count": self.count,
                "box": _round(self.box) if self.box is not None else None}

    @classmethod
    def from_json(cls, d: dict) -> "ObjectSummary":
        return cls(d["label"], float(d["score"]), int(d.get("frames_seen", 1)),
                   int(d.get("count", 1)), _box(d["box"]) if d.get("box") else None)


@tunables.defaults("video")
class VideoRule:
    """Which objects of a video count ([video] in galprof/tunables.toml)."""

    min_frames: int
    high_confidence: float


@dataclass
class ObjectsPayload:
    stage: ClassVar[str] = "objects"
    frames: list[tuple[int, list[Detection]]]          # (frame index, detections)
    tier: str = "device"

    def summary(self, threshold: Callable[[str], float] | None = None,
                rule: VideoRule = VideoRule()) -> list[ObjectSummary]:
        """Per-label summary over the frames, best score first. `threshold(label)` is the
        minimum score a detection needs to count (the taxonomy's per-class thresholds,
        applied here at read time so that changing them needs no re-scan); with several
        frames, the video rule applies."""
        best: dict[str, dict] = {}
        for _, detections in self.frames:
            counts: dict[str, int] = {}
            for d in detections:
                if threshold is not None and d.score < threshold(d.label):
                    continue
                counts[d.label] = counts.get(d.label, 0) + 1
                entry = best.setdefault(d.label, {"score": 0.0, "box": None, "seen": 0, "count": 0})
                if d.score > entry["score"]:
                    entry["score"], entry["box"] = d.score, d.box
            for label, n in counts.items():
                best[label]["seen"] += 1
                best[label]["count"] = max(best[label]["count"], n)
        out = [ObjectSummary(label, round(float(e["score"]), 4), e["seen"], e["count"], e["box"])
               for label, e in best.items()]
        if len(self.frames) > 1:
            out = [o for o in out if o.frames_seen >= rule.min_frames
                   or o.score >= rule.high_confidence]
        return sorted(out, key=lambda o: -o.score)

    def to_json(self) -> dict:
        d = {"frames": [{"index": i, "detections": [x.to_json() for x in dets]}
                        for i, dets in self.frames],
             "objects": [o.to_json() for o in self.summary()]}
        if self.tier != "device":
            d["tier"] = self.tier
        return d

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_json(cls, d: dict, arrays: dict | None = None) -> "ObjectsPayload":
        return cls([(int(f["index"]), [Detection.from_json(x) for x in f.get("detections", [])])
                    for f in d.get("frames", [])], d.get("tier", "device"))


# ------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SceneLabel:
    label: str      # canonical ImageNet name
    index: int      # ImageNet class index, 0..999 (background excluded)
    score: float    # probability

    def to_json(self) -> dict:
        return {"label": self.label, "index": self.index, "score": round(float(self.score), 4)}

    @classmethod
    def from_json(cls, d: dict) -> "SceneLabel":
        return cls(d["label"], int(d["index"]) if d.get("index") is not None else -1,
                   float(d["score"]))


@dataclass
class ScenesPayload:
    stage: ClassVar[str] = "scenes"
    frames: list[tuple[int, list[SceneLabel]]]   # (frame index, top classes of that frame)
    scenes: list[SceneLabel]                     # top classes of the mean over frames
    features: np.ndarray | None = None           # float32 photo feature vector (mean over frames)
    tier: str = "device"

    def to_json(self) -> dict:
        d = {"frames": [{"index": i, "top": [s.to_json() for s in top]} for i, top in self.frames],
             "scenes": [s.to_json() for s in self.scenes]}
        if self.tier != "device":
            d["tier"] = self.tier
        return d

    def arrays(self) -> dict[str, np.ndarray]:
        return {} if self.features is None else {"features": np.asarray(self.features, np.float32)}

    @classmethod
    def from_json(cls, d: dict, arrays: dict | None = None) -> "ScenesPayload":
        return cls([(int(f["index"]), [SceneLabel.from_json(s) for s in f.get("top", [])])
                    for f in d.get("frames", [])],
                   [SceneLabel.from_json(s) for s in d.get("scenes", [])],
                   (arrays or {}).get("features"), d.get("tier", "device"))


# ------------------------------------------------------------------------- faces


class FaceKey(NamedTuple):
    """Where one face row lives in a media item: (frame index, position in that frame's
    faces) for a photo, (first frame index of the track, track id) for a video face.
    The people pass keeps one row per key; privacy and `show` find a face's person by it."""

    frame_idx: int
    face_idx: int


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    keypoints: list[tuple[float, float]]   # 0/1 eyes (image-left, right), 2 nose, 3 mouth, 4/5 ears
    age: float | None                      # None for faces too small for identity
    male_prob: float | None
    identity: bool                         # big enough for identity features
    feature_row: int | None                # row in FacesPayload.features
    track: int | None = None               # face track within a video

    def to_json(self) -> dict:
        return {"box": _round(self.box), "score": round(float(self.score), 3),
                "keypoints": [_round(p) for p in self.keypoints],
                "age": None if self.age is None else round(float(self.age), 1),
                "male_prob": None if self.male_prob is None else round(float(self.male_prob), 3),
                "identity": self.identity, "feature_row": self.feature_row, "track": self.track}

    @classmethod
    def from_json(cls, d: dict) -> "Face":
        return cls(_box(d["box"]), float(d.get("score") or 0.0),
                   [tuple(float(v) for v in p) for p in d.get("keypoints") or []],
                   d.get("age"), d.get("male_prob"), bool(d.get("identity")),
                   d.get("feature_row"), d.get("track"))


@dataclass(frozen=True)
class FacesFrame:
    index: int
    timestamp: float | None
    faces: list[Face]


@dataclass(frozen=True)
class Track:
    id: int
    frames: list[int]              # frame indexes the track was seen in
    faces: int
    feature_row: int | None        # row in FacesPayload.track_features


@dataclass(frozen=True)
class FaceRow:
    """One person-bearing face of a media item: a photo face, or a video face track."""

    key: FaceKey
    track: int | None
    box: Box
    score: float
    age: float | None
    male_prob: float | None
    features: np.ndarray | None


@dataclass
class FacesPayload:
    stage: ClassVar[str] = "faces"
    frames: list[FacesFrame]
    tracks: list[Track] = field(default_factory=list)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 1024), np.float32))
    track_features: np.ndarray | None = None     # videos only
    is_video: bool = False

    @property
    def count(self) -> int:
        return sum(len(f.faces) for f in self.frames)

    @cached_property
    def _track_starts(self) -> dict[int, int]:
        return {t.id: t.frames[0] for t in self.tracks if t.frames}

    def key(self, frame: FacesFrame, position: int, face: Face) -> FaceKey:
        """The key of the face row a detected face belongs to (see FaceKey)."""
        if face.track is not None and face.track in self._track_starts:
            return FaceKey(self._track_starts[face.track], face.track)
        return FaceKey(frame.index, position)

    def faces(self):
        """(frame, position in frame, face, key) for every detected face."""
        for frame in self.frames:
            for position, face in enumerate(frame.faces):
                yield frame, position, face, self.key(frame, position, face)

    def rows(self) -> list[FaceRow]:
        """The person-bearing rows: one per photo face, one per video face track (its
        median age, mean male probability and averaged feature)."""
        if not self.tracks:
            return [FaceRow(key, None, face.box, face.score, face.age, face.male_prob,
                            self._feature(face.feature_row))
                    for _, _, face, key in self.faces()]
        firsts: dict[int, Face] = {}
        ages: dict[int, list[float]] = {}
        males: dict[int, list[float]] = {}
        for _, _, face, _ in self.faces():
            if face.track is None:
                continue
            firsts.setdefault(face.track, face)
            if face.age is not None:
                ages.setdefault(face.track, []).append(face.age)
            if face.male_prob is not None:
                males.setdefault(face.track, []).append(face.male_prob)
        rows = []
        for t in self.tracks:
            face = firsts[t.id]
            feature = None
            if t.feature_row is not None and self.track_features is not None:
                feature = self.track_features[t.feature_row]
            rows.append(FaceRow(FaceKey(t.frames[0], t.id), t.id, face.box, face.score,
                                float(np.median(ages[t.id])) if ages.get(t.id) else None,
                                float(np.mean(males[t.id])) if males.get(t.id) else None,
                                feature))
        return rows

    def _feature(self, row: int | None) -> np.ndarray | None:
        if row is None or self.features is None or row >= len(self.features):
            return None
        return self.features[row]

    def to_json(self) -> dict:
        feature_index = [[position_of_frame, k]
                         for position_of_frame, f in enumerate(self.frames)
                         for k, face in enumerate(f.faces) if face.feature_row is not None]
        return {"frames": [{"index": f.index, "timestamp": f.timestamp,
                            "faces": [face.to_json() for face in f.faces]} for f in self.frames],
                "faces": self.count, "feature_index": feature_index,
                "tracks": [{"id": t.id, "frames": list(t.frames), "faces": t.faces,
                            "feature_row": t.feature_row} for t in self.tracks]}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"features": np.asarray(self.features, np.float32).reshape(-1, 1024)}
        if self.is_video:
            tf = self.track_features if self.track_features is not None else np.zeros((0, 1024))
            out["track_features"] = np.asarray(tf, np.float32).reshape(-1, 1024)
        return out

    @classmethod
    def from_json(cls, d: dict, arrays: dict | None = None) -> "FacesPayload":
        arrays = arrays or {}
        frames = [FacesFrame(int(f["index"]), f.get("timestamp"),
                             [Face.from_json(x) for x in f.get("faces", [])])
                  for f in d.get("frames", [])]
        tracks = [Track(int(t["id"]), [int(i) for i in t.get("frames", [])], int(t.get("faces", 0)),
                        t.get("feature_row")) for t in d.get("tracks") or []]
        features = arrays.get("features")
        if features is None:
            features = np.zeros((0, 1024), np.float32)
        return cls(frames, tracks, features, arrays.get("track_features"),
                   is_video="track_features" in arrays or bool(tracks))


# ------------------------------------------------------------------------- registry

PAYLOADS: dict[str, type] = {c.stage: c for c in (ObjectsPayload, ScenesPayload, FacesPayload)}
# Payload classes that live beside an optional stage (its module imports nothing heavy).
LAZY = {"text": "galprof.vision.text:TextPayload"}


def payload_class(stage: str) -> type | None:
    if stage not in PAYLOADS and stage in LAZY:
        import importlib
        module, name = LAZY[stage].split(":")
        PAYLOADS[stage] = getattr(importlib.import_module(module), name)
    return PAYLOADS.get(stage)


def decode(stage: str, data: dict, arrays: dict | None = None):
    """The typed payload of a stored result; a stage without a class gets its dict back."""
    cls = payload_class(stage)
    if cls is None:
        return dict(data, arrays=arrays) if arrays else data
    return cls.from_json(data, arrays)


def encode(payload) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON dict, arrays) of a payload object, or of a plain dict with an "arrays" key."""
    if isinstance(payload, dict):
        d = dict(payload)
        return d, d.pop("arrays", None) or {}
    return payload.to_json(), payload.arrays()
