"""The lifecycle every model task shares: lazy load, contract check, predict."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from galprof.errors import ModelMismatch
from galprof.vision import graph, manifest
from galprof.vision.runtime import Session, open_session


class Model:
    """Base class of ObjectDetector, SceneClassifier, FaceDetector and FaceAnalyzer.

    `predict(image)` runs load → `_preprocess` → session → `_postprocess`. Subclasses
    keep their pre/post-processing beside them and check their graph against the
    manifest in `_check_contract`.
    """

    role: ClassVar[str] = ""

    def __init__(self, model_id: str | None = None, threads: int | None = None,
                 models_dir: Path | None = None):
        self.spec = manifest.get(model_id) if model_id else manifest.default_for(self.role)
        if self.spec.role != self.role:
            raise ModelMismatch(f"model {self.spec.id} is a {self.spec.role} model, not {self.role}")
        self.threads = threads
        self.models_dir = models_dir
        self.session: Session | None = None
        self.labels: list[str] = []
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        """What a cached result is keyed by: the model file, and the rewrites that move
        its outputs (those that keep them bit for bit, graph.py's others, are not named)."""
        return self.spec.version + "".join(f"+{name}" for name in self.rewrites)

    @property
    def rewrites(self) -> tuple[str, ...]:
        """The rewrites that move outputs (graph.ROUNDING) the session runs the model
        with: those the manifest asks for, where the file can be rewritten here."""
        if self.spec.runtime == "tflite" and graph.available():
            return self.spec.rewrites
        return ()

    def check(self) -> None:
        """Raise ModelMissing / ModelMismatch now if the model's files are not installed
        right (cheap: nothing is loaded)."""
        manifest.locate(self.spec, self.models_dir)
        manifest.labels(self.spec, self.models_dir)

    def load(self) -> "Model":
        """Open the session once; safe to call again."""
        with self._lock:
            if self.session is None:
                path = manifest.locate(self.spec, self.models_dir)
                self.labels = self._read_labels()
                session = open_session(path, self.threads,
                                       dynamic_shapes=manifest.dynamic_input(self.spec),
                                       rewrites=self.rewrites,
                                       **self._session_options())
                self._check_contract(session)
                self.session = session
        return self

    def unload(self) -> None:
        """Let go of the session (its memory) until the next load()."""
        self.session = None

    def _session_options(self) -> dict:
        """More open_session arguments (outputs, any_size, extra_outputs) a model class
        asks for."""
        return {}

    def _read_labels(self) -> list[str]:
        """The class names, as the manifest's label file gives them."""
        return manifest.labels(self.spec, self.models_dir)

    def _check_contract(self, session: Session) -> None:
        """Refuse a graph that does not match the manifest's declared input/output shapes."""
        want_in = self.spec.input.get("shape")
        if want_in and list(session.inputs[0].shape) != list(want_in):
            raise ModelMismatch(f"{self.spec.file}: input shape {list(session.inputs[0].shape)}, "
                                f"manifest says {want_in}")
        want_out = self.spec.output.get("shape")
        if want_out and list(session.outputs[0].shape) != list(want_out):
            raise ModelMismatch(f"{self.spec.file}: output shape {list(session.outputs[0].shape)}, "
                                f"manifest says {want_out}")
        if self.labels and want_out and want_out[-1] - self.spec.label_offset != len(self.labels):
            raise ModelMismatch(f"{self.spec.file}: {want_out[-1]} outputs but "
                                f"{len(self.labels)} labels (offset {self.spec.label_offset})")

    def run(self, feeds: list[np.ndarray]) -> dict[str, np.ndarray]:
        self.load()
        return self.session.run(feeds)

    def predict(self, image: np.ndarray) -> Any:
        """image: an RGB uint8 array of shape (H, W, 3)."""
        self.load()
        feeds, context = self._preprocess(image)
        return self._postprocess(self.session.run(feeds), context)

    def _preprocess(self, image: np.ndarray) -> tuple[list[np.ndarray], Any]:
        raise NotImplementedError

    def _postprocess(self, outputs: dict[str, np.ndarray], context: Any) -> Any:
        raise NotImplementedError
