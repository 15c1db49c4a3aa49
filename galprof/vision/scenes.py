"""Scene recognition with the ImageNet classifiers and the "scenes" scan stage.

No scene-specific (Places365) model is available offline, so scenes are ImageNet
classes (seashore, palace, espresso, ...), later mapped to groups by the taxonomy.

Pre-processing per the contract in shared/models/MANIFEST.md: resize the shorter
side to 224 and take the central 224x224 square (measured on testmedia/scenes:
better than stretching the whole photo, see CROP_MODES); MobileNetV2 takes raw
uint8 RGB, EfficientNet-Lite0 takes RGB normalised to [-1, 1] and quantised with
its input tensor's scale and zero point.

Photo features (for issue 7): the global-average-pooled 1280-d penultimate layer,
read from the TFLite graph by the tensor name the manifest gives
(`output.features`) and dequantised with that tensor's scale and zero point. A
model without that entry gives its class probabilities as features instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from galprof.payloads import SceneLabel, ScenesPayload
from galprof.stages import Frame
from galprof.taxonomy.labels import canonical_label
from galprof.vision import transforms
from galprof.vision.base import Model

# How a photo becomes the model's square input (the default was measured best):
#   "center":  shorter side to the input size, then the central square;
#   "stretch": the whole photo resized to the input size, aspect ratio lost.
CROP_MODES = ("center", "stretch")
DEFAULT_CROP = "center"
# Labels kept per frame, and per media item from the mean over frames.
FRAME_TOP_K = 5
ITEM_TOP_K = 10
# Bump when this module's output for the same pixels and model changes (cache key).
CODE_REVISION = 2


@dataclass
class SceneOutput:
    probabilities: np.ndarray   # float32 (1000,), indexed like the labels
    features: np.ndarray        # float32 photo feature vector (see the module docstring)


class SceneClassifier(Model):
    """An ImageNet classifier (`mobilenet_v2` or `efficientnet_lite0`).

    `predict(rgb, k)` -> top-k SceneLabel; `analyse(rgb)` -> SceneOutput with all
    class probabilities and the photo feature vector.
    """

    role = "scenes"

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir: Path | None = None, crop: str = DEFAULT_CROP):
        super().__init__(model_id, threads, models_dir)
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}, not {crop!r}")
        self.crop = crop
        shape = self.spec.input.get("shape") or [1, 224, 224, 3]
        self.height, self.width = shape[1], shape[2]
        self.normalise = self.spec.input.get("normalise", "raw")
        self.feature_tensor = self.spec.output.get("features", "")

    def _session_options(self) -> dict:
        """The runtime returns the feature tensor too."""
        return {"extra_outputs": [self.feature_tensor] if self.feature_tensor else []}

    def _read_labels(self) -> list[str]:
        return [canonical_label(x) for x in super()._read_labels()]

    def cropped(self, image: np.ndarray | Image.Image) -> np.ndarray:
        """The model-size uint8 RGB picture of an image or its PIL picture (see
        CROP_MODES); pure, so a decode thread may make it ahead (Frame.cached)."""
        if self.crop == "center":
            side = min(self.width, self.height)
            return transforms.center_crop(transforms.resize_shorter(image, side),
                                          self.width, self.height)
        return transforms.resize(image, self.width, self.height)

    def _preprocess(self, image: np.ndarray, prepared: np.ndarray | None = None
                    ) -> tuple[list[np.ndarray], Any]:
        x = prepared if prepared is not None else self.cropped(image)
        info = self.session.inputs[0]
        if self.normalise == "minus-one-to-one":
            x = transforms.normalise_minus_one_to_one(x)
            if info.scale:
                x = transforms.quantise(x, info.scale, info.zero_point, info.dtype)
        return [np.ascontiguousarray(x[None], dtype=info.dtype)], None

    def _postprocess(self, outputs: dict[str, np.ndarray], context: Any) -> SceneOutput:
        info = self.session.outputs[0]
        probs = transforms.dequantise(outputs[info.name], info.scale, info.zero_point).reshape(-1)
        probs = probs[self.spec.label_offset:]
        if self.session.extra_outputs:
            feat_info = self.session.extra_outputs[0]
            features = transforms.dequantise(outputs[feat_info.name], feat_info.scale,
                                             feat_info.zero_point).reshape(-1)
        else:
            features = probs
        return SceneOutput(probs.astype(np.float32), features.astype(np.float32))

    def analyse(self, image: np.ndarray, prepared: np.ndarray | None = None) -> SceneOutput:
        """image: RGB uint8 (H, W, 3); `prepared`: its cropped(image), when the caller has it."""
        self.load()
        feeds, context = self._preprocess(image, prepared)
        return self._postprocess(self.session.run(feeds), context)

    def predict(self, image: np.ndarray, k: int = FRAME_TOP_K) -> list[SceneLabel]:
        """The k most probable classes of an RGB uint8 image."""
        return self.top(self.analyse(image).probabilities, k)

    def top(self, probabilities: np.ndarray, k: int) -> list[SceneLabel]:
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [SceneLabel(self.labels[i], int(i), float(probabilities[i])) for i in order]


class ScenesStage:
    """The "scenes" scan stage (`ScenesPayload`): the FRAME_TOP_K classes of every frame,
    the ITEM_TOP_K classes of the mean probabilities over frames, and the mean feature
    vector over frames (the photo's features)."""

    name = "scenes"
    requires: tuple[str, ...] = ()
    # The classifier crops the central square of the shorter side at 224; 400 keeps
    # that side >= 224 for photos up to 16:9.
    long_side = 400

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir: Path | None = None, classifier: SceneClassifier | None = None):
        self.classifier = classifier or SceneClassifier(model_id, threads, models_dir)

    @property
    def version(self) -> str:
        return f"{self.classifier.version}+scenes-r{CODE_REVISION}-{self.classifier.crop}"

    def models(self):
        return [self.classifier.spec]

    def check(self) -> None:
        self.classifier.check()

    def load(self) -> None:
        self.classifier.load()

    def unload(self) -> None:
        """Let go of the model sessions (their memory) until the next load()."""
        self.classifier.unload()

    def _input_key(self) -> tuple:
        c = self.classifier
        return "scenes", c.crop, c.width, c.height

    def _cropped(self, frame: Frame) -> np.ndarray:
        return frame.cached_from_picture(self._input_key(), self.classifier.cropped)

    def prepare(self, frames: list[Frame]) -> None:
        """The model-size picture of every frame analysed (in a decode thread)."""
        for frame in frames:
            if frame.same_as is None:
                self._cropped(frame)

    def _output(self, frame: Frame) -> SceneOutput:
        return frame.cached(("scenes", "output"),
                            lambda image: self.classifier.analyse(image, self._cropped(frame)),
                            consumes=(self._input_key(),))

    def analyse(self, frame: Frame) -> None:
        """The classifier on one frame of a video, ahead of `run` (kept on the frame)."""
        if not frame.reduced:
            self._output(frame)

    def run(self, frames: list[Frame], upstream: dict[str, Any]) -> ScenesPayload:
        by_index: dict[int, SceneOutput] = {}
        outputs = []
        for f in frames:
            if f.same_as in by_index:        # a repeat of an earlier sampled frame
                output = by_index[f.same_as]
            else:
                # a HEIC preview whose full picture the objects stage had decoded: use it
                f = f.largest_decoded()
                output = self._output(f)
            by_index[f.index] = output
            outputs.append((f.index, output))
        if not outputs:
            return ScenesPayload([], [])
        mean_probs = np.mean([o.probabilities for _, o in outputs], axis=0)
        mean_features = np.mean([o.features for _, o in outputs], axis=0).astype(np.float32)
        return ScenesPayload(
            [(i, self.classifier.top(o.probabilities, FRAME_TOP_K)) for i, o in outputs],
            self.classifier.top(mean_probs, ITEM_TOP_K), mean_features)
