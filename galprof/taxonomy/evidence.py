"""What one media item shows, as the interest scoring needs it: each object with the share
of the picture it covers, the classifier's classes, and the faces with their size and age.

Built from the stored stage payloads (`from_payloads`), so the scoring sees what the
photo is *of*: a car filling the frame or a parked car far away, a tie on a person or in a
shop window, a child's face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from galprof.payloads import FaceKey, FacesPayload, ObjectsPayload, ScenesPayload, VideoRule


@dataclass(frozen=True)
class SeenObject:
    label: str
    score: float               # best score over the frames
    area: float | None         # share of the picture its boxes cover (largest over frames);
                               # None: unknown (no boxes), taken as a subject
    count: int = 1


@dataclass(frozen=True)
class SeenFace:
    area: float                # share of the picture the face box covers
    age: float | None          # estimated age (None: too small for identity)
    owner: bool = False        # the face belongs to the gallery's owner


@dataclass
class Evidence:
    objects: list[SeenObject] = field(default_factory=list)
    scenes: list[tuple[str, float, int]] = field(default_factory=list)  # (label, prob, index)
    faces: list[SeenFace] | None = None        # None: the faces stage has not run

    def person_area(self) -> float:
        return max((o.area for o in self.objects if o.label == "person" and o.area is not None),
                   default=0.0)

    def face_area(self) -> float:
        return max((f.area for f in self.faces or ()), default=0.0)

    @classmethod
    def from_labels(cls, objects=(), scenes=()) -> "Evidence":
        """Objects as (label, score) with no boxes (each taken as a subject)."""
        return cls([SeenObject(label, score, None) for label, score in objects], list(scenes))

    @classmethod
    def from_payloads(cls, objects: ObjectsPayload | None, scenes: ScenesPayload | None,
                      faces: FacesPayload | None, width: int | None, height: int | None,
                      threshold: Callable[[str], float] | None = None,
                      owner_faces: set[FaceKey] | None = None) -> "Evidence":
        picture = float(width * height) if width and height else 0.0

        def share(box) -> float | None:
            if not picture or box is None:
                return None          # no size known: the object counts as a subject
            x1, y1, x2, y2 = box
            return max(0.0, x2 - x1) * max(0.0, y2 - y1) / picture

        seen = []
        if objects is not None:
            areas: dict[str, float] = {}
            for _, detections in objects.frames:
                per_frame: dict[str, float] = {}
                for d in detections:
                    a = share(d.box)
                    if a is not None and (threshold is None or d.score >= threshold(d.label)):
                        per_frame[d.label] = per_frame.get(d.label, 0.0) + a
                for label, a in per_frame.items():
                    areas[label] = max(areas.get(label, 0.0), min(a, 1.0))
            for o in objects.summary(threshold, VideoRule()):
                seen.append(SeenObject(o.label, o.score, areas.get(o.label), o.count))
        seen_faces = None
        if faces is not None:
            owner_faces = owner_faces or set()
            seen_faces = [SeenFace(share(face.box) or 0.0, face.age, key in owner_faces)
                          for _, _, face, key in faces.faces()]
        return cls(seen, [(s.label, s.score, s.index) for s in (scenes.scenes if scenes else [])],
                   seen_faces)
