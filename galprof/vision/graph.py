"""A TFLite graph's leading input slices, done in numpy instead of by the runtime.

YOLOX's "Focus" layer starts the graph with four stride-2 STRIDED_SLICEs of the input
concatenated along the channels (a space-to-depth). XNNPACK does not take strided slices,
so TFLite runs them with its reference kernel, element by element, single-threaded: 4-5
ms of YOLOX-Nano's 12-18 ms a call here, and under a scan's decoding it is worse (the
most sampled function of the roll's profile). The same slices in numpy cost under 1 ms.

`lift_input_slices` cuts such a prefix off the model (the concatenation's output becomes
the graph's input) and says how to make that input from the original one; the outputs
are bit for bit those of the whole graph, since slicing moves values without arithmetic.
The model is rewritten in memory through the flatbuffer schema that ai-edge-litert (or
TensorFlow) ships; without one the model runs as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def lift_input_slices(model: bytes) -> tuple[bytes, LiftedInput] | None:
    """The model without its leading input slices and how to make its new input, or
    None when the graph does not start that way (or no schema module is installed)."""
    schema = _schema()
    if schema is None:
        return None
    try:
        return _lift(schema, model)
    except Exception:    # not a readable flatbuffer: the runtime's own error says so
        return None


def _lift(schema, model: bytes) -> tuple[bytes, LiftedInput] | None:
    import flatbuffers
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    if not _starts_with(schema, model, schema.BuiltinOperator.STRIDED_SLICE):
        return None          # most models: decided without unpacking the whole graph
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    if len(m.subgraphs) != 1 or len(m.subgraphs[0].inputs) != 1:
        return None
    graph = m.subgraphs[0]
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def op_name(op) -> str:
        code = m.operatorCodes[op.opcodeIndex]
        return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")

    def constant(index: int) -> list[int] | None:
        data = m.buffers[graph.tensors[index].buffer].data
        return None if data is None else np.asarray(data, np.uint8).view(np.int32).tolist()

    source = graph.inputs[0]
    dtype = _DTYPES.get(types.get(graph.tensors[source].type))
    rank = len(graph.tensors[source].shape)
    parts: dict[int, tuple[slice, ...]] = {}
    ops = graph.operators
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
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    original = graph.tensors[source]
    return bytes(builder.Output()), LiftedInput(
        [parts[i] for i in concat.inputs], axis, original.name.decode(),
        tuple(int(d) for d in original.shape), np.dtype(dtype))
