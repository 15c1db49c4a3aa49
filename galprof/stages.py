"""The seam between ingestion and the models: stages.

A stage receives the decoded frames of one media item (a photo has one frame, a
video several) and returns a JSON-serialisable payload. The store caches that
payload per media content hash, stage name and stage version, so a re-scan skips
a stage whose version is unchanged and a new model re-runs only its own stage.

Stages are pure functions of pixels (plus the outputs of the stages they require);
gallery passes (people, privacy, places) run later, from the store (galprof/pipeline/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
from PIL import Image

from galprof.vision import transforms

# Frame.cached key of the frame's image as a PIL image with its downscaled copy
# (Frame.downscaled, Frame.picture).
PICTURE = "picture"
# The copy's long side: the objects detector's input, so that the copy is that input and
# the scenes' and face detector's inputs are resized from it.
DOWNSCALED_SIDE = 416
# Frames a scan analyses at once (pipeline/analysis.py); each model call gets this share
# of the cores (build_stages).
ANALYSES_AT_ONCE = 2


@dataclass(eq=False)
class Frame:
    """One decoded picture of a media item, oriented as a person sees it.

    Two things let the decoder give less than the largest size any stage may want:
    - `at_least(long_side)`: a frame decoded from an embedded preview (a HEIC's) gives
      its full picture at that size on demand, decoded once from the same bytes;
    - `same_as`: a video frame nearly identical to an earlier sampled one carries that
      frame's index and image; a stage gives it that frame's result (the sampled frame
      still counts, so the video rules see every sampled frame).
    `cached(key, make)` keeps what stages derive from the image (their resized inputs),
    so each is made once per frame whichever stage, or decode thread, asks first;
    `picture()` is the image as Pillow resizes it, kept until forgotten.
    """

    index: int                  # 0 for a photo; the decoded frame number for a video
    timestamp: float | None     # seconds from the start of a video; None for a photo
    image: np.ndarray           # RGB uint8, (H, W, 3), at analysis size
    scale: float                # image pixels per original (oriented) pixel, <= 1
    same_as: int | None = None  # video: index of the earlier sampled frame this one repeats
    # () -> (image, scale) of the full picture at the decoder's long side; None: no more
    enlarge: Callable[[], tuple[np.ndarray, float]] | None = field(default=None, repr=False)
    # The pipeline decodes full pictures in its decode threads, not in the stage that asks
    defer_enlarge: bool = field(default=False, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def reduced(self) -> bool:
        """True when this frame is a preview and a larger picture can be decoded."""
        return self.enlarge is not None

    def at_least(self, long_side: int) -> "Frame":
        """This frame with an image whose long side is at least `long_side` where the
        picture has that many pixels: itself when it has, else the full picture decoded
        once from the same bytes (kept for the next stage that asks). With `defer_enlarge`
        set, a full picture not yet decoded raises FullPictureNeeded instead."""
        if self.enlarge is None or max(self.image.shape[:2]) >= long_side:
            return self
        if self.defer_enlarge and "larger" not in self._cache:
            raise FullPictureNeeded(self)
        return self.decode_larger()

    def decode_larger(self) -> "Frame":
        """The full picture, decoded on the first call; a decoding error is kept and raised
        again to whoever asks, so that it is the asking stage's failure."""
        if "larger" not in self._cache:
            try:
                image, scale = self.enlarge()
                self._cache["larger"] = Frame(self.index, self.timestamp, image, scale)
            except Exception as e:
                self._cache["larger"] = e
        larger = self._cache["larger"]
        if isinstance(larger, Exception):
            raise larger
        return larger

    def largest_decoded(self) -> "Frame":
        """The full picture when a stage has had it decoded already, else this frame."""
        larger = self._cache.get("larger", self)
        return self if isinstance(larger, Exception) else larger

    def cached(self, key, make: Callable[[np.ndarray], Any], consumes: tuple = ()) -> Any:
        """make(self.image), computed once per key (a resized model input, say).
        `consumes`: keys of the cached inputs `make` uses that nothing needs once its value
        is kept (a model's input once its result is), forgotten then: a video's frames
        analysed as they decode wait, with their results, for the rest of the video."""
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = make(self.image)
            for used in consumes:
                self.forget(used)
            return value

    def downscaled(self) -> transforms.Downscaled:
        """The image as a PIL picture with one downscaled copy (long side DOWNSCALED_SIDE),
        the source of the whole-frame model inputs (a 1280 px frame is resized once at full
        size): the decoder's picture when it kept one (keep_picture), else made once (a
        1280 px copy costs ~3 ms, mostly page faults of a new mapping). The pipeline
        forgets it (PICTURE) once the inputs are made, a photo's once its faces are."""
        return self.cached(PICTURE, lambda image: transforms.Downscaled(Image.fromarray(image),
                                                                        DOWNSCALED_SIDE))

    def picture(self) -> Image.Image:
        """The image as a PIL image, for the stages' resizes and crops (Frame.downscaled)."""
        return self.downscaled().picture

    def cached_from_picture(self, key, make: Callable[[transforms.Downscaled], Any]) -> Any:
        """make(self.downscaled()), computed once per key: a model input resized from the
        frame's one PIL picture (or its downscaled copy)."""
        return self.cached(key, lambda _: make(self.downscaled()))

    def keep_picture(self, picture: Image.Image) -> None:
        """Keep a PIL image of exactly this frame's pixels made elsewhere (the decoder's)
        as its picture."""
        self._cache[PICTURE] = transforms.Downscaled(picture, DOWNSCALED_SIDE)

    def forget(self, key) -> None:
        self._cache.pop(key, None)


class FullPictureNeeded(Exception):
    """A stage asked a frame with `defer_enlarge` for its full picture (Frame.at_least),
    which is not decoded yet: the stage is run again once the picture is there."""

    def __init__(self, frame: Frame):
        super().__init__("the full picture is not decoded yet")
        self.frame = frame


class ModelsDeferred(Exception):
    """A stage with `defer_models` set found an item that needs its costly models: the
    pipeline runs the stage on the item again in its late pass, when the other stages'
    models and frames are gone, so that their memory and the late models' are never
    needed at once."""

    def __init__(self):
        super().__init__("the stage's models run in the late pass")


class Stage(Protocol):
    name: str                   # "objects", "scenes", "faces", ...: the results key
    requires: tuple[str, ...]   # names of stages whose payloads `run` needs
    long_side: int              # the long side (pixels) of the frames this stage wants

    @property
    def version(self) -> str:
        """Changes whenever the results could change (model hash, code revision)."""
        ...

    def load(self) -> None:
        """Load models; called before the first `run` that needs it. Raises SetupError if
        a model is missing. (A stage may also offer `check()`: the same test without
        loading anything, which the pipeline calls before any work.)"""
        ...

    # Optional: `unload()` lets go of the models once a run's per-item work is done (the
    # next `load()` opens them again).
    # Optional: `defer_models` (an attribute the pipeline sets): while true, `run` raises
    # ModelsDeferred where it would call models whose working memory is large and that
    # few items need (the text detector: ~140 MB for a call, on about 1 photo in 6), and
    # `load` loads none of them. Such a stage also has `threads` (its model calls', from
    # the next load), which the late pass raises to the cores two analyses shared.
    # Optional: `prepare(frames)`, called in a decode thread before `run`, makes the
    # stage's model inputs from the pixels (resizing, cropping) and keeps them with
    # Frame.cached, so that the inference thread only runs the models. Pure pixel work,
    # no model: it must give exactly what `run` would make itself.
    # Optional: `analyse(frame)`, called on each frame of an item before `run`, as soon as
    # the frame is decoded (a video's while the rest decode), on the inference thread or a
    # helper (pipeline/analysis.py), never beside another call of the same stage: the model
    # work of `run` on that one frame, kept with Frame.cached. Only for a stage that
    # requires none; `run` must give the same payload with or without it.

    def run(self, frames: list[Frame], upstream: dict[str, Any]) -> Any:
        """Analyse one media item. `upstream` maps each required stage to its payload.
        FullPictureNeeded from Frame.at_least must pass through: the pipeline runs the
        stage again when the picture is decoded, so counters are best kept after it.

        Returns a payload class of `galprof.payloads` (to_json / arrays / from_json), or
        a JSON-serialisable dict whose numpy arrays sit under the key "arrays" (name ->
        array): the store keeps the arrays as a BLOB beside the JSON.
        """
        ...


def order_stages(stages: list[Stage]) -> list[Stage]:
    """Stages sorted so that each comes after the ones it requires."""
    by_name = {s.name: s for s in stages}
    ordered: list[Stage] = []
    visiting: set[str] = set()

    def visit(stage: Stage) -> None:
        if stage in ordered:
            return
        if stage.name in visiting:
            raise ValueError(f"stage dependency cycle at {stage.name}")
        visiting.add(stage.name)
        for dep in stage.requires:
            if dep not in by_name:
                raise ValueError(f"stage {stage.name} requires {dep}, which is not enabled")
            visit(by_name[dep])
        visiting.discard(stage.name)
        ordered.append(stage)

    for s in stages:
        visit(s)
    return ordered


# Stage name -> "module:class" and the manifest roles of the models it runs. Imported
# lazily so that a scan without models never loads a runtime.
REGISTRY = {
    "objects": ("galprof.vision.objects:ObjectsStage", ("objects",)),
    "scenes": ("galprof.vision.scenes:ScenesStage", ("scenes",)),
    "faces": ("galprof.vision.faces:FacesStage", ("face_detector", "face_analyzer")),
    "text": ("galprof.vision.text:TextStage", ("text_detector", "text_recognizer")),
}


def default_stages() -> tuple[str, ...]:
    """The stages a scan runs unless told otherwise: the text stage when its extra is
    installed (`pip install 'galprof[text]'`)."""
    from galprof.vision import text
    return ("objects", "scenes", "faces") + (("text",) if text.available() else ())


def analysing_threads(at_once: int = ANALYSES_AT_ONCE) -> int:
    """Threads analysing frames at once in a scan asking for `at_once`: one a core at most."""
    from galprof.vision.runtime import default_threads
    return max(1, min(at_once, default_threads()))


def model_threads() -> int:
    """Threads of each model call in a scan: the cores shared by ANALYSES_AT_ONCE."""
    from galprof.vision.runtime import default_threads
    return max(1, default_threads() // ANALYSES_AT_ONCE)


def build_stages(names: list[str], threads: int | None = None,
                 models: dict[str, str | None] | None = None) -> list[Stage]:
    """Instantiate the named stages; `models` picks a model id per manifest role
    ("objects", "scenes", "face_detector", "face_analyzer"; None: the role's default).
    `threads`: each model call's (default: the cores shared by ANALYSES_AT_ONCE)."""
    import importlib

    threads = threads or model_threads()

    models = models or {}
    stages = []
    for name in names:
        if name not in REGISTRY:
            raise ValueError(f"unknown stage {name!r} (known: {', '.join(REGISTRY)})")
        target, roles = REGISTRY[name]
        module, cls = target.split(":")
        stage_class = getattr(importlib.import_module(module), cls)
        stages.append(stage_class(*(models.get(role) for role in roles), threads=threads))
    return stages
