"""Model runtimes behind one small protocol.

Model classes never import a runtime: they ask `open_session(path, threads)` for a
`Session`. `.tflite` files run on ai-edge-litert (falling back to tflite-runtime, then
tensorflow.lite); `.onnx` files run on onnxruntime (the runtime Termux packages).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from galprof.errors import ModelMismatch, SetupError
from galprof.vision import graph


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0        # quantisation; 0 means not quantised
    zero_point: int = 0


class Session(Protocol):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    extra_outputs: list[TensorInfo]   # intermediate tensors asked for in open_session
    any_size: bool                    # run takes inputs smaller than inputs[0].shape

    def run(self, feeds: list[np.ndarray], copy: bool = True) -> dict[str, np.ndarray]:
        """Run once; returns every output by name. `copy=False`: the outputs may be views
        of the runtime's own buffers, which the caller must let go of before the next
        run (YOLOX's 1.2 MB output, read once: its copy, a new mapping, cost 0.6-2.4 ms)."""
        ...


def default_threads() -> int:
    return os.cpu_count() or 1


def _tflite_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        import tensorflow as tf
        return tf.lite.Interpreter
    except ImportError:
        raise SetupError(
            "no TFLite runtime: install one with: pip install ai-edge-litert"
        ) from None


# fd 2 belongs to the whole process: while it points at /dev/null, every thread's output
# goes there too, and two threads swapping it at once can leave it there. (Re-entrant: a
# model opened while a conversion has fd 2 silenced must not wait for itself.)
_STDERR_LOCK = threading.RLock()
_TFLITE_ANNOUNCED = False


@contextlib.contextmanager
def _stderr_to_devnull():
    """fd 2 pointed at /dev/null meanwhile (the caller holds _STDERR_LOCK)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _native_stderr_silenced():
    """fd 2 pointed at /dev/null for a moment, for native code that prints to it."""
    with _STDERR_LOCK, _stderr_to_devnull():
        yield


@contextlib.contextmanager
def _first_allocation_silenced():
    """The TFLite runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
    from C++ straight to fd 2 the first time a model's tensors are allocated in the
    process, and never again (later models and input resizes print nothing), which
    would break `--quiet` (cron mail). So only that allocation is silenced: silencing
    every one lost the error lines a scan's main thread printed meanwhile (2 of 12
    `galprof scan --quiet` runs of a folder with a corrupt file printed nothing). The
    scan makes its first model before its threads start (pipeline/ingest.py)."""
    global _TFLITE_ANNOUNCED
    with _STDERR_LOCK:
        if not _TFLITE_ANNOUNCED:
            with _stderr_to_devnull():
                yield
            _TFLITE_ANNOUNCED = True
            return
    yield


class TFLiteSession:
    def __init__(self, path: Path, threads: int, extra_outputs: Sequence[str] = (),
                 outputs: Sequence[str] = (), any_size: bool = False,
                 rewrites: Sequence[str] = ()):
        interpreter_class = _tflite_interpreter_class()
        model = {"model_path": str(path)}
        # Input slices XNNPACK cannot run (YOLOX's Focus) are done in numpy, the graph
        # ends at `outputs` when asked and takes any input size when it can (graph.py).
        rewritten = graph.rewrite(path.read_bytes(), outputs, any_size, rewrites)
        self.lifted, self.any_size = None, False
        if rewritten is not None:
            model, self.lifted = {"model_content": rewritten.model}, rewritten.lifted
            self.any_size = rewritten.any_size
        if extra_outputs:
            # Intermediate tensors share arena memory and are overwritten later in the
            # run unless preserved (measured: +0.3 ms on MobileNetV2/EfficientNet-Lite0).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._it = interpreter_class(**model, num_threads=threads,
                                             experimental_preserve_all_tensors=True)
        else:
            self._it = interpreter_class(**model, num_threads=threads)
        with _first_allocation_silenced():
            self._it.allocate_tensors()
        self.inputs = [self._info(d) for d in self._it.get_input_details()]
        if self.lifted is not None:     # callers feed the original input
            self.inputs[0] = TensorInfo(self.lifted.name, self.lifted.shape, self.lifted.dtype)
        self.outputs = [self._info(d) for d in self._it.get_output_details()]
        self._in_idx = [d["index"] for d in self._it.get_input_details()]
        self._input_shape = tuple(int(n) for n in self._it.get_input_details()[0]["shape"])
        self._out_idx = [(d["name"], d["index"]) for d in self._it.get_output_details()]
        by_name = {d["name"]: d for d in self._it.get_tensor_details()}
        missing = [name for name in extra_outputs if name not in by_name]
        if missing:
            raise ModelMismatch(f"{path.name}: no tensor named {', '.join(missing)}")
        self.extra_outputs = [self._info(by_name[name]) for name in extra_outputs]
        self._out_idx += [(name, by_name[name]["index"]) for name in extra_outputs]

    @staticmethod
    def _info(d) -> TensorInfo:
        scale, zero = d.get("quantization", (0.0, 0))
        return TensorInfo(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]),
                          float(scale), int(zero))

    def _fit_input(self, shape: tuple[int, ...]) -> None:
        """Resize the graph's input to take a feed of this shape (any_size: at most the
        declared size on each side), when it differs from the last feed's."""
        declared = self.inputs[0].shape
        if len(shape) != len(declared) or any(n > d for n, d in zip(shape, declared)):
            raise ValueError(f"input of shape {shape}: this model takes at most {declared}")
        size = self.lifted.shape_for(shape) if self.lifted is not None else tuple(shape)
        if size != self._input_shape:
            self._it.resize_tensor_input(self._in_idx[0], list(size))
            self._it.allocate_tensors()
            self._input_shape = size

    def run(self, feeds, copy=True):
        if self.any_size:
            self._fit_input(feeds[0].shape)
        inputs = list(zip(self._in_idx, feeds))
        if self.lifted is not None:
            # into the input tensor itself; the view must be gone before invoke()
            self.lifted.write(feeds[0], self._it.tensor(self._in_idx[0])())
            inputs = inputs[1:]
        for idx, array in inputs:
            self._it.set_tensor(idx, array)
        self._it.invoke()
        if not copy:
            return {name: self._it.tensor(idx)() for name, idx in self._out_idx}
        return {name: self._it.get_tensor(idx) for name, idx in self._out_idx}


class OnnxSession:
    def __init__(self, path: Path, threads: int, extra_outputs: Sequence[str] = (),
                 dynamic_shapes: bool = False):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SetupError(
                f"{path.name} needs onnxruntime: pip install onnxruntime"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Its worker threads wait for work without spinning: in a scan the decode threads
        # need the cores between (and during) model calls, and a spinning pool took them
        # (the roll's objects + faces on the ONNX files: 53.5 -> 40 s, CPU 100 -> 64 s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # A memory pattern is planned per input shape and kept: with inputs of every size
        # (a text detector on each photo's shape) they add up, 130 MB over six shapes.
        options.enable_mem_pattern = not dynamic_shapes
        self._s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # ...and its arena gives back what a run took (a text detector's 960 px run holds
        # ~120 MB, which a scan would otherwise keep to its end)
        self._run_options = None
        if dynamic_shapes:
            self._run_options = ort.RunOptions()
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage",
                                                   "cpu:0")
        dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
        self.inputs = [TensorInfo(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape),
                                  np.dtype(dtypes.get(i.type, np.float32)))
                       for i in self._s.get_inputs()]
        self.outputs = [TensorInfo(o.name, tuple(d if isinstance(d, int) else -1 for d in o.shape),
                                   np.dtype(dtypes.get(o.type, np.float32)))
                        for o in self._s.get_outputs()]
        missing = [name for name in extra_outputs if name not in {o.name for o in self.outputs}]
        if missing:
            raise ModelMismatch(f"{path.name}: {', '.join(missing)} is not a graph output "
                                "(ONNX sessions only return graph outputs)")
        self.extra_outputs = [o for o in self.outputs if o.name in extra_outputs]
        self.any_size = False

    def run(self, feeds, copy=True):      # onnxruntime's outputs are new arrays anyway
        names = [i.name for i in self.inputs]
        values = self._s.run(None, dict(zip(names, feeds)), self._run_options)
        return {o.name: v for o, v in zip(self.outputs, values)}


def runs_on_tflite(file: str | os.PathLike) -> bool:
    """Whether open_session runs this model file on TFLite (anything but .onnx)."""
    return Path(file).suffix != ".onnx"


def open_session(path: Path, threads: int | None = None,
                 extra_outputs: Sequence[str] = (), dynamic_shapes: bool = False,
                 outputs: Sequence[str] = (), any_size: bool = False,
                 rewrites: Sequence[str] = ()) -> Session:
    """A session for a model file, chosen by its suffix.

    extra_outputs: names of intermediate tensors to return from `run` beside the
    graph outputs (their TensorInfo, with quantisation, is in `session.extra_outputs`).
    dynamic_shapes: the model is called with inputs of many sizes.
    outputs, any_size (TFLite): end the graph at these tensors, which become
    `session.outputs`, and let it take inputs smaller than declared, when the graph
    allows (graph.rewrite; `session.outputs` and `session.any_size` say what was done).
    rewrites (TFLite): those of graph.ROUNDING to run the model with, which move its
    outputs by rounding (ModelSpec.rewrites).
    """
    threads = threads or default_threads()
    if not runs_on_tflite(path):
        return OnnxSession(path, threads, extra_outputs, dynamic_shapes)
    return TFLiteSession(path, threads, extra_outputs, outputs, any_size, rewrites)
