"""Model runtimes behind one small protocol.

Model classes never import a runtime: they ask `open_session(path, threads)` for a
`Session`. `.tflite` files run on ai-edge-litert (falling back to tflite-runtime, then
tensorflow.lite); `.onnx` files run on onnxruntime (the runtime Termux packages).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from galprof.errors import SetupError


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

    def run(self, feeds: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name."""
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


class TFLiteSession:
    def __init__(self, path: Path, threads: int):
        interpreter_class = _tflite_interpreter_class()
        self._it = interpreter_class(model_path=str(path), num_threads=threads)
        self._it.allocate_tensors()
        self.inputs = [self._info(d) for d in self._it.get_input_details()]
        self.outputs = [self._info(d) for d in self._it.get_output_details()]
        self._in_idx = [d["index"] for d in self._it.get_input_details()]
        self._out_idx = [(d["name"], d["index"]) for d in self._it.get_output_details()]

    @staticmethod
    def _info(d) -> TensorInfo:
        scale, zero = d.get("quantization", (0.0, 0))
        return TensorInfo(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]),
                          float(scale), int(zero))

    def run(self, feeds):
        for idx, array in zip(self._in_idx, feeds):
            self._it.set_tensor(idx, array)
        self._it.invoke()
        return {name: self._it.get_tensor(idx) for name, idx in self._out_idx}


class OnnxSession:
    def __init__(self, path: Path, threads: int):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SetupError(
                f"{path.name} needs onnxruntime: pip install onnxruntime"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
        self.inputs = [TensorInfo(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape),
                                  np.dtype(dtypes.get(i.type, np.float32)))
                       for i in self._s.get_inputs()]
        self.outputs = [TensorInfo(o.name, tuple(d if isinstance(d, int) else -1 for d in o.shape),
                                   np.dtype(dtypes.get(o.type, np.float32)))
                        for o in self._s.get_outputs()]

    def run(self, feeds):
        names = [i.name for i in self.inputs]
        values = self._s.run(None, dict(zip(names, feeds)))
        return {o.name: v for o, v in zip(self.outputs, values)}


def open_session(path: Path, threads: int | None = None) -> Session:
    """A session for a model file, chosen by its suffix."""
    threads = threads or default_threads()
    if path.suffix == ".onnx":
        return OnnxSession(path, threads)
    return TFLiteSession(path, threads)
