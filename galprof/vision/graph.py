"""TFLite graphs rewritten in memory for the runtime, with the same outputs (but one).

Input slices. YOLOX's "Focus" layer starts the graph with four stride-2 STRIDED_SLICEs
of the input concatenated along the channels (a space-to-depth). XNNPACK does not take
strided slices, so TFLite runs them with its reference kernel, element by element,
single-threaded: 4-5 ms of YOLOX-Nano's 12-18 ms a call here. The same slices in numpy
cost under 1 ms: the prefix is cut off (the concatenation's output becomes the graph's
input) and LiftedInput says how to make that input from the original one; the outputs
are bit for bit those of the whole graph, since slicing moves values without arithmetic.

Outputs. A graph may end in a decode of every anchor (YOLOX's grid offsets, strides and
exponentials over 3549 rows, with SCATTER_NDs on the reference kernels: ~1.4 ms a call);
ending it at the named maps before leaves that to the caller, on the rows it keeps.

Any input size. A 16:9 frame letterboxed into YOLOX's 416 x 416 square is 44 % padding;
a graph of operators whose outputs follow their inputs' size (convolutions, pooling,
elementwise ops: _SIZE_FREE) runs as well on 416 x 256, in 0.6 of the time. YOLOX's two
2x upsamplings name their output size; they are rewritten into operators that do not.

Rounding. Two rewrites move outputs, by rounding only, so models ask for them in the
manifest (`rewrites`, ROUNDING) and their results are keyed by them (Model.version):
"float-depthwise", a dynamic-range model's depthwise convolutions on the float values of
their int8 weights (see _float_depthwise), so that XNNPACK takes them; and "int8", a
full-integer model of unsigned 8-bit tensors (TensorFlow 1's) on XNNPACK's faster signed
kernels (see _int8), its uint8 input and outputs kept.

The model is rewritten through the flatbuffer schema that ai-edge-litert (or TensorFlow)
ships; without one the model runs as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LiftedInput:
    """How the cut model's input is made from the original graph input."""

    slices: list[tuple[slice, ...]]    # per part, in the concatenation's order
    axis: int
    name: str                          # the original input's name, shape and dtype
    shape: tuple[int, ...]
    dtype: np.dtype

    def write(self, array: np.ndarray, out: np.ndarray) -> None:
        """The parts of `array` concatenated into `out` (the runtime's input tensor): no
        concatenated copy to make and then copy again."""
        start = 0
        for part in self.slices:
            piece = array[part]
            end = start + piece.shape[self.axis]
            out[(slice(None),) * self.axis + (slice(start, end),)] = piece
            start = end

    def shape_for(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The cut model's input shape for an original input of this shape (at most the
        original's: the slices end where its sides did)."""
        parts = [[len(range(*s.indices(n))) for s, n in zip(part, shape)] for part in self.slices]
        out = parts[0]
        out[self.axis] = sum(p[self.axis] for p in parts)
        return tuple(out)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated
        return schema_py_generated
    except ImportError:
        pass
    try:
        from tensorflow.lite.python import schema_py_generated
        return schema_py_generated
    except ImportError:
        return None


def _starts_with(schema, model: bytes, builtin: int) -> bool:
    """Whether the first subgraph's first operator is `builtin` (read lazily)."""
    root = schema.Model.GetRootAs(model, 0)
    if not root.SubgraphsLength() or not root.Subgraphs(0).OperatorsLength():
        return False
    code = root.OperatorCodes(root.Subgraphs(0).Operators(0).OpcodeIndex())
    return max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == builtin


_DTYPES = {"FLOAT32": np.float32, "UINT8": np.uint8, "INT8": np.int8}


@dataclass(frozen=True)
class Rewritten:
    """A model rewritten for the runtime (see rewrite)."""

    model: bytes
    lifted: LiftedInput | None     # its leading input slices, done in numpy
    any_size: bool                 # its input may be resized (resize_tensor_input)


def available() -> bool:
    """Whether models can be rewritten here (a schema module is installed)."""
    return _schema() is not None


def rewrite(model: bytes, outputs: Sequence[str] = (), any_size: bool = False,
            rewrites: Sequence[str] = ()) -> Rewritten | None:
    """The model with its leading input slices lifted (see LiftedInput); with `outputs`,
    ending at those tensors (what only fed the old outputs dropped: a decode the caller
    does in numpy on the few rows it keeps); with `any_size`, made to take any input
    size its ops allow (see _size_free); with `rewrites`, those of ROUNDING that apply to
    it. None when there is nothing to do, or no schema module is installed: the model
    then runs as it is."""
    schema = _schema()
    if schema is None:
        return None
    unknown = set(rewrites) - set(ROUNDING)
    if unknown:
        raise ValueError(f"no such rewrite: {', '.join(sorted(unknown))}")
    try:
        if not (outputs or any_size or rewrites or _starts_with(
                schema, model, schema.BuiltinOperator.STRIDED_SLICE)):
            return None      # most models: decided without unpacking the whole graph
        m = schema.ModelT.InitFromPackedBuf(model, 0)
        if len(m.subgraphs) != 1 or len(m.subgraphs[0].inputs) != 1:
            return None
        lifted = _lift(schema, m)
        cut = bool(outputs) and _cut(m, outputs)
        sized = any_size and _size_free(schema, m)
        rounded = [name for name in rewrites if ROUNDING[name](schema, m)]
        if lifted is None and not cut and not sized and not rounded:
            return None
        import flatbuffers
        builder = flatbuffers.Builder(len(model) + 4096)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return Rewritten(bytes(builder.Output()), lifted, sized)
    except Exception:    # not a readable flatbuffer: the runtime's own error says so
        return None


def _op_names(schema, m) -> list[str]:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "") for c in m.operatorCodes]


def _lift(schema, m) -> LiftedInput | None:
    """Cut the graph's leading STRIDED_SLICEs of its input and their CONCATENATION off
    (in place); how to make the concatenation's output, now the input, or None."""
    graph = m.subgraphs[0]
    ops, op_names = graph.operators, _op_names(schema, m)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def op_name(op) -> str:
        return op_names[op.opcodeIndex]

    def constant(index: int) -> list[int] | None:
        data = m.buffers[graph.tensors[index].buffer].data
        return None if data is None else np.asarray(data, np.uint8).view(np.int32).tolist()

    source = graph.inputs[0]
    dtype = _DTYPES.get(types.get(graph.tensors[source].type))
    rank = len(graph.tensors[source].shape)
    parts: dict[int, tuple[slice, ...]] = {}
    count = 0
    while count < len(ops) and op_name(ops[count]) == "STRIDED_SLICE":
        op, options = ops[count], ops[count].builtinOptions
        if op.inputs[0] != source or options.ellipsisMask or options.newAxisMask \
                or options.shrinkAxisMask or getattr(options, "offset", False):
            return None
        begin, end, strides = (constant(i) for i in op.inputs[1:4])
        if None in (begin, end, strides) or not len(begin) == len(end) == len(strides) == rank \
                or min(begin + end) < 0 or min(strides) < 1:
            return None
        parts[op.outputs[0]] = tuple(
            slice(0 if options.beginMask >> axis & 1 else begin[axis],
                  None if options.endMask >> axis & 1 else end[axis], strides[axis])
            for axis in range(rank))
        count += 1
    if not parts or dtype is None or count >= len(ops) or op_name(ops[count]) != "CONCATENATION":
        return None
    concat = ops[count]
    if sorted(concat.inputs) != sorted(parts) or concat.builtinOptions.fusedActivationFunction:
        return None
    used_later = {i for op in ops[count + 1:] for i in op.inputs}
    if used_later & (set(parts) | {source}) or source in graph.outputs:
        return None
    lifted = concat.outputs[0]
    axis = concat.builtinOptions.axis % rank
    graph.operators = ops[count + 1:]
    graph.inputs = [lifted]
    for signature in m.signatureDefs or []:
        for tensor in signature.inputs:
            if tensor.tensorIndex == source:
                tensor.tensorIndex = lifted
    original = graph.tensors[source]
    return LiftedInput([parts[i] for i in concat.inputs], axis, original.name.decode(),
                       tuple(int(d) for d in original.shape), np.dtype(dtype))


def _cut(m, names: Sequence[str]) -> bool:
    """Make the named tensors the graph's outputs, in that order, and drop every operator
    they do not need (in place); False, and nothing changed, when a name is missing."""
    graph = m.subgraphs[0]
    index = {t.name.decode(): i for i, t in enumerate(graph.tensors)}
    if any(name not in index for name in names):
        return False
    outputs = [index[name] for name in names]
    needed, kept = set(outputs), []
    for op in reversed(graph.operators):
        if needed.intersection(op.outputs):
            kept.append(op)
            needed.update(i for i in op.inputs if i >= 0)
    graph.operators = kept[::-1]
    graph.outputs = outputs
    m.signatureDefs = []          # they name the old outputs
    return True


def _float_depthwise(schema, m) -> bool:
    """Give every hybrid depthwise convolution (float activations, int8 weights: a
    dynamic-range model's) its weights as the float values they stand for, in place;
    whether there was one. XNNPACK has no hybrid depthwise kernel, so TFLite ran these
    on its own kernels, quantising each input first, between XNNPACK partitions that
    left the RELU6s after them unfused: the HSE network took 17 ms a call at one
    thread, 13 with float depthwise weights, its outputs nearer the int8 file's than
    the float32 build's are (docs/devices.md). A MobileNet's depthwise weights are a
    few tens of thousands of its millions: the HSE model grows by 73 KB."""
    graph = m.subgraphs[0]
    op_names = _op_names(schema, m)
    types = schema.TensorType
    converted: set[int] = set()          # buffers, which tensors may share
    for op in graph.operators:
        if op_names[op.opcodeIndex] != "DEPTHWISE_CONV_2D" or len(op.inputs) < 2:
            continue
        source, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        q, data = weights.quantization, m.buffers[weights.buffer].data
        if source.type != types.FLOAT32 or weights.type != types.INT8 or data is None \
                or q is None or q.scale is None or not len(q.scale):
            continue
        if weights.buffer in converted:
            weights.type, weights.quantization = types.FLOAT32, None
            continue
        raw = np.asarray(data, np.uint8).view(np.int8).astype(np.float32)
        raw = raw.reshape([int(d) for d in weights.shape])
        scale = np.asarray(q.scale, np.float32)
        zero = np.zeros_like(scale) if q.zeroPoint is None or len(q.zeroPoint) != scale.size \
            else np.asarray(q.zeroPoint, np.float32)
        if scale.size > 1:           # per channel, along quantizedDimension
            where = [1] * raw.ndim
            where[q.quantizedDimension] = -1
            scale, zero = scale.reshape(where), zero.reshape(where)
        real = np.ascontiguousarray((raw - zero) * scale, np.float32)
        m.buffers[weights.buffer].data = real.reshape(-1).view(np.uint8)
        weights.type, weights.quantization = types.FLOAT32, None
        converted.add(weights.buffer)
    return bool(converted)


# The operators of a full-integer model that _int8 rewrites: each has a signed 8-bit
# kernel computing what its unsigned one does, once every zero point moves by 128.
_INT8_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D",
             "RESHAPE", "SOFTMAX", "QUANTIZE"}


def _int8(schema, m) -> bool:
    """Run a full-integer model of unsigned 8-bit tensors (TensorFlow 1's quantisation:
    MobileNetV2's) on signed 8-bit ones, in place; whether it was one. XNNPACK's signed
    kernels are its fast ones: MobileNetV2 takes 10 ms a call at one thread instead of
    14 here (AVX2, no VNNI), and ARM's dot-product kernels are signed too.

    Activations keep their scales, their zero points 128 lower: the same real values.
    Weights become per-channel symmetric int8 on the file's own scale, the same integers,
    in every channel whose steps from its zero point fit in +-127 (MobileNetV2: 17,994 of
    18,057); the others are spread over +-127 at a coarser scale, rounded, and their biases
    requantised with them. The graph still takes and gives uint8: a QUANTIZE in front of
    it and after each output, which only move values by 128."""
    graph = m.subgraphs[0]
    tensors, types = graph.tensors, schema.TensorType
    op_names = _op_names(schema, m)
    if any(t.type not in (types.UINT8, types.INT32) for t in tensors) \
            or any(op_names[op.opcodeIndex] not in _INT8_OPS for op in graph.operators):
        return False
    weights: dict[int, tuple[int, int, int]] = {}      # weights -> (channel axis, input, bias)
    for op in graph.operators:
        name = op_names[op.opcodeIndex]
        if name == "SOFTMAX":        # int8 softmax gives steps of 1/256 from -128
            q = tensors[op.outputs[0]].quantization
            if list(q.zeroPoint) != [0] or abs(float(q.scale[0]) * 256 - 1) > 1e-6:
                return False
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if len(op.inputs) < 3 or op.inputs[2] < 0:
                return False
            w, b = tensors[op.inputs[1]], tensors[op.inputs[2]]
            if w.type != types.UINT8 or m.buffers[w.buffer].data is None \
                    or b.type != types.INT32:
                return False
            weights[op.inputs[1]] = (0 if name == "CONV_2D" else 3, op.inputs[0], op.inputs[2])
    for t in tensors:
        q = t.quantization
        if t.type == types.UINT8 and (q is None or q.scale is None or len(q.scale) != 1):
            return False
    constants = [tensors[i].buffer for op in graph.operators
                 if op_names[op.opcodeIndex] in ("CONV_2D", "DEPTHWISE_CONV_2D")
                 for i in op.inputs[1:3]]
    if len(set(constants)) != len(constants):      # each rescaled once, for its own op
        return False
    for index, (axis, source, bias_index) in weights.items():
        w, b = tensors[index], tensors[bias_index]
        q, bq = w.quantization, b.quantization
        steps = np.asarray(m.buffers[w.buffer].data, np.uint8).astype(np.int32)
        steps = steps.reshape([int(d) for d in w.shape]) - int(q.zeroPoint[0])
        where = [1] * steps.ndim
        where[axis] = -1
        widest = np.abs(steps).max(axis=tuple(i for i in range(steps.ndim) if i != axis))
        ratio = np.maximum(widest, 127) / 127.0              # 1 where the channel fits
        m.buffers[w.buffer].data = np.round(steps / ratio.reshape(where)).astype(
            np.int8).reshape(-1).view(np.uint8)
        scale = float(q.scale[0]) * ratio
        bias_scale = float(tensors[source].quantization.scale[0]) * scale
        bias = np.asarray(m.buffers[b.buffer].data, np.uint8).view(np.int32)
        bias = np.round(bias * (float(bq.scale[0]) / bias_scale)).astype(np.int32)
        m.buffers[b.buffer].data = bias.view(np.uint8)
        w.type = types.INT8
        zeros = np.zeros(len(scale), np.int64)
        q.scale, q.zeroPoint, q.quantizedDimension = scale.astype(np.float32), zeros, axis
        bq.scale, bq.zeroPoint, bq.quantizedDimension = bias_scale.astype(np.float32), zeros, 0
    for t in tensors:
        if t.type == types.UINT8:
            t.type = types.INT8
            t.quantization.zeroPoint = np.asarray(t.quantization.zeroPoint, np.int64) - 128

    quantize = _code(schema, m, schema.BuiltinOperator.QUANTIZE, version=2)

    def uint8_twin(index: int) -> int:
        """A uint8 tensor of the same values under the original's name (the graph's
        callers use it), the original renamed."""
        inner = tensors[index]
        outer = schema.TensorT()
        outer.shape, outer.type, outer.buffer, outer.name = inner.shape, types.UINT8, 0, inner.name
        outer.quantization = schema.QuantizationParametersT()
        outer.quantization.scale = inner.quantization.scale
        outer.quantization.zeroPoint = np.asarray(inner.quantization.zeroPoint) + 128
        inner.name = inner.name + b"/int8"
        tensors.append(outer)
        return len(tensors) - 1

    def requantize(source: int, target: int):
        op = schema.OperatorT()
        op.opcodeIndex = quantize
        op.inputs, op.outputs = np.array([source], np.int32), np.array([target], np.int32)
        return op

    moved = {index: uint8_twin(index) for index in [*graph.inputs, *graph.outputs]}
    graph.operators = [requantize(moved[i], i) for i in graph.inputs] + graph.operators \
        + [requantize(i, moved[i]) for i in graph.outputs]
    graph.inputs = [moved[i] for i in graph.inputs]
    graph.outputs = [moved[i] for i in graph.outputs]
    for signature in m.signatureDefs or []:
        for tensor in list(signature.inputs or []) + list(signature.outputs or []):
            tensor.tensorIndex = moved.get(tensor.tensorIndex, tensor.tensorIndex)
    return True


def _code(schema, m, builtin: int, version: int = 1) -> int:
    """The index of a builtin operator's code in the model, added when it has none."""
    for i, c in enumerate(m.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
            return i
    c = schema.OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), version
    m.operatorCodes.append(c)
    return len(m.operatorCodes) - 1


# The rewrites that move outputs, by rounding only, by their names in the manifest.
ROUNDING = {"float-depthwise": _float_depthwise, "int8": _int8}


# Operators whose output size follows their input's (spatial ops with their own
# kernels, paddings and strides; elementwise ops), so that a graph of only these takes
# any input size. RESIZE_NEAREST_NEIGHBOR names its output size: _size_free rewrites it.
_SIZE_FREE = {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD",
              "CONCATENATION", "DEPTH_TO_SPACE", "LOGISTIC", "RELU", "RELU6", "HARD_SWISH",
              "TANH", "ADD", "MUL", "SUB"}


def _size_free(schema, m) -> bool:
    """Whether the graph can take any input size, after rewriting each 2x nearest
    upsampling (a RESIZE_NEAREST_NEIGHBOR with a constant size: YOLOX's PAFPN) as four
    copies concatenated along the channels and a DEPTH_TO_SPACE, which give the same
    values without naming a size (in place; the outputs are bit for bit the same)."""
    graph = m.subgraphs[0]
    op_names = _op_names(schema, m)
    B = schema.BuiltinOperator

    def shape(i: int) -> list[int]:
        return [int(d) for d in graph.tensors[i].shape]

    def constant(i: int) -> bool:
        return m.buffers[graph.tensors[i].buffer].data is not None

    ops = []
    for op in graph.operators:
        name = op_names[op.opcodeIndex]
        if name == "RESIZE_NEAREST_NEIGHBOR":
            options = op.builtinOptions
            source, target = shape(op.inputs[0]), shape(op.outputs[0])
            if options.alignCorners or options.halfPixelCenters or len(source) != 4 \
                    or target != [source[0], 2 * source[1], 2 * source[2], source[3]]:
                return False
            copies = schema.TensorT()
            copies.shape = np.array(source[:3] + [4 * source[3]], np.int32)
            copies.type = graph.tensors[op.inputs[0]].type
            copies.buffer = 0
            copies.name = graph.tensors[op.inputs[0]].name + b"/x4"
            graph.tensors.append(copies)
            concat = schema.OperatorT()
            concat.opcodeIndex = _code(schema, m, B.CONCATENATION)
            concat.inputs = np.array([op.inputs[0]] * 4, np.int32)
            concat.outputs = np.array([len(graph.tensors) - 1], np.int32)
            concat.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
            concat.builtinOptions = schema.ConcatenationOptionsT()
            concat.builtinOptions.axis = 3
            to_space = schema.OperatorT()
            to_space.opcodeIndex = _code(schema, m, B.DEPTH_TO_SPACE)
            to_space.inputs = concat.outputs
            to_space.outputs = np.array(op.outputs, np.int32)
            to_space.builtinOptionsType = schema.BuiltinOptions.DepthToSpaceOptions
            to_space.builtinOptions = schema.DepthToSpaceOptionsT()
            to_space.builtinOptions.blockSize = 2
            ops += [concat, to_space]
            continue
        if name not in _SIZE_FREE:
            return False
        if name in ("ADD", "MUL", "SUB"):
            # a constant operand with a size of its own (a grid, say) would not follow
            for i in op.inputs:
                if constant(i) and len(shape(i)) == 4 and (shape(i)[1] > 1 or shape(i)[2] > 1):
                    return False
        if name == "CONCATENATION" and op.builtinOptions.axis % len(shape(op.outputs[0])) != 3:
            return False
        ops.append(op)
    graph.operators = ops
    return True
