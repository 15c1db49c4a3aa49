"""TFLite sessions: YOLOX's Focus slices done in numpy, its graph ended at its raw maps and
made to take any input size (graph.rewrite), and outputs read in place, with the outputs
unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galprof.vision import graph
from galprof.vision.objects import ObjectDetector
from galprof.vision.runtime import TFLiteSession, _tflite_interpreter_class

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
flatbuffers = pytest.importorskip("flatbuffers")


def whole_graph_outputs(model: bytes, feed: np.ndarray) -> np.ndarray:
    """The model run as it is, by the runtime alone."""
    it = _tflite_interpreter_class()(model_content=model, num_threads=2)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], feed)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def detector_input(shared_models: Path, image: Path) -> np.ndarray:
    """The detector's 416 x 416 input (letterboxed, BGR, float) for a photo."""
    detector = ObjectDetector("yolox_nano", threads=1, models_dir=shared_models)
    detector.maps = []
    feeds, _ = detector._preprocess(np.asarray(Image.open(image).convert("RGB")))
    return feeds[0]


def edited(model: bytes, edit) -> bytes:
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    edit(m)
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def yolox(shared_models) -> bytes:
    return (shared_models / "yolox_nano.tflite").read_bytes()


def test_yolox_focus_is_lifted_and_outputs_are_bit_identical(shared_models, testmedia, yolox):
    session = TFLiteSession(shared_models / "yolox_nano.tflite", 2)
    assert session.lifted is not None
    # callers still see (and feed) the original input; the runtime gets the space-to-depth
    assert session.inputs[0].shape == (1, 416, 416, 3)
    assert session._it.get_input_details()[0]["shape"].tolist() == [1, 208, 208, 12]
    for name in ("darknet_dog.jpg", "ul_bus.jpg", "tfyolo_kitchen.jpg"):
        feed = detector_input(shared_models, testmedia / "scenes" / name)
        got = session.run([feed])[session.outputs[0].name]
        assert np.array_equal(got, whole_graph_outputs(yolox, feed)), name


def test_parts_follow_the_concatenation_order(shared_models, testmedia, yolox):
    """The numpy parts are taken in the concatenation's order, whatever it is."""
    def reverse_concat(m):
        concat = m.subgraphs[0].operators[4]
        concat.inputs = concat.inputs[::-1]
    model = edited(yolox, reverse_concat)
    done = graph.rewrite(model)
    cut, lifted = done.model, done.lifted
    assert [(s[1].start, s[2].start) for s in lifted.slices] == [(1, 1), (0, 1), (1, 0), (0, 0)]
    feed = detector_input(shared_models, testmedia / "scenes" / "darknet_dog.jpg")
    parts = np.empty((1, 208, 208, 12), np.float32)
    lifted.write(feed, parts)
    assert np.array_equal(parts[..., 9:], feed[:, ::2, ::2])       # the last part: (0, 0)
    assert np.array_equal(whole_graph_outputs(cut, parts), whole_graph_outputs(model, feed))
    # a different graph than YOLOX's: the outputs do differ from the original's
    assert not np.array_equal(whole_graph_outputs(model, feed), whole_graph_outputs(yolox, feed))


@pytest.mark.parametrize("edit", [
    pytest.param(lambda m: setattr(m.subgraphs[0].operators[0].builtinOptions,
                                   "shrinkAxisMask", 2), id="shrink-mask"),
    pytest.param(lambda m: setattr(m.subgraphs[0].operators[5], "inputs", np.array(
        [m.subgraphs[0].inputs[0], *m.subgraphs[0].operators[5].inputs[1:]])),
        id="input-used-later"),
    pytest.param(lambda m: m.subgraphs[0].operators.pop(4), id="no-concatenation"),
])
def test_graphs_it_cannot_cut_run_as_they_are(yolox, edit):
    assert graph.rewrite(edited(yolox, edit)) is None


@pytest.mark.parametrize("name", ["mobilenet_v2_1.0_224_quant.tflite",
                                  "face_detection_full_range.tflite",
                                  "hse_age_gender_identity_int8.tflite"])
def test_other_models_are_not_cut(shared_models, name):
    assert graph.rewrite((shared_models / name).read_bytes()) is None
    assert TFLiteSession(shared_models / name, 1).lifted is None


def test_unreadable_bytes_are_left_to_the_runtime(yolox):
    assert graph.rewrite(yolox[: len(yolox) // 3]) is None
    assert graph.rewrite(b"not a model at all") is None


def test_outputs_read_in_place_are_the_copies_values(shared_models, testmedia):
    """run(copy=False) gives views of the runtime's buffers (what the detector reads
    once): the same values; once let go, the next run goes on."""
    session = TFLiteSession(shared_models / "yolox_nano.tflite", 2)
    name = session.outputs[0].name
    dog = detector_input(shared_models, testmedia / "scenes" / "darknet_dog.jpg")
    bus = detector_input(shared_models, testmedia / "scenes" / "ul_bus.jpg")
    copied = session.run([dog])[name]
    viewed = session.run([dog], copy=False)[name]
    assert not viewed.flags.owndata and np.array_equal(viewed, copied)
    del viewed
    assert not np.array_equal(session.run([bus], copy=False)[name], copied)


MAPS = ["model/tf.concat_11/concat", "model/tf.concat_14/concat", "model/tf.concat_16/concat"]


def decoded_maps(maps: list[np.ndarray]) -> np.ndarray:
    """The whole graph's decode done in numpy: (raw + cell) x stride, exp(raw) x stride."""
    rows = []
    for m, stride in zip(maps, (8, 16, 32)):
        _, h, w, c = m.shape
        gy, gx = np.mgrid[0:h, 0:w]
        r = m.reshape(-1, c).astype(np.float64)
        r[:, :2] = (r[:, :2] + np.stack([gx.ravel(), gy.ravel()], 1)) * stride
        r[:, 2:4] = np.exp(r[:, 2:4]) * stride
        rows.append(r)
    return np.concatenate(rows)


def test_the_graph_ends_at_its_maps_before_the_decode(shared_models, testmedia, yolox):
    """Ending YOLOX at its raw maps per stride drops the decode of every anchor (SCATTER_NDs
    on the reference kernels); decoding the maps in numpy gives the whole graph's rows."""
    session = TFLiteSession(shared_models / "yolox_nano.tflite", 2, outputs=MAPS)
    assert [o.name for o in session.outputs] == MAPS
    assert [o.shape for o in session.outputs] == [(1, 52, 52, 85), (1, 26, 26, 85), (1, 13, 13, 85)]
    for name in ("darknet_dog.jpg", "ul_bus.jpg"):
        feed = detector_input(shared_models, testmedia / "scenes" / name)
        got = session.run([feed])
        whole = whole_graph_outputs(yolox, feed)[0]
        assert np.abs(decoded_maps([got[n] for n in MAPS]) - whole).max() < 1e-3, name


def test_any_input_size_gives_the_maps_of_that_size(shared_models, testmedia):
    """The upsamplings rewritten, one session takes 416 x 256, 320 x 416 and the square in
    any order (resized when the shape changes), each run giving the maps the same graph
    gives a fresh interpreter of that size; the square's maps are bit for bit those of the
    graph cut at its maps alone."""
    sized = TFLiteSession(shared_models / "yolox_nano.tflite", 2, outputs=MAPS, any_size=True)
    fixed = TFLiteSession(shared_models / "yolox_nano.tflite", 2, outputs=MAPS)
    assert sized.any_size and not fixed.any_size
    square = detector_input(shared_models, testmedia / "scenes" / "ul_bus.jpg")
    first = {}
    for h, w in [(256, 416), (416, 320), (416, 416), (256, 416)]:
        feed = np.ascontiguousarray(square[:, :h, :w])
        got = sized.run([feed])
        assert [got[n].shape[1:3] for n in MAPS] == [(h // s, w // s) for s in (8, 16, 32)]
        if (h, w) in first:
            assert all(np.array_equal(got[n], first[(h, w)][n]) for n in MAPS)
        first.setdefault((h, w), got)
    want = fixed.run([square])
    assert all(np.array_equal(first[(416, 416)][n], want[n]) for n in MAPS)
    with pytest.raises(ValueError, match="at most"):
        sized.run([np.zeros((1, 448, 416, 3), np.float32)])


def test_graphs_with_size_bound_operators_keep_their_size(shared_models, yolox):
    """Without the cut, YOLOX's decode (a RESHAPE, a grid constant) names its size; a
    classifier ends in a fully connected layer: neither can take another size."""
    assert not graph.rewrite(yolox, any_size=True).any_size
    scenes = (shared_models / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    assert graph.rewrite(scenes, any_size=True) is None
    assert not TFLiteSession(shared_models / "mobilenet_v2_1.0_224_quant.tflite", 1,
                             any_size=True).any_size
    missing = graph.rewrite(yolox, outputs=["no/such/tensor"])
    assert missing.lifted is not None and missing.any_size is False   # the whole graph


# ---------------------------------------------------------------- float depthwise weights

HSE_INT8 = "hse_age_gender_identity_int8.tflite"


def depthwise_weight_types(model: bytes) -> list[str]:
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    g = m.subgraphs[0]
    names = graph._op_names(schema, m)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return [types[g.tensors[op.inputs[1]].type] for op in g.operators
            if names[op.opcodeIndex] == "DEPTHWISE_CONV_2D"]


def test_hse_depthwise_convs_run_on_float_weights(shared_models):
    """The dynamic-range HSE file's int8 depthwise weights become the float values they
    stand for; its other layers keep their int8 weights, and the input and outputs stay."""
    model = (shared_models / HSE_INT8).read_bytes()
    assert depthwise_weight_types(model).count("INT8") == 11
    done = graph.rewrite(model, rewrites=["float-depthwise"])
    assert done is not None and done.lifted is None and not done.any_size
    assert set(depthwise_weight_types(done.model)) == {"FLOAT32"}
    assert len(done.model) - len(model) < 500_000     # ~4 bytes instead of 1 per dw weight
    session = TFLiteSession(shared_models / HSE_INT8, 1, rewrites=["float-depthwise"])
    plain = TFLiteSession(shared_models / HSE_INT8, 1)
    assert [o.name for o in session.outputs] == [o.name for o in plain.outputs]
    int8_weights = [d for d in session._it.get_tensor_details() if d["dtype"] == np.int8]
    assert int8_weights, "the convolutions' and dense layers' weights stay int8"


def test_float_depthwise_leaves_other_graphs_as_they_are(shared_models, yolox):
    """Full-integer graphs (MobileNetV2: uint8 activations) and float ones have no hybrid
    depthwise conv: nothing to do."""
    for name in ("mobilenet_v2_1.0_224_quant.tflite", "face_detection_full_range.tflite"):
        assert graph.rewrite((shared_models / name).read_bytes(),
                             rewrites=["float-depthwise"]) is None
    assert graph.rewrite(yolox, rewrites=["float-depthwise"]).model == graph.rewrite(yolox).model


def test_faces_with_float_depthwise_weights_keep_the_files_results(shared_models, testmedia):
    """On real faces the rewritten network gives what the file gives, to within what
    rounding the depthwise inputs to 8 bits did: the same person, age and gender (and
    not bit for bit: the rewrite did run)."""
    from galprof.vision.faces import FaceAnalyzer, FaceDetector

    detector = FaceDetector(threads=1, models_dir=shared_models)
    rewritten = FaceAnalyzer(threads=1, models_dir=shared_models)
    assert rewritten.rewrites == ("float-depthwise",)
    plain = FaceAnalyzer(threads=1, models_dir=shared_models)
    plain.session = TFLiteSession(shared_models / HSE_INT8, 1)
    faces = 0
    for path in [testmedia / "faces/children/hse_family.jpg",
                 *sorted((testmedia / "faces/facenet").glob("*.jpg"))[:2]]:
        image = np.asarray(Image.open(path).convert("RGB"))
        for face in detector.detect(image):
            crop = rewritten.align(image, face)
            a, b = rewritten.predict(crop), plain.predict(crop)
            assert float(a.features @ b.features) > 0.999, path.name
            assert abs(a.age - b.age) < 1.0, path.name
            assert abs(a.male_prob - b.male_prob) < 0.02, path.name
            assert not np.array_equal(a.features, b.features)
            faces += 1
    assert faces >= 6       # the family's four and one face a portrait


def test_the_rewrite_is_part_of_the_face_models_version(shared_models):
    """Cached face results are keyed by what computed them: the int8 file run with float
    depthwise weights is another version than the file run as it is; the ONNX twin and
    the float32 build have no such rewrite."""
    from galprof.vision.faces import FaceAnalyzer, FacesStage

    analyzer = FaceAnalyzer(models_dir=shared_models)
    assert analyzer.version == analyzer.spec.version + "+float-depthwise"
    assert "+float-depthwise" in FacesStage().version
    for other in ("hse_faces_f32", "hse_faces_onnx"):
        assert FaceAnalyzer(other, models_dir=shared_models).version == \
            FaceAnalyzer(other).spec.version


# ---------------------------------------------------------------- unsigned to signed 8 bits

MOBILENET = "mobilenet_v2_1.0_224_quant.tflite"


def tensors_of(model: bytes):
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    return m, m.subgraphs[0]


def test_a_uint8_graph_runs_on_int8_with_the_files_integers(shared_models):
    """MobileNetV2's uint8 tensors become int8: activations with their zero points 128
    lower, weights per channel on the file's own scale with the file's integers wherever
    a channel fits in +-127 (all but a few); its input and outputs stay uint8, with the
    file's names, scales and zero points, behind a QUANTIZE at each end."""
    model = (shared_models / MOBILENET).read_bytes()
    done = graph.rewrite(model, rewrites=["int8"])
    assert done is not None and done.lifted is None
    before, old = tensors_of(model)
    after, new = tensors_of(done.model)
    types = schema.TensorType
    assert {t.type for t in old.tensors} == {types.UINT8, types.INT32}
    names = graph._op_names(schema, after)
    ops = [names[op.opcodeIndex] for op in new.operators]
    assert ops[0] == "QUANTIZE" and ops[-1] == "QUANTIZE" and ops.count("QUANTIZE") == 2
    for ends in ("inputs", "outputs"):
        (a,), (b,) = getattr(old, ends), getattr(new, ends)
        was, now = old.tensors[a], new.tensors[b]
        assert now.type == types.UINT8 and now.name == was.name
        assert list(now.quantization.zeroPoint) == list(was.quantization.zeroPoint)
    same = channels = 0
    for op_old, op_new in zip([op for op in old.operators], new.operators[1:-1]):
        name = names[op_new.opcodeIndex]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        w_old, w_new = old.tensors[op_old.inputs[1]], new.tensors[op_new.inputs[1]]
        assert w_new.type == types.INT8 and not any(w_new.quantization.zeroPoint)
        axis = 0 if name == "CONV_2D" else 3
        shape = [int(d) for d in w_old.shape]
        steps = np.asarray(before.buffers[w_old.buffer].data, np.int32).reshape(shape) \
            - int(w_old.quantization.zeroPoint[0])
        now = np.asarray(after.buffers[w_new.buffer].data, np.uint8).view(np.int8).reshape(shape)
        scale = np.asarray(w_new.quantization.scale)
        assert len(scale) == shape[axis]
        for c in range(shape[axis]):
            channels += 1
            if np.array_equal(np.take(steps, c, axis), np.take(now, c, axis)):
                assert scale[c] == np.float32(w_old.quantization.scale[0])
                same += 1
    assert channels == 18057 and same >= 17990
    activations = [t for t in new.tensors if t.type == types.INT8 and t.buffer
                   and after.buffers[t.buffer].data is None]
    assert activations and all(t.quantization.zeroPoint[0] < 128 for t in activations)


def test_int8_leaves_graphs_that_are_not_uint8_as_they_are(shared_models, yolox):
    """A model with float tensors (YOLOX, BlazeFace, the hybrid HSE file, SSD's float
    post-processing) or already signed (EfficientNet-Lite0 int8) is left alone."""
    for name in ("face_detection_full_range.tflite", HSE_INT8,
                 "efficientnet_lite0_int8.tflite", "ssd_mobilenet_v1_coco_quant.tflite"):
        assert graph.rewrite((shared_models / name).read_bytes(), rewrites=["int8"]) is None
    assert graph.rewrite(yolox, rewrites=["int8"]).model == graph.rewrite(yolox).model
    with pytest.raises(ValueError, match="no such rewrite"):
        graph.rewrite(yolox, rewrites=["fp16"])


def test_scenes_on_int8_keep_the_files_results(shared_models, testmedia):
    """On real photos the rewritten classifier gives what the file gives, about as
    closely as the file run on TFLite's own kernels instead of XNNPACK's does (those
    round differently too): the same top class on most, the same photo features
    (cosine), and not bit for bit (the rewrite did run)."""
    from ai_edge_litert.interpreter import OpResolverType

    from galprof.vision.scenes import SceneClassifier

    rewritten = SceneClassifier(threads=1, models_dir=shared_models)
    assert rewritten.rewrites == ("int8",)
    rewritten.load()
    plain = SceneClassifier(threads=1, models_dir=shared_models).load()
    plain.session = TFLiteSession(shared_models / MOBILENET, 1,
                                  extra_outputs=[plain.feature_tensor])
    builtin = _tflite_interpreter_class()(
        model_path=str(shared_models / MOBILENET), num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    builtin.allocate_tensors()
    photos = sorted((testmedia / "scenes").rglob("*.jpg"))
    assert len(photos) >= 30
    moved, kernels, same_top, cosines = [], [], 0, []
    for path in photos:
        image = np.asarray(Image.open(path).convert("RGB"))
        a, b = rewritten.analyse(image), plain.analyse(image)
        feed = rewritten.cropped(image)[None]
        builtin.set_tensor(builtin.get_input_details()[0]["index"], feed)
        builtin.invoke()
        out = builtin.get_output_details()[0]
        scale, zero = out["quantization"]
        other = (builtin.get_tensor(out["index"]).reshape(-1).astype(np.float32) - zero) * scale
        moved.append(np.abs(a.probabilities - b.probabilities).sum())
        kernels.append(np.abs(other[1:] - b.probabilities).sum())
        same_top += int(a.probabilities.argmax() == b.probabilities.argmax())
        cosines.append(float(a.features @ b.features)
                       / float(np.linalg.norm(a.features) * np.linalg.norm(b.features)))
    assert np.mean(moved) < 1.5 * np.mean(kernels), (np.mean(moved), np.mean(kernels))
    assert same_top >= 0.8 * len(photos)
    assert min(cosines) > 0.97
    assert max(moved) > 0


def test_the_int8_rewrite_is_part_of_the_scene_models_version(shared_models):
    from galprof.vision.scenes import SceneClassifier

    assert SceneClassifier(models_dir=shared_models).version.endswith("@" + SceneClassifier(
        models_dir=shared_models).spec.sha256[:12] + "+int8")
    for other in ("efficientnet_lite0", "mobilenet_v2_onnx"):
        model = SceneClassifier(other, models_dir=shared_models)
        assert model.version == model.spec.version


def test_the_manifests_rewrites_are_known_and_apply(shared_models):
    """Every rewrite the manifest asks for exists and changes its model's file (a version
    suffix for a rewrite that did nothing would key results by something not done)."""
    from galprof.vision import manifest

    asked = {(spec.file, name) for spec in manifest.models().values() for name in spec.rewrites}
    assert {name for _, name in asked} == set(graph.ROUNDING)
    for file, name in asked:
        assert graph.rewrite((shared_models / file).read_bytes(), rewrites=[name]) is not None
