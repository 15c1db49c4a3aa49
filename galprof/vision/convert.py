"""Build the manifest's conversion-only files on this machine, and check them by their outputs.

Some files galprof runs have no published copy: the HSE network as TFLite or ONNX (its
upstream is a TF1 frozen graph) and the ONNX twins of TFLite models (for onnxruntime, the
runtime that installs on Termux). A manifest source `{ convert = "RECIPE", input = FILE }`
says how to build one from another manifest file; the recipes are below and need
TensorFlow and tf2onnx (`pip install 'galprof[convert]'`).

A converted file's bytes depend on the converter's version, so it is not checked by its
hash but by its outputs on a fixed input (`probe_image`, prepared to the model's declared
input), against the reference recorded in the manifest's `[models.ID.check]`:

    for every output tensor named there, flattened, with R = |largest reference value|:
      |l2(output) - l2_ref|      <= tolerance * l2_ref
      |output[i] - value|        <= tolerance * R   for each [i, value] in `top`
                                                     (the reference's largest |values|)

`tolerance` is per model: 0.01 for float and dynamic-range files (a converter that works
reproduces them to ~1e-6; the int8 and float32 HSE builds differ by 4-7 %, so one is never
taken for the other), wider for the integer-quantised ONNX twins, whose rounding differs
between onnxruntime builds (measured against TFLite: see the manifest comments).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galprof.errors import SetupError
from galprof.vision.manifest import FileSpec, ModelSpec, Source
from galprof.vision.runtime import _native_stderr_silenced

CONVERT_EXTRA = "pip install 'galprof[convert]'"
ONNX_OPSET = 17          # onnxruntime >= 1.12 runs it; the shared ONNX files use it too
REFERENCE_TOP = 8        # values kept per output tensor in a manifest reference

# Python modules each recipe imports (checked without importing them: TensorFlow is slow).
RECIPE_NEEDS = {
    "frozen-graph-to-tflite": ("tensorflow",),
    "frozen-graph-to-onnx": ("tensorflow", "tf2onnx", "onnx"),
    "tflite-to-onnx": ("tensorflow", "tf2onnx", "onnx"),
}


class ConversionError(SetupError):
    """A recipe failed, or its result does not reproduce the manifest's reference outputs."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    worst: float          # the largest error found, as a fraction of the reference scale
    tolerance: float
    message: str


def missing_modules(source: Source) -> list[str]:
    """The Python modules a conversion source needs that are not installed here."""
    if source.convert not in RECIPE_NEEDS:
        raise ConversionError(f"unknown conversion recipe {source.convert!r}")
    return [name for name in RECIPE_NEEDS[source.convert] if importlib.util.find_spec(name) is None]


# ---------------------------------------------------------------- the fixed input

def probe_image(height: int, width: int) -> np.ndarray:
    """A fixed RGB uint8 image: interfering sinusoids, computed from the pixel indices alone
    (no random generator, no resampling), so every platform feeds the same pixels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [127.5 + 127.5 * np.sin(x * 0.061 + y * 0.037 + c * 2.1)
                * np.cos(y * 0.023 - x * 0.011 * c) for c in range(3)]
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def probe_outputs(spec: ModelSpec, path: Path) -> dict[str, np.ndarray]:
    """Every graph output of the model file on the probe image, as float64 arrays."""
    from galprof.bench import model_input
    from galprof.vision.runtime import open_session

    session = open_session(Path(path), threads=1)
    feeds = []
    for info in session.inputs:
        shape = [int(d) if d > 0 else 1 for d in info.shape]
        channels_first = len(shape) == 4 and shape[1] == 3 and shape[-1] != 3
        height, width = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
        feeds.append(model_input(spec, info, probe_image(height, width)))
    return {name: np.asarray(value, np.float64)
            for name, value in session.run(feeds).items()}


def reference_of(outputs: dict[str, np.ndarray], top: int = REFERENCE_TOP) -> dict:
    """The manifest reference of some outputs: l2 norm and the `top` largest |values|."""
    reference = {}
    for name, value in outputs.items():
        flat = value.reshape(-1)
        order = np.argsort(-np.abs(flat), kind="stable")[:top]
        reference[name] = {"l2": float(np.linalg.norm(flat)),
                           "top": [[int(i), float(flat[i])] for i in order]}
    return reference


def check(spec: ModelSpec, path: Path) -> CheckResult:
    """Compare the file's outputs on the probe with the manifest's reference."""
    if not spec.check or not spec.check.get("outputs"):
        return CheckResult(False, float("inf"), 0.0,
                           f"{spec.file}: the manifest has no reference outputs to check it by")
    tolerance = float(spec.check["tolerance"])
    try:
        outputs = probe_outputs(spec, path)
    except Exception as e:     # a runtime that cannot load the file says so in many ways
        return CheckResult(False, float("inf"), tolerance,
                           f"{spec.file}: cannot run it: {str(e).splitlines()[0] if str(e) else e!r}")
    worst, where = 0.0, ""
    for name, ref in spec.check["outputs"].items():
        if name not in outputs:
            return CheckResult(False, float("inf"), tolerance,
                               f"{spec.file}: no output named {name} (has {', '.join(outputs)})")
        flat = outputs[name].reshape(-1)
        scale = max(abs(ref["top"][0][1]), 1e-12)
        errors = [(abs(float(np.linalg.norm(flat)) - ref["l2"]) / max(ref["l2"], 1e-12), "l2")]
        for index, value in ref["top"]:
            got = float(flat[index]) if index < flat.size else float("inf")
            errors.append((abs(got - value) / scale, f"[{index}]"))
        error, at = max(errors)
        if error > worst:
            worst, where = error, f"{name}{at}" if at != "l2" else f"l2 of {name}"
    ok = worst <= tolerance
    verdict = "matches" if ok else "does not match"
    message = (f"{spec.file}: {verdict} the manifest's reference outputs "
               f"(largest error {worst:.2g} at {where or 'every output'}, tolerance {tolerance:g})")
    return CheckResult(ok, worst, tolerance, message)


# ---------------------------------------------------------------- recipes

def build(spec: ModelSpec, source: Source, input_path: Path, out: Path) -> None:
    """Write the converted file to `out` (the caller checks it and moves it into place)."""
    missing = missing_modules(source)
    if missing:
        raise ConversionError(f"{spec.file}: building it needs {', '.join(missing)}: "
                              f"{CONVERT_EXTRA}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # TensorFlow's C++ start-up chatter
    try:
        with _native_stderr_silenced():      # TensorFlow's start-up and XNNPACK notes
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")    # deprecation notes of the TF1 APIs used
            if source.convert == "frozen-graph-to-tflite":
                _frozen_graph_to_tflite(spec, source, input_path, out)
            elif source.convert == "frozen-graph-to-onnx":
                _frozen_graph_to_onnx(spec, source, input_path, out)
            else:
                _tflite_to_onnx(source, input_path, out)
    except ConversionError:
        raise
    except Exception as e:        # the converters raise anything from ValueError to their own
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConversionError(f"{spec.file}: {source.convert} failed: {first}") from None


def _float_graph(input_path: Path, outputs: list[str]):
    """The frozen graph with every Dequantize node replaced by the float constant it computes
    (the converters do not take TF1 weight-quantised graphs), pruned to `outputs`."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(input_path).read_bytes())
    dequantize = [node for node in graph_def.node if node.op == "Dequantize"]
    values = {}
    if dequantize:
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            computed = session.run([node.name + ":0" for node in dequantize])
        values = {node.name: value for node, value in zip(dequantize, computed)}
    nodes = {}
    for node in graph_def.node:
        if node.name in values:
            const = tf.compat.v1.NodeDef(name=node.name, op="Const")
            const.attr["dtype"].type = tf.float32.as_datatype_enum
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name],
                                                                     dtype=tf.float32))
            nodes[node.name] = const
        else:
            nodes[node.name] = node
    keep, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        if name not in nodes:
            raise ConversionError(f"{input_path.name}: the graph has no node {name}")
        keep.add(name)
        stack.extend(i.lstrip("^").split(":")[0] for i in nodes[name].input)
    pruned = tf.compat.v1.GraphDef()
    pruned.node.extend(nodes[node.name] for node in graph_def.node if node.name in keep)
    return pruned


def _frozen_graph_to_tflite(spec: ModelSpec, source: Source, input_path: Path, out: Path):
    import tensorflow as tf

    inputs, outputs = source.options["inputs"], source.options["outputs"]
    graph = _float_graph(input_path, outputs)
    shape = spec.input.get("shape")
    with tempfile.TemporaryDirectory(prefix="galprof-convert-") as tmp:
        frozen = Path(tmp) / "float.pb"
        frozen.write_bytes(graph.SerializeToString())
        converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(frozen), inputs, outputs, {inputs[0]: shape} if shape else None)
        quantize = source.options.get("quantize", "none")
        if quantize == "dynamic-range":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize != "none":
            raise ConversionError(f"{spec.file}: unknown quantize = {quantize!r}")
        out.write_bytes(converter.convert())


def _frozen_graph_to_onnx(spec: ModelSpec, source: Source, input_path: Path, out: Path):
    import tf2onnx

    inputs, outputs = source.options["inputs"], source.options["outputs"]
    graph = _float_graph(input_path, outputs)
    # tf2onnx names tensors "node:0"; the manifest's contract names them "node"
    rename = {f"{name}:0": name for name in inputs + outputs}
    tf2onnx.convert.from_graph_def(graph, input_names=[f"{n}:0" for n in inputs],
                                   output_names=[f"{n}:0" for n in outputs], opset=ONNX_OPSET,
                                   tensors_to_rename=rename, output_path=str(out))


def _tflite_to_onnx(source: Source, input_path: Path, out: Path):
    import onnx
    import tf2onnx

    outputs = source.options.get("outputs")
    with warnings.catch_warnings():     # tf2onnx reads the file with the deprecated tf.lite
        warnings.simplefilter("ignore")
        model, _ = tf2onnx.convert.from_tflite(str(input_path), output_names=outputs,
                                               opset=ONNX_OPSET)
    _unsigned_weights(model)
    if source.options.get("float_outputs"):
        _dequantize_outputs(model)
    if source.options.get("float_input"):
        _quantize_input(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


_SHAPE_ONLY = ("Reshape", "Squeeze", "Transpose", "Identity")


def _dequantize_outputs(model) -> None:
    """Make every integer graph output float: append a DequantizeLinear with the scale and
    zero point of the QuantizeLinear that made it, under the output's own name. (A session
    returns graph outputs only, and the model classes read ONNX outputs as real values.)"""
    from onnx import TensorProto, helper

    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output}
    outputs = []
    for output in graph.output:
        if output.type.tensor_type.elem_type == TensorProto.FLOAT:
            outputs.append(output)
            continue
        node = producers[output.name]
        while node.op_type in _SHAPE_ONLY:
            node = producers[node.input[0]]
        if node.op_type != "QuantizeLinear":
            raise ConversionError(f"output {output.name} is not made by a QuantizeLinear")
        quantized = output.name + "/quantized"
        for other in graph.node:
            other.output[:] = [quantized if n == output.name else n for n in other.output]
            other.input[:] = [quantized if n == output.name else n for n in other.input]
        graph.node.append(helper.make_node("DequantizeLinear",
                                           [quantized, node.input[1], node.input[2]],
                                           [output.name], name=output.name + "/dequantize"))
        dims = [d.dim_value if d.dim_value else d.dim_param for d in output.type.tensor_type.shape.dim]
        outputs.append(helper.make_tensor_value_info(output.name, TensorProto.FLOAT, dims))
    del graph.output[:]
    graph.output.extend(outputs)


def _unsigned_weights(model) -> None:
    """Store int8 weights as uint8 with their zero points moved by 128: the same real values.
    onnxruntime fuses a quantised Conv into uint8 x int8 kernels that, on x86 CPUs without
    VNNI (AVX2 only), add pairs of products in 16 bits and saturate: EfficientNet-Lite0's
    top class changed on an AMD EPYC. Its uint8 x uint8 kernels widen first."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    unsigned: dict[str, str] = {}

    def as_uint8(name: str) -> str:
        if name not in unsigned:
            values = numpy_helper.to_array(initializers[name]).astype(np.int16) + 128
            unsigned[name] = f"{name}/uint8"
            graph.initializer.append(numpy_helper.from_array(values.astype(np.uint8),
                                                             unsigned[name]))
        return unsigned[name]

    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        weights, zero_point = node.input[0], node.input[2]
        if (weights not in initializers or zero_point not in initializers
                or initializers[weights].data_type != TensorProto.INT8):
            continue
        node.input[0], node.input[2] = as_uint8(weights), as_uint8(zero_point)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _quantize_input(model) -> None:
    """Make the integer graph input float, quantised inside the graph with the scale and zero
    point the model's own first DequantizeLinear uses: callers feed real values."""
    from onnx import TensorProto, helper

    graph = model.graph
    source = graph.input[0]
    consumers = [node for node in graph.node if source.name in node.input]
    dequantize = [node for node in consumers if node.op_type == "DequantizeLinear"]
    if len(consumers) != 1 or not dequantize:
        raise ConversionError(f"input {source.name} does not go straight into a DequantizeLinear")
    scale, zero_point = dequantize[0].input[1], dequantize[0].input[2]
    quantized = source.name + "/quantized"
    for node in graph.node:
        node.input[:] = [quantized if n == source.name else n for n in node.input]
    graph.node.insert(0, helper.make_node("QuantizeLinear", [source.name, scale, zero_point],
                                          [quantized], name=source.name + "/quantize"))
    source.type.tensor_type.elem_type = TensorProto.FLOAT


def describe(spec: FileSpec, source: Source) -> str:
    return f"{spec.file}: built here from {source.input} ({source.convert})"
